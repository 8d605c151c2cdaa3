"""Every download attempt lands in the audit, aborted ones with the bytes really handed out."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aiohttp

from ccgateway import retcodes
from ccgateway.recordings.catalog import Registration
from ccgateway.stores.base import (
    AuditRecord,
    ConferenceRecord,
    FileType,
    MediaFileRecord,
    RecordingRecord,
)
from tests.conftest import GatewayFactory, RunningGateway
from tests.functional.conftest import CONF, REC0, Recordings


async def audit_rows(gw: RunningGateway, expected: int) -> list[AuditRecord]:
    for _ in range(200):
        rows = await gw.gateway.auditor.store.query()
        if len(rows) >= expected:
            return rows
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {expected} audit rows, have {len(rows)}")


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
    rows = await audit_rows(rec.gw, 3)  # written in the background: in no particular order
    (refused,) = [r for r in rows if r.outcome == "refused"]
    (partial,) = [r for r in rows if r.status == 206]
    (completed,) = [r for r in rows if r.status == 200 and r.outcome == "completed"]
    assert completed.outcome == "completed" and completed.status == 200
    assert completed.bytes_sent == 70_001 and completed.agent_id == 101
    assert completed.interface == "downloadVideoFile"
    assert (completed.conference_id, completed.record_id, completed.file_type) == (CONF, REC0, 2)
    assert completed.client == "127.0.0.1" and completed.node == "AgentGateway0"
    assert partial.status == 206 and partial.range == "bytes=0-9" and partial.bytes_sent == 10
    assert refused.outcome == "refused"
    assert refused.retcode == retcodes.NO_SUCH_CONFERENCE.code and refused.bytes_sent == 0


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
        (row,) = await audit_rows(gw, 1)
        assert row.outcome == "aborted", sendfile
        assert received <= row.bytes_sent < size, (sendfile, row.bytes_sent)


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
