"""``ccgateway.client`` against a real ``ccgateway serve`` process over HTTPS.

A relay between client and gateway cuts connections where a test says; the gateway rotates the
GUID every second and refuses a rotated-out one two seconds later.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ccgateway.client import (
    AgentClient,
    CertificateError,
    DownloadResult,
    FileType,
    RecordFile,
    RefusedError,
    SyncAgentClient,
    Target,
    VerificationError,
    VideoFile,
    VideoFileEx,
)
from tests.media import write_playable
from tests.system.agent_gateway import (
    NO_VIDEO_AGENT,
    PASSWORD,
    AgentGateway,
    start_agent_gateway,
)
from tests.system.relay import Relay

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentGateway]:
    running = start_agent_gateway(tmp_path_factory.mktemp("client"))
    yield running
    running.stop()


def recording(gw: AgentGateway, tmp_path: Path, name: str, agent: int, size: int) -> Path:
    """Register a recording ``name`` (conference and record) of ``size`` random bytes."""
    source = tmp_path / "sources" / f"{name}.mp4"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(os.urandom(size))
    gw.register(f"conf-{name}", f"rec-{name}", [agent], source)
    return source


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def audited(gw: AgentGateway, agent: int, count: int) -> list[dict[str, Any]]:
    """The agent's downloads, once the gateway has written ``count`` of them, ended."""
    for _ in range(100):
        rows = [row for row in gw.audit(agent) if row["outcome"] != "open"]
        if len(rows) >= count:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"{len(rows)} audit rows, not {count}")


def client(url: str, gw: AgentGateway, agent: int, *, force: bool = False) -> AgentClient:
    return AgentClient(url, agent, PASSWORD, ca=gw.ca, force=force)


async def test_sign_in_events_guid_rotation_and_sign_out(gw: AgentGateway) -> None:
    async with client(gw.url, gw, 101) as agent:
        first = agent.guid
        assert first is not None and agent.sign_in_result["workno"] == "101"
        events = agent.events()
        kinds = [(await anext(events)).event_type for _ in range(2)]
        assert kinds == ["AgentOther_InService", "AgentState_Ready"]
        await asyncio.sleep(4)  # rotated after ~1 s, the first GUID refused ~2 s later
        assert agent.guid != first  # the poll took the rotated GUID
        current = agent.guid
        assert current is not None
        assert gw.poll(101, first) == "000-003"  # the first one has expired by now
    assert gw.poll(101, current) == "100-006"  # signed out on close


async def test_download_into_a_directory_named_by_the_gateway(
    gw: AgentGateway, tmp_path: Path
) -> None:
    source = recording(gw, tmp_path, "dir", 102, 300_000)
    out = tmp_path / "out"
    out.mkdir()
    async with client(gw.url, gw, 102) as agent:
        result = await agent.download(VideoFile("conf-dir"), out)
    assert result.path == out / "conf-dir-rec-dir-hd.mp4"
    assert result.sha256 == sha256(source) == sha256(result.path)
    assert result.requests == 1 and result.resumed_from == 0 and result.restarts == 0
    assert sorted(p.name for p in out.iterdir()) == ["conf-dir-rec-dir-hd.mp4"]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_cut_at_random_points_resumes_and_verifies(
    gw: AgentGateway, tmp_path: Path, seed: int
) -> None:
    agent_id = 102 + seed
    size = 3 * MiB
    source = recording(gw, tmp_path, f"cut{seed}", agent_id, size)
    cuts = sorted(random.Random(seed).sample(range(64 * 1024, size // 2), 3))
    target = tmp_path / "hd.mp4"
    async with Relay(gw.port, cut_after=cuts) as relay:
        async with client(relay.url, gw, agent_id) as agent:
            result = await agent.download(VideoFile(f"conf-cut{seed}"), target)
    assert relay.cuts == 3
    assert result.sha256 == sha256(source) == sha256(target)
    assert result.restarts == 0 and result.requests == 4
    assert not (tmp_path / "hd.mp4.part").exists()
    rows = audited(gw, agent_id, 4)  # the gateway writes its audit in the background
    # Newest first. A cut can also lose what the client had not read yet (the reset discards
    # it), so a retry may have nothing to resume; every resume starts further on.
    ranges = [row["fields"]["range"] for row in reversed(rows) if row["fields"]["range"]]
    offsets = [int(r.removeprefix("bytes=").removesuffix("-")) for r in ranges]
    assert not rows[-1]["fields"]["range"] and offsets and offsets == sorted(set(offsets)), rows
    assert ranges == [f"bytes={o}-" for o in offsets]


async def test_a_file_changed_between_two_parts_restarts_instead_of_splicing(
    gw: AgentGateway, tmp_path: Path
) -> None:
    path = gw.drive / "1" / "0" / "20161025" / "107" / "x.V3"
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(2 * MiB))
    changed = os.urandom(2 * MiB + 1000)

    def change(_cut: int) -> None:
        path.write_bytes(changed)

    target = tmp_path / "voice.V3"
    async with Relay(gw.port, cut_after=[MiB], on_cut=change) as relay:
        async with client(relay.url, gw, 107) as agent:
            result = await agent.download(RecordFile("Y:/1/0/20161025/107/x.V3"), target)
    assert target.read_bytes() == changed
    assert result.restarts == 1 and result.sha256 == hashlib.sha256(changed).hexdigest()


async def test_guid_rotation_during_a_long_download(gw: AgentGateway, tmp_path: Path) -> None:
    source = recording(gw, tmp_path, "long", 108, 5 * MiB)
    guids: set[str] = set()
    target = tmp_path / "long.mp4"
    # ~4.5 s at 1.2 MiB/s with two cuts: the resumed requests come after the sign-in GUID expired
    async with Relay(gw.port, cut_after=[2 * MiB, 3 * MiB], rate=1.2 * MiB) as relay:
        async with client(relay.url, gw, 108) as agent:
            first = agent.guid
            assert first is not None

            def seen(done: int, total: int | None) -> None:
                guids.add(str(agent.guid))

            result = await agent.download(VideoFile("conf-long"), target, progress=seen)
            assert gw.poll(108, first) == "000-003"
    assert len(guids) >= 3 and result.requests == 3
    assert result.sha256 == sha256(source) == sha256(target)


async def test_a_corrupt_part_fails_verification_and_is_deleted(
    gw: AgentGateway, tmp_path: Path
) -> None:
    source = recording(gw, tmp_path, "bad", 109, 500_000)
    digest = sha256(source)
    target = tmp_path / "bad.mp4"
    part = tmp_path / "bad.mp4.part"
    part.write_bytes(b"\0" * 1000)  # what a disk error left of the first 1000 bytes
    Path(f"{part}.json").write_text(f'{{"etag": "\\"sha256-{digest}\\""}}')
    async with client(gw.url, gw, 109) as agent:
        with pytest.raises(VerificationError, match="partial file was deleted"):
            await agent.download(VideoFile("conf-bad"), target, resume=True)
        assert not part.exists() and not target.exists()
        assert not Path(f"{part}.json").exists()
        result = await agent.download(VideoFile("conf-bad"), target, resume=True)
    assert result.sha256 == digest and result.resumed_from == 0


async def test_resume_a_part_left_by_an_earlier_run(gw: AgentGateway, tmp_path: Path) -> None:
    source = recording(gw, tmp_path, "again", 110, 400_000)
    digest = sha256(source)
    target = tmp_path / "again.mp4"
    Path(f"{target}.part").write_bytes(source.read_bytes()[:123_456])
    Path(f"{target}.part.json").write_text(f'{{"etag": "\\"sha256-{digest}\\""}}')
    async with client(gw.url, gw, 110) as agent:
        result = await agent.download(VideoFile("conf-again"), target, resume=True)
    assert result.resumed_from == 123_456 and result.sha256 == digest == sha256(target)
    assert [r["fields"]["range"] for r in audited(gw, 110, 1)] == ["bytes=123456-"]


async def test_several_files_at_once(gw: AgentGateway, tmp_path: Path) -> None:
    sources = [recording(gw, tmp_path, f"many{i}", 111, 200_000 + i) for i in range(4)]
    active: set[object] = set()
    most = 0

    def progress(target: object, done: int, total: int | None) -> None:
        nonlocal most
        (active.discard if done == total else active.add)(target)
        most = max(most, len(active))

    jobs = [(VideoFile(f"conf-many{i}"), tmp_path / f"m{i}.mp4") for i in range(4)]
    jobs.append((VideoFile("conf-none"), tmp_path / "none.mp4"))
    async with client(gw.url, gw, 111) as agent:
        results = await agent.download_many(jobs, concurrency=2, progress=progress)
    for source, result in zip(sources, results[:4], strict=True):
        assert isinstance(result, DownloadResult) and result.sha256 == sha256(source)
    assert isinstance(results[4], RefusedError) and results[4].retcode == "108-005"
    assert 1 <= most <= 2


async def test_refusals_carry_the_retcode(gw: AgentGateway, tmp_path: Path) -> None:
    with pytest.raises(RefusedError) as wrong:
        await AgentClient(gw.url, 112, "not-it", ca=gw.ca).sign_in()
    assert wrong.value.retcode == "100-004"
    gw.sign_in(112)
    with pytest.raises(RefusedError) as taken:
        await AgentClient(gw.url, 112, PASSWORD, ca=gw.ca).sign_in()
    assert taken.value.retcode == "100-002"
    async with client(gw.url, gw, 112, force=True) as agent:
        cases: list[tuple[Target, str]] = [
            (VideoFile("conf-missing"), "108-005"),
            (VideoFile("conf-dir", file_type=FileType.SD), "108-005"),
            (VideoFileEx("Y:/1/0/20161025/112/none.mp4"), "104-005"),
        ]
        for target, code in cases:
            with pytest.raises(RefusedError) as refused:
                await agent.download(target, tmp_path / "x")
            assert refused.value.retcode == code
        assert list(tmp_path.iterdir()) == []  # no empty file, no .part
    async with client(gw.url, gw, NO_VIDEO_AGENT) as agent:
        with pytest.raises(RefusedError, match="108-009"):
            await agent.download(VideoFile("conf-dir"), tmp_path / "x")


async def test_a_taken_over_session_gives_000_003(gw: AgentGateway, tmp_path: Path) -> None:
    recording(gw, tmp_path, "taken", 113, 2 * MiB)

    def take_over(_cut: int) -> None:
        gw.sign_in(113, force=True)

    async with Relay(gw.port, cut_after=[500_000], on_cut=take_over) as relay:
        async with client(relay.url, gw, 113) as agent:
            with pytest.raises(RefusedError) as refused:
                await agent.download(VideoFile("conf-taken"), tmp_path / "t.mp4")
    assert refused.value.retcode == "000-003" and not (tmp_path / "t.mp4").exists()


async def test_the_certificate_is_always_verified(gw: AgentGateway) -> None:
    with pytest.raises(CertificateError, match="not trusted"):
        await AgentClient(gw.url, 114, PASSWORD).sign_in()
    with pytest.raises(CertificateError, match="pinned"):
        await AgentClient(gw.url, 114, PASSWORD, fingerprint="00" * 32).sign_in()
    async with AgentClient(gw.url, 114, PASSWORD, fingerprint=gw.fingerprint) as agent:
        assert agent.guid is not None
    with pytest.raises(ValueError, match="https"):
        AgentClient(f"http://127.0.0.1:{gw.port}", 114, PASSWORD, ca=gw.ca)


def open_sockets_to(port: int) -> list[socket.socket]:
    """This process's open sockets connected to ``port`` on the loopback."""
    found = []
    for obj in gc.get_objects():
        if isinstance(obj, socket.socket) and obj.fileno() != -1:
            try:
                peer = obj.getpeername()
            except OSError:
                continue
            if peer == ("127.0.0.1", port):
                found.append(obj)
    return found


async def test_close_leaves_no_connection_open(gw: AgentGateway) -> None:
    # Closing at once after the sign-in catches the poll reconnecting (it re-polls after each of
    # the first events). aiohttp closes that connection gracefully and stops tracking it; on a
    # slow network the close_notify round trip outlasted close(), and an event loop ended
    # right after (asyncio.run) left its socket open.
    async with Relay(gw.port, delay=0.03) as relay:
        for _ in range(3):
            async with client(relay.url, gw, 116):
                pass
            assert open_sockets_to(relay.port) == []


def test_sync_client(gw: AgentGateway, tmp_path: Path) -> None:
    with SyncAgentClient(gw.url, 115, PASSWORD, ca=gw.ca) as agent:
        events = agent.events(wait=5)
        assert next(events).event_type == "AgentOther_InService"
        source = write_playable(tmp_path / "sources" / "sync.mp4")  # whole: AgentMediaEvent_Record
        gw.register("conf-sync", "rec-sync", [115], source)  # announced to 115 at once
        result = agent.download(VideoFile("conf-sync"), tmp_path / "s.mp4")
        assert result.sha256 == sha256(source)
        record = next(e for e in events if e.event_type == "AgentMediaEvent_Record")
        assert record.downloads() == (VideoFile("conf-sync", "rec-sync", FileType.HD),)
    assert not agent.signed_in
