"""A real ``ccgateway serve``: slow and greedy clients are dropped; SIGTERM lets downloads end."""

from __future__ import annotations

import hashlib
import http.client
import json
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccgateway.cli import cli
from tests.system.conftest import ServeProcess, start_serve

PASSWORD = "agent-pw-7"
CONF = "7700001"
SIZE = 96 * 1024 * 1024
METRICS_TOKEN = "metrics-token-for-connection-tests"


def prepare(tmp_path: Path, agents: tuple[int, ...] = (101,)) -> Path:
    """Agents and one HD recording (SIZE bytes, a repeating pattern) in tmp_path's data dir."""
    runner = CliRunner(env={"CCGW_DATA_DIR": str(tmp_path / "data")})
    for agent in agents:
        result = runner.invoke(cli, ["agents", "add", str(agent), "--password", PASSWORD])
        assert result.exit_code == 0, result.output
    media = tmp_path / "hd.mp4"
    block = hashlib.sha256(b"pattern").digest() * 32768  # 1 MiB
    with media.open("wb") as handle:
        for _ in range(SIZE // len(block)):
            handle.write(block)
    participants = ",".join(str(a) for a in agents)
    args = [
        "recordings",
        "add",
        CONF,
        "--record",
        "1",
        "--participants",
        participants,
        "--vdn",
        "1",
    ]
    result = runner.invoke(cli, [*args, "--hd", str(media)])
    assert result.exit_code == 0, result.output
    return media


def sign_in(port: int, agent: int = 101) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"password": PASSWORD, "phonenum": "7000"})
    conn.request("PUT", f"/agentgateway/resource/onlineagent/{agent}", body=body)
    response = conn.getresponse()
    assert json.loads(response.read())["retcode"] == "0"
    conn.close()
    return str(response.headers["Set-GUID"]).split("=", 1)[1]


def download_path(agent: int = 101) -> str:
    query = f"conferenceId={CONF}&fileType=0"
    return f"/agentgateway/resource/recordfile/{agent}/videofiledownload?{query}"


def scrape(port: int, name: str, labels: str) -> float:
    """One sample of the gateway's /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    text = conn.getresponse().read().decode()
    conn.close()
    wanted = f"{name}{{{labels}}} " if labels else f"{name} "
    (line,) = [line for line in text.splitlines() if line.startswith(wanted)]
    return float(line.split()[-1])


def stop(running: ServeProcess) -> None:
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait(10)


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the gateway has closed ``sock`` (EOF or reset), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def test_slowloris_connections_are_dropped_and_agents_still_served(tmp_path: Path) -> None:
    env = {"CCGW_HEADER_TIMEOUT_S": "1", "CCGW_METRICS_TOKEN": METRICS_TOKEN}
    running = start_serve(tmp_path, "--http", env=env)
    try:
        head = b"GET /agentgateway/resource/agentevent/101 HTTP/1.1\r\nHost: x\r\nX-Slow: "
        dribblers = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(20)]
        silent = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(5)]
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < 3.0:
            for sock in dribblers:
                if not closed_by_peer(sock):
                    try:
                        sock.setblocking(True)
                        sock.send(head[sent % len(head) : sent % len(head) + 1])
                    except ConnectionError:
                        pass
            sent += 1
            sign_in_conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=5)
            sign_in_conn.request("DELETE", "/agentgateway/resource/onlineagent/101/logout")
            assert json.loads(sign_in_conn.getresponse().read())["retcode"] == "100-006"
            sign_in_conn.close()
            time.sleep(0.2)
        assert all(closed_by_peer(sock) for sock in dribblers), "a dribbling head survived"
        assert all(closed_by_peer(sock) for sock in silent), "a silent connection survived"
        for sock in dribblers + silent:
            sock.close()
        assert "no complete request head within 1 s" in running.stderr()
        assert (
            scrape(running.port, "ccgateway_connections_dropped_total", 'reason="head_timeout"')
            >= 25
        )
    finally:
        stop(running)


def test_connections_per_address_are_capped(tmp_path: Path) -> None:
    env = {
        "CCGW_MAX_CONNECTIONS_PER_IP": "3",
        "CCGW_HEADER_TIMEOUT_S": "60",
        "CCGW_METRICS_TOKEN": METRICS_TOKEN,
    }
    running = start_serve(tmp_path, "--http", env=env)
    try:
        held = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(3)]
        time.sleep(0.2)
        fourth = http.client.HTTPConnection("127.0.0.1", running.port, timeout=5)
        fourth.request("GET", "/agentgateway/resource/agentevent/101")
        refused = fourth.getresponse()
        assert refused.status == 503 and refused.headers["Retry-After"] == "1"
        assert json.loads(refused.read())["retcode"] == "000-009"
        fourth.close()
        # another client address is not affected
        other = http.client.HTTPConnection(
            "127.0.0.1", running.port, timeout=5, source_address=("127.0.0.2", 0)
        )
        other.request("DELETE", "/agentgateway/resource/onlineagent/101/logout")
        assert json.loads(other.getresponse().read())["retcode"] == "100-006"
        other.close()
        # once one connection goes, the address may open one again
        held.pop().close()
        time.sleep(0.2)
        again = http.client.HTTPConnection("127.0.0.1", running.port, timeout=5)
        again.request("DELETE", "/agentgateway/resource/onlineagent/101/logout")
        assert json.loads(again.getresponse().read())["retcode"] == "100-006"
        again.close()
        assert (
            scrape(running.port, "ccgateway_connections_dropped_total", 'reason="per_ip_cap"') == 1
        )
        assert scrape(running.port, "ccgateway_connections_open", "") == 3  # 2 held + the scrape
        for sock in held:
            sock.close()
    finally:
        stop(running)


class SlowDownload(threading.Thread):
    """Reads a download at about ``rate`` bytes a second (0: reads nothing after the head)."""

    def __init__(self, port: int, guid: str, rate: int) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request("GET", download_path(), headers={"Guid": guid})
        self.response = self.conn.getresponse()
        self.rate = rate
        self.received = 0
        self.digest = hashlib.sha256()
        self.error: Exception | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            if self.rate == 0:
                self.done.wait(30)
                return
            while chunk := self.response.read(self.rate // 10):
                self.digest.update(chunk)
                self.received += len(chunk)
                time.sleep(0.1)
        except (OSError, http.client.HTTPException) as exc:
            self.error = exc
        finally:
            self.conn.close()


def test_sigterm_lets_a_download_finish_then_exits(tmp_path: Path) -> None:
    media = prepare(tmp_path)
    running = start_serve(tmp_path, "--http", env={"CCGW_SHUTDOWN_TIMEOUT_S": "20"})
    try:
        guid = sign_in(running.port)
        reader = SlowDownload(running.port, guid, rate=32 * 1024 * 1024)  # about 3 s in all
        assert reader.response.status == 200
        reader.start()
        time.sleep(0.5)
        running.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(ConnectionRefusedError):  # no new connections once stopping
            socket.create_connection(("127.0.0.1", running.port), timeout=2).close()
        assert running.process.poll() is None  # still sending
        reader.join(30)
        assert reader.error is None and reader.received == SIZE
        assert reader.digest.hexdigest() == hashlib.sha256(media.read_bytes()).hexdigest()
        assert running.process.wait(10) == 0
        assert "stopped" in running.stderr()
    finally:
        stop(running)
    rows = json.loads(audit_json(tmp_path))
    assert [(r["outcome"], r["end"]["fields"]["bytes"]) for r in rows] == [("completed", SIZE)]


def test_sigterm_cuts_a_download_at_the_deadline(tmp_path: Path) -> None:
    prepare(tmp_path)
    running = start_serve(tmp_path, "--http", env={"CCGW_SHUTDOWN_TIMEOUT_S": "1"})
    try:
        guid = sign_in(running.port)
        reader = SlowDownload(running.port, guid, rate=0)  # a client that takes nothing
        assert reader.response.status == 200
        reader.start()
        started = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(15) == 0
        assert time.monotonic() - started < 8
    finally:
        stop(running)
        reader.done.set()
        reader.join(5)
    rows = json.loads(audit_json(tmp_path))
    assert [r["outcome"] for r in rows] == ["aborted"]
    assert rows[0]["end"]["fields"]["bytes"] < SIZE


def audit_json(tmp_path: Path) -> str:
    runner = CliRunner(env={"CCGW_DATA_DIR": str(tmp_path / "data")})
    result = runner.invoke(cli, ["audit", "--json", "--kind", "download"])  # a transfer a line
    assert result.exit_code == 0, result.output
    return result.output


def test_sigterm_answers_waiting_event_polls_at_once(tmp_path: Path) -> None:
    prepare(tmp_path)
    env = {"CCGW_AGENT_POLL_WAIT_TIMES": "30", "CCGW_AGENT_POLL_WAIT_INTERVAL": "1000"}
    running = start_serve(tmp_path, "--http", env=env)
    try:
        guid = sign_in(running.port)
        request = (
            f"GET /agentgateway/resource/agentevent/101 HTTP/1.1\r\nHost: x\r\nGuid: {guid}\r\n\r\n"
        ).encode()
        for _ in range(10):  # take the sign-in's own events until a poll waits
            waiting = socket.create_connection(("127.0.0.1", running.port), timeout=1)
            waiting.sendall(request)
            try:
                assert waiting.recv(65536).startswith(b"HTTP/1.1 200")
            except TimeoutError:
                break  # this poll waits (up to 30 s) for an event
            waiting.close()
        else:
            raise AssertionError("every poll found an event")
        started = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        waiting.settimeout(5)
        answer = b""
        while chunk := waiting.recv(65536):
            answer += chunk
        waiting.close()
        assert time.monotonic() - started < 3
        head, body = answer.split(b"\r\n\r\n", 1)  # then the gateway closed the connection
        assert head.startswith(b"HTTP/1.1 200")
        assert json.loads(body) == {"message": "", "retcode": "0", "event": None}
        assert running.process.wait(10) == 0
    finally:
        stop(running)
