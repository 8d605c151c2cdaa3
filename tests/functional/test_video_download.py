"""``videofiledownload`` over real HTTP: retcodes, renditions, ranges, validators and rights."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest
from multidict import CIMultiDict

from ccgateway import retcodes
from ccgateway.stores.base import FileType
from tests.conftest import GatewayFactory
from tests.functional.conftest import (
    CONF,
    OTHER_CONF,
    REC0,
    REC1,
    Recordings,
    add_download_agents,
    register_demo,
)


async def get(
    rec: Recordings,
    agent_id: int,
    guid: str | None,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    **query: str,
) -> tuple[int, CIMultiDict[str], bytes]:
    sent = dict(headers or {})
    if guid is not None:
        sent["Guid"] = guid
    client = rec.gw.client
    async with client.http.request(
        method, client.base + rec.url(agent_id, **query), headers=sent
    ) as response:
        return response.status, response.headers.copy(), await response.read()


def retcode(body: bytes) -> str:
    import json

    code: str = json.loads(body)["retcode"]
    return code


async def test_each_file_type_with_its_headers(rec: Recordings) -> None:
    guid = await rec.guid(101)
    for file_type in FileType:
        status, headers, body = await get(
            rec, 101, guid, conferenceId=CONF, recordId=REC0, fileType=str(int(file_type))
        )
        assert status == 200
        assert body == rec.data(REC0, file_type)
        sha = rec.sha256(REC0, file_type)
        assert headers["Content-Type"] == "application/octet-stream;charset=utf-8"
        assert headers["Content-Length"] == str(len(body))
        assert headers["ETag"] == f'"sha256-{sha}"'
        assert headers["Accept-Ranges"] == "bytes"
        assert headers["Cache-Control"] == "private, no-store"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "Last-Modified" in headers
        name = f"{CONF}-{REC0}-{file_type.name.lower()}.mp4"
        assert headers["Content-Disposition"] == (
            f"attachment; filename=\"{name}\"; filename*=UTF-8''{name}"
        )
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        assert headers["Repr-Digest"] == f"sha-256=:{digest}:"


async def test_record_id_defaults_to_the_first_recording(rec: Recordings) -> None:
    guid = await rec.guid(102)
    status, _, body = await get(rec, 102, guid, conferenceId=CONF, fileType="0")
    assert status == 200 and body == rec.data(REC0, FileType.HD)
    status, _, body = await get(rec, 102, guid, conferenceId=CONF, fileType="0", recordId=REC1)
    assert status == 200 and body == rec.data(REC1, FileType.HD)
    status, _, body = await get(rec, 102, guid, conferenceId=CONF, fileType="0", recordId="")
    assert body == rec.data(REC0, FileType.HD)


async def test_head_answers_the_same_headers_without_a_body(rec: Recordings) -> None:
    guid = await rec.guid(101)
    _, get_headers, _ = await get(rec, 101, guid, conferenceId=CONF, fileType="1")
    status, head_headers, body = await get(rec, 101, guid, "HEAD", conferenceId=CONF, fileType="1")
    assert status == 200 and body == b""
    for name in (
        "Content-Length",
        "ETag",
        "Last-Modified",
        "Repr-Digest",
        "Content-Disposition",
        "Accept-Ranges",
        "Content-Type",
    ):
        assert head_headers[name] == get_headers[name], name


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, None),
        ("bytes=-500", -500, None),
        ("bytes=10-10", 10, 10),
        ("bytes=70000-999999999", 70000, None),
    ],
)
async def test_ranges(rec: Recordings, header: str, first: int, last: int | None) -> None:
    guid = await rec.guid(101)
    data = rec.data(REC0, FileType.AUX)
    status, headers, body = await get(
        rec, 101, guid, headers={"Range": header}, conferenceId=CONF, fileType="2"
    )
    expected = data[first:] if last is None else data[first : last + 1]
    assert status == 206 and body == expected
    start = first if first >= 0 else len(data) + first
    assert headers["Content-Range"] == f"bytes {start}-{start + len(expected) - 1}/{len(data)}"
    assert headers["Content-Length"] == str(len(expected))
    assert headers["Repr-Digest"].startswith("sha-256=:")  # of the whole file, on a 206 too


async def test_unsatisfiable_range_is_416(rec: Recordings) -> None:
    guid = await rec.guid(101)
    status, headers, _ = await get(
        rec, 101, guid, headers={"Range": "bytes=70001-"}, conferenceId=CONF, fileType="2"
    )
    assert status == 416 and headers["Content-Range"] == "bytes */70001"


async def test_malformed_range_is_ignored(rec: Recordings) -> None:
    guid = await rec.guid(101)
    status, _, body = await get(
        rec, 101, guid, headers={"Range": "bytes=abc"}, conferenceId=CONF, fileType="2"
    )
    assert status == 200 and body == rec.data(REC0, FileType.AUX)


async def test_if_range_strong_match_and_mismatch(rec: Recordings) -> None:
    guid = await rec.guid(101)
    etag = f'"sha256-{rec.sha256(REC0, FileType.SD)}"'
    status, _, body = await get(
        rec,
        101,
        guid,
        conferenceId=CONF,
        fileType="1",
        headers={"Range": "bytes=5-9", "If-Range": etag},
    )
    assert status == 206 and body == rec.data(REC0, FileType.SD)[5:10]
    for stale in ('"sha256-0000"', "W/" + etag):
        status, _, body = await get(
            rec,
            101,
            guid,
            conferenceId=CONF,
            fileType="1",
            headers={"Range": "bytes=5-9", "If-Range": stale},
        )
        assert status == 200 and body == rec.data(REC0, FileType.SD)


async def test_if_none_match_is_304(rec: Recordings) -> None:
    guid = await rec.guid(101)
    etag = f'"sha256-{rec.sha256(REC0, FileType.HD)}"'
    status, headers, body = await get(
        rec, 101, guid, conferenceId=CONF, fileType="0", headers={"If-None-Match": etag}
    )
    assert status == 304 and body == b"" and headers["ETag"] == etag
    assert "Last-Modified" in headers and headers["Cache-Control"] == "private, no-store"
    status, headers, _ = await get(
        rec,
        101,
        guid,
        conferenceId=CONF,
        fileType="0",
        headers={"If-None-Match": etag, "Want-Repr-Digest": "sha-256=1"},
    )
    # A 304 has no body: no Content-Type, Content-Disposition or Repr-Digest to describe one.
    assert status == 304
    assert not {"Content-Type", "Content-Disposition", "Repr-Digest"} & set(headers)
    status, _, _ = await get(
        rec, 101, guid, conferenceId=CONF, fileType="0", headers={"If-None-Match": '"other"'}
    )
    assert status == 200


async def test_resumed_download_reassembles_to_the_same_sha256(rec: Recordings) -> None:
    guid = await rec.guid(101)
    status, headers, whole = await get(rec, 101, guid, "HEAD", conferenceId=CONF, fileType="0")
    size = int(headers["Content-Length"])
    half = size // 2
    _, first_headers, first = await get(
        rec, 101, guid, conferenceId=CONF, fileType="0", headers={"Range": f"bytes=0-{half - 1}"}
    )
    _, _, rest = await get(
        rec,
        101,
        guid,
        conferenceId=CONF,
        fileType="0",
        headers={"Range": f"bytes={half}-", "If-Range": first_headers["ETag"]},
    )
    joined = first + rest
    assert len(joined) == size
    digest = base64.b64decode(first_headers["Repr-Digest"].split(":")[1])
    assert hashlib.sha256(joined).digest() == digest


@pytest.mark.parametrize(
    ("agent_id", "conference", "allowed"),
    [
        (101, CONF, True),
        (102, CONF, True),
        (201, CONF, True),
        (202, CONF, False),
        (104, CONF, False),
        (103, OTHER_CONF, True),
        (202, OTHER_CONF, True),
        (101, OTHER_CONF, False),
    ],
)
async def test_who_may_download(
    rec: Recordings, agent_id: int, conference: str, allowed: bool
) -> None:
    guid = await rec.guid(agent_id)
    status, _, body = await get(rec, agent_id, guid, conferenceId=conference, fileType="0")
    if allowed:
        assert status == 200 and len(body) > 0
    else:
        assert status == 200 and retcode(body) == retcodes.NO_SUCH_CONFERENCE.code


async def test_a_stranger_gets_exactly_the_nonexistent_answer(rec: Recordings) -> None:
    guid = await rec.guid(104)
    _, foreign_headers, foreign = await get(rec, 104, guid, conferenceId=CONF, fileType="0")
    _, absent_headers, absent = await get(rec, 104, guid, conferenceId="no-such-conf", fileType="0")
    assert foreign == absent
    assert foreign_headers["Content-Type"] == absent_headers["Content-Type"]


async def test_retcodes_in_documented_order(rec: Recordings) -> None:
    guid = await rec.guid(101)
    cases: list[tuple[int, str | None, dict[str, str], retcodes.Retcode]] = [
        (101, guid, {"fileType": "0"}, retcodes.BAD_CONFERENCE_ID),
        (101, guid, {"conferenceId": "../etc/passwd", "fileType": "0"}, retcodes.BAD_CONFERENCE_ID),
        (101, guid, {"conferenceId": CONF}, retcodes.BAD_FILE_TYPE),
        (101, guid, {"conferenceId": CONF, "fileType": "3"}, retcodes.BAD_FILE_TYPE),
        (101, guid, {"conferenceId": CONF, "fileType": "hd"}, retcodes.BAD_FILE_TYPE),
        (
            101,
            guid,
            {"conferenceId": CONF, "fileType": "0", "recordId": "a/b"},
            retcodes.NO_SUCH_RECORD,
        ),
        (101, None, {"conferenceId": CONF, "fileType": "0"}, retcodes.NO_RIGHT),
        (101, "bad", {"conferenceId": CONF, "fileType": "0"}, retcodes.NO_RIGHT),
        (102, guid, {"conferenceId": CONF, "fileType": "0"}, retcodes.NOT_SIGNED_IN),
        (101, guid, {"conferenceId": "nope", "fileType": "0"}, retcodes.NO_SUCH_CONFERENCE),
        (
            101,
            guid,
            {"conferenceId": CONF, "fileType": "0", "recordId": "nope"},
            retcodes.NO_SUCH_RECORD,
        ),
        (
            101,
            guid,
            {"conferenceId": CONF, "fileType": "1", "recordId": REC1},
            retcodes.NO_SUCH_FILE_TYPE,
        ),
    ]
    for agent_id, sent_guid, query, expected in cases:
        response, body = await rec.gw.client.call("GET", rec.url(agent_id, **query), guid=sent_guid)
        assert response.status == 200, query
        assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
        assert body["retcode"] == expected.code, (query, body)
    no_right = await rec.guid(105)
    _, _, body = await get(rec, 105, no_right, conferenceId=CONF, fileType="0")
    assert retcode(body) == retcodes.NO_VIDEO_RIGHT.code


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("VIDEO_DOWNLOAD_FLAG", retcodes.VIDEO_DOWNLOAD_OFF),
        ("IF_SUPPORT_VIDEO", retcodes.VIDEO_EVENTS_OFF),
    ],
)
async def test_switches(
    make_gateway: GatewayFactory, tmp_path: Path, key: str, expected: retcodes.Retcode
) -> None:
    gw = await make_gateway(**{key: "OFF"})
    await add_download_agents(gw)
    rec = Recordings(gw, await register_demo(gw, tmp_path / "media"))
    guid = await rec.guid(101)
    _, _, body = await get(rec, 101, guid, conferenceId=CONF, fileType="0")
    assert retcode(body) == expected.code


async def test_missing_or_changed_file_is_108_008_not_a_wrong_digest(rec: Recordings) -> None:
    guid = await rec.guid(101)
    path = rec.files[(REC0, FileType.SD)]
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, new bytes and mtime
    os.utime(path, ns=(1, 1))
    _, _, body = await get(rec, 101, guid, conferenceId=CONF, fileType="1")
    assert retcode(body) == retcodes.SOURCE_FAILED.code
    rec.files[(REC0, FileType.AUX)].unlink()
    _, _, body = await get(rec, 101, guid, conferenceId=CONF, fileType="2")
    assert retcode(body) == retcodes.SOURCE_FAILED.code
