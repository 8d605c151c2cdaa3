"""docs/openapi.yaml: valid OpenAPI, complete, and true of a running gateway (schemathesis).

The cheap tests check that the spec is valid OpenAPI, that every route the application serves is
documented (and nothing more), and that every retcode appears in it. The live test starts a real
``ccgateway serve --http`` on loopback, registers a recording and file-server recordings, signs
agents in, and throws schemathesis-generated requests at every operation: anonymous ones, ones with
a valid ``Guid`` (or admin token) and fixed valid parameters, and invalid (negative) ones. It
collects every failure instead of shrinking the first: no 5xx, and no answer contradicting the
spec's status codes, content types, headers or bodies.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ccgateway import retcodes
from ccgateway.app import create_app
from ccgateway.cli import cli
from ccgateway.config import load_settings
from ccgateway.gateway import open_gateway
from ccgateway.web.routes import PREFIX, ROUTES
from tests.system.conftest import ServeProcess, start_serve

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
ADMIN_TOKEN = "openapi-admin-token"
METRICS_TOKEN = "openapi-metrics-token"
PASSWORD = "openapi-pw-1"
READER = 101  # polls and downloads: its session stays valid for the whole module
MUTATOR = 102  # logout, forcelogout, updateGuid: signed in afresh before each such call
INSPECTOR = 201
CONFERENCE = "conf-openapi-1"
RECORD = "rec-openapi-1"
CALL = "call-openapi-1"
VIDEO_PATH = f"Y:/1/0/20240101/{READER}/1714442.mp4"
VOICE_PATH = f"Y:/1/0/20240101/{READER}/1902050.V3"  # READER is of VDN 1
FLOW_CONTROL_CODES = {"000-007", "000-008", "000-009"}  # being added with flow control

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Examples per operation and mode; CCGW_OPENAPI_EXAMPLES=200 for a longer local run.
_LONG_RUN = int(os.environ.get("CCGW_OPENAPI_EXAMPLES", "0"))
EXAMPLES = (
    dict.fromkeys(("anonymous", "authenticated", "negative"), _LONG_RUN)
    if _LONG_RUN
    else {"anonymous": 15, "authenticated": 30, "negative": 10}
)


def load_spec() -> Any:
    return schemathesis.openapi.from_path(SPEC)


def spec_document() -> dict[str, Any]:
    document: dict[str, Any] = load_spec().raw_schema
    return document


# -- cheap: the spec itself ------------------------------------------------------------------------


def test_spec_is_valid_openapi() -> None:
    schema = load_spec()
    schema.validate()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= len(ROUTES)


def _template(path: str) -> str:
    """A path with every ``{name}`` replaced by ``{}``, so parameter names need not agree."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def documented_operations() -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return {
        (method.upper(), _template(path))
        for path, item in spec_document()["paths"].items()
        for method in item
        if method in methods
    }


async def served_operations(tmp_path: Path) -> set[tuple[str, str]]:
    """Every (method, path) the real application answers; HEAD where it only mirrors a GET."""
    settings_ = load_settings(
        environ={},
        DATA_DIR=str(tmp_path / "data"),
        ADMIN_TOKEN=ADMIN_TOKEN,
        METRICS_TOKEN=METRICS_TOKEN,
    )
    served: set[tuple[str, str]] = set()
    async with open_gateway(settings_) as core:
        app: web.Application = create_app(core)
        for route in app.router.routes():
            path = route.resource.canonical if route.resource is not None else ""
            if path.startswith(PREFIX):  # the dispatcher: its table is ROUTES
                continue
            if route.method == "HEAD":  # aiohttp's automatic HEAD of a GET
                continue
            method = "GET" if route.method == "*" else route.method  # e.g. /metrics: GET, HEAD
            served.add((method, _template(path)))
    for agent_route in ROUTES:
        served.add((agent_route.method, _template(PREFIX + agent_route.pattern)))
    return served


async def test_every_route_is_documented(tmp_path: Path) -> None:
    served = await served_operations(tmp_path)
    documented = documented_operations()
    assert served - documented == set(), "routes missing from docs/openapi.yaml"
    extra = {op for op in documented - served if op[0] != "HEAD"}
    if importlib.util.find_spec("ccgateway.web.metrics") is None:
        extra.discard(("GET", "/metrics"))  # documented ahead of its code
    assert extra == set(), "docs/openapi.yaml documents routes the gateway does not serve"
    heads = {(m, p) for m, p in documented if m == "HEAD"}
    assert heads <= {("HEAD", p) for m, p in served if m == "GET"}


def test_every_retcode_is_documented() -> None:
    text = SPEC.read_text()
    missing = [r.code for r in retcodes.ALL if f"`{r.code}`" not in text]
    assert missing == [], f"retcodes not described in docs/openapi.yaml: {missing}"
    for code in FLOW_CONTROL_CODES:
        assert f"`{code}`" in text
    known = {r.code for r in retcodes.ALL} | FLOW_CONTROL_CODES
    in_enums = set(re.findall(r'"(\d{3}-\d{3})"', text))
    assert in_enums <= known, f"unknown retcodes in the spec: {in_enums - known}"


# -- live: schemathesis against a running gateway --------------------------------------------------


@dataclass
class LiveGateway:
    serve: ServeProcess
    http: requests.Session
    guids: dict[int, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.serve.port}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, self.base_url + path, timeout=10, **kwargs)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        answer = self.request(method, f"/ccgateway/admin/v1/{path}", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def sign_in(self, agent: int) -> str:
        answer = self.request(
            "PUT",
            f"/agentgateway/resource/onlineagent/{agent}/forcelogin",
            json={"password": PASSWORD, "phonenum": "7000"},
        )
        assert answer.json()["retcode"] == "0", answer.text
        guid = answer.headers["Set-GUID"].split("=", 1)[1]
        self.guids[agent] = guid
        return guid

    def follow(self, agent: int, response: requests.Response) -> None:
        """Keep the agent's GUID current when an answer rotates it."""
        value = response.headers.get("Set-GUID", "")
        if value.startswith("JSESSIONID=") and response.status_code == 200:
            self.guids[agent] = value.split("=", 1)[1]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    tmp_path = tmp_path_factory.mktemp("openapi")
    data, drive = tmp_path / "data", tmp_path / "drive-y"
    runner = CliRunner(env={"CCGW_DATA_DIR": str(data)})
    for agent, role in ((READER, "agent"), (MUTATOR, "agent"), (INSPECTOR, "inspector")):
        args = ["agents", "add", str(agent), "--password", PASSWORD, "--role", role]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
    payload = hashlib.sha256(b"openapi").digest() * 2048  # 64 KiB
    hd = tmp_path / "hd.mp4"
    hd.write_bytes(payload)
    for relative in (VIDEO_PATH, VOICE_PATH):
        target = drive / relative.removeprefix("Y:/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload[:10_000])
    env = {
        "CCGW_ADMIN_TOKEN": ADMIN_TOKEN,
        "CCGW_METRICS_TOKEN": METRICS_TOKEN,
        "CCGW_RECORD_DRIVE_MAP": f"Y:={drive}",
        "CCGW_AGENT_POLL_WAIT_TIMES": "1",
        "CCGW_AGENT_POLL_WAIT_INTERVAL": "20",
        "CCGW_LOG_LEVEL": "WARNING",
        # Flow control must not answer the fuzzing's bursts of one agent (a 503 is a 5xx).
        "CCGW_REQUEST_RATE_PER_AGENT": "100000",
        "CCGW_REQUEST_RATE": "1000000",
        "CCGW_MAX_DOWNLOADS_PER_AGENT": "1000",
        # The fuzzing's many wrong passwords must not lock its agents out, nor its sign-ins
        # exhaust the address's budget (the lockout has its own tests).
        "CCGW_SIGNIN_LOCKOUT_ATTEMPTS": "0",
        "CCGW_SIGNIN_RATE_PER_IP": "1000000",
        "CCGW_SIGNIN_BURST_PER_IP": "1000000",
    }
    serve = start_serve(tmp_path, "--http", env=env)
    http = requests.Session()
    gateway = LiveGateway(serve, http)
    try:
        gateway.admin(
            "POST",
            "recordings",
            {
                "conferenceId": CONFERENCE,
                "recordId": RECORD,
                "participants": [READER, MUTATOR],
                "files": {"hd": str(hd), "sd": str(hd)},
                "vdn": 1,
                "callId": CALL,
            },
        )
        gateway.admin(
            "POST",
            "file-recordings",
            {"recordId": "voice-1", "fileName": VOICE_PATH, "callId": CALL, "fileMediaType": 1},
        )
        gateway.sign_in(READER)
        gateway.sign_in(INSPECTOR)
        yield gateway
    finally:
        http.close()
        serve.process.terminate()
        serve.process.wait(10)
    assert "Traceback" not in serve.stderr(), serve.stderr()


def _operation_ids() -> list[str]:
    document = spec_document()
    return [
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    ]


OPERATION_IDS = _operation_ids()
MUTATING = {"logout", "forceLogout", "updateGuid"}

# Valid query parameters for an authenticated call, so the success paths (files, 206, 304, ...)
# are reached; the other examples of the same operation keep the generated ones.
VALID_QUERIES: dict[str, list[dict[str, Any]]] = {
    "downloadVideoFile": [
        {"conferenceId": CONFERENCE, "fileType": 0},
        {"conferenceId": CONFERENCE, "recordId": RECORD, "fileType": 1},
    ],
    "downloadVideoFileEx": [{"recordId": VIDEO_PATH}],
    "downloadRecordFile": [{"recordId": VOICE_PATH}, {"recordId": VOICE_PATH, "filetype": 1}],
    "recordfiledownloadEx": [{"callId": CALL}, {"callId": CALL, "hwFileName": VIDEO_PATH}],
    "adminAudit": [{"agent": READER, "limit": 5}],
}
VALID_QUERIES["headVideoFile"] = VALID_QUERIES["downloadVideoFile"]
VALID_QUERIES["headVideoFileEx"] = VALID_QUERIES["downloadVideoFileEx"]
VALID_QUERIES["headRecordFile"] = VALID_QUERIES["downloadRecordFile"]
VALID_QUERIES["headRecordfiledownloadEx"] = VALID_QUERIES["recordfiledownloadEx"]
# Conditional and range headers sent with those valid queries, so 206, 304 and 416 come up too.
DOWNLOAD_HEADERS: list[dict[str, str]] = [
    {"Range": "bytes=0-99"},
    {"Range": "bytes=-10", "Want-Repr-Digest": "sha-256=0"},
    {"Range": "bytes=100000000-"},
    {"If-None-Match": "*"},
    {"If-Match": "*", "Range": "bytes=5-"},
]
VALID_PATHS: dict[str, list[dict[str, Any]]] = {
    "adminShowConference": [{"conferenceId": CONFERENCE}],
}


@dataclass
class Outcome:
    calls: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    retcodes: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # title -> first report

    def record(self, response: schemathesis.Response) -> None:
        self.calls += 1
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        content_type = response.headers.get("content-type", [""])[0]
        if content_type.startswith("application/json") and response.content:
            try:
                code = str(response.json().get("retcode"))
            except (ValueError, AttributeError):
                code = "<not a JSON object>"
            self.retcodes[code] = self.retcodes.get(code, 0) + 1


def _agent_of(operation_id: str) -> int:
    if operation_id in MUTATING:
        return MUTATOR
    return READER


def _strategies(operation: Any, operation_id: str, mode: str) -> Any:
    if mode == "negative":
        return operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE)
    if mode == "anonymous":
        return operation.as_strategy()
    path: dict[str, Any] = {}
    if "{agentid}" in operation.path:
        path["agentid"] = _agent_of(operation_id)
    if operation_id == "adminSignAgentOut":  # never the reader, whose session the module keeps
        path["workNo"] = MUTATOR
    choices = [operation.as_strategy(path_parameters=path or None)]
    for query in VALID_QUERIES.get(operation_id, []):
        choices.append(operation.as_strategy(path_parameters=path or None, query=query))
        if operation.path.startswith("/agentgateway/resource/recordfile/"):
            choices.extend(
                operation.as_strategy(path_parameters=path, query=query, headers=headers)
                for headers in DOWNLOAD_HEADERS
            )
    for fixed in VALID_PATHS.get(operation_id, []):
        choices.append(operation.as_strategy(path_parameters={**path, **fixed}))
    return st.one_of(*choices)


def _credentials(live: LiveGateway, operation: Any, operation_id: str) -> dict[str, str]:
    if operation.path.startswith("/ccgateway/admin/"):
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    if operation.path == "/metrics":
        return {"Authorization": f"Bearer {METRICS_TOKEN}"}
    if operation_id in ("login", "forceLogin"):
        return {}
    agent = _agent_of(operation_id)
    if operation_id in MUTATING:
        live.sign_in(agent)
    return {"Guid": live.guids[agent]}


def _run(live: LiveGateway, operation: Any, operation_id: str, mode: str, outcome: Outcome) -> None:
    strategy = _strategies(operation, operation_id, mode)

    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def exercise(case: Any) -> None:
        extra = _credentials(live, operation, operation_id) if mode != "anonymous" else {}
        if operation_id in ("login", "forceLogin") and mode == "authenticated":
            case.body = {"password": PASSWORD, "phonenum": "7000", **_optional(case.body)}
            case.path_parameters = {"agentid": MUTATOR}
        response = case.call(base_url=live.base_url, headers=extra or None, timeout=10)
        outcome.record(response)
        if mode == "authenticated" and "{agentid}" in operation.path:
            live.follow(_agent_of(operation_id), response)
        try:
            case.validate_response(response, checks=CHECKS, headers=extra or None)
        except (FailureGroup, Failure) as exc:
            failures = exc.exceptions if isinstance(exc, FailureGroup) else [exc]
            for failure in failures:
                title = (
                    f"{failure.title}: {failure.message.splitlines()[0] if failure.message else ''}"
                )
                outcome.failures.setdefault(title, str(exc))

    exercise()


def _optional(body: Any) -> dict[str, Any]:
    """The generated sign-in fields other than the credentials (kept so they get exercised)."""
    if not isinstance(body, dict):
        return {}
    return {k: v for k, v in body.items() if k not in ("password", "phonenum")}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("operation_id", OPERATION_IDS)
def test_operation_conforms_to_spec(live: LiveGateway, operation_id: str) -> None:
    schema = load_spec()
    operation = schema.find_operation_by_id(operation_id)
    outcome = Outcome()
    for mode in EXAMPLES:
        _run(live, operation, operation_id, mode, outcome)
    assert outcome.calls > 0
    report = "\n\n".join(outcome.failures.values())
    assert not outcome.failures, f"{len(outcome.failures)} distinct failures:\n{report}"
    assert not any(status >= 500 for status in outcome.statuses), outcome.statuses
    _assert_exercised(operation_id, outcome)


EXERCISED: dict[str, Callable[[Outcome], bool]] = {
    # Proof that the authenticated examples got past the GUID, not only 000-003 / 100-006.
    "login": lambda o: o.retcodes.get("0", 0) > 0,
    "forceLogin": lambda o: o.retcodes.get("0", 0) > 0,
    "logout": lambda o: o.retcodes.get("0", 0) > 0,
    "forceLogout": lambda o: o.retcodes.get("0", 0) > 0,
    "updateGuid": lambda o: o.retcodes.get("0", 0) > 0,
    "getAgentEvent": lambda o: o.retcodes.get("0", 0) > 0,
    "adminSignAgentOut": lambda o: o.retcodes.get("0", 0) > 0,
    # The downloads: every outcome of a file answer, and business errors past the GUID.
    "downloadVideoFile": lambda o: (
        {206, 304, 412, 416} <= set(o.statuses) and any(c.startswith("108-") for c in o.retcodes)
    ),
    "downloadVideoFileEx": lambda o: (
        {206, 304, 416} <= set(o.statuses) and any(c.startswith("104-") for c in o.retcodes)
    ),
    "downloadRecordFile": lambda o: {206, 304, 416} <= set(o.statuses),
    "recordfiledownloadEx": lambda o: {206, 304, 416} <= set(o.statuses),
    "headVideoFile": lambda o: {206, 304, 416} <= set(o.statuses),
    "adminListConferences": lambda o: o.retcodes.get("0", 0) > 0,
    "adminShowConference": lambda o: o.retcodes.get("0", 0) > 0,
    "adminAudit": lambda o: o.retcodes.get("0", 0) > 0,
}
if importlib.util.find_spec("ccgateway.web.metrics") is not None:
    EXERCISED["metrics"] = lambda o: o.statuses.get(200, 0) > 0 and o.statuses.get(401, 0) > 0


def _assert_exercised(operation_id: str, outcome: Outcome) -> None:
    check = EXERCISED.get(operation_id)
    if check is not None:
        assert check(outcome), (operation_id, outcome.statuses, outcome.retcodes)


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FORCELOGIN = f"/agentgateway/resource/onlineagent/{MUTATOR}/forcelogin"
AUDIT = "/ccgateway/admin/v1/audit"

# Inputs that answered HTTP 500 (or, the last one, were accepted as nonsense) before the spec's
# fuzzing and probing found them: exact regressions.
FORMER_SERVER_ERRORS: list[tuple[str, str, dict[str, Any], bytes | None, int, str]] = [
    (
        "GET",
        f"/agentgateway/resource/agentevent/{READER}",
        {"Guid": b"\xff\xfe"},
        None,
        200,
        "000-003",
    ),
    (
        "GET",
        "/ccgateway/admin/v1/conferences",
        {"Authorization": b"Bearer \xff"},
        None,
        401,
        "000-003",
    ),
    ("PUT", FORCELOGIN, {}, b'{"password":"\\ud800","phonenum":"7"}', 200, "100-001"),
    ("PUT", FORCELOGIN, {}, b'{"password":"x","phonenum":"7","status":"--5"}', 200, "100-001"),
    (
        "PUT",
        FORCELOGIN,
        {},
        '{"password":"x","phonenum":"7","status":"\u00b2"}'.encode(),
        200,
        "100-001",
    ),
    ("GET", AUDIT + "?agent=99999999999999999999999", ADMIN, None, 400, "109-001"),
    ("GET", AUDIT + "?since=99999999999999999999999", ADMIN, None, 400, "109-001"),
    ("GET", AUDIT + "?limit=-5", ADMIN, None, 400, "109-001"),
    ("POST", "/ccgateway/admin/v1/recordings", ADMIN, b"[" * 30000 + b"]" * 30000, 400, "109-001"),
    (
        "POST",
        "/ccgateway/admin/v1/recordings",
        ADMIN,
        b'{"conferenceId":"c9","recordId":"r9","participants":[101],'
        b'"files":{"hd":"/x.mp4"},"vdn":99999999999999999999999}',
        400,
        "109-001",
    ),
    (
        "POST",
        "/ccgateway/admin/v1/recordings",
        ADMIN,
        b'{"conferenceId":"c9","recordId":"r9","participants":[101],'
        b'"files":{"hd":"/x.mp4"},"startTime":99999999999999999999999}',
        400,
        "109-001",
    ),
    (
        "POST",
        "/ccgateway/admin/v1/file-recordings",
        ADMIN,
        b'{"recordId":"f9","fileName":"Y:/1/0/20201202/101/1.mp4","callId":"c",'
        b'"fileMediaType":1e400}',
        400,
        "109-001",
    ),
    (
        "POST",
        "/ccgateway/admin/v1/file-recordings",
        ADMIN,
        b'{"recordId":"f9","fileName":"Y:/1/0/20201202/101/1.mp4","callId":"c",'
        b'"participants":[99999999999999999999999]}',
        400,
        "109-001",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "retcode"), FORMER_SERVER_ERRORS
)
def test_former_server_errors(
    live: LiveGateway,
    method: str,
    path: str,
    headers: dict[str, Any],
    body: bytes | None,
    status: int,
    retcode: str,
) -> None:
    answer = live.request(method, path, headers=headers, data=body)
    assert (answer.status_code, answer.json()["retcode"]) == (status, retcode), answer.text
