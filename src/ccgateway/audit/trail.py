"""The audit trail: one record per download attempt, whatever its end."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass, field

from ccgateway.node.clock import Clock
from ccgateway.stores.base import AuditRecord, AuditStore

log = logging.getLogger("ccgateway.audit")


class Outcome(enum.StrEnum):
    """How an attempt ended, always said explicitly: an attempt nothing decided is ``ERROR``."""

    COMPLETED = "completed"  # every byte of the answer was handed to the network
    HEAD = "head"  # a HEAD answered: validators and size, no body (not a download)
    ABORTED = "aborted"  # the client went away before the end
    REFUSED = "refused"  # answered with an error retcode (or 412/416)
    SOURCE_FAILED = "source_failed"  # the source failed after the first byte; transfer cut
    OFFLOADED = "offloaded"  # authorized and handed to nginx (X-Accel-Redirect) to send
    ERROR = "error"  # an unexpected failure of ours (answered 500 when nothing was sent yet)


@dataclass
class DownloadAttempt:
    """Filled in as a download request is handled, then written once."""

    interface: str
    client: str
    started_ms: int
    started: float = field(default_factory=time.monotonic)
    first_byte_at: float | None = None  # time.monotonic() when the response head went out
    agent_id: int | None = None
    conference_id: str = ""
    record_id: str = ""
    file_type: int | None = None
    range: str = ""
    status: int = 200
    bytes_sent: int = 0
    outcome: Outcome | None = None  # set where the attempt ends; None there means ERROR
    retcode: str = "0"
    extra: dict[str, str] = field(default_factory=dict)

    def mark_first_byte(self) -> None:
        """The response head is going out now (for the time-to-first-byte metric)."""
        self.first_byte_at = time.monotonic()


class Auditor:
    def __init__(self, store: AuditStore, clock: Clock, node: str) -> None:
        self.store = store
        self._clock = clock
        self._node = node
        self._pending: set[asyncio.Future[None]] = set()

    async def query(
        self,
        *,
        agent_id: int | None = None,
        conference_id: str | None = None,
        outcome: str | None = None,
        since_ms: int | None = None,
        limit: int = 1000,
    ) -> list[AuditRecord]:
        """Download attempts, newest first, filtered by whichever criteria are given."""
        return await self.store.query(
            agent_id=agent_id,
            conference_id=conference_id,
            outcome=outcome,
            since_ms=since_ms,
            limit=limit,
        )

    def begin(self, interface: str, client: str) -> DownloadAttempt:
        return DownloadAttempt(interface=interface, client=client, started_ms=self._clock.now_ms())

    def finish(self, attempt: DownloadAttempt) -> None:
        """Write the attempt in the background: the answer does not wait for the database, and
        the write completes even when the request's task is cancelled. ``drain`` awaits them."""
        task = asyncio.ensure_future(self._write(attempt))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for every audit write still under way (at shutdown)."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def _write(self, attempt: DownloadAttempt) -> None:
        record = AuditRecord(
            time_ms=attempt.started_ms,
            node=self._node,
            interface=attempt.interface,
            agent_id=attempt.agent_id,
            conference_id=printable(attempt.conference_id, 64),
            record_id=printable(attempt.record_id, 1024),
            file_type=attempt.file_type,
            range=printable(attempt.range, 128),
            status=attempt.status,
            bytes_sent=attempt.bytes_sent,
            outcome=(attempt.outcome or Outcome.ERROR).value,
            retcode=attempt.retcode,
            client=printable(attempt.client, 64),
            duration_ms=round((time.monotonic() - attempt.started) * 1000),
        )
        try:
            await self.store.append(record)
        except Exception:
            log.exception("could not write the audit record of a %s download", attempt.interface)


def printable(text: str, limit: int) -> str:
    """Text a client sent, fit for a record: valid UTF-8 (undecodable header bytes, which arrive
    as surrogates, become U+FFFD), no control character, at most ``limit`` characters. Every
    store takes it, so an odd byte never costs a record (a database refuses surrogates)."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "replace")
    decoded = raw.decode("utf-8", "replace")[:limit]
    return "".join(c if c.isprintable() else "\ufffd" for c in decoded)
