"""Regression tests of the findings of the attack on the gateway (issue 14), over real HTTP.

Each test names its finding's id (H high, M medium, L low) in its name; each failed on the commit
before its fix.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ccgateway import retcodes
from ccgateway.cli import cli
from ccgateway.config import SECRET_KEYS, load_settings
from ccgateway.errors import ConfigError
from ccgateway.recordings.catalog import Registration
from ccgateway.sources.base import MediaSource
from ccgateway.stores.base import FileType
from tests.audit_trail import transfers
from tests.conftest import GatewayFactory, guid_of
from tests.functional.conftest import CONF, REC0, Recordings
from tests.functional.test_admin_and_events import TOKEN, admin
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
    rows = await transfers(fs.gw, 3)
    assert len(rows) == 3 and {row.agent_id for row in rows} == {101}
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


async def test_m3_a_head_is_audited_as_a_head_and_a_fault_as_an_error(rec: Recordings) -> None:
    guid = await rec.guid(101)
    http, base = rec.gw.client.http, rec.gw.client.base
    url = base + rec.url(101, conferenceId=CONF, fileType="0", recordId=REC0)
    async with http.head(url, headers={"Guid": guid}) as response:
        assert response.status == 200
    (head,) = await transfers(rec.gw, 1)
    assert (head.kind, head.outcome, head.bytes_sent) == ("head", "completed", 0)

    def broken(location: str) -> MediaSource:
        raise RuntimeError("a bug of ours")

    rec.gw.gateway.sources.open = broken  # type: ignore[method-assign]
    async with http.get(url, headers={"Guid": guid}) as response:
        assert response.status == 500
    error, _ = await transfers(rec.gw, 2)
    assert (error.kind, error.outcome, error.status, error.retcode) == (
        "download",
        "error",
        500,
        "000-000",
    )


# -- H2: a directory change ends the agent's session -----------------------------------------------


async def test_h2_removing_and_re_adding_an_agent_ends_its_session(rec: Recordings) -> None:
    """After `agents remove 102` and `agents add 102` (a new person), the old GUID may not
    download the new person's recordings, poll, or rotate: 100-006, at once on this node."""
    gw = rec.gw
    old = await rec.guid(102)
    download = rec.url(102, conferenceId=CONF, recordId=REC0, fileType="0")
    async with gw.client.http.get(gw.client.base + download, headers={"Guid": old}) as response:
        assert await response.read() == rec.data(REC0, FileType.HD)
    await gw.gateway.agents.remove(102)
    await gw.add_agent(102, name="Someone else")
    response, body = await gw.client.call("GET", download, guid=old)
    assert body["retcode"] == retcodes.NOT_SIGNED_IN.code
    for method, path in (("GET", "agentevent/102"), ("PUT", "onlineagent/102/updateGuid")):
        _, body = await gw.client.call(method, path, guid=old)
        assert body["retcode"] == retcodes.NOT_SIGNED_IN.code, path
    new, body = await gw.client.sign_in(102)  # the new person signs in: no "already signed in"
    assert body["retcode"] == "0" and new not in (None, old)


async def test_h2_a_new_password_ends_the_session_and_announcements_skip_it(
    rec: Recordings, tmp_path: Path
) -> None:
    gw = rec.gw
    old = await rec.guid(101)
    await gw.gateway.agents.set_password(101, "another-password")
    hd = tmp_path / "late.mp4"
    hd.write_bytes(b"v" * 100)
    await gw.gateway.catalog.register(
        Registration("conf-h2", "rec-h2", frozenset({101}), {FileType.HD: str(hd)}, vdn=1)
    )
    assert await gw.gateway.catalog.announce_pending(video_events=True) == 0
    _, body = await gw.client.poll(101, old)
    assert body["retcode"] == retcodes.NOT_SIGNED_IN.code


async def test_h2_a_directory_change_made_by_the_cli_ends_the_session_within_2_s(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """The CLI beside a running gateway (its own process state, the same database)."""
    gw = await make_gateway()
    await gw.add_agent(101)
    guid, _ = await gw.client.sign_in(101)
    _, body = await gw.client.poll(101, guid)  # the node's directory cache now holds 101
    assert body["retcode"] == "0"
    runner = CliRunner(env={"CCGW_DATA_DIR": str(tmp_path / "data")})
    result = await asyncio.to_thread(runner.invoke, cli, ["agents", "remove", "101"])
    assert result.exit_code == 0, result.output
    changed = time.monotonic()
    while (await gw.client.poll(101, guid))[1]["retcode"] == "0":
        assert time.monotonic() - changed < 2.5, "the session outlived the directory change"
        await asyncio.sleep(0.1)
    _, body = await gw.client.poll(101, guid)
    assert body["retcode"] == retcodes.NOT_SIGNED_IN.code


async def test_h2_the_admin_signs_an_agent_out_now(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(ADMIN_TOKEN=TOKEN)
    await gw.add_agent(101)
    guid, _ = await gw.client.sign_in(101)
    assert (await admin(gw, "POST", "agents/101/signout")) == (
        200,
        {"retcode": "0", "message": "success", "result": {"workNo": 101, "sessionEnded": True}},
    )
    _, body = await gw.client.poll(101, guid)
    assert body["retcode"] == retcodes.NOT_SIGNED_IN.code
    status, body = await admin(gw, "POST", "agents/999/signout")
    assert (status, body["retcode"]) == (404, retcodes.ADMIN_NOT_FOUND.code)
    status, body = await admin(gw, "POST", "agents/abc/signout")
    assert (status, body["retcode"]) == (400, retcodes.ADMIN_BAD_REQUEST.code)
    again, body = await gw.client.sign_in(101)  # and may sign in again at once
    assert body["retcode"] == "0" and again != guid


def test_h2_the_cli_signs_an_agent_out(tmp_path: Path) -> None:
    runner = CliRunner(env={"CCGW_DATA_DIR": str(tmp_path / "data")})
    assert runner.invoke(cli, ["agents", "add", "101", "--password", "pw"]).exit_code == 0
    result = runner.invoke(cli, ["agents", "signout", "101"])
    assert result.exit_code == 0 and "signed agent 101 out" in result.output
    result = runner.invoke(cli, ["agents", "signout", "102"])
    assert result.exit_code != 0 and "no agent 102" in result.output


# -- L11: the VDN of a new conference -------------------------------------------------------------


async def test_l11_a_registration_creating_a_conference_needs_its_vdn(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """A registration without a VDN used to put a new conference into VDN 1 silently (shown to
    VDN 1's inspectors), and one naming another VDN was silently ignored."""
    from tests.functional.test_admin_and_events import TOKEN, admin

    gw = await make_gateway(ADMIN_TOKEN=TOKEN)
    hd = tmp_path / "hd.mp4"
    hd.write_bytes(b"x" * 1000)
    body = {"conferenceId": "new-conf", "participants": [101], "files": {"hd": str(hd)}}
    status, answer = await admin(gw, "POST", "recordings", {**body, "recordId": "r1"})
    assert (status, answer["retcode"]) == (400, retcodes.ADMIN_BAD_REQUEST.code), answer
    status, answer = await admin(gw, "GET", "conferences/new-conf")
    assert status == 404  # nothing was created
    status, answer = await admin(gw, "POST", "recordings", {**body, "recordId": "r1", "vdn": 2})
    assert status == 200 and answer["result"]["vdn"] == 2, answer
    # a later registration into the conference may leave the VDN out ...
    status, answer = await admin(gw, "POST", "recordings", {**body, "recordId": "r2"})
    assert status == 200 and answer["result"]["vdn"] == 2, answer
    # ... but may not name another one
    status, answer = await admin(gw, "POST", "recordings", {**body, "recordId": "r3", "vdn": 1})
    assert (status, answer["retcode"]) == (400, retcodes.ADMIN_BAD_REQUEST.code), answer
    status, answer = await admin(gw, "GET", "conferences/new-conf")
    assert answer["result"]["vdn"] == 2
    assert [r["recordId"] for r in answer["result"]["recordings"]] == ["r1", "r2"]


# -- L6: hashing holds a download slot, once per file ---------------------------------------------


async def test_l6_hashing_an_uncached_file_holds_a_download_slot_and_runs_once(
    make_gateway: GatewayFactory, tmp_path: Path, monkeypatch: Any
) -> None:
    """A HEAD or GET that must hash an uncached file holds a download slot while the hash runs
    (or while it waits for the one running): HEADs took no slot and hashed before any slot, so
    HEADs of big files starved the node unbounded."""
    from ccgateway.sources import digest as original

    fs: FileServerSetup = await file_server(
        make_gateway, tmp_path, MAX_DOWNLOADS_PER_AGENT="1", MAX_DOWNLOADS="2"
    )
    own, carols = "Y:/1/0/20161025/101/6666666.V3", "Y:/2/0/20161025/103/6666667.V3"
    put(fs.root, own, bytes(2_000_000))
    put(fs.root, carols, bytes(1000))
    hashed: list[str] = []
    started, finish = asyncio.Event(), asyncio.Event()

    async def slow_digest(source: MediaSource, *args: Any) -> tuple[int, int, str]:
        hashed.append(source.uri)
        started.set()
        await finish.wait()
        return await original(source, *args)

    monkeypatch.setattr("ccgateway.recordings.fileserver.digest", slow_digest)
    first = asyncio.create_task(fs.get(101, "", method="HEAD", recordId=own))
    try:
        await asyncio.wait_for(started.wait(), 10)
        # 101's one slot is taken by its HEAD's hashing: another request of 101 is refused ...
        status, headers, body = await asyncio.wait_for(fs.get(101, "", recordId=own), 10)
        assert (status, code(body)) == (429, retcodes.TOO_MANY_DOWNLOADS.code)
        assert int(headers["Retry-After"]) >= 1
        # ... an inspector's request of the same file waits for the same hash, holding the
        # node's second slot ...
        second = asyncio.create_task(fs.get(201, "", method="HEAD", recordId=own))
        for _ in range(200):
            if fs.gw.gateway.flow.downloads.in_use == 2:
                break
            await asyncio.sleep(0.01)
        assert fs.gw.gateway.flow.downloads.in_use == 2
        # ... so the node is full for anyone else who must hash
        status, headers, body = await asyncio.wait_for(fs.get(103, "", recordId=carols), 10)
        assert (status, code(body)) == (503, retcodes.NODE_BUSY.code)
    finally:
        finish.set()
    answers = await asyncio.gather(first, second)
    assert [status for status, _, _ in answers] == [200, 200]
    assert [headers["Content-Length"] for _, headers, _ in answers] == ["2000000"] * 2
    assert len(hashed) == 1  # one hash for both
    assert fs.gw.gateway.flow.downloads.in_use == 0
    # cached now: a HEAD needs no slot and no hash, and a GET sends the file
    status, headers, _ = await fs.get(101, "", method="HEAD", recordId=own)
    assert status == 200 and len(hashed) == 1
    status, _, body = await fs.get(101, "", recordId=own)
    assert status == 200 and body == fs.file(own)


# -- M4: conference ids cannot be probed by timing ------------------------------------------------


async def test_m4_a_foreign_conference_runs_the_statements_of_an_unknown_one(
    rec: Recordings,
) -> None:
    """Over HTTP: agent 104 asks for VDN 2's conference (foreign) and for an id nobody has;
    both answer 108-005 after the same catalog statements, one each (a foreign one used to be
    loaded whole first: 4 statements against 1, 4.0 ms against 2.1 ms). The SQL contract tests
    (tests/contract/test_sql_stores.py, test_m4_*) count the same on PostgreSQL."""
    import sqlalchemy as sa

    from ccgateway.app import BACKGROUND
    from tests.functional.conftest import OTHER_CONF

    engine = rec.gw.gateway.catalog.store._engine  # type: ignore[attr-defined]
    seen: list[str] = []

    def record(*args: object) -> None:
        statement = str(args[2])
        task = asyncio.current_task()
        background = task is not None and task.get_name().startswith(BACKGROUND)
        if "conference" in statement and "audit" not in statement and not background:
            seen.append(statement)  # the request's catalog statements only

    guid = await rec.guid(104)
    http, base = rec.gw.client.http, rec.gw.client.base
    runs: dict[str, list[str]] = {}
    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        for conference_id in (CONF, OTHER_CONF, "unknown-conference-id"):
            seen.clear()
            url = base + rec.url(104, conferenceId=conference_id, fileType="0")
            async with http.get(url, headers={"Guid": guid}) as response:
                body = await response.json(content_type=None)
            assert body["retcode"] == retcodes.NO_SUCH_CONFERENCE.code, conference_id
            runs[conference_id] = list(seen)
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert runs[CONF] == runs[OTHER_CONF] == runs["unknown-conference-id"]
    assert len(runs[CONF]) == 1


def test_l14_the_guid_digest_key_is_a_secret_of_the_configuration() -> None:
    """L14: ``GUID_DIGEST_KEY`` is a credential: a configuration error names it, never its
    value."""
    with pytest.raises(ConfigError) as error:
        load_settings(environ={}, GUID_DIGEST_KEY="short secret")
    assert "GUID_DIGEST_KEY" in str(error.value) and "short secret" not in str(error.value)
    assert "GUID_DIGEST_KEY" in SECRET_KEYS
    settings = load_settings(environ={}, GUID_DIGEST_KEY="k" * 32)
    assert settings.guid_digest_key == "k" * 32 and "k" * 32 not in repr(settings)
