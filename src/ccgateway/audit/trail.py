"""The trail of one writer: the ``Recorder`` the gateway appends events to (docs/audit.md).

An ``Auditor`` is one writer: a node's run (``Auditor.for_node``: ``NODE_NAME@<start ms>``, its
journal under ``DATA_DIR/audit/``, and at start the recovery of the earlier runs,
``audit/recovery.py``) or one CLI process (``Auditor.for_cli``: ``cli:<host>:<pid>:<start ms>``, a
journal in a temporary directory shipped to the database as the process runs and drained when it
ends, then deleted; the CLI thus writes to the database with its own chain, through the same
code). It holds the writer's next seq and the SHA-256 of its previous event, builds each
``AuditEvent``, and appends it to the journal (``audit/journal.py``); a background task ships the
journal (``audit/shipper.py``).

A download is one ``DownloadAttempt``, filled in as the request is handled: ``authorize`` writes
its ``start`` before the first byte, ``finish`` its ``end`` after the last (with the ``start`` when
none was written: a refused request's two events go out together).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccgateway.audit.events import (
    END,
    GENESIS,
    START,
    AuditEvent,
    Kind,
    Outcome,
    Value,
    cli_writer,
    node_writer,
)
from ccgateway.audit.journal import Journal
from ccgateway.audit.shipper import Shipper
from ccgateway.node.clock import Clock
from ccgateway.stores.base import AuditEventStore

log = logging.getLogger("ccgateway.audit")

# A transfer's ``start`` says what was decided before the first byte.
AUTHORIZED = "authorized"  # the request may have the bytes: they follow
REFUSED = "refused"  # answered with an error retcode (the ``end`` follows at once)
UNDECIDED = "undecided"  # the client went away, or a fault of ours, before a decision

DRAIN_TIMEOUT_S = 10.0  # at shutdown: how long to try to ship what is left


@dataclass
class DownloadAttempt:
    """A download request, filled in as it is handled; its events are written from it."""

    interface: str
    client: str
    started_ms: int
    started: float = field(default_factory=time.monotonic)
    first_byte_at: float | None = None  # time.monotonic() when the response head went out
    kind: Kind = Kind.DOWNLOAD  # HEAD for a HEAD request
    agent_id: int | None = None
    conference_id: str = ""
    record_id: str = ""
    path: str = ""  # a file-server file's drive-letter path
    file_type: int | None = None
    range: str = ""  # the Range header as requested
    status: int = 200
    bytes_sent: int = 0
    ranges: list[list[int]] = field(default_factory=list)  # [first, last] byte ranges served
    outcome: Outcome | None = None  # set where the attempt ends; None there means ERROR
    retcode: str = "0"
    transfer: Transfer | None = None  # once its ``start`` is written

    def mark_first_byte(self) -> None:
        """The response head is going out now (for the time-to-first-byte metric)."""
        self.first_byte_at = time.monotonic()

    def concerns(self) -> dict[str, Value]:
        """What the attempt is about, as its events say (text a client sent made printable)."""
        concerns: dict[str, Value] = {}
        if self.conference_id:
            concerns["conference"] = printable(self.conference_id, 64)
        if self.record_id:
            concerns["record"] = printable(self.record_id, 1024)
        if self.path:
            concerns["path"] = printable(self.path, 1024)
        if self.file_type is not None:
            concerns["fileType"] = self.file_type
        return concerns


class Transfer:
    """A transfer whose ``start`` was appended (``recorder.Transfer``)."""

    def __init__(self, auditor: Auditor, start: AuditEvent) -> None:
        self._auditor = auditor
        self._start = start
        self._end: AuditEvent | None = None

    @property
    def seq(self) -> int:
        return self._start.seq

    def end(self, outcome: Outcome, fields: Mapping[str, Any]) -> AuditEvent:
        if self._end is None:
            start = self._start
            self._end = self._auditor.append(
                start.kind,
                END,
                agent_id=start.agent_id,
                client=start.client,
                concerns=start.concerns,
                fields={**fields, "outcome": outcome.value, "startSeq": start.seq},
            )
        return self._end


class Auditor:
    """The ``Recorder`` of one writer (see the module's doc)."""

    def __init__(
        self,
        journal: Journal,
        clock: Clock,
        shipper: Shipper,
        *,
        node_name: str | None = None,
        temporary: bool = False,
    ) -> None:
        self.journal = journal
        self.writer = journal.writer
        self.shipper = shipper
        self.node_name = node_name  # None for a CLI writer
        self._clock = clock
        self._temporary = temporary
        self._seq = 0
        self._prev = GENESIS
        self._tasks: list[asyncio.Task[None]] = []
        shipper.add(journal.dir, lambda: journal.committed, lambda: journal.current_segment)

    @classmethod
    def for_node(
        cls,
        root: Path,
        node_name: str,
        clock: Clock,
        store: AuditEventStore,
    ) -> Auditor:
        journal = _new_journal(root, lambda ms: node_writer(node_name, ms))
        return cls(journal, clock, Shipper(store), node_name=node_name)

    @classmethod
    def for_cli(cls, clock: Clock, store: AuditEventStore) -> Auditor:
        root = Path(tempfile.mkdtemp(prefix="ccgateway-audit-"))
        journal = _new_journal(root, cli_writer)
        return cls(journal, clock, Shipper(store), temporary=True)

    # -- the Recorder ----------------------------------------------------------------------------

    def record(
        self,
        kind: Kind,
        name: str,
        *,
        agent_id: int | None = None,
        client: str = "",
        concerns: Mapping[str, Value] | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        return self.append(
            kind, name, agent_id=agent_id, client=client, concerns=concerns, fields=fields
        )

    def start(
        self,
        kind: Kind,
        *,
        agent_id: int | None,
        client: str,
        concerns: Mapping[str, Value],
        fields: Mapping[str, Any],
    ) -> Transfer:
        event = self.append(
            kind, START, agent_id=agent_id, client=client, concerns=concerns, fields=fields
        )
        return Transfer(self, event)

    @property
    def writable(self) -> bool:
        return self.journal.writable

    def append(
        self,
        kind: Kind,
        name: str,
        *,
        agent_id: int | None = None,
        client: str = "",
        concerns: Mapping[str, Value] | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """Number, chain and journal one event (on the event loop's thread only)."""
        self._seq += 1
        event = AuditEvent(
            writer=self.writer,
            seq=self._seq,
            time_ms=self._clock.now_ms(),
            kind=kind,
            name=name,
            agent_id=agent_id,
            client=printable(client, 64),
            prev=self._prev,
            concerns=dict(concerns or {}),
            fields=dict(fields or {}),
        )
        body = event.canonical()
        self._prev = hashlib.sha256(body).hexdigest()
        self.journal.append(event, body)
        return event

    def close_interrupted(self, start: AuditEvent) -> AuditEvent:
        """The ``end`` of a transfer of an earlier run that never wrote one, in this chain."""
        return self.append(
            start.kind,
            END,
            agent_id=start.agent_id,
            client=start.client,
            concerns=start.concerns,
            fields={
                "outcome": Outcome.INTERRUPTED.value,
                "startWriter": start.writer,
                "startSeq": start.seq,
                "status": None,
                "retcode": None,
                "bytes": None,
                "ranges": None,
                "durationMs": None,
            },
        )

    # -- downloads -------------------------------------------------------------------------------

    def begin(
        self, interface: str, client: str, *, kind: Kind = Kind.DOWNLOAD, range: str = ""
    ) -> DownloadAttempt:
        return DownloadAttempt(interface, client, self._clock.now_ms(), kind=kind, range=range)

    def authorize(self, attempt: DownloadAttempt) -> None:
        """The attempt may have its bytes: its ``start`` (before the first byte)."""
        self._start(attempt, AUTHORIZED)

    def finish(self, attempt: DownloadAttempt) -> None:
        """The attempt has ended: its ``end`` (and its ``start``, if none was written)."""
        outcome = attempt.outcome or Outcome.ERROR
        transfer = attempt.transfer or self._start(
            attempt, REFUSED if outcome is Outcome.REFUSED else UNDECIDED
        )
        transfer.end(
            outcome,
            {
                "status": attempt.status,
                "retcode": attempt.retcode,
                "bytes": None if outcome is Outcome.OFFLOADED else attempt.bytes_sent,
                "ranges": attempt.ranges,
                "durationMs": round((time.monotonic() - attempt.started) * 1000),
            },
        )

    def _start(self, attempt: DownloadAttempt, decision: str) -> Transfer:
        if attempt.transfer is None:
            attempt.transfer = self.start(
                attempt.kind,
                agent_id=attempt.agent_id,
                client=attempt.client,
                concerns=attempt.concerns(),
                fields={
                    "interface": attempt.interface,
                    "range": printable(attempt.range, 128),
                    "decision": decision,
                },
            )
        return attempt.transfer

    # -- running ---------------------------------------------------------------------------------

    def run(self, recover: bool) -> None:
        """Start shipping in the background (and, for a node, the recovery of earlier runs)."""
        self._tasks.append(asyncio.create_task(self.shipper.run()))
        if recover and self.node_name is not None:
            from ccgateway.audit.recovery import recover_earlier_runs

            self._tasks.append(asyncio.create_task(recover_earlier_runs(self)))

    async def drain(self, within_s: float = DRAIN_TIMEOUT_S) -> bool:
        """Write and ship every event appended so far; whether all of it went."""
        if not await asyncio.to_thread(self.journal.flush, within_s):
            return False
        return await self.shipper.drain(within_s)

    async def aclose(self) -> None:
        """At shutdown: stop the background work, write and ship what is left (while the database
        answers, for up to ``DRAIN_TIMEOUT_S``), close the journal; delete it when all of it was
        shipped, else leave it for the next run (or, for the CLI, say where it is)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        shipped = await self.drain()
        await asyncio.to_thread(self.journal.close)
        if shipped:
            self.journal.dir.remove()
            if self._temporary:
                shutil.rmtree(self.journal.root, ignore_errors=True)
        else:
            self.journal.dir.unlock()
            log.error(
                "audit events of %s are not shipped yet: kept in %s",
                self.writer,
                self.journal.dir.path,
            )

    def stats(self) -> tuple[int, float]:
        """The journal's size in bytes (every writer's under its root) and the age in seconds of
        the oldest event not shipped (0: none)."""
        size = 0
        with contextlib.suppress(OSError):
            for entry in self.journal.root.iterdir():
                if entry.is_dir():
                    size += _dir_bytes(entry)
        oldest = [
            t
            for t in (self.shipper.oldest_unshipped_ms(), self.journal.oldest_queued_ms())
            if t is not None
        ]
        age = max(0.0, time.time() - min(oldest) / 1000) if oldest else 0.0
        return size, age


def _dir_bytes(path: Path) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for entry in path.iterdir():
            if entry.name.endswith(".jsonl"):
                with contextlib.suppress(OSError):
                    total += entry.stat().st_size
    return total


_last_ms = 0
_last_ms_lock = threading.Lock()


def _new_journal(root: Path, writer_at: Callable[[int], str]) -> Journal:
    """A journal for a new writer named from the current time in ms, unique in this process and
    in ``root`` (a taken name moves on by one ms)."""
    global _last_ms
    with _last_ms_lock:
        ms = max(time.time_ns() // 1_000_000, _last_ms + 1)
        while True:
            try:
                journal = Journal(root, writer_at(ms))
            except FileExistsError:
                ms += 1
                continue
            _last_ms = ms
            return journal


def printable(text: str, limit: int) -> str:
    """Text a client sent, fit for an event: valid UTF-8 (undecodable header bytes, which arrive
    as surrogates, become U+FFFD), no control character, at most ``limit`` characters. So an
    odd byte never costs an event (a database refuses surrogates)."""
    if text.isascii() and text.isprintable():  # the usual case, at C speed
        return text[:limit]
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "replace")
    decoded = raw.decode("utf-8", "replace")[:limit]
    return "".join(c if c.isprintable() else "\ufffd" for c in decoded)
