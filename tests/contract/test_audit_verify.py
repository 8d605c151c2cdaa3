"""``audit verify``'s walk: it names the first changed, removed, inserted or reordered event of a
chain, the same on SQLite and PostgreSQL, and passes intact chains with their heads; with the
local journal, events only there are "not yet shipped", and a journal that disagrees is named."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ccgateway.audit import verify as verify_module
from ccgateway.audit.events import AuditEvent, canonical
from ccgateway.audit.journal_files import read_journal
from ccgateway.audit.verify import Head, Problem, Report, verify
from ccgateway.stores.audit_rows import SqlAuditRows
from ccgateway.stores.schema import open_engine
from tests.audit_chains import chain, execute, forged, journal, store
from tests.contract.test_sql_stores import POSTGRES_URL, _postgres_admin

W = "AgentGateway0@1764990000000"
OTHERS = ("AgentGateway1@1764990000500", "cli:host:4242:1764990001000")


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated database: SQLite in a file, or a schema of its own on the shared PostgreSQL."""
    if request.param == "sqlite":
        sqlite = await open_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
        yield sqlite
        await sqlite.dispose()
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = await _postgres_admin()
    async with admin.begin() as connection:
        await connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        postgres = await open_engine(POSTGRES_URL, search_path=schema)
        yield postgres
        await postgres.dispose()
    finally:
        async with admin.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = await open_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield engine
    await engine.dispose()


async def walk(engine: AsyncEngine, **options: object) -> Report:
    return await verify(SqlAuditRows(engine).batches(size=7), jobs=1, **options)  # type: ignore[arg-type]


async def three_writers(engine: AsyncEngine) -> dict[str, list[AuditEvent]]:
    chains = {W: chain(W, 10), OTHERS[0]: chain(OTHERS[0], 13), OTHERS[1]: chain(OTHERS[1], 1)}
    for events in chains.values():
        await store(engine, events)
    return chains


async def test_intact_chains_of_several_writers_report_their_heads(engine: AsyncEngine) -> None:
    chains = await three_writers(engine)
    report = await walk(engine)
    assert report.intact
    heads = {c.writer: (c.events, c.head, c.broken) for c in report.chains}
    assert heads == {
        writer: (len(events), Head(events[-1].seq, events[-1].digest()), None)
        for writer, events in chains.items()
    }


async def test_an_empty_trail_is_intact(engine: AsyncEngine) -> None:
    report = await walk(engine)
    assert report.intact and report.chains == []


async def _shift_up_from(engine: AsyncEngine, seq: int) -> None:
    """Renumber W's rows from ``seq`` on one higher (columns only), freeing ``seq``."""
    await execute(
        engine,
        "UPDATE audit_events SET seq = -seq - 1 WHERE writer = :w AND seq >= :s",
        w=W,
        s=seq,
    )
    await execute(engine, "UPDATE audit_events SET seq = -seq WHERE writer = :w AND seq < 0", w=W)


async def _move(engine: AsyncEngine, moves: dict[int, int]) -> None:
    """Give W's rows new seqs (``old: new``), all at once."""
    for old in moves:
        await execute(
            engine, "UPDATE audit_events SET seq = :t WHERE writer = :w AND seq = :s", w=W, s=old,
            t=-old,
        )  # fmt: skip
    for old, new in moves.items():
        await execute(
            engine, "UPDATE audit_events SET seq = :t WHERE writer = :w AND seq = :s", w=W, s=-old,
            t=new,
        )  # fmt: skip


async def changed_body(engine: AsyncEngine, events: list[AuditEvent]) -> None:
    """Event 5 rewritten (another agent), canonical, its columns made to agree."""
    original = events[4]
    edited = AuditEvent(**{**original.__dict__, "agent_id": 999})
    await execute(
        engine,
        "UPDATE audit_events SET body = :b, agent_id = 999 WHERE writer = :w AND seq = 5",
        b=edited.canonical().decode(),
        w=W,
    )


async def changed_column(engine: AsyncEngine, _events: list[AuditEvent]) -> None:
    await execute(
        engine, "UPDATE audit_events SET agent_id = 999 WHERE writer = :w AND seq = 5", w=W
    )


async def changed_encoding(engine: AsyncEngine, events: list[AuditEvent]) -> None:
    """Same document, not the canonical bytes (a space after a comma)."""
    body = events[4].canonical().decode().replace(",", ", ", 1)
    await execute(
        engine, "UPDATE audit_events SET body = :b WHERE writer = :w AND seq = 5", b=body, w=W
    )


async def removed(engine: AsyncEngine, _events: list[AuditEvent]) -> None:
    await execute(engine, "DELETE FROM audit_events WHERE writer = :w AND seq = 5", w=W)


async def removed_and_renumbered(engine: AsyncEngine, _events: list[AuditEvent]) -> None:
    await execute(engine, "DELETE FROM audit_events WHERE writer = :w AND seq = 5", w=W)
    await _move(engine, {seq: seq - 1 for seq in range(6, 11)})


async def inserted_with_a_good_prev(engine: AsyncEngine, events: list[AuditEvent]) -> None:
    """A forged event 5 linked to event 4; the real 5..10 renumbered 6..11."""
    await _shift_up_from(engine, 5)
    await store(engine, [forged(W, 5, events[3].digest())])


async def inserted_with_any_prev(engine: AsyncEngine, events: list[AuditEvent]) -> None:
    await _shift_up_from(engine, 5)
    await store(engine, [forged(W, 5, events[0].digest())])


async def reordered(engine: AsyncEngine, _events: list[AuditEvent]) -> None:
    await _move(engine, {5: 6, 6: 5})


async def reordered_further(engine: AsyncEngine, _events: list[AuditEvent]) -> None:
    """Event 5 moved after event 8."""
    await _move(engine, {5: 8, 6: 5, 7: 6, 8: 7})


Tamper = Callable[[AsyncEngine, list[AuditEvent]], Awaitable[None]]


@pytest.mark.parametrize(
    ("tamper", "seq", "problem"),
    [
        (changed_body, 5, Problem.CHANGED),
        (changed_column, 5, Problem.CHANGED),
        (changed_encoding, 5, Problem.CHANGED),
        (removed, 5, Problem.REMOVED),
        (removed_and_renumbered, 5, Problem.REMOVED),
        (inserted_with_a_good_prev, 5, Problem.INSERTED),
        (inserted_with_any_prev, 5, Problem.INSERTED),
        (reordered, 5, Problem.REORDERED),
        (reordered_further, 5, Problem.REORDERED),
    ],
)
async def test_the_first_bad_event_is_named_with_what_happened(
    engine: AsyncEngine, tamper: Tamper, seq: int, problem: Problem
) -> None:
    chains = await three_writers(engine)
    await tamper(engine, chains[W])
    report = await walk(engine)
    assert not report.intact
    by_writer = {c.writer: c for c in report.chains}
    broken = by_writer[W].broken
    assert broken is not None
    assert (broken.seq, broken.problem) == (seq, problem), broken.detail
    assert all(by_writer[writer].intact for writer in OTHERS)


async def test_a_pool_of_workers_finds_the_same(
    sqlite: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify_module, "POOL_AFTER", 0)
    chains = await three_writers(sqlite)
    await reordered(sqlite, chains[W])
    report = await verify(SqlAuditRows(sqlite).batches(size=3), jobs=2)
    by_writer = {c.writer: c for c in report.chains}
    broken = by_writer[W].broken
    assert broken is not None and (broken.seq, broken.problem) == (5, Problem.REORDERED)
    assert by_writer[OTHERS[0]].head == Head(13, chains[OTHERS[0]][-1].digest())


async def test_truncation_is_caught_against_an_exported_head(sqlite: AsyncEngine) -> None:
    chains = await three_writers(sqlite)
    head = Head(10, chains[W][-1].digest())
    assert (await walk(sqlite, exported={W: head})).intact
    await execute(sqlite, "DELETE FROM audit_events WHERE writer = :w AND seq > 8", w=W)
    assert (await walk(sqlite)).intact  # the chain alone cannot tell
    report = await walk(sqlite, exported={W: head})
    broken = {c.writer: c.broken for c in report.chains}[W]
    assert broken is not None and (broken.seq, broken.problem) == (9, Problem.TRUNCATED)


async def test_journal_events_not_in_the_database_are_not_yet_shipped(
    sqlite: AsyncEngine, tmp_path: Path
) -> None:
    events = chain(W, 12)
    await store(sqlite, events[:9])
    directory = tmp_path / "audit"
    journal(directory, "a.jsonl", events[:6])
    journal(directory, "b.jsonl", events[6:], tail=events[0].canonical()[:40])  # cut short
    journal(directory, "c.jsonl", chain(OTHERS[1], 3))  # a writer that shipped nothing
    report = await walk(sqlite, journal=read_journal(directory))
    assert report.intact
    by_writer = {c.writer: c for c in report.chains}
    assert (by_writer[W].head, by_writer[W].unshipped, by_writer[W].journal_head) == (
        Head(9, events[8].digest()),
        3,
        Head(12, events[11].digest()),
    )
    assert (by_writer[OTHERS[1]].events, by_writer[OTHERS[1]].unshipped) == (0, 3)
    assert report.journal is not None and report.journal.partial == ["b.jsonl:7"]


async def test_a_journal_that_disagrees_with_the_database_is_named(
    sqlite: AsyncEngine, tmp_path: Path
) -> None:
    events = chain(W, 10)
    await store(sqlite, events)
    document = json.loads(events[3].canonical())
    document["agent"] = 555
    lines = [e.canonical() for e in events]
    lines[3] = canonical(document)
    directory = tmp_path / "audit"
    directory.mkdir()
    (directory / "w.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    report = await walk(sqlite, journal=read_journal(directory))
    broken = report.chains[0].broken
    assert broken is not None and (broken.seq, broken.problem) == (4, Problem.CHANGED)
    assert "w.jsonl:4" in broken.detail


async def test_an_event_removed_from_the_database_is_found_in_the_journal(
    sqlite: AsyncEngine, tmp_path: Path
) -> None:
    events = chain(W, 10)
    await store(sqlite, events)
    await removed(sqlite, events)
    directory = tmp_path / "audit"
    journal(directory, "w.jsonl", events)
    report = await walk(sqlite, journal=read_journal(directory))
    broken = report.chains[0].broken
    assert broken is not None and (broken.seq, broken.problem) == (5, Problem.REMOVED)
    assert "w.jsonl:5" in broken.detail


async def test_a_bad_journal_line_fails_the_check(sqlite: AsyncEngine, tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    journal(directory, "w.jsonl", chain(W, 2), tail=b"not an event\n")
    report = await walk(sqlite, journal=read_journal(directory))
    assert not report.intact
    assert report.journal is not None and report.journal.problems[0].startswith("w.jsonl:3")
