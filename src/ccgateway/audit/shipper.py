"""Shipping: the journal's events into the database, in batches, idempotently by (writer, seq).

One task reads the committed events of each journal directory it was given (the live journal,
and the earlier runs' being replayed) after the last shipped seq, inserts them ``BATCH`` at a time
with ``ON CONFLICT DO NOTHING`` (a batch shipped twice, after a crash between the insert and the
``shipped`` note, changes nothing), and then notes the batch's last seq in the directory
(``WriterDir.mark_shipped``), which deletes the segments wholly shipped. On a database error it
keeps the batch, backs off (``BACKOFF_S`` doubling up to ``BACKOFF_MAX_S``) and tries again: the
journal grows meanwhile, and drains when the database returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ccgateway.audit.columns import NAMES, values
from ccgateway.audit.events import AuditEvent
from ccgateway.audit.journal import Position, WriterDir
from ccgateway.stores.base import AuditEventRow, AuditEventStore

BATCH = 1000
IDLE_S = 0.05
BACKOFF_S = 0.2
BACKOFF_MAX_S = 5.0

log = logging.getLogger("ccgateway.audit")


def row_of(event: AuditEvent, body: bytes) -> AuditEventRow:
    """The table row of an event: its key, its query columns (``columns.values``, the one
    rule) and its body."""
    queried = dict(zip(NAMES, values(event), strict=True))
    return AuditEventRow(writer=event.writer, seq=event.seq, body=body.decode("ascii"), **queried)


@dataclass
class _Source:
    """A journal directory being shipped: ``until`` gives the end of what may be read (the live
    journal's committed end; None for an earlier run's, whole on disk), ``keep`` the segment
    being written."""

    dir: WriterDir
    until: Callable[[], Position | None]
    keep: Callable[[], int | None]
    batch: list[tuple[AuditEvent, bytes]] = field(default_factory=list)
    caught_up: bool = False
    caught_up_event: asyncio.Event = field(default_factory=asyncio.Event)


class Shipper:
    def __init__(self, store: AuditEventStore, *, batch: int = BATCH) -> None:
        self.store = store
        self._batch = batch
        self._sources: list[_Source] = []
        self._backoff = 0.0
        self._wake = asyncio.Event()
        self._shipping = asyncio.Lock()
        self.failing = False  # the last attempt failed (the database is unreachable)

    def add(
        self,
        directory: WriterDir,
        until: Callable[[], Position | None] = lambda: None,
        keep: Callable[[], int | None] = lambda: None,
    ) -> None:
        self._sources.append(_Source(directory, until, keep))
        self._wake.set()

    def remove(self, directory: WriterDir) -> None:
        self._sources = [s for s in self._sources if s.dir is not directory]

    def oldest_unshipped_ms(self) -> int | None:
        """The time of the oldest event read and not yet shipped (None: none)."""
        times = [s.batch[0][0].time_ms for s in self._sources if s.batch]
        return min(times) if times else None

    async def caught_up(self, directory: WriterDir) -> None:
        """Wait until every event on disk in ``directory`` is shipped (an earlier run's)."""
        for source in self._sources:
            if source.dir is directory:
                await source.caught_up_event.wait()

    async def run(self) -> None:
        """Ship forever (the node's background task)."""
        while True:
            try:
                shipped = await self.ship_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.failing:
                    log.warning("shipping audit events failed (%s): retrying", _reason(exc))
                self.failing = True
                self._backoff = min(BACKOFF_MAX_S, max(BACKOFF_S, 2 * self._backoff))
                await asyncio.sleep(self._backoff)
                continue
            if self.failing:
                log.warning("shipping audit events again")
            self.failing, self._backoff = False, 0.0
            if not shipped:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), IDLE_S)
                except TimeoutError:
                    pass

    async def ship_once(self) -> int:
        """Ship one batch of each source that has events; how many were shipped."""
        async with self._shipping:  # the background task and a drain take turns
            return await self._ship_once()

    async def _ship_once(self) -> int:
        shipped = 0
        for source in list(self._sources):
            if not source.batch:
                until = source.until()
                source.batch = await asyncio.to_thread(source.dir.read, self._batch, until)
            if not source.batch:
                if source.until() is None:
                    source.caught_up = True
                    source.caught_up_event.set()
                continue
            await self.store.insert([row_of(event, body) for event, body in source.batch])
            last = source.batch[-1][0].seq
            count, source.batch = len(source.batch), []
            await asyncio.to_thread(source.dir.mark_shipped, last, source.keep())
            shipped += count
        return shipped

    async def drain(self, within_s: float) -> bool:
        """Ship everything committed so far, for up to ``within_s``; whether it all went."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            try:
                if not await self.ship_once() and not any(s.batch for s in self._sources):
                    return True
            except Exception as exc:
                log.warning("shipping audit events failed (%s)", _reason(exc))
                await asyncio.sleep(min(BACKOFF_MAX_S / 5, max(0.0, deadline - time.monotonic())))
        return False


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
