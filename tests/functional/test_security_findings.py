"""Regression tests of the findings of the attack on the gateway (issue 14), over real HTTP.

Each test names its finding's id (H high, M medium, L low) in its name; each failed on the commit
before its fix.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ccgateway import retcodes
from ccgateway.config import SECRET_KEYS, load_settings
from ccgateway.errors import ConfigError
from ccgateway.sources.base import MediaSource
from ccgateway.stores.base import AuditRecord
from tests.conftest import GatewayFactory, RunningGateway, guid_of
from tests.functional.conftest import CONF, REC0, Recordings
from tests.functional.test_file_server import (
    FileServerSetup,
    code,
    make_setup,
    populate,
)

MINUTE = 60_000


def put(root: Path, drive_path: str, data: bytes = b"x" * 1000) -> None:
    path = root / drive_path[3:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def file_server(make_gateway: GatewayFactory, tmp_path: Path, **settings: str) -> Any:
    root = tmp_path / "mnt" / "recordings"
    populate(root)
    settings.setdefault("RECORD_DRIVE_MAP", f"Y:={root}")
    return await make_setup(make_gateway, root, **settings)


# -- H1: video through the voice interface --------------------------------------------------------


async def test_h1_recordfile_applies_the_video_right_to_video_files(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """Agent 102 has no video right: its own .mp4 is refused by recordfile as by *Ex."""
    fs: FileServerSetup = await file_server(make_gateway, tmp_path)
    own_video, own_voice = "Y:/1/0/20201202/102/1714442.mp4", "Y:/1/0/20201202/102/1714443.V3"
    put(fs.root, own_video)
    put(fs.root, own_voice)
    status, _, body = await fs.get(102, "/videofiledownloadEx", recordId=own_video)
    assert code(body) == retcodes.NO_PLAYBACK_RIGHT.code
    status, _, body = await fs.get(102, "", recordId=own_video)
    assert status == 200 and code(body) == retcodes.NO_PLAYBACK_RIGHT.code
    status, _, body = await fs.get(102, "", recordId=own_video.replace(".mp4", ".MOV"))
    assert code(body) == retcodes.NO_PLAYBACK_RIGHT.code  # by extension, whatever its case
    status, _, body = await fs.get(102, "", recordId=own_voice)
    assert status == 200 and body == fs.file(own_voice)  # voice keeps the voice rules


async def test_h1_recordfile_applies_both_video_switches_to_video_files(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    own_video, own_voice = "Y:/1/0/20201202/101/1714442.mp4", "Y:/1/0/20161025/101/1902050.V3"
    for switch, answer in (
        ("VIDEO_DOWNLOAD_FLAG", retcodes.VIDEO_DOWNLOAD_OFF),
        ("IF_SUPPORT_VIDEO", retcodes.VIDEO_EVENTS_OFF),
    ):
        here = tmp_path / switch
        fs: FileServerSetup = await file_server(
            make_gateway, here, DATA_DIR=str(here / "data"), **{switch: "OFF"}
        )
        status, _, body = await fs.get(101, "/videofiledownloadEx", recordId=own_video)
        assert code(body) == answer.code, switch
        status, _, body = await fs.get(101, "", recordId=own_video)
        assert status == 200 and code(body) == answer.code, switch
        status, _, body = await fs.get(101, "", recordId=own_voice)
        assert status == 200 and body == fs.file(own_voice), switch


async def test_h1_the_registered_media_type_decides_before_the_extension(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    fs: FileServerSetup = await file_server(make_gateway, tmp_path)
    video_v3, voice_mp4 = "Y:/1/0/20201202/102/5000001.V3", "Y:/1/0/20201202/102/5000002.mp4"
    put(fs.root, video_v3)
    put(fs.root, voice_mp4)
    files = fs.gw.gateway.files
    await files.register("reg-video", video_v3, call_id="c-1", media=2)
    await files.register("reg-voice", voice_mp4, call_id="c-2", media=1)
    status, _, body = await fs.get(102, "", recordId=video_v3)
    assert code(body) == retcodes.NO_PLAYBACK_RIGHT.code  # registered as video
    status, _, body = await fs.get(102, "", recordId=voice_mp4.replace("/", "\\"))
    assert status == 200 and body == fs.file(voice_mp4)  # registered as voice


# -- M7: the file-server owner rule -------------------------------------------------------------


async def test_m7_an_agent_owns_only_paths_of_its_own_vdn(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """Agent 101 of VDN 1 may not read a VDN-2 directory that happens to name 101."""
    fs: FileServerSetup = await file_server(make_gateway, tmp_path)
    foreign = "Y:/2/0/20161025/101/7777777.V3"
    put(fs.root, foreign)
    status, _, body = await fs.get(101, "", recordId=foreign)
    assert status == 200 and code(body) == retcodes.NO_PLAYBACK_RIGHT.code
    status, _, body = await fs.get(101, "/videofiledownloadEx", recordId=foreign[:-3] + ".mp4")
    assert code(body) == retcodes.NO_PLAYBACK_RIGHT.code


async def test_m7_a_zero_padded_agent_segment_is_nobody(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    fs: FileServerSetup = await file_server(make_gateway, tmp_path)
    for padded in ("Y:/1/0/20161025/0101/1902050.V3", "Y:/01/0/20161025/101/1902051.V3"):
        put(fs.root, padded)
        status, _, body = await fs.get(101, "", recordId=padded)
        assert status == 200 and code(body) == retcodes.NO_PLAYBACK_RIGHT.code, padded
    # the canonical path of the same agent still works
    status, _, _ = await fs.get(101, "", recordId="Y:/1/0/20161025/101/1902050.V3")
    assert status == 200


# -- M5: one digest computation per file at a time ------------------------------------------------


async def test_m5_concurrent_first_downloads_compute_the_digest_once(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    fs: FileServerSetup = await file_server(make_gateway, tmp_path, MAX_DOWNLOADS_PER_AGENT="16")
    own = "Y:/1/0/20161025/101/5555555.V3"
    put(fs.root, own, bytes(3_000_000))
    store = fs.gw.gateway.files.store
    cached: list[str] = []
    original = store.cache_digest

    async def counting(path: str, size: int, mtime_ns: int, sha256: str) -> None:
        cached.append(path)
        await original(path, size, mtime_ns, sha256)

    store.cache_digest = counting  # type: ignore[method-assign]
    answers = await asyncio.gather(*(fs.get(101, "", recordId=own) for _ in range(8)))
    assert [status for status, _, _ in answers] == [200] * 8
    assert all(body == fs.file(own) for _, _, body in answers)
    assert len(cached) == 1


# -- L1: pool-mode locationId ---------------------------------------------------------------------


async def test_l1_odd_location_ids_are_refused_not_500(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    root = tmp_path / "mnt" / "recordings"
    fs: FileServerSetup = await file_server(
        make_gateway, tmp_path, RECORD_DRIVE_MAP="", RECORD_DRIVE_MAP_5=f"Y:={root}"
    )
    own = "Y:/1/0/20161025/101/1902050.V3"
    status, _, _ = await fs.get(101, "", recordId=own, locationId="5")
    assert status == 200
    for odd in ("²", "٥", "5" * 5000, "05x", " "):
        status, _, body = await fs.get(101, "", recordId=own, locationId=odd)
        assert status == 200, odd
        assert code(body) == retcodes.LOCATION_NOT_CONFIGURED.code, odd


# -- L2: an inspector learns nothing of another VDN's calls ---------------------------------------


async def test_l2_a_call_of_another_vdn_answers_as_an_unknown_call(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """Inspector 201 of VDN 1, naming agent 103 of VDN 2: the same answer as for no call."""
    fs: FileServerSetup = await file_server(make_gateway, tmp_path)
    carol = "Y:/2/0/20161025/103/3000000.V3"
    await fs.gw.gateway.files.register("carol-call", carol, call_id="2-call", media=1)
    _, _, body = await fs.get(201, "/recordfiledownloadEx", callId="2-call", workNo="103")
    foreign = code(body)
    _, _, body = await fs.get(201, "/recordfiledownloadEx", callId="no-such-call", workNo="103")
    assert foreign == code(body) == retcodes.FILE_MISSING.code
    status, _, body = await fs.get(202, "/recordfiledownloadEx", callId="2-call", workNo="103")
    assert status == 200 and body == fs.file(carol)  # VDN 2's inspector gets it


# -- L12: what is announced may be fetched ---------------------------------------------------------


async def test_l12_registered_participants_may_download_what_they_were_announced(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """Bob's recording registered with Alice (101) as a participant: Alice gets the event, and
    the file; Carol (103, not a participant) still gets 104-002."""
    fs: FileServerSetup = await file_server(make_gateway, tmp_path)
    bob = "Y:/1/0/20161025/102/2000000.V3"
    status, _, body = await fs.get(101, "", recordId=bob)
    assert code(body) == retcodes.NO_PLAYBACK_RIGHT.code  # not registered: the path rule alone
    await fs.gw.gateway.files.register(
        "bob-call", bob, call_id="b-call", media=1, participants=frozenset({101})
    )
    await fs.gw.gateway.files.announce_pending(True)
    response, event = await fs.gw.client.poll(101, fs.guids[101])
    while event["event"] is not None and event["event"]["eventType"] != "AgentMediaEvent_Record":
        response, event = await fs.gw.client.poll(101, fs.guids[101])
    assert event["event"]["content"]["fileName"] == bob
    status, _, body = await fs.get(101, "", recordId=bob)
    assert status == 200 and body == fs.file(bob)
    for stranger in (103, 202):  # an agent of VDN 2, and VDN 2's inspector: not participants
        status, _, body = await fs.get(stranger, "", recordId=bob)
        assert code(body) == retcodes.NO_PLAYBACK_RIGHT.code, stranger


# -- L9: only the current GUID rotates or signs out ------------------------------------------------


async def test_l9_a_rotated_out_guid_may_not_call_update_guid_or_sign_out(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(GUIDINTERVAL="60000", GUIDTIMEOUT="90000")
    await gw.add_agent(101)
    first, _ = await gw.client.sign_in(101)
    gw.clock.advance(MINUTE)
    response, body = await gw.client.poll(101, first)
    current = guid_of(response)
    assert body["retcode"] == "0" and current not in (None, first)
    # the rotated-out GUID still polls during its grace window, but may not take over
    _, body = await gw.client.call("PUT", "onlineagent/101/updateGuid", guid=first)
    assert body["retcode"] == retcodes.NO_RIGHT.code
    for suffix in ("logout", "forcelogout"):
        _, body = await gw.client.call("DELETE", f"onlineagent/101/{suffix}", guid=first)
        assert body["retcode"] == retcodes.NO_RIGHT.code
    response, body = await gw.client.poll(101, current)
    assert body["retcode"] == "0"  # the owner is still signed in, with the same GUID
    _, body = await gw.client.call("PUT", "onlineagent/101/updateGuid", guid=current)
    assert body["retcode"] == "0"


# -- M1: an odd header byte never costs an audit record --------------------------------------------


async def raw_get(port: int, target: str, headers: list[bytes]) -> bytes:
    """A GET with header bytes as given (aiohttp's client would encode them)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {target} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    writer.write(b"\r\n".join([*lines, *headers, b"", b""]))
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def test_m1_a_range_with_a_high_byte_is_audited(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    fs: FileServerSetup = await file_server(make_gateway, tmp_path)
    base = fs.gw.client.base
    port = int(base.split(":")[2].split("/")[0])
    own = "Y:/1/0/20161025/101/1902050.V3"
    target = f"/agentgateway/resource/recordfile/101?recordId={own}"
    guid = fs.guids[101].encode()
    for odd in (b"bytes=0-\xff", b"bytes=\xc3\x28-1", b"\xff\xfe"):
        answer = await raw_get(port, target, [b"Guid: " + guid, b"Range: " + odd])
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    for _ in range(50):
        rows = await fs.gw.gateway.auditor.query(agent_id=101)
        if len(rows) >= 3:
            break
        await asyncio.sleep(0.05)
    assert len(rows) == 3
    assert {row.outcome for row in rows} == {"completed"}
    assert all(row.range.isprintable() for row in rows)


# -- L3 and L10: documentation ---------------------------------------------------------------------


def test_l3_configuration_doc_says_which_flag_gates_which_interface() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    line = next(s for s in doc.splitlines() if s.startswith("| `RECORD_DOWNLOAD_FLAG`"))
    assert "recordfile" in line and "Ex" not in line
    video = next(s for s in doc.splitlines() if s.startswith("| `VIDEO_DOWNLOAD_FLAG`"))
    assert "recordfiledownloadEx" in video


def test_l10_the_presence_disclosure_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "interfaces.md").read_text()
    assert "100-006" in doc and "signed in" in doc and "disclos" in doc


# -- M3: outcomes are explicit ---------------------------------------------------------------------


async def audit_rows(gw: RunningGateway, expected: int) -> list[AuditRecord]:
    for _ in range(200):
        rows = await gw.gateway.auditor.query()
        if len(rows) >= expected:
            return rows
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {expected} audit rows, have {len(rows)}")


async def test_m3_a_head_is_audited_as_a_head_and_a_fault_as_an_error(rec: Recordings) -> None:
    guid = await rec.guid(101)
    http, base = rec.gw.client.http, rec.gw.client.base
    url = base + rec.url(101, conferenceId=CONF, fileType="0", recordId=REC0)
    async with http.head(url, headers={"Guid": guid}) as response:
        assert response.status == 200
    (head,) = await audit_rows(rec.gw, 1)
    assert head.outcome == "head" and head.bytes_sent == 0

    def broken(location: str) -> MediaSource:
        raise RuntimeError("a bug of ours")

    rec.gw.gateway.sources.open = broken  # type: ignore[method-assign]
    async with http.get(url, headers={"Guid": guid}) as response:
        assert response.status == 500
    error, _ = await audit_rows(rec.gw, 2)
    assert (error.outcome, error.status, error.retcode) == ("error", 500, "000-000")


def test_l14_the_guid_digest_key_is_a_secret_of_the_configuration() -> None:
    """L14: ``GUID_DIGEST_KEY`` is a credential: a configuration error names it, never its
    value."""
    with pytest.raises(ConfigError) as error:
        load_settings(environ={}, GUID_DIGEST_KEY="short secret")
    assert "GUID_DIGEST_KEY" in str(error.value) and "short secret" not in str(error.value)
    assert "GUID_DIGEST_KEY" in SECRET_KEYS
    settings = load_settings(environ={}, GUID_DIGEST_KEY="k" * 32)
    assert settings.guid_digest_key == "k" * 32 and "k" * 32 not in repr(settings)
