"""Every download attempt lands in the audit as a transfer (a ``start`` and an ``end``), aborted
ones with the bytes really handed out."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp

from ccgateway import retcodes
from ccgateway.audit.events import GENESIS
from ccgateway.recordings.catalog import Registration
from ccgateway.stores.base import (
    ConferenceRecord,
    FileType,
    MediaFileRecord,
    RecordingRecord,
)
from tests.audit_trail import stored_events, transfers
from tests.conftest import GatewayFactory
from tests.functional.conftest import CONF, REC0, Recordings


async def test_completed_partial_and_refused_attempts_are_recorded(rec: Recordings) -> None:
    guid = await rec.guid(101)
    client = rec.gw.client
    url = client.base + rec.url(101, conferenceId=CONF, fileType="2", recordId=REC0)
    async with client.http.get(url, headers={"Guid": guid}) as response:
        await response.read()
    async with client.http.get(url, headers={"Guid": guid, "Range": "bytes=0-9"}) as response:
        await response.read()
    async with client.http.get(
        client.base + rec.url(101, conferenceId="x", fileType="0"), headers={"Guid": guid}
    ) as response:
        await response.read()
    rows = await transfers(rec.gw, 3)
    (refused,) = [r for r in rows if r.outcome == "refused"]
    (partial,) = [r for r in rows if r.status == 206]
    (completed,) = [r for r in rows if r.status == 200 and r.outcome == "completed"]
    assert completed.kind == "download" and completed.decision == "authorized"
    assert completed.bytes_sent == 70_001 and completed.agent_id == 101
    assert completed.ranges == [[0, 70_000]] and completed.retcode == "0"
    assert completed.interface == "downloadVideoFile"
    concerns = (completed.concern("conference"), completed.concern("record"))
    assert (*concerns, completed.concern("fileType")) == (CONF, REC0, 2)
    assert completed.client == "127.0.0.1" and completed.start.writer.startswith("AgentGateway0@")
    assert partial.range == "bytes=0-9" and partial.bytes_sent == 10
    assert partial.ranges == [[0, 9]]
    assert refused.decision == "refused" and refused.bytes_sent == 0
    assert refused.retcode == retcodes.NO_SUCH_CONFERENCE.code
    # one chain: the node's events are numbered without gaps, each hashing its predecessor
    events = await stored_events(rec.gw.gateway.settings.database_url)
    assert {e.writer for e in events} == {completed.start.writer}
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].prev == GENESIS
    assert all(e.prev == p.digest() for p, e in zip(events, events[1:], strict=False))


async def test_aborted_transfer_is_recorded_with_the_bytes_sent(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    for sendfile in ("ON", "OFF"):
        gw = await make_gateway(SENDFILE=sendfile, DATA_DIR=str(tmp_path / sendfile))
        await gw.add_agent(101)
        big = tmp_path / f"big-{sendfile}.mp4"
        size = 128 * 1024 * 1024
        with big.open("wb") as handle:
            handle.truncate(size)
        await gw.gateway.catalog.register(
            Registration(CONF, REC0, frozenset({101}), {FileType.HD: str(big)}, vdn=1)
        )
        guid, _ = await gw.client.sign_in(101)
        received = 0
        url = gw.client.base + f"recordfile/101/videofiledownload?conferenceId={CONF}&fileType=0"
        async with aiohttp.ClientSession(read_bufsize=65536) as http:
            response = await http.get(url, headers={"Guid": guid or ""})
            while received < 1024 * 1024:
                received += len(await response.content.read(65536))
            response.close()  # the client goes away mid-transfer
        (row,) = await transfers(gw, 1)
        assert row.outcome == "aborted", sendfile
        assert received <= row.bytes_sent < size, sendfile


async def test_offsets_beyond_4_gib_serve_the_right_bytes(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = await make_gateway()
    await gw.add_agent(101)
    path = tmp_path / "sparse.mp4"
    size = 5 * 1024**3 + 123
    marks = {4 * 1024**3 - 3: b"edge-of-4GiB", 4 * 1024**3 + 1000: b"beyond", size - 6: b"at-end"}
    with path.open("wb") as handle:
        handle.truncate(size)
        for offset, data in marks.items():
            handle.seek(offset)
            handle.write(data)
    stat = path.stat()
    # Registering would hash 5 GiB; this test is about offsets, so the record is written directly.
    media = MediaFileRecord(
        REC0,
        FileType.HD,
        str(path),
        size,
        "video/mp4",
        stat.st_mtime_ns,
        hashlib.sha256(b"not the content").hexdigest(),
    )
    await gw.gateway.catalog.store.add_recording(
        ConferenceRecord(CONF, 1, "", None, None, frozenset({101})),
        RecordingRecord(REC0, CONF, 0, 0, (media,)),
    )
    guid, _ = await gw.client.sign_in(101)
    url = f"recordfile/101/videofiledownload?conferenceId={CONF}&fileType=0"
    for offset, data in marks.items():
        end = offset + len(data) - 1
        response, _ = await gw.client.call("HEAD", url, guid=guid)
        assert response.headers["Content-Length"] == str(size)
        async with gw.client.http.get(
            gw.client.base + url, headers={"Guid": guid or "", "Range": f"bytes={offset}-{end}"}
        ) as response:
            assert response.status == 206
            assert response.headers["Content-Range"] == f"bytes {offset}-{end}/{size}"
            assert await response.read() == data
    async with gw.client.http.get(
        gw.client.base + url, headers={"Guid": guid or "", "Range": f"bytes={4 * 1024**3 - 5}-"}
    ) as response:
        assert response.headers["Content-Length"] == str(size - 4 * 1024**3 + 5)
        head = await response.content.readexactly(8)
        assert head[:2] == b"\0\0" and head[2:8] == b"edge-o"


async def test_head_not_modified_unsatisfiable_and_offloaded_transfers(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """Each outcome as a real request produces it: a HEAD is a ``head`` transfer, a 304 a
    completed one with no range served, a 416 refused, and a download handed to nginx
    (``ACCEL_REDIRECT``) ``offloaded`` with ``bytes: null``: the gateway does not know them."""
    gw = await make_gateway(ACCEL_REDIRECT="/internal/")
    await gw.add_agent(101)
    media = tmp_path / "hd.mp4"
    media.write_bytes(b"x" * 1000)
    await gw.gateway.catalog.register(
        Registration(CONF, REC0, frozenset({101}), {FileType.HD: str(media)}, vdn=1)
    )
    guid, _ = await gw.client.sign_in(101)
    url = gw.client.base + f"recordfile/101/videofiledownload?conferenceId={CONF}&fileType=0"
    http, sent = gw.client.http, {"Guid": guid or ""}
    async with http.head(url, headers=sent) as response:
        assert response.status == 200
        etag = response.headers["ETag"]
    async with http.get(url, headers={**sent, "If-None-Match": etag}) as response:
        assert response.status == 304
    async with http.get(url, headers={**sent, "Range": "bytes=5000-"}) as response:
        assert response.status == 416
    async with http.get(url, headers={**sent, "Range": "bytes=10-19"}) as response:
        assert response.headers["X-Accel-Redirect"].startswith("/internal/")
    head, not_modified, unsatisfiable, offloaded = reversed(await transfers(gw, 4))
    assert (head.kind, head.outcome, head.status, head.bytes, head.ranges) == (
        "head",
        "completed",
        200,
        0,
        [],
    )
    assert (not_modified.kind, not_modified.outcome, not_modified.status) == (
        "download",
        "completed",
        304,
    )
    assert (unsatisfiable.outcome, unsatisfiable.status) == ("refused", 416)
    assert unsatisfiable.decision == "authorized" and unsatisfiable.range == "bytes=5000-"
    assert (offloaded.outcome, offloaded.bytes, offloaded.ranges) == ("offloaded", None, [[10, 19]])
