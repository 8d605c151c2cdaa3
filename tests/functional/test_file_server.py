"""File-server downloads over real HTTP: recordfile, videofiledownloadEx, recordfiledownloadEx."""

from __future__ import annotations

import base64
import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ccgateway import retcodes
from ccgateway.stores.base import Role
from tests.conftest import GatewayFactory, RunningGateway

SECRET = b"TOP-SECRET-OUTSIDE-THE-ROOT"
OWN_VOICE = "Y:/1/0/20161025/101/1902050.V3"
OWN_VIDEO = "Y:/1/0/20201202/101/1714442.mp4"
BOB_VOICE = "Y:/1/0/20161025/102/2000000.V3"
CAROL_VOICE = "Y:/2/0/20161025/103/3000000.V3"


@dataclass
class FileServerSetup:
    gw: RunningGateway
    root: Path
    guids: dict[int, str]

    def file(self, drive_path: str) -> bytes:
        return (self.root / drive_path[3:]).read_bytes()

    async def get(
        self,
        agent_id: int,
        suffix: str,
        headers: dict[str, str] | None = None,
        method: str = "GET",
        **query: str,
    ) -> tuple[int, Any, bytes]:
        client = self.gw.client
        url = client.base + f"recordfile/{agent_id}{suffix}"
        sent = {"Guid": self.guids.get(agent_id, ""), **(headers or {})}
        async with client.http.request(method, url, params=query, headers=sent) as response:
            return response.status, response.headers.copy(), await response.read()


def populate(root: Path) -> None:
    for drive_path in (OWN_VOICE, OWN_VIDEO, BOB_VOICE, CAROL_VOICE):
        path = root / drive_path[3:]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(50_000 + len(drive_path)))
    (root.parent / "secret.txt").write_bytes(SECRET)
    (root / "1" / "0" / "20161025" / "101" / "escape.V3").symlink_to(root.parent / "secret.txt")


async def make_setup(make_gateway: GatewayFactory, root: Path, **settings: str) -> FileServerSetup:
    gw = await make_gateway(**settings)
    await gw.add_agent(101)
    await gw.add_agent(102, may_download_video=False)
    await gw.add_agent(103, vdn=2)
    await gw.add_agent(201, role=Role.INSPECTOR, vdn=1)
    await gw.add_agent(202, role=Role.INSPECTOR, vdn=2)
    guids = {}
    for agent_id in (101, 102, 103, 201, 202):
        guid, _ = await gw.client.sign_in(agent_id)
        assert guid is not None
        guids[agent_id] = guid
    return FileServerSetup(gw, root, guids)


@pytest.fixture
async def fs(make_gateway: GatewayFactory, tmp_path: Path) -> FileServerSetup:
    root = tmp_path / "mnt" / "recordings"
    populate(root)
    return await make_setup(make_gateway, root, RECORD_DRIVE_MAP=f"Y:={root}")


def code(body: bytes) -> str:
    import json

    value: str = json.loads(body)["retcode"]
    return value


async def test_voice_download_with_both_separators_and_drive_cases(fs: FileServerSetup) -> None:
    expected = fs.file(OWN_VOICE)
    for raw in (OWN_VOICE, OWN_VOICE.replace("/", "\\"), "y" + OWN_VOICE[1:]):
        status, headers, body = await fs.get(101, "", recordId=raw)
        assert status == 200 and body == expected, raw
        digest = base64.b64encode(hashlib.sha256(expected).digest()).decode()
        assert headers["Repr-Digest"] == f"sha-256=:{digest}:"
        assert headers["Content-Disposition"].startswith('attachment; filename="1902050.V3"')
        assert headers["ETag"] == f'"sha256-{hashlib.sha256(expected).hexdigest()}"'


async def test_range_head_and_conditional_on_file_server_files(fs: FileServerSetup) -> None:
    data = fs.file(OWN_VOICE)
    status, headers, body = await fs.get(
        101, "", headers={"Range": "bytes=100-199"}, recordId=OWN_VOICE
    )
    assert status == 206 and body == data[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    status, head, body = await fs.get(101, "", method="HEAD", recordId=OWN_VOICE)
    assert status == 200 and body == b"" and head["Content-Length"] == str(len(data))
    status, _, _ = await fs.get(
        101, "", headers={"If-None-Match": head["ETag"]}, recordId=OWN_VOICE
    )
    assert status == 304


async def test_digest_is_computed_once_and_cached(fs: FileServerSetup) -> None:
    await fs.get(101, "", recordId=OWN_VOICE)
    path = fs.root / OWN_VOICE[3:]
    stat = path.stat()
    cached = await fs.gw.gateway.files.store.cached_digest(
        str(path), stat.st_size, stat.st_mtime_ns
    )
    assert cached == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(b"changed")  # a new size: the cache entry no longer applies
    status, headers, body = await fs.get(101, "", recordId=OWN_VOICE)
    assert body == b"changed"
    assert headers["ETag"] == f'"sha256-{hashlib.sha256(b"changed").hexdigest()}"'


@pytest.mark.parametrize(
    ("agent_id", "raw", "expected"),
    [
        (101, OWN_VOICE, "0"),
        (201, OWN_VOICE, "0"),  # inspector of VDN 1
        (202, OWN_VOICE, retcodes.NO_PLAYBACK_RIGHT.code),  # inspector of VDN 2
        (102, OWN_VOICE, retcodes.NO_PLAYBACK_RIGHT.code),  # another agent
        (103, OWN_VOICE, retcodes.NO_PLAYBACK_RIGHT.code),
        (202, CAROL_VOICE, "0"),
        (101, "Y:/1/0/20161025/102/absent.V3", retcodes.NO_PLAYBACK_RIGHT.code),
        (101, "Y:/1/0/20161025/101/absent.V3", retcodes.FILE_MISSING.code),
        (101, "Y:/1/0/20161025/101/escape.V3", retcodes.FILE_MISSING.code),  # symlink out
        (101, "Z:/1/0/20161025/101/1902050.V3", retcodes.NO_DRIVE_MAPPING.code),
        (101, "Y:/1/0/../../../secret.txt", retcodes.BAD_FILE_NAME.code),
        (101, "/etc/passwd", retcodes.BAD_FILE_NAME.code),
        (101, "", retcodes.BAD_FILE_NAME.code),
    ],
)
async def test_who_may_fetch_what(
    fs: FileServerSetup, agent_id: int, raw: str, expected: str
) -> None:
    status, headers, body = await fs.get(agent_id, "", recordId=raw)
    assert status == 200
    if expected == "0":
        assert headers["Content-Type"].startswith("application/octet-stream")
    else:
        assert code(body) == expected
        assert SECRET not in body


async def test_foreign_and_absent_foreign_files_answer_alike(fs: FileServerSetup) -> None:
    _, _, present = await fs.get(101, "", recordId=BOB_VOICE)
    _, _, absent = await fs.get(101, "", recordId="Y:/1/0/20161025/102/nothing.V3")
    assert present == absent


async def test_video_ex_needs_the_video_right(fs: FileServerSetup) -> None:
    status, _, body = await fs.get(101, "/videofiledownloadEx", recordId=OWN_VIDEO)
    assert status == 200 and body == fs.file(OWN_VIDEO)
    path_of_102 = "Y:/1/0/20201202/102/1.mp4"
    _, _, body = await fs.get(102, "/videofiledownloadEx", recordId=path_of_102)
    assert code(body) == retcodes.NO_PLAYBACK_RIGHT.code
    _, _, body = await fs.get(101, "/videofiledownloadEx")
    assert code(body) == retcodes.BAD_FILE_NAME.code


async def test_switches_and_missing_mapping(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    root = tmp_path / "r"
    populate(root)
    off = await make_setup(
        make_gateway,
        root,
        RECORD_DOWNLOAD_FLAG="OFF",
        RECORD_DRIVE_MAP=f"Y:={root}",
        DATA_DIR=str(tmp_path / "a"),
    )
    _, _, body = await off.get(101, "", recordId=OWN_VOICE)
    assert code(body) == retcodes.RECORD_DOWNLOAD_OFF.code
    unmapped = await make_setup(make_gateway, root, DATA_DIR=str(tmp_path / "b"))
    _, _, body = await unmapped.get(101, "", recordId=OWN_VOICE)
    assert code(body) == retcodes.NO_DRIVE_MAPPING.code
    _, _, body = await unmapped.get(101, "", recordId=OWN_VOICE, filetype="3")
    assert code(body) == retcodes.BAD_INTERFACE_PARAMETER.code


async def test_pool_mode_uses_the_location_map(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    root = tmp_path / "node7"
    populate(root)
    fs = await make_setup(make_gateway, root, RECORD_DRIVE_MAP_7=f"Y:={root}")
    status, _, body = await fs.get(101, "", recordId=OWN_VOICE, locationId="7")
    assert status == 200 and body == fs.file(OWN_VOICE)
    _, _, body = await fs.get(101, "", recordId=OWN_VOICE)
    assert code(body) == retcodes.LOCATION_NOT_CONFIGURED.code
    for location in ("8", "x"):
        _, _, body = await fs.get(101, "", recordId=OWN_VOICE, locationId=location)
        assert code(body) == retcodes.LOCATION_NOT_CONFIGURED.code


async def test_recordfiledownloadex_by_call_id_and_by_hw_file_name(fs: FileServerSetup) -> None:
    files = fs.gw.gateway.files
    await files.register(
        "Yc1v6a20011d20161025t1902050", OWN_VOICE, call_id="1621413752-2011", media=1
    )
    status, _, body = await fs.get(101, "/recordfiledownloadEx", callId="1621413752-2011")
    assert status == 200 and body == fs.file(OWN_VOICE)
    status, _, body = await fs.get(
        201, "/recordfiledownloadEx", callId="1621413752-2011", workNo="101"
    )
    assert status == 200 and body == fs.file(OWN_VOICE)
    _, _, body = await fs.get(201, "/recordfiledownloadEx", callId="1621413752-2011")
    assert code(body) == retcodes.BAD_INTERFACE_PARAMETER.code
    _, _, body = await fs.get(103, "/recordfiledownloadEx", callId="1621413752-2011")
    assert code(body) == retcodes.FILE_MISSING.code
    status, _, body = await fs.get(
        101, "/recordfiledownloadEx", callId="1621413752-2011", hwFileName=OWN_VIDEO
    )
    assert status == 200 and body == fs.file(OWN_VIDEO)
    _, _, body = await fs.get(101, "/recordfiledownloadEx")
    assert code(body) == retcodes.BAD_INTERFACE_PARAMETER.code


async def test_file_recordings_are_announced_with_the_drive_path(fs: FileServerSetup) -> None:
    files = fs.gw.gateway.files
    await files.register("1714442", OWN_VIDEO, call_id="1606459553-176", location_id="65535")
    assert await files.announce_pending(video_events=True) == 1
    while (body := (await fs.gw.client.poll(101, fs.guids[101]))[1])["event"] is not None:
        event = body["event"]
    assert event["eventType"] == "AgentMediaEvent_Record"
    assert event["content"]["fileName"] == OWN_VIDEO
    assert event["content"]["locationId"] == "65535"
    assert event["content"]["fileMediaType"] == 2
    await files.register("Yc1v6a20011d20161025t1902050", OWN_VOICE, call_id="1-2", media=1)
    await files.announce_pending(video_events=True)
    _, body = await fs.gw.client.poll(101, fs.guids[101])
    assert body["event"]["content"]["fileMediaType"] == "1"
    assert body["event"]["content"]["recordID"] == "Yc1v6a20011d20161025t1902050"


FRAGMENTS = [
    "..",
    ".",
    "/",
    "\\",
    "%2e",
    "%2f",
    "%5c",
    "%00",
    "\x00",
    "\n",
    "Y:",
    "y:",
    "C:",
    "CON",
    "aux",
    "NUL.txt",
    "::$DATA",
    " ",
    "1",
    "0",
    "20161025",
    "101",
    "102",
    "1902050.V3",
    "secret.txt",
    "\u2024",
    "\uff0e",
    "\xc0\xae",
    "//",
    "\\\\?\\",
    "~",
    "escape.V3",
    "*",
    "?",
    "\u202e",
    "LPT1",
    "a" * 300,
]


def hostile(rng: random.Random) -> str:
    if rng.random() < 0.5:
        prefix = rng.choice(["Y:/", "y:\\", "Y:", "Z:/", "/", "\\\\", ""])
        return prefix + "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 8)))
    parts = ["1", "0", "20161025", "101", "1902050.V3"]
    parts[rng.randrange(len(parts))] = rng.choice(FRAGMENTS)
    return "Y:/" + rng.choice(["/", "\\"]).join(parts)


async def test_2000_hostile_paths_through_the_live_endpoints(fs: FileServerSetup) -> None:
    rng = random.Random(4242)
    allowed = {
        "0",
        retcodes.NO_PLAYBACK_RIGHT.code,
        retcodes.BAD_FILE_NAME.code,
        retcodes.NO_DRIVE_MAPPING.code,
        retcodes.FILE_MISSING.code,
    }
    own = fs.file(OWN_VOICE)
    for i in range(2000):
        raw = hostile(rng)
        suffix = ("", "/videofiledownloadEx")[i % 2]
        status, headers, body = await fs.get(101, suffix, recordId=raw)
        assert status == 200, raw
        assert SECRET not in body, raw
        if headers["Content-Type"].startswith("application/json"):
            assert code(body) in allowed, raw
        else:
            assert body == own or body == fs.file(OWN_VIDEO), raw
