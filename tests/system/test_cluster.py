"""Scale-out on loopback: two gateway nodes on PostgreSQL and Redis behind nginx (deploy/nginx).

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust; a database ``ccgw_test_<random>`` is
created and dropped), Redis at 127.0.0.1:6379 (database 5 is flushed before and after: the sessions'
key prefix is not configurable yet) and nginx (``scripts/ensure-nginx`` installs it). Without one
of them the module is skipped, unless ``CI=true``: then it fails. ``TEST_POSTGRES_URL`` names
another server (default ``postgresql://postgres@127.0.0.1:5432/test``).

The nodes run with ACCEL_REDIRECT=/_ccgw_files, so nginx sends the recordings' bytes. A third node
without the offload, on the same database and Redis but not behind nginx, is the reference that
``test_offload_answers_as_the_gateway`` compares nginx's answers with.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import os
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from ccgateway.cli import tls
from tests.media import playable_bytes
from tests.system import cluster
from tests.system.cluster import Answer, Node, Process, Unavailable, call

REDIS_DB = 5
TOKEN = "cluster-test-admin-token"
PASSWORD = "Cluster-pass-1"
AGENT, OTHER, POLLER = 101, 102, 103  # OTHER only downloads: its GUID never rotates
CONFERENCE = "cluster-conference-1"
DOWNLOAD = (
    f"{cluster.RESOURCE}recordfile/{{agent}}/videofiledownload?conferenceId={{conf}}&fileType=0"
)
SIGN_IN_EVENTS = ("AgentOther_InService", "AgentState_Ready")
IGNORED_HEADERS = {"date", "server", "connection", "keep-alive"}


def _unavailable(why: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: the cluster test must run)")
    pytest.skip(why)


@dataclass
class Cluster:
    nodes: list[Node]
    reference: Node
    nginx: str  # https://127.0.0.1:PORT
    context: ssl.SSLContext
    database_url: str
    media: Path
    data: bytes
    other_guid: str = ""

    @property
    def etag(self) -> str:
        return f'"sha256-{hashlib.sha256(self.data).hexdigest()}"'

    def via_nginx(self, method: str, path: str, **kwargs: Any) -> Answer:
        return call(self.nginx, method, path, context=self.context, **kwargs)

    def register(self, node: Node, conference: str, record: str, participants: list[int]) -> None:
        answer = call(
            node.base,
            "POST",
            f"{cluster.ADMIN}/recordings",
            headers={"Authorization": f"Bearer {TOKEN}"},
            body={
                "conferenceId": conference,
                "recordId": record,
                "participants": participants,
                "files": {"hd": str(self.media)},
                "vdn": 1,
            },
        )
        assert answer.status == 200, answer.body
        assert answer.json()["retcode"] == "0"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = time.monotonic()
    run_dir = tmp_path_factory.mktemp("cluster")
    try:
        nginx = cluster.ensure_nginx()
        cluster.flush_redis(REDIS_DB)
        database_url = cluster.create_database()
    except Unavailable as exc:
        _unavailable(str(exc))
    processes: list[Process] = []
    try:
        env = cluster.gateway_env(
            DATABASE_URL=database_url,
            SESSIONS_URL=cluster.redis_url(REDIS_DB),
            GUID_DIGEST_KEY="cluster-guid-digest-key-0123456789",
            ADMIN_TOKEN=TOKEN,
            AUTHMODE="2",
            GUIDINTERVAL="1000",
            GUIDTIMEOUT="3000",
            AGENT_POLL_WAIT_TIMES="10",  # polls hold 1 s
            AGENT_POLL_WAIT_INTERVAL="100",
            LOG_LEVEL="INFO",
            DATA_DIR=str(run_dir / "cli"),
            # The tests compare many answers for one agent, all from 127.0.0.1: not flow control.
            REQUEST_RATE_PER_AGENT="100000",
        )
        assert "revision" in cluster.ccgateway(env, "db", "upgrade")
        for work_no in (AGENT, OTHER, POLLER):
            cluster.ccgateway(env, "agents", "add", str(work_no), "--password", PASSWORD)
        offload = {**env, "CCGW_ACCEL_REDIRECT": cluster.ACCEL_PREFIX}
        nodes = [cluster.start_node(f"AgentGateway{i}", run_dir, offload) for i in (0, 1)]
        reference = cluster.start_node("AgentGateway2", run_dir, env)
        processes += [n.process for n in (*nodes, reference)]
        for node in (*nodes, reference):
            node.process.wait_listening(node.port)

        cert, key, _ = tls.ensure_self_signed(run_dir / "tls")
        port = cluster.free_port()
        conf = cluster.render_nginx_conf(
            listen=f"127.0.0.1:{port}",
            tls_cert=cert,
            tls_key=key,
            upstreams=[f"127.0.0.1:{n.port}" for n in nodes],
            run_dir=run_dir / "nginx",
        )
        processes.append(cluster.start_nginx(nginx, run_dir / "nginx", conf, [port]))

        media = run_dir / "recordings" / "call one.mp4"  # a space: X-Accel-Redirect quotes it
        media.parent.mkdir()
        data = playable_bytes()  # whole: announced as AgentMediaEvent_Record (probed ready)
        media.write_bytes(data)
        context = ssl.create_default_context(cafile=str(cert))
        running = Cluster(
            nodes, reference, f"https://127.0.0.1:{port}", context, database_url, media, data
        )
        running.register(nodes[0], CONFERENCE, "cluster-record-1", [AGENT, OTHER])
        running.other_guid = sign_in(nodes[1], OTHER)
        print(f"cluster up in {time.monotonic() - started:.1f} s")
        yield running
    finally:
        cluster.stop_all(processes)
        try:
            cluster.drop_database(database_url)
        finally:
            cluster.flush_redis(REDIS_DB)


def sign_in(node: Node, work_no: int) -> str:
    answer = call(
        node.base,
        "PUT",
        f"{cluster.RESOURCE}onlineagent/{work_no}",
        body={"password": PASSWORD, "phonenum": f"7{work_no}"},
    )
    assert answer.status == 200 and answer.json()["retcode"] == "0", answer.body
    name, _, guid = answer.header("Set-GUID").partition("=")
    assert name == "JSESSIONID" and guid.endswith(f".{node.name}")
    return guid


# -- the offload answers exactly as the gateway ---------------------------------------------------

CASES = [
    pytest.param("GET", {}, id="full"),
    pytest.param("HEAD", {}, id="head"),
    pytest.param("GET", {"Range": "bytes=1000-4999"}, id="range"),
    pytest.param("GET", {"Range": "bytes=-500"}, id="suffix"),
    pytest.param("GET", {"Range": "bytes=2097000-"}, id="open-ended"),
    pytest.param("GET", {"Range": "bytes=0-99999999"}, id="end-beyond"),
    pytest.param("GET", {"Range": "bytes=-99999999"}, id="suffix-beyond"),
    pytest.param("GET", {"Range": "bytes=99999999-"}, id="unsatisfiable"),
    pytest.param("GET", {"Range": "bytes=5-9", "If-Range": "ETAG"}, id="if-range-etag"),
    pytest.param("GET", {"Range": "bytes=5-9", "If-Range": '"sha256-00"'}, id="if-range-other"),
    pytest.param("GET", {"Range": "bytes=5-9", "If-Range": "W/ETAG"}, id="if-range-weak"),
    pytest.param("GET", {"Range": "bytes=5-9", "If-Range": "LM"}, id="if-range-date"),
    pytest.param(
        "GET",
        {"Range": "bytes=5-9", "If-Range": "Thu, 01 Jan 1970 00:00:00 GMT"},
        id="if-range-old-date",
    ),
    pytest.param("HEAD", {"Range": "bytes=5-9"}, id="head-range"),
    pytest.param("GET", {"If-None-Match": "ETAG"}, id="if-none-match"),
    pytest.param("GET", {"If-None-Match": '"other"'}, id="if-none-match-other"),
    pytest.param("GET", {"If-Modified-Since": "LM"}, id="if-modified-since"),
    pytest.param("GET", {"If-Match": '"other"'}, id="if-match-other"),
    pytest.param("GET", {"If-Unmodified-Since": "Thu, 01 Jan 2099 00:00:00 GMT"}, id="ius"),
    # Issue 14, L8: nginx answered its own 412 page to a date the gateway ignores.
    pytest.param("GET", {"If-Unmodified-Since": "not a date"}, id="l8-ius-invalid"),
    pytest.param("GET", {"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}, id="ius-past"),
    pytest.param("GET", {"Range": "items=0-1"}, id="other-unit"),
    pytest.param("GET", {"Range": "bytes=0-1,100-200"}, id="two-ranges"),
    pytest.param("GET", {"Want-Repr-Digest": "sha-256=0"}, id="no-digest-wanted"),
    pytest.param("GET", {"If-Match": "ETAG"}, id="if-match"),
    pytest.param("GET", {"Range": "bytes=abc"}, id="malformed-range"),
    pytest.param("GET", {"Range": "bytes=9-5"}, id="reversed-range"),
    pytest.param("GET", {"Range": "bytes=0-1,"}, id="trailing-comma"),
    pytest.param("GET", {"Range": "bytes=0-9,5-20"}, id="overlapping"),
    pytest.param("GET", {"Range": "bytes = 0-1"}, id="spaced-range"),
    pytest.param("GET", {"Range": "bytes=\t0-1"}, id="tab-range"),
    pytest.param(
        "GET",
        {"Range": "bytes=5-9", "If-Match": "ETAG"},
        id="if-match-range",
    ),
]


def _headers(answer: Answer) -> list[tuple[str, str]]:
    return sorted(
        (k.lower(), v) for k, v in answer.headers.items() if k.lower() not in IGNORED_HEADERS
    )


@pytest.mark.parametrize(("method", "headers"), CASES)
def test_offload_answers_as_the_gateway(
    running: Cluster, method: str, headers: dict[str, str]
) -> None:
    """Through nginx (offloaded) and from a node sending the bytes itself: the same answer."""
    path = DOWNLOAD.format(agent=OTHER, conf=CONFERENCE)
    guid = {"Guid": running.other_guid}
    last_modified = call(running.reference.base, "HEAD", path, headers=guid).header("Last-Modified")
    sent = {**guid}
    for name, value in headers.items():
        value = value.replace("ETAG", running.etag)
        sent[name] = last_modified if value == "LM" else value
    direct = call(running.reference.base, method, path, headers=sent)
    offloaded = running.via_nginx(method, path, headers=sent)
    assert (offloaded.status, len(offloaded.body)) == (direct.status, len(direct.body))
    assert offloaded.body == direct.body
    assert set(_headers(offloaded)) == set(_headers(direct))


def test_offload_sends_each_header_once(running: Cluster) -> None:
    answer = running.via_nginx(
        "GET", DOWNLOAD.format(agent=OTHER, conf=CONFERENCE), headers={"Guid": running.other_guid}
    )
    assert answer.status == 200
    names = [name.lower() for name, _ in _headers(answer)]
    assert len(names) == len(set(names)), names


def test_gateway_errors_pass_untouched(running: Cluster) -> None:
    """The gateway's JSON errors come through nginx as they are; nginx's own are JSON too."""
    for method, path, headers in (
        ("GET", f"{cluster.RESOURCE}nothing/101", {}),
        ("POST", f"{cluster.RESOURCE}agentevent/{OTHER}", {}),
        ("GET", f"{cluster.RESOURCE}agentevent/{OTHER}", {"Guid": "wrong"}),
        ("GET", DOWNLOAD.format(agent=OTHER, conf="no-such-conference"), {}),
        ("GET", f"{cluster.ADMIN}/conferences", {"Authorization": "Bearer wrong"}),
    ):
        direct = call(running.reference.base, method, path, headers=headers)
        through = running.via_nginx(method, path, headers=headers)
        assert (through.status, through.body) == (direct.status, direct.body), path
        assert through.header("Content-Type") == direct.header("Content-Type")
        assert through.all("Allow") == direct.all("Allow")
    too_large = running.via_nginx(
        "PUT", f"{cluster.RESOURCE}onlineagent/{OTHER}", body={"phonenum": "x" * 100_000}
    )
    assert too_large.status == 413
    assert too_large.json()["retcode"] == "000-002"


# -- two nodes, one Redis, one database: sessions, events, rotation, failover ---------------------


def poll(base_call: Any, guid: str, agent: int = AGENT) -> tuple[str, dict[str, Any] | None]:
    """One event poll; the GUID to use next (Set-GUID) and the event."""
    path = f"{cluster.RESOURCE}agentevent/{agent}"
    answer: Answer = base_call("GET", path, headers={"Guid": guid})
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["retcode"] == "0", body
    name, _, current = answer.header("Set-GUID").partition("=")
    assert name == "JSESSIONID" and current
    event: dict[str, Any] | None = body["event"]
    return current, event


def direct(node: Node) -> Any:
    def send(method: str, path: str, **kwargs: Any) -> Answer:
        return call(node.base, method, path, **kwargs)

    return send


def check_download(running: Cluster, guid: str, conference: str) -> None:
    path = DOWNLOAD.format(agent=AGENT, conf=conference)
    ranged = running.via_nginx("GET", path, headers={"Guid": guid, "Range": "bytes=1000-4999"})
    assert ranged.status == 206, ranged.body[:200]
    assert ranged.header("Content-Range") == f"bytes 1000-4999/{len(running.data)}"
    assert ranged.body == running.data[1000:5000]
    assert ranged.header("ETag") == running.etag
    whole = running.via_nginx("GET", path, headers={"Guid": guid})
    assert whole.status == 200 and whole.body == running.data
    digest = base64.b64encode(hashlib.sha256(whole.body).digest()).decode()
    assert whole.header("Repr-Digest") == f"sha-256=:{digest}:"
    assert ranged.header("Repr-Digest") == whole.header("Repr-Digest")


def test_two_nodes_behind_nginx(running: Cluster) -> None:
    node0, node1 = running.nodes

    # Sign in on node 0, poll on node 1: one session, one event queue, in Redis.
    guid = sign_in(node0, AGENT)
    seen = []
    for _ in range(2):
        guid, event = poll(direct(node1), guid)
        assert event is not None
        seen.append(event["eventType"])
    assert seen == list(SIGN_IN_EVENTS)

    # A recording registered through node 0's admin API is announced to the poll on node 1.
    running.register(node0, "cluster-conference-2", "cluster-record-2", [AGENT])
    guid, event = poll(direct(node1), guid)
    assert event is not None and event["eventType"] == "AgentMediaEvent_Record", event
    assert event["content"]["recordID"] == "cluster-record-2"

    # Download through nginx over TLS: a range, then the whole file against Repr-Digest; then
    # eight at once, which nginx spreads over both nodes.
    check_download(running, guid, "cluster-conference-2")
    path = DOWNLOAD.format(agent=AGENT, conf="cluster-conference-2")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: running.via_nginx("GET", path, headers={"Guid": guid}), range(8))
        )
    assert [a.status for a in answers] == [200] * 8
    head0 = call(
        node0.base, "HEAD", DOWNLOAD.format(agent=AGENT, conf=CONFERENCE), headers={"Guid": guid}
    )
    assert head0.status == 200 and head0.header("Content-Length") == str(len(running.data))

    # Rotation across nodes: poll through nginx until the GUID changes, use it on the other node.
    deadline = time.monotonic() + 15
    rotated = guid
    while rotated == guid:
        assert time.monotonic() < deadline, "the GUID did not rotate"
        rotated, _ = poll(running.via_nginx, rotated)
    minted_by = rotated.rsplit(".", 1)[1]
    other = node1 if minted_by == node0.name else node0
    assert minted_by in (node0.name, node1.name)
    guid, event = poll(direct(other), rotated)
    assert event is None

    # Node 0 crashes while polls are held: nginx retries them on node 1 (same GUIDs, no new
    # sign-in); two agents, so that round robin has most likely put one of them on node 0.
    poller_guid = sign_in(node1, POLLER)
    for _ in SIGN_IN_EVENTS:
        poller_guid, _ = poll(direct(node1), poller_guid, POLLER)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        held = [
            pool.submit(poll, running.via_nginx, guid),
            pool.submit(poll, running.via_nginx, poller_guid, POLLER),
        ]
        time.sleep(0.3)
        node0.process.kill()
        guid, _ = held[0].result(timeout=15)
        held[1].result(timeout=15)
    guid, _ = poll(direct(node1), guid)
    for _ in range(2):  # one of them would have gone to node 0
        guid, _ = poll(running.via_nginx, guid)
    running.register(node1, "cluster-conference-3", "cluster-record-3", [AGENT])
    guid, event = poll(running.via_nginx, guid)
    assert event is not None and event["content"]["recordID"] == "cluster-record-3"
    check_download(running, guid, "cluster-conference-3")

    # Both nodes shipped their downloads' events to the one audit_events table.
    rows = cluster.query(
        running.database_url, "SELECT DISTINCT split_part(writer, '@', 1) FROM audit_events"
    )
    assert {node0.name, node1.name} <= {row[0] for row in rows}
    offloaded = cluster.query(
        running.database_url, "SELECT count(*) FROM audit_events WHERE outcome = 'offloaded'"
    )
    assert offloaded[0][0] >= 4
    # Issue 15: every writer's hash chain in the shared table is intact, node 0's too, though it
    # was killed (its chain ends where its shipping stopped).
    verify_env = cluster.gateway_env(
        DATABASE_URL=running.database_url, DATA_DIR=str(running.media.parent / "verify")
    )
    report = cluster.ccgateway(verify_env, "audit", "verify", "--json")
    chains = json.loads(report)["chains"]
    assert all(chain["intact"] for chain in chains), report
    assert {node0.name, node1.name} <= {chain["writer"].split("@")[0] for chain in chains}

    # No node left: nginx answers its own JSON envelope, not an HTML page.
    node1.process.kill()
    gone = running.via_nginx("GET", f"{cluster.RESOURCE}agentevent/{AGENT}", headers={"Guid": guid})
    assert gone.status == 502
    assert gone.json()["retcode"] == "000-000"
