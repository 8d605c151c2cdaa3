"""A real ``ccgateway serve`` (HTTPS, fast GUID rotation, a drive map) for the client's tests."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from ccgateway.cli import cli, tls
from tests.system.conftest import ServeProcess, start_serve

PASSWORD = "agent-pw-7"
ADMIN_TOKEN = "admin-token-for-client-tests"
AGENTS = tuple(range(101, 121))  # one or more per test, so sessions never collide
NO_VIDEO_AGENT = 199
# Rotate the GUID every second and refuse a rotated-out one two seconds later: any download
# longer than that must follow the rotation.
SETTINGS = {
    "CCGW_GUIDINTERVAL": "1000",
    "CCGW_GUIDTIMEOUT": "2000",
    "CCGW_AGENT_POLL_WAIT_TIMES": "3",
    "CCGW_AGENT_POLL_WAIT_INTERVAL": "100",
    "CCGW_ADMIN_TOKEN": ADMIN_TOKEN,
    "CCGW_LOG_LEVEL": "WARNING",
}


@dataclass
class AgentGateway:
    serve: ServeProcess
    ca: Path
    fingerprint: str
    drive: Path  # what Y: maps to

    @property
    def port(self) -> int:
        return self.serve.port

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.serve.port}"

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[Any, Message]:
        """One HTTPS request to the gateway: the JSON answer and the response headers."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context())
        try:
            data = json.dumps(body).encode() if body is not None else None
            sent = {"Content-Type": "application/json", **(headers or {})}
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            return json.loads(response.read()), response.headers
        finally:
            conn.close()

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        return self.call(method, f"/ccgateway/admin/v1/{path}", body, auth)[0]

    def audit(self, agent: int) -> list[dict[str, Any]]:
        """The agent's downloads, a line each (docs/audit.md, "Reading it")."""
        query = f"audit?agent={agent}&kind=download&limit=100"
        rows: list[dict[str, Any]] = self.admin("GET", query)["result"]
        return rows

    def register(self, conference: str, record: str, agents: list[int], hd: Path) -> None:
        body = {
            "conferenceId": conference,
            "recordId": record,
            "participants": agents,
            "files": {"hd": str(hd)},
            "vdn": 1,
        }
        assert self.admin("POST", "recordings", body)["retcode"] == "0"

    def sign_in(self, agent: int, *, force: bool = False) -> str:
        """Sign ``agent`` in from elsewhere (as another desktop would); returns its GUID."""
        path = f"/agentgateway/resource/onlineagent/{agent}" + ("/forcelogin" if force else "")
        body, headers = self.call("PUT", path, {"password": PASSWORD, "phonenum": "7000"})
        assert body["retcode"] == "0", body
        return str(headers["Set-GUID"]).split("=", 1)[1]

    def poll(self, agent: int, guid: str) -> str:
        """The retcode of an event poll with ``guid``."""
        body, _ = self.call(
            "GET", f"/agentgateway/resource/agentevent/{agent}", None, {"Guid": guid}
        )
        return str(body["retcode"])

    def stop(self) -> None:
        self.serve.process.terminate()
        self.serve.process.wait(10)


def start_agent_gateway(tmp_path: Path) -> AgentGateway:
    data = tmp_path / "data"
    drive = tmp_path / "drive-y"
    drive.mkdir()
    runner = CliRunner(env={"CCGW_DATA_DIR": str(data)})
    for agent in (*AGENTS, NO_VIDEO_AGENT):
        args = ["agents", "add", str(agent), "--password", PASSWORD]
        if agent == NO_VIDEO_AGENT:
            args.append("--no-video-download")
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
    serve = start_serve(tmp_path, env={**SETTINGS, "CCGW_RECORD_DRIVE_MAP": f"Y:={drive}"})
    ca = data / "tls" / "cert.pem"
    return AgentGateway(serve, ca, tls.fingerprint(ca), drive)
