from __future__ import annotations

import pytest

from ccgateway import retcodes
from ccgateway.errors import GatewayError
from ccgateway.recordings.announcements import conference_record_content
from ccgateway.recordings.catalog import is_id, media_type_of
from ccgateway.recordings.downloads import parse_file_type
from ccgateway.stores.base import ConferenceRecord, FileType, RecordingRecord


@pytest.mark.parametrize("value", ["7a008307-34ad-435b-bccd-222be5ac5385", "a", "rec_1.2:x"])
def test_ids(value: str) -> None:
    assert is_id(value)


@pytest.mark.parametrize("value", ["", "-a", "../x", "a/b", "a b", "x" * 65, "é", "a\x00"])
def test_not_ids(value: str) -> None:
    assert not is_id(value)


def test_file_types() -> None:
    assert parse_file_type("0") is FileType.HD
    assert parse_file_type(" 2 ") is FileType.AUX
    for bad in (None, "", "3", "-1", "hd", "0x0", "00"):
        with pytest.raises(GatewayError) as info:
            parse_file_type(bad)
        assert info.value.retcode is retcodes.BAD_FILE_TYPE


def test_media_types() -> None:
    assert media_type_of("/x/a.MP4") == "video/mp4"
    assert media_type_of("/x/a") == "application/octet-stream"
    assert media_type_of("/x.d/a") == "application/octet-stream"
    assert media_type_of("https://rec/a.mp4?sig=x.y") == "video/mp4"
    assert media_type_of("s3://bucket/dir.v/a.webm") == "video/webm"


def test_record_event_content_lists_every_recording_in_order() -> None:
    first = RecordingRecord("r-a", "c1", 0, 0)
    second = RecordingRecord("r-b", "c1", 3, 0)
    conference = ConferenceRecord(
        "c1", 1, "1-2", None, None, frozenset({101}), location_id="255", recordings=(first, second)
    )
    content = conference_record_content(conference, second)
    assert content["fileName"] == "conferenceId=c1;recordId0=r-a;recordId1=r-b;"
    assert content["recordID"] == "r-b"
    assert content["fileMediaType"] == 2 and content["locationId"] == "255"
    assert content["callId"] == "1-2"
