"""``ccgateway audit`` reads the trail; ``ccgateway agents`` and ``recordings`` write admin
events (issue 15)."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccgateway.audit.events import Kind
from ccgateway.cli import cli
from ccgateway.config import Settings
from ccgateway.gateway import Gateway, open_gateway
from ccgateway.node.clock import Clock
from ccgateway.stores.schema import open_engine
from tests.audit_recording import MemoryRecorder, assert_chained, scenario, store


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    return CliRunner(env={"CCGW_DATA_DIR": str(tmp_path / "data")})


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> MemoryRecorder:
    """The recorder every CLI command's gateway writes to."""
    recording = MemoryRecorder("cli:test:1:1")

    @asynccontextmanager
    async def opened(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Gateway]:
        async with open_gateway(settings, clock, recorder=recording) as gateway:
            yield gateway

    for module in ("agents", "recordings"):
        monkeypatch.setattr(
            importlib.import_module(f"ccgateway.cli.{module}"), "open_gateway", opened
        )
    return recording


def test_agent_commands_are_admin_events(runner: CliRunner, recorder: MemoryRecorder) -> None:
    for args, exit_code in (
        (["agents", "add", "101", "--password", "first-secret", "--vdn", "3"], 0),
        (["agents", "passwd", "101", "--password", "second-secret"], 0),
        (["agents", "signout", "101"], 0),
        (["agents", "remove", "101"], 0),
        (["agents", "remove", "101"], 1),  # no such agent any more: refused, no event
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == exit_code, (args, result.output)
    assert [(e.name, e.agent_id, e.client) for e in recorder.events] == [
        ("agent_added", 101, ""),
        ("password_changed", 101, ""),
        ("agent_signed_out", 101, ""),
        ("agent_removed", 101, ""),
    ]
    assert recorder.events[0].fields == {"vdn": 3, "role": "agent", "videoDownload": True}
    every_byte = b"".join(e.canonical() for e in recorder.events)
    assert b"first-secret" not in every_byte and b"second-secret" not in every_byte
    assert_chained(recorder.events)


def test_recording_commands_are_admin_events(
    runner: CliRunner, recorder: MemoryRecorder, tmp_path: Path
) -> None:
    hd = tmp_path / "hd.mp4"
    hd.write_bytes(os.urandom(2000))
    add = ["recordings", "add", "conf-1", "--participants", "101", "--vdn", "1", "--hd", str(hd)]
    for args in (
        [*add[:3], "--record", "rec-1", *add[3:]],
        [*add[:3], "--record", "rec-2", *add[3:]],
        ["recordings", "remove", "conf-1", "--record", "rec-1"],
        ["recordings", "remove", "conf-1"],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)
    assert [(e.kind, e.name, dict(e.concerns)) for e in recorder.events] == [
        (Kind.ADMIN, "register_recording", {"conference": "conf-1", "record": "rec-1"}),
        (Kind.ADMIN, "register_recording", {"conference": "conf-1", "record": "rec-2"}),
        (Kind.ADMIN, "remove_recording", {"record": "rec-1"}),
        (Kind.ADMIN, "remove_conference", {"conference": "conf-1"}),
    ]


def stored_scenario(tmp_path: Path) -> None:
    async def run() -> None:
        engine = await open_engine(f"sqlite:///{tmp_path / 'data' / 'ccgateway.db'}")
        await store(engine, scenario().events)
        await engine.dispose()

    asyncio.run(run())


def test_audit_lists_transfers_joined_and_filters(runner: CliRunner, tmp_path: Path) -> None:
    stored_scenario(tmp_path)
    result = runner.invoke(cli, ["audit", "--json", "--agent", "101", "--kind", "download"])
    assert result.exit_code == 0, result.output
    lines = json.loads(result.output)
    assert [(line["writer"], line["seq"], line["outcome"]) for line in lines] == [
        ("gw_0@2", 2, "open"),
        ("gw_0@1", 7, "interrupted"),
        ("gw_0@1", 2, "completed"),
    ]
    completed = lines[2]
    assert completed["end"] == {
        "writer": "gw_0@1",
        "seq": 4,
        "time": completed["end"]["time"],
        "fields": {
            "status": 200,
            "retcode": "0",
            "bytes": 1000,
            "ranges": None,
            "durationMs": 5,
            "outcome": "completed",
            "startSeq": 2,
        },
    }
    assert lines[1]["end"]["writer"] == "gw_0@2" and lines[0]["end"] is None
    result = runner.invoke(cli, ["audit", "--outcome", "refused"])
    (text,) = result.output.splitlines()
    assert "agent 102" in text and "refused" in text and "104-002" in text and "gw_0@1#8" in text
    result = runner.invoke(cli, ["audit", "--kind", "session", "--limit", "1"])
    (text,) = result.output.splitlines()
    assert "sign_in" in text and "gwx0@1#6" in text
    result = runner.invoke(cli, ["audit", "--kind", "nonsense"])
    assert result.exit_code == 2 and "nonsense" in result.output


def test_audit_events_shows_the_raw_events(runner: CliRunner, tmp_path: Path) -> None:
    stored_scenario(tmp_path)
    result = runner.invoke(cli, ["audit", "--events", "--json", "--agent", "102"])
    assert result.exit_code == 0, result.output
    events = json.loads(result.output)
    assert [(e["writer"], e["seq"], e["name"]) for e in events] == [
        ("gw_0@1", 9, "end"),
        ("gw_0@1", 8, "start"),
        ("gw_0@1", 3, "start"),
    ]
    assert set(events[0]) == {
        "v",
        "writer",
        "seq",
        "time",
        "kind",
        "name",
        "agent",
        "client",
        "concerns",
        "fields",
        "prev",
    }
    result = runner.invoke(cli, ["audit", "--events", "--conference", "conf-2"])
    (text,) = result.output.splitlines()
    assert "gw_0@1#3" in text and "download start" in text and '"r9"' in text
