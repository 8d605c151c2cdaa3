"""Reading the trail (``SqlAuditEventReader``) and importing the old ``audit`` rows (migration
0004), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ccgateway.audit.events import Kind, parse
from ccgateway.stores.base import AuditLine, AuditQuery
from ccgateway.stores.schema import async_url, audit_events, migrate, open_engine
from ccgateway.stores.sql import SqlAuditEventReader
from tests.audit_recording import CONFERENCE, OTHER_CONFERENCE, assert_chained, scenario, store
from tests.contract.test_sql_stores import POSTGRES_URL, _postgres_admin
from tests.contract.test_sql_stores import engine as engine  # the fixture, on both databases


def shown(lines: list[AuditLine]) -> list[tuple[str, int, str | None]]:
    """Each line as (writer, seq, its end's "writer#seq" or None)."""
    result = []
    for line in lines:
        event = parse(line.body.encode())
        end = None if line.end is None else parse(line.end.encode())
        result.append((event.writer, event.seq, None if end is None else f"{end.writer}#{end.seq}"))
    return result


async def test_transfers_are_one_line_joined_to_their_end_or_open(engine: AsyncEngine) -> None:
    trail = scenario()
    await store(engine, trail.events)
    reader = SqlAuditEventReader(engine)
    lines = shown(await reader.lines(AuditQuery()))
    assert lines == [
        ("gw_0@2", 2, None),  # open: its run still going
        ("gwx0@1", 7, None),  # open, though an interrupted end names seq 7 of gw_0@1
        *[("gwx0@1", seq, None) for seq in range(6, 0, -1)],
        ("gw_0@1", 8, "gw_0@1#9"),
        ("gw_0@1", 7, "gw_0@2#1"),  # closed by the killed run's next run
        ("gw_0@1", 5, "gw_0@1#6"),
        ("gw_0@1", 3, None),
        ("gw_0@1", 2, "gw_0@1#4"),
        ("gw_0@1", 1, None),  # a session event: a line of its own
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (AuditQuery(agent_id=102), [("gw_0@1", 8), ("gw_0@1", 3)]),
        (AuditQuery(outcome="interrupted"), [("gw_0@1", 7)]),
        (AuditQuery(outcome="refused"), [("gw_0@1", 8)]),
        (AuditQuery(outcome="completed", kind="download"), [("gw_0@1", 2)]),
        (AuditQuery(outcome="open"), [("gw_0@2", 2), ("gwx0@1", 7), ("gw_0@1", 3)]),
        (AuditQuery(kind="head"), [("gw_0@1", 5)]),
        (AuditQuery(kind="session", limit=2), [("gwx0@1", 6), ("gwx0@1", 5)]),
        (AuditQuery(conference_id=OTHER_CONFERENCE), [("gw_0@1", 3)]),
        (AuditQuery(since_ms=1_700_000_100_000), [("gw_0@2", 2)]),
        (AuditQuery(agent_id=101, conference_id=CONFERENCE, limit=1), [("gw_0@2", 2)]),
    ],
)
async def test_lines_filter(
    engine: AsyncEngine, query: AuditQuery, expected: list[tuple[str, int]]
) -> None:
    await store(engine, scenario().events)
    lines = shown(await SqlAuditEventReader(engine).lines(query))
    assert [(writer, seq) for writer, seq, _ in lines] == expected


async def test_raw_events_newest_first_with_filters(engine: AsyncEngine) -> None:
    trail = scenario()
    await store(engine, trail.events)
    reader = SqlAuditEventReader(engine)
    everything = [parse(body.encode()) for body in await reader.events(AuditQuery())]
    assert everything == trail.events[::-1]
    ends = [parse(b.encode()) for b in await reader.events(AuditQuery(outcome="completed"))]
    assert [(e.writer, e.seq, e.name) for e in ends] == [("gw_0@1", 6, "end"), ("gw_0@1", 4, "end")]
    heads = await reader.events(AuditQuery(kind="head"))
    assert [parse(b.encode()).seq for b in heads] == [6, 5]
    assert len(await reader.events(AuditQuery(limit=3))) == 3


# -- migration 0004: the old audit rows, imported once as a legacy writer ------------------------

OLD_ROWS: list[dict[str, Any]] = [
    {
        "time_ms": 1_600_000_000_000,
        "node": "AgentGateway0",
        "interface": "downloadRecordFile",
        "agent_id": 101,
        "conference_id": "conf-1",
        "record_id": "rec-\u00e9",
        "file_type": 0,
        "range": "bytes=0-99",
        "status": 206,
        "bytes_sent": 100,
        "outcome": "completed",
        "retcode": "0",
        "client": "10.0.0.1",
        "duration_ms": 12,
    },
    {
        "time_ms": 1_600_000_001_000,
        "node": "AgentGateway1",
        "interface": "downloadRecordFile",
        "agent_id": 102,
        "conference_id": "conf-1",
        "record_id": "",
        "file_type": 1,
        "range": "",
        "status": 200,
        "bytes_sent": 0,
        "outcome": "head",
        "retcode": "0",
        "client": "10.0.0.2",
        "duration_ms": 1,
    },
    {
        "time_ms": 1_600_000_002_000,
        "node": "AgentGateway0",
        "interface": "downloadFile",
        "agent_id": None,
        "conference_id": "",
        "record_id": "",
        "file_type": None,
        "range": "",
        "status": 200,
        "bytes_sent": 0,
        "outcome": "refused",
        "retcode": "000-003",
        "client": "10.0.0.3",
        "duration_ms": 0,
    },
    {
        "time_ms": 1_600_000_003_000,
        "node": "AgentGateway0",
        "interface": "downloadRecordFile",
        "agent_id": 101,
        "conference_id": "conf-1",
        "record_id": "rec-1",
        "file_type": 0,
        "range": "",
        "status": 200,
        "bytes_sent": 0,
        "outcome": "offloaded",
        "retcode": "0",
        "client": "10.0.0.1",
        "duration_ms": 2,
    },
]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """An empty database: (URL, PostgreSQL schema or None)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite'}", None
        return
    yield POSTGRES_URL, f"m_{uuid.uuid4().hex[:12]}"


async def _at_revision(url: str, schema: str | None, revision: str) -> AsyncEngine:
    connect_args = {"server_settings": {"search_path": schema}} if schema else {}
    engine = create_async_engine(async_url(url), connect_args=connect_args)

    def upgrade(connection: sa.Connection) -> None:
        from alembic import command
        from alembic.config import Config

        from ccgateway.stores import schema as schema_module

        config = Config()
        config.set_main_option(
            "script_location", str(Path(schema_module.__file__).parent / "migrations")
        )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(upgrade)
    return engine


async def test_migration_imports_the_old_rows_as_a_legacy_chain(
    database: tuple[str, str | None],
) -> None:
    url, schema = database
    admin = None
    if schema is not None:
        admin = await _postgres_admin()
        async with admin.begin() as connection:
            await connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        old = await _at_revision(url, schema, "0003")
        old_audit = sa.table("audit", *(sa.column(name) for name in OLD_ROWS[0]))
        async with old.begin() as connection:
            await connection.execute(old_audit.insert(), OLD_ROWS)
            await connection.run_sync(migrate)  # to 0004: the import
        await old.dispose()
        engine = await open_engine(url, search_path=schema)  # at head already: no second import
        try:
            await _check_imported(engine)
        finally:
            await engine.dispose()
    finally:
        if admin is not None:
            async with admin.begin() as connection:
                await connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            await admin.dispose()


async def _check_imported(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        rows = (
            await connection.execute(sa.select(audit_events).order_by(audit_events.c.seq))
        ).all()
        old_table_left = await connection.run_sync(lambda c: sa.inspect(c).has_table("audit"))
    assert not old_table_left  # imported, then dropped: the events replace it
    events = [parse(row.body.encode()) for row in rows]
    assert len(events) == 2 * len(OLD_ROWS)
    (writer,) = {e.writer for e in events}
    assert (
        writer.startswith("legacy@")
        and int(writer.removeprefix("legacy@")) > OLD_ROWS[-1]["time_ms"]
    )
    assert_chained(events)
    starts, ends = events[0::2], events[1::2]
    assert [e.kind for e in starts] == [Kind.DOWNLOAD, Kind.HEAD, Kind.DOWNLOAD, Kind.DOWNLOAD]
    assert [e.fields["outcome"] for e in ends] == ["completed", "completed", "refused", "offloaded"]
    first, first_end = starts[0], ends[0]
    assert (first.time_ms, first.agent_id, first.client) == (1_600_000_000_000, 101, "10.0.0.1")
    assert dict(first.concerns) == {"conference": "conf-1", "record": "rec-\u00e9", "fileType": 0}
    assert first.fields["range"] == "bytes=0-99" and first.fields["node"] == "AgentGateway0"
    assert first_end.time_ms == 1_600_000_000_012
    assert first_end.fields["startSeq"] == first.seq
    assert (first_end.fields["status"], first_end.fields["bytes"]) == (206, 100)
    assert dict(starts[2].concerns) == {} and starts[2].agent_id is None
    assert ends[2].fields["retcode"] == "000-003"
    assert ends[3].fields["bytes"] is None  # offloaded: the gateway did not know the bytes
    # the columns agree with the bodies, so reading finds them
    assert (rows[1].outcome, rows[1].start_seq, rows[0].record_id) == ("completed", 1, "rec-\u00e9")
    lines = await SqlAuditEventReader(engine).lines(AuditQuery(outcome="offloaded"))
    assert [parse(line.body.encode()).seq for line in lines] == [7]
