"""The audit journal (group commit, a failing disk, segments), shipping (batches, idempotent,
retried) and the replay of an earlier run at a node's start."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ccgateway.audit import journal as journal_module
from ccgateway.audit.events import GENESIS, AuditEvent, Kind, Outcome, parse
from ccgateway.audit.journal import SHIPPED, Journal, WriterDir
from ccgateway.audit.shipper import Shipper
from ccgateway.audit.trail import Auditor
from ccgateway.node.clock import ManualClock
from ccgateway.stores.base import AuditEventRow
from ccgateway.stores.schema import audit_events, open_engine
from ccgateway.stores.sql import SqlAuditEventStore


def event(seq: int, writer: str = "n0@1") -> AuditEvent:
    return AuditEvent(writer, seq, 1000 + seq, Kind.ADMIN, "agent_added", 101, "", GENESIS)


def lines_on_disk(directory: Path) -> list[AuditEvent]:
    return [
        parse(line)
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = await open_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield engine
    await engine.dispose()


async def stored(engine: AsyncEngine) -> list[AuditEvent]:
    async with engine.connect() as connection:
        query = sa.select(audit_events.c.body).order_by(audit_events.c.writer, audit_events.c.seq)
        return [parse(str(b).encode()) for b in (await connection.execute(query)).scalars()]


class FlakyStore:
    """An AuditEventStore whose database is down for the first ``down`` inserts."""

    def __init__(self, down: int) -> None:
        self.down = down
        self.rows: dict[tuple[str, int], AuditEventRow] = {}
        self.batches = 0

    async def insert(self, rows: Sequence[AuditEventRow]) -> None:
        if self.down:
            self.down -= 1
            raise ConnectionRefusedError("the database is down")
        self.batches += 1
        for row in rows:
            self.rows.setdefault((row.writer, row.seq), row)

    async def last_writer(self, low: str, below: str) -> str | None:
        return None

    async def open_starts(self, writer: str) -> list[str]:
        return []

    async def interrupted_ends(self, start_seqs: Sequence[int], low: str, below: str) -> list[str]:
        return []


def test_appended_events_are_committed_in_order_and_survive_a_failing_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path, "n0@1")
    for seq in range(1, 101):
        journal.append(event(seq))
    assert journal.flush(10)
    assert [e.seq for e in lines_on_disk(journal.dir.path)] == list(range(1, 101))

    real_pwrite = os.pwrite
    failures = {"left": 3}

    def full_disk(fd: int, data: bytes, offset: int) -> int:
        if failures["left"]:
            failures["left"] -= 1
            real_pwrite(fd, bytes(data)[:7], offset)  # a torn line, as a full disk leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", full_disk)
    journal.append(event(101))
    for _ in range(200):
        if not journal.writable:
            break
        journal.flush(0.01)
    assert not journal.writable  # new downloads are refused from here on
    for seq in range(102, 111):
        journal.append(event(seq))  # kept in memory meanwhile
    assert journal.flush(10)  # the disk took them once it could
    assert journal.writable
    assert [e.seq for e in lines_on_disk(journal.dir.path)] == list(range(1, 111))
    journal.close()


async def test_shipping_is_idempotent_and_deletes_shipped_segments(
    tmp_path: Path, engine: AsyncEngine
) -> None:
    journal = Journal(tmp_path, "n0@1", segment_bytes=2000)
    shipper = Shipper(SqlAuditEventStore(engine), batch=7)
    shipper.add(journal.dir, lambda: journal.committed, lambda: journal.current_segment)
    for seq in range(1, 61):
        journal.append(event(seq))
        if seq % 10 == 0:
            assert journal.flush(10)  # one group commit each
    assert len(journal.dir.segments()) > 2  # rotated once a segment held 2000 bytes
    assert await shipper.drain(10)
    assert [e.seq for e in await stored(engine)] == list(range(1, 61))
    assert journal.dir.shipped == 60
    assert [first for first, _ in journal.dir.segments()] == [journal.current_segment]

    # A crash between an insert and its note: the next run ships the same events again.
    journal.close()
    (journal.dir.path / SHIPPED).write_text("0")
    again = WriterDir(journal.dir.path)
    replay = Shipper(SqlAuditEventStore(engine))
    replay.add(again)
    assert await replay.drain(10)
    assert [e.seq for e in await stored(engine)] == list(range(1, 61))  # once each


async def test_segments_larger_than_a_read_are_shipped_whole_and_in_order(
    tmp_path: Path, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read takes at most ``READ_CHUNK`` bytes of a segment (not the rest of an 8 MiB one for
    each batch); a segment longer than that is read on, chunk by chunk, before the next."""
    monkeypatch.setattr(journal_module, "READ_CHUNK", 700)  # two or three events
    journal = Journal(tmp_path, "n0@1", segment_bytes=5000)
    shipper = Shipper(SqlAuditEventStore(engine), batch=50)
    shipper.add(journal.dir, lambda: journal.committed, lambda: journal.current_segment)
    for seq in range(1, 121):
        journal.append(event(seq))
        if seq % 40 == 0:
            assert journal.flush(10)  # one group commit each: segments of 40 events
    assert len(journal.dir.segments()) == 3
    assert await shipper.drain(10)
    assert [e.seq for e in await stored(engine)] == list(range(1, 121))
    journal.close()


async def test_a_database_outage_loses_nothing(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "n0@1")
    store = FlakyStore(down=4)
    shipper = Shipper(store, batch=10)
    shipper.add(journal.dir, lambda: journal.committed, lambda: journal.current_segment)
    task = asyncio.create_task(shipper.run())
    for seq in range(1, 51):
        journal.append(event(seq))
    assert journal.flush(10)
    for _ in range(200):
        if len(store.rows) == 50:
            break
        await asyncio.sleep(0.05)
    task.cancel()
    assert sorted(seq for _, seq in store.rows) == list(range(1, 51))
    assert store.down == 0 and journal.dir.shipped == 50
    journal.close()


async def test_a_new_run_replays_the_last_journal_and_closes_its_open_transfers(
    tmp_path: Path, engine: AsyncEngine
) -> None:
    root = tmp_path / "audit"
    store = SqlAuditEventStore(engine)
    first = Auditor.for_node(root, "n0", ManualClock(), store)
    done = first.start(
        Kind.DOWNLOAD, agent_id=101, client="10.0.0.1", concerns={"conference": "c1"}, fields={}
    )
    done.end(Outcome.COMPLETED, {"status": 200})
    first.start(Kind.HEAD, agent_id=102, client="10.0.0.2", concerns={"record": "r"}, fields={})
    first.record(Kind.ADMIN, "agent_added", agent_id=103)
    # killed: its journal is on disk, nothing was shipped, its lock is gone with the process
    first.journal.close()
    first.journal.dir.unlock()
    assert await stored(engine) == []

    second = Auditor.for_node(root, "n0", ManualClock(), store)
    second.run(recover=True)
    for _ in range(200):
        events = await stored(engine)
        if any(e.writer == second.writer for e in events):
            break
        await asyncio.sleep(0.05)
    await second.aclose()
    events = await stored(engine)
    assert [(e.writer, e.seq, e.name) for e in events if e.writer == first.writer] == [
        (first.writer, 1, "start"),
        (first.writer, 2, "end"),
        (first.writer, 3, "start"),
        (first.writer, 4, "agent_added"),
    ]
    (closed,) = [e for e in events if e.writer == second.writer]
    assert (closed.seq, closed.kind, closed.name, closed.agent_id) == (1, Kind.HEAD, "end", 102)
    assert closed.fields["outcome"] == "interrupted"
    assert (closed.fields["startWriter"], closed.fields["startSeq"]) == (first.writer, 3)
    assert closed.fields["bytes"] is None
    assert not root.exists() or not list(root.iterdir())  # both journals shipped and gone

    # A third run finds nothing left open: the second run's end closed it.
    third = Auditor.for_node(root, "n0", ManualClock(), store)
    third.run(recover=True)
    await asyncio.sleep(0.3)
    await third.aclose()
    assert len(await stored(engine)) == len(events)


async def test_a_lost_journal_is_made_up_for_from_the_database(
    tmp_path: Path, engine: AsyncEngine
) -> None:
    store = SqlAuditEventStore(engine)
    first = Auditor.for_node(tmp_path / "a", "n0", ManualClock(), store)
    first.run(recover=False)
    first.start(Kind.DOWNLOAD, agent_id=101, client="", concerns={}, fields={})
    assert await first.drain()
    first.journal.close()  # killed, and its DATA_DIR lost: the database has its start
    second = Auditor.for_node(tmp_path / "b", "n0", ManualClock(), store)
    second.run(recover=True)
    for _ in range(200):
        if any(e.writer == second.writer for e in await stored(engine)):
            break
        await asyncio.sleep(0.05)
    await second.aclose()
    (closed,) = [e for e in await stored(engine) if e.writer == second.writer]
    assert closed.fields["startWriter"] == first.writer and closed.fields["startSeq"] == 1
