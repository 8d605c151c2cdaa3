"""Checking the trail: every writer's hash chain in the database, and the local journal.

``verify`` streams ``audit_events`` ordered by (writer, seq) and, for each writer, checks that
the seqs run 1..n without gaps, that each body is exactly a canonical event (``events.parse``)
of that writer and seq, that its ``prev`` is the SHA-256 of the previous body (``GENESIS`` for
seq 1) and that the row's query columns are those of its body (``columns.values``). It names the
first bad event of each writer and what is wrong with it (``Problem``), telling a changed, a
removed, an inserted and a reordered event apart where the chain allows; otherwise it reports
the chain intact with its head (last seq, SHA-256 of its body).

The journal's events must be the database's where both have them; events only in the journal,
after the database's last, are not yet shipped: they continue the chain and are counted, not an
error. A statement of exported heads (``ccgateway audit export``) adds one check: each chain must
still hold its exported head, which catches the newest events removed (truncation).

Parsing a body and hashing it is the cost (about 25 µs an event); above ``POOL_AFTER`` rows that
work goes to a process pool, one batch at a time, while this process reads the next batch and
walks the chains.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import multiprocessing
import os
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

from ccgateway.audit.columns import NAMES, values
from ccgateway.audit.events import GENESIS, MalformedEvent, parse
from ccgateway.audit.journal_files import Journal, JournalEntry
from ccgateway.stores.audit_rows import AuditRow

POOL_AFTER = 20_000  # rows examined in this process before the pool starts
WINDOW = 64  # rows read past a chain's first failure to tell what happened


class Problem(enum.StrEnum):
    CHANGED = "changed"  # its body or columns were edited (or it is not canonical)
    REMOVED = "removed"  # a seq is missing, or the chain was renumbered around a hole
    INSERTED = "inserted"  # it does not belong: the next event's prev skips it
    REORDERED = "reordered"  # the chain's events are all there, in another order
    TRUNCATED = "truncated"  # the chain ends before a head exported earlier


@dataclass(frozen=True)
class Head:
    seq: int
    sha256: str


@dataclass(frozen=True)
class Break:
    """The first bad event of a chain: its seq, what happened and the evidence."""

    seq: int
    problem: Problem
    detail: str


@dataclass(frozen=True)
class ChainReport:
    writer: str
    events: int  # rows in the database
    head: Head | None  # the database's last event of the chain
    broken: Break | None = None
    unshipped: int = 0  # events after ``head`` found only in the journal
    journal_head: Head | None = None  # the last of those

    @property
    def intact(self) -> bool:
        return self.broken is None


@dataclass
class Report:
    chains: list[ChainReport] = field(default_factory=list)
    journal: Journal | None = None

    @property
    def intact(self) -> bool:
        journal_ok = self.journal is None or not self.journal.problems
        return journal_ok and all(chain.intact for chain in self.chains)


class Examined(NamedTuple):
    """What one row says, once its body was parsed and hashed (``examine``)."""

    writer: str  # the row's
    seq: int  # the row's
    digest: str  # SHA-256 of the body
    body_writer: str | None  # None: the body is not a canonical event (``malformed``)
    body_seq: int
    prev: str
    malformed: str | None
    columns: str | None  # the first column that disagrees with the body, or None


def examine(rows: list[AuditRow]) -> list[Examined]:
    """Parse and hash each row's body and compare its columns (runs in a pool's worker)."""
    out: list[Examined] = []
    for row in rows:
        writer, seq, text = row[0], row[1], row[11]
        try:
            body = text.encode("ascii")
        except UnicodeEncodeError:
            body = text.encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(body).hexdigest()
        try:
            event = parse(body)
        except MalformedEvent as exc:
            problem = f"its body is not a canonical event ({exc})"
            out.append(Examined(writer, seq, digest, None, 0, "", problem, None))
            continue
        expected = values(event)
        disagreement = None
        if expected != row[2:11]:
            for name, stored, said in zip(NAMES, row[2:11], expected, strict=True):
                if stored != said:
                    disagreement = f"column {name} is {stored!r}, its body says {said!r}"
                    break
        out.append(
            Examined(writer, seq, digest, event.writer, event.seq, event.prev, None, disagreement)
        )
    return out


class _Chain:
    """One writer's chain, walked in seq order; stops at its first bad event."""

    def __init__(
        self, writer: str, journal: Mapping[int, JournalEntry], exported: Head | None
    ) -> None:
        self.writer = writer
        self.journal = journal
        self.exported = exported
        self.expected = 1
        self.d1 = GENESIS  # SHA-256 of the last good event (what the next prev must be)
        self.d2: str | None = None  # of the one before it
        self.events = 0
        self.last: Head | None = None
        self.at_exported: str | None = None
        self.failing: Examined | None = None
        self.window: list[Examined] = []
        self.broken: Break | None = None

    def feed(self, rec: Examined) -> None:
        self.events += 1
        self.last = Head(rec.seq, rec.digest)
        if self.exported is not None and rec.seq == self.exported.seq:
            self.at_exported = rec.digest
        if self.broken is not None:
            return
        if self.failing is not None:
            self.window.append(rec)
            if len(self.window) >= WINDOW:
                self.broken = self._classify(self.failing, self.window)
            return
        if self._good(rec):
            self.d2, self.d1 = self.d1, rec.digest
            self.expected = rec.seq + 1
        else:
            self.failing = rec

    def _good(self, rec: Examined) -> bool:
        if rec.malformed is not None or rec.columns is not None:
            return False
        if rec.seq != self.expected or rec.prev != self.d1:
            return False
        if rec.body_writer != self.writer or rec.body_seq != rec.seq:
            return False
        copy = self.journal.get(rec.seq)
        return copy is None or copy.digest == rec.digest

    def _classify(self, cur: Examined, window: list[Examined]) -> Break:
        before = self.expected - 1  # the last good seq (0: none)
        if cur.seq != self.expected:
            copy = self.journal.get(self.expected)
            kept = f"; the journal still holds it ({copy.location})" if copy else ""
            missing = (
                f"seq {self.expected} is missing"
                if cur.seq == self.expected + 1
                else f"seqs {self.expected}..{cur.seq - 1} are missing"
            )
            return Break(self.expected, Problem.REMOVED, f"{missing}{kept}")
        if cur.malformed is not None:
            return Break(cur.seq, Problem.CHANGED, cur.malformed)
        if cur.body_writer != self.writer:
            return Break(cur.seq, Problem.CHANGED, f"its body names writer {cur.body_writer!r}")
        if cur.body_seq != cur.seq or cur.prev != self.d1:
            return self._misplaced(cur, window, before)
        if cur.columns is not None:
            return Break(cur.seq, Problem.CHANGED, cur.columns)
        copy = self.journal.get(cur.seq)
        location = copy.location if copy else "?"
        return Break(cur.seq, Problem.CHANGED, f"it differs from the journal's ({location})")

    def _misplaced(self, cur: Examined, window: list[Examined], before: int) -> Break:
        """``cur`` does not follow the last good event: which event is out of place, and how."""
        if self.d2 is not None and cur.prev == self.d2:
            target = f"seq {before - 1}" if before > 1 else "the chain's start"
            return Break(before, Problem.INSERTED, f"seq {cur.seq}'s prev skips it, to {target}")
        resumed = next((rec for rec in window if rec.prev == self.d1), None)
        if resumed is not None:
            if any(rec.digest == cur.prev for rec in window):
                return Break(
                    cur.seq,
                    Problem.REORDERED,
                    f"the event after seq {before} is at seq {resumed.seq}, and seq {cur.seq}"
                    " follows an event stored after it",
                )
            count = resumed.seq - cur.seq
            return Break(
                cur.seq,
                Problem.INSERTED,
                f"seq {resumed.seq}'s prev skips {'it' if count == 1 else f'{count} events'},"
                f" to seq {before}",
            )
        if cur.body_seq > cur.seq:
            gone = (
                f"seq {cur.seq} was"
                if cur.body_seq == cur.seq + 1
                else f"seqs {cur.seq}..{cur.body_seq - 1} were"
            )
            return Break(
                cur.seq,
                Problem.REMOVED,
                f"seq {cur.seq} holds the event of seq {cur.body_seq}: {gone} removed and the"
                " rest renumbered",
            )
        if cur.body_seq != cur.seq:
            return Break(cur.seq, Problem.CHANGED, f"its body says seq {cur.body_seq}")
        nxt = window[0] if window else None
        if before > 0 and (nxt is None or nxt.prev == cur.digest):
            return Break(
                before,
                Problem.CHANGED,
                f"its SHA-256 is no longer the prev of seq {cur.seq}",
            )
        return Break(cur.seq, Problem.CHANGED, "its prev is the SHA-256 of no event before it")

    def finish(self) -> ChainReport:
        if self.failing is not None and self.broken is None:
            self.broken = self._classify(self.failing, self.window)
        unshipped, journal_head = 0, None
        if self.broken is None:
            unshipped, journal_head = self._unshipped()
        if self.broken is None and self.exported is not None:
            self.broken = self._against_export(self.exported)
        return ChainReport(
            self.writer, self.events, self.last, self.broken, unshipped, journal_head
        )

    def _unshipped(self) -> tuple[int, Head | None]:
        """Continue the chain over the journal's events after the database's last."""
        count, head = 0, None
        for seq in sorted(s for s in self.journal if s >= self.expected):
            entry = self.journal[seq]
            if seq != self.expected:
                self.broken = Break(
                    self.expected,
                    Problem.REMOVED,
                    f"in neither the database nor the journal, which goes on at seq {seq}"
                    f" ({entry.location})",
                )
                break
            if entry.prev != self.d1:
                self.broken = Break(
                    seq,
                    Problem.CHANGED,
                    f"not yet shipped, and its prev is the SHA-256 of no event before it"
                    f" ({entry.location})",
                )
                break
            self.d2, self.d1 = self.d1, entry.digest
            self.expected = seq + 1
            count, head = count + 1, Head(seq, entry.digest)
        return count, head

    def _against_export(self, exported: Head) -> Break | None:
        if self.at_exported is None:
            return Break(
                self.expected,
                Problem.TRUNCATED,
                f"the exported head is seq {exported.seq}; the database's chain ends at seq"
                f" {self.expected - 1}",
            )
        if self.at_exported != exported.sha256:
            return Break(
                exported.seq,
                Problem.CHANGED,
                "it is not the exported head (the chain was rewritten up to it)",
            )
        return None


RowSink = Callable[[AuditRow, str], None]


async def verify(
    batches: AsyncIterable[list[AuditRow]],
    *,
    journal: Journal | None = None,
    exported: Mapping[str, Head] | None = None,
    jobs: int | None = None,
    on_row: RowSink | None = None,
) -> Report:
    """Walk every chain of ``batches`` (rows ordered by writer, seq) and of ``journal``.

    ``exported``: heads of an earlier export each chain must still hold. ``jobs``: worker
    processes (default: this machine's CPUs; 1: none). ``on_row`` sees every row with its
    body's SHA-256, in order (the export writes its file with it).
    """
    jobs = jobs if jobs is not None else len(os.sched_getaffinity(0))
    walk = _Walk(journal, exported or {}, on_row)
    executor: Executor | None = None
    loop = asyncio.get_running_loop()
    queue: deque[tuple[list[AuditRow], Awaitable[list[Examined]]]] = deque()
    seen = 0
    try:
        async for batch in batches:
            seen += len(batch)
            if executor is None and jobs > 1 and seen > POOL_AFTER:
                context = multiprocessing.get_context("forkserver")
                executor = ProcessPoolExecutor(jobs, mp_context=context)
            if executor is None:
                walk.feed(batch, examine(batch))
                continue
            queue.append((batch, loop.run_in_executor(executor, examine, batch)))
            while len(queue) > 2 * jobs:
                done, results = queue.popleft()
                walk.feed(done, await results)
        while queue:
            done, results = queue.popleft()
            walk.feed(done, await results)
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    return walk.report()


class _Walk:
    def __init__(
        self, journal: Journal | None, exported: Mapping[str, Head], on_row: RowSink | None
    ) -> None:
        self.journal = journal
        self.exported = exported
        self.on_row = on_row
        self.chain: _Chain | None = None
        self.done: list[ChainReport] = []

    def _open(self, writer: str) -> _Chain:
        entries = self.journal.entries.get(writer, {}) if self.journal else {}
        return _Chain(writer, entries, self.exported.get(writer))

    def feed(self, rows: list[AuditRow], examined: list[Examined]) -> None:
        chain = self.chain
        for row, rec in zip(rows, examined, strict=True):
            if chain is None or chain.writer != rec.writer:
                if chain is not None:
                    self.done.append(chain.finish())
                chain = self.chain = self._open(rec.writer)
            chain.feed(rec)
            if self.on_row is not None:
                self.on_row(row, rec.digest)

    def report(self) -> Report:
        if self.chain is not None:
            self.done.append(self.chain.finish())
        seen = {chain.writer for chain in self.done}
        others = set(self.journal.entries) if self.journal else set()
        others |= set(self.exported)
        for writer in sorted(others - seen):
            self.done.append(self._open(writer).finish())
        return Report(self.done, self.journal)
