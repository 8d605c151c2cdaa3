"""The public surface of ``ccgateway.client`` and its pure parts: targets, events, progress."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest

import ccgateway.client
from ccgateway.client import (
    AgentClient,
    AgentEvent,
    FileType,
    RecordFile,
    RetryPolicy,
    TerminalProgress,
    VideoFile,
    VideoFileEx,
)
from ccgateway.client._connection import base_url, parse_fingerprint, ssl_option
from ccgateway.client._events import EventBuffer


def test_the_public_api_is_this_list() -> None:
    assert ccgateway.client.__all__ == [
        "AgentClient",
        "AgentEvent",
        "CertificateError",
        "ClientError",
        "DownloadResult",
        "FileType",
        "Progress",
        "ProtocolError",
        "RecordFile",
        "RefusedError",
        "RetryPolicy",
        "SignedOutError",
        "SyncAgentClient",
        "Target",
        "TerminalProgress",
        "TransportError",
        "VerificationError",
        "VideoFile",
        "VideoFileEx",
    ]
    for name in ccgateway.client.__all__:
        assert getattr(ccgateway.client, name) is not None


def test_the_password_never_shows() -> None:
    client = AgentClient("https://gw:8043", 101, "s3cret-pw")
    assert "s3cret" not in repr(client) and "s3cret" not in str(vars(client)["_conn"].__dict__)


def test_targets_speak_the_wire() -> None:
    assert VideoFile("c-1", None, FileType.AUX).request(101) == (
        "recordfile/101/videofiledownload",
        {"conferenceId": "c-1", "fileType": "2"},
    )
    assert VideoFile("c-1", "r-1").request(101)[1]["recordId"] == "r-1"
    assert VideoFileEx("Y:/1/0/20201202/101/1.mp4", "255").request(101) == (
        "recordfile/101/videofiledownloadEx",
        {"recordId": "Y:/1/0/20201202/101/1.mp4", "locationId": "255"},
    )
    assert RecordFile("Y:/1/0/x.V3", 2).request(101) == (
        "recordfile/101",
        {"recordId": "Y:/1/0/x.V3", "filetype": "2"},
    )
    assert VideoFile("c-1").key == "c-1-first-hd"
    assert RecordFile("Y:/1/0/20161025/101/x.V3").key == "Y_1_0_20161025_101_x.V3"
    assert RecordFile("../..").key == "download"
    with pytest.raises(ValueError):
        RecordFile("Y:/x", 3)


def test_file_types() -> None:
    assert [FileType.from_label(t) for t in ("hd", "SD", "2")] == list(FileType)
    with pytest.raises(ValueError, match="hd, sd or aux"):
        FileType.from_label("4k")


def test_record_events_become_download_targets() -> None:
    mcu = AgentEvent.from_wire(
        {
            "eventType": "AgentMediaEvent_Record",
            "workNo": "101",
            "content": {
                "recordID": "r-2",
                "fileName": "conferenceId=c-1;recordId0=r-1;recordId1=r-2;",
                "fileMediaType": 2,
                "locationId": "255",
            },
        }
    )
    assert mcu.downloads((FileType.HD, FileType.SD)) == (
        VideoFile("c-1", "r-2", FileType.HD),
        VideoFile("c-1", "r-2", FileType.SD),
    )
    video = {"fileName": "Y:/1/0/20201202/503/1.mp4", "fileMediaType": 2, "locationId": "65535"}
    voice = {"fileName": "Y:/6/0/20161025/2001/2.V3", "fileMediaType": "1"}
    event = {"eventType": "AgentMediaEvent_Record", "workNo": "503"}
    assert AgentEvent.from_wire({**event, "content": video}).downloads() == (
        VideoFileEx("Y:/1/0/20201202/503/1.mp4", "65535"),
    )
    assert AgentEvent.from_wire({**event, "content": voice}).downloads() == (
        RecordFile("Y:/6/0/20161025/2001/2.V3"),
    )
    assert AgentEvent.from_wire({"eventType": "AgentState_Ready", "workNo": 1}).downloads() == ()


async def test_the_event_buffer_drops_the_oldest(caplog: pytest.LogCaptureFixture) -> None:
    buffer = EventBuffer(2)
    with caplog.at_level(logging.WARNING, "ccgateway.client"):
        for kind in ("a", "b", "c"):
            buffer.put(AgentEvent(kind, "101"))
    assert "dropped the oldest event a" in caplog.text and buffer.dropped == 1
    buffer.end()
    assert [(await buffer.get()), (await buffer.get())] == [
        AgentEvent("b", "101"),
        AgentEvent("c", "101"),
    ]
    assert await buffer.get() is None and await asyncio.wait_for(buffer.get(), 1) is None


def test_server_urls_and_trust_options() -> None:
    assert str(base_url("https://gw:8043")) == "https://gw:8043/agentgateway/resource/"
    assert str(base_url("http://p/gw/agentgateway/resource")) == (
        "http://p/gw/agentgateway/resource/"
    )
    with pytest.raises(ValueError):
        base_url("gw:8043")
    assert parse_fingerprint("AB:" * 31 + "CD") == bytes([0xAB] * 31 + [0xCD])
    with pytest.raises(ValueError, match="64 hex digits"):
        parse_fingerprint("AB:CD")
    with pytest.raises(ValueError, match="not both"):
        ssl_option(base_url("https://gw"), "ca.pem", "00" * 32)
    with pytest.raises(ValueError, match="CA file"):
        ssl_option(base_url("https://gw"), "/nonexistent/ca.pem", None)


def test_the_progress_line() -> None:
    now = [0.0]
    out = io.StringIO()
    bar = TerminalProgress(out, interactive=False, clock=lambda: now[0])
    bar(0, 10 * 1024 * 1024)
    now[0] = 2.0
    bar(4 * 1024 * 1024, 10 * 1024 * 1024)
    assert bar.line() == " 40% [=========>              ]  4.0 MiB / 10.0 MiB  2.0 MiB/s  ETA 0:03"
    bar.finish()
    assert out.getvalue().count("\n") == 3
    files = TerminalProgress(io.StringIO(), interactive=True, clock=lambda: now[0])
    files.file("a")(100, None)
    assert files.line() == "100 B"


def test_retry_delays_grow_and_stop_growing() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=4.0)
    assert 0.75 <= policy.delay(1) <= 1.25 and 3.0 <= policy.delay(9) <= 5.0
