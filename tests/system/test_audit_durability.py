"""Issue 15: the audit trail loses nothing. A node killed during downloads closes its open
transfers as ``interrupted`` when it restarts; a database stopped during downloads (the test's own
PostgreSQL, never the shared one) loses no event; a full ``DATA_DIR`` (a small tmpfs) refuses new
downloads with 503 ``000-009`` and loses nothing once space returns.

The PostgreSQL and tmpfs tests need root (``runuser``, ``mount``): they are skipped where that is
not possible, and fail under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from ccgateway.audit.events import AuditEvent
from ccgateway.config import load_settings
from ccgateway.gateway import open_gateway
from ccgateway.recordings.catalog import Registration
from ccgateway.stores.base import FileType
from tests.audit_trail import pair, stored_events
from tests.conftest import PASSWORD, AgentClient, GatewayFactory, RunningGateway
from tests.functional.conftest import CONF, REC0
from tests.system.conftest import free_port, start_serve

IN_CI = os.environ.get("CI") == "true"
BIG = 256 * 1024 * 1024


def unavailable(why: str) -> None:
    if IN_CI:
        pytest.fail(f"required under CI: {why}")
    pytest.skip(why)


def sparse(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


def url(agent_id: int = 101) -> str:
    return f"recordfile/{agent_id}/videofiledownload?conferenceId={CONF}&fileType=0"


async def no_gap(events: list[AuditEvent]) -> None:
    """Each writer's events are 1..n without a gap."""
    by_writer: dict[str, list[int]] = {}
    for e in events:
        by_writer.setdefault(e.writer, []).append(e.seq)
    for writer, seqs in by_writer.items():
        assert seqs == list(range(1, len(seqs) + 1)), writer


# -- a killed node -----------------------------------------------------------------------------


async def test_a_killed_node_closes_its_open_transfers_as_interrupted(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    database = f"sqlite:///{data_dir / 'ccgateway.db'}"
    settings = load_settings(environ={}, DATA_DIR=str(data_dir))
    async with open_gateway(settings) as prepare:  # as `ccgateway agents add` would
        await prepare.agents.add(101, PASSWORD)
        await prepare.catalog.register(
            Registration(
                CONF,
                REC0,
                frozenset({101}),
                {FileType.HD: str(sparse(tmp_path / "big.mp4", BIG))},
                vdn=1,
            )
        )
    env = {"CCGW_REQUEST_RATE_PER_AGENT": "1000", "PYTHONUNBUFFERED": "1"}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = start_serve(tmp_path / "one", "--http", env={**env, "CCGW_DATA_DIR": str(data_dir)})
    try:
        async with aiohttp.ClientSession(read_bufsize=65536) as http:
            client = AgentClient(http, f"http://127.0.0.1:{first.port}/agentgateway/resource/")
            guid, _ = await client.sign_in(101)
            responses = [
                await http.get(client.base + url(), headers={"Guid": guid or ""}) for _ in range(3)
            ]
            for response in responses:
                assert response.status == 200
                await response.content.read(65536)  # under way
            await asyncio.sleep(0.5)  # the starts are group-committed within milliseconds
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(10)
            for response in responses:
                response.close()
    finally:
        if first.process.poll() is None:
            first.process.kill()
    second = start_serve(tmp_path / "two", "--http", env={**env, "CCGW_DATA_DIR": str(data_dir)})
    try:
        for _ in range(200):
            transfers, unended = pair(await stored_events(database))
            if len(transfers) >= 3 and not unended:
                break
            await asyncio.sleep(0.1)
        assert not unended
        assert len(transfers) == 3
        writers = {t.start.writer for t in transfers}
        (closer,) = {t.end.writer for t in transfers}
        assert len(writers) == 1 and closer not in writers and closer.startswith("AgentGateway0@")
        assert {t.outcome for t in transfers} == {"interrupted"}
        assert {t.decision for t in transfers} == {"authorized"}
        assert all(t.end.fields["startWriter"] == t.start.writer for t in transfers)
        assert all(t.bytes is None for t in transfers)  # what was sent is unknown, and said so
    finally:
        second.process.terminate()
        second.process.wait(10)
    await no_gap(await stored_events(database))
    assert not [p for p in (data_dir / "audit").iterdir()]  # drained at shutdown, nothing left


# -- a database outage -------------------------------------------------------------------------


class OwnPostgres:
    """A PostgreSQL instance of the test's own, in a temporary directory, run as ``postgres``."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found or shutil.which("runuser") is None or os.geteuid() != 0:
            unavailable("no pg_ctl under /usr/lib/postgresql, or not root")
        self.bin = Path(found[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="ccgw-pg-", dir="/tmp"))
        shutil.chown(self.dir, "postgres")
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool}: {result.stderr[-500:]}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        data = str(self.dir / "data")
        self._run("pg_ctl", "-D", data, "-o", options, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    try:
        postgres = OwnPostgres()
        postgres.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        unavailable(f"cannot run a PostgreSQL of the test's own: {exc}")
    try:
        yield postgres
    finally:
        postgres.remove()


async def slow_download(gw: RunningGateway, guid: str, ready: asyncio.Event) -> int:
    async with aiohttp.ClientSession(read_bufsize=65536) as http:
        async with http.get(gw.client.base + url(), headers={"Guid": guid}) as response:
            received = len(await response.content.read(65536))
            ready.set()
            await asyncio.sleep(1.0)
            received += len(await response.read())
            return received


@pytest.mark.timeout(120)
async def test_a_database_outage_during_downloads_loses_no_event(
    own_postgres: OwnPostgres, make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = await make_gateway(DATABASE_URL=own_postgres.url)
    await gw.add_agent(101)
    media = sparse(tmp_path / "media.mp4", 8 * 1024 * 1024)
    await gw.gateway.catalog.register(
        Registration(CONF, REC0, frozenset({101}), {FileType.HD: str(media)}, vdn=1)
    )
    guid, _ = await gw.client.sign_in(101)
    assert guid is not None
    ready = [asyncio.Event() for _ in range(4)]
    running = [asyncio.create_task(slow_download(gw, guid, r)) for r in ready]
    await asyncio.gather(*(r.wait() for r in ready))
    own_postgres.stop()  # during the downloads
    assert await asyncio.gather(*running) == [8 * 1024 * 1024] * 4  # the bytes do not wait
    for _ in range(3):  # more requests while the database is down: their events wait too
        async with gw.client.http.get(gw.client.base + url(), headers={"Guid": guid}) as answer:
            await answer.read()  # whatever the answer: the catalog is in the database too
    await asyncio.sleep(1.0)
    assert not await gw.gateway.auditor.drain(1.0)  # nothing can be shipped now
    own_postgres.start()
    assert await gw.gateway.auditor.drain(30.0)
    events = await stored_events(own_postgres.url)
    writer = gw.gateway.auditor.writer
    seqs = [e.seq for e in events if e.writer == writer]
    assert seqs == list(range(1, len(seqs) + 1))  # the sign-in, then 7 transfers: no gap
    transfers, unended = pair(events)
    assert not unended
    assert len(transfers) == 7
    assert [t.outcome for t in transfers].count("completed") >= 4  # the four under way


# -- a full DATA_DIR ---------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        unavailable(f"cannot mount a tmpfs: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> Path:
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while os.write(fd, b"\0" * 4096):
                pass
    finally:
        os.close(fd)
    return filler


async def download(gw: RunningGateway, guid: str | None) -> tuple[int, dict[str, str], bytes]:
    async with gw.client.http.get(gw.client.base + url(), headers={"Guid": guid or ""}) as answer:
        return answer.status, dict(answer.headers), await answer.read()


@pytest.mark.timeout(60)
async def test_a_full_data_dir_refuses_new_downloads_and_loses_nothing(
    small_tmpfs: Path, make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = await make_gateway(
        DATA_DIR=str(small_tmpfs), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}"
    )
    await gw.add_agent(101)
    media = sparse(tmp_path / "media.mp4", 100_000)
    await gw.gateway.catalog.register(
        Registration(CONF, REC0, frozenset({101}), {FileType.HD: str(media)}, vdn=1)
    )
    guid, _ = await gw.client.sign_in(101)
    assert await gw.gateway.auditor.drain()
    filler = fill(small_tmpfs)
    completed = 0
    for _ in range(50):  # the journal's last page may still hold an event or two
        status, _, body = await download(gw, guid)
        completed += 1  # its events find the disk full
        assert status == 200 and len(body) == 100_000  # and it finishes
        for _ in range(10):
            if not gw.gateway.auditor.writable:
                break
            await asyncio.sleep(0.05)
        if not gw.gateway.auditor.writable:
            break
    assert not gw.gateway.auditor.writable
    refused = []
    for _ in range(3):
        status, headers, body = await download(gw, guid)
        refused.append((status, json.loads(body)["retcode"], headers.get("Retry-After")))
    assert refused == [(503, "000-009", "5")] * 3
    size, age = gw.gateway.auditor.stats()  # what /metrics says
    assert age > 0  # events wait in memory
    filler.unlink()  # space returns
    for _ in range(100):
        if gw.gateway.auditor.writable:
            break
        await asyncio.sleep(0.05)
    status, _, _ = await download(gw, guid)
    assert status == 200
    # The client has every byte before the handler writes the transfer's ``end``: wait for it.
    for _ in range(100):
        assert await gw.gateway.auditor.drain()
        events = await stored_events(f"sqlite:///{tmp_path / 'db.sqlite'}")
        if not pair(events)[1]:
            break
        await asyncio.sleep(0.05)
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(seqs) + 1))  # one writer, nothing lost
    transfers, unended = pair(events)
    assert not unended
    assert (
        sorted((t.outcome, t.status) for t in transfers)
        == [("completed", 200)] * (completed + 1) + [("refused", 503)] * 3
    )
