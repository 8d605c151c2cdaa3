"""A node's start: replay the earlier runs' journals, and close their open transfers.

In the background of a node's new run (``Auditor.run``), so that neither a database outage nor a
long journal delays serving:

1. Every other writer directory under the journal's root whose lock can be taken (its process is
   gone) is handed to the shipper, which ships what it holds after its ``shipped`` note.
2. Once all of them are shipped, the database says which transfers are open: for each of those
   writers, and for this node's previous run in the database (the greatest
   ``NODE_NAME@<ms>`` below this run's) in case its journal was lost, the ``start`` events with no
   ``end`` of their writer and no ``interrupted`` end written since by a later run of this node.
   The database is asked, not the replayed lines, because a journal keeps only what is not
   shipped: a ``start`` shipped long ago may still lack its ``end``.
3. Each is closed in this run's chain by an ``end`` with outcome ``interrupted``,
   ``fields.startWriter`` and ``startSeq``; the journal is flushed, then the replayed directories
   are deleted.

While the database is unreachable, each step is retried with a backoff. Only this node's
previous run is looked up in the database: each run does this at its start, so an older run's
transfers were closed by the run after it (a run killed before its own recovery finished leaves
its journal directory, and the next run replays it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from ccgateway.audit.events import TRANSFER_KINDS, AuditEvent, MalformedEvent, parse
from ccgateway.audit.journal import WRITER, WriterDir, writer_dirname

if TYPE_CHECKING:
    from ccgateway.audit.trail import Auditor
    from ccgateway.stores.base import AuditEventStore

T = TypeVar("T")

RETRY_S = 1.0
RETRY_MAX_S = 10.0

log = logging.getLogger("ccgateway.audit")


async def recover_earlier_runs(auditor: Auditor, store: AuditEventStore | None = None) -> None:
    store = store or auditor.shipper.store
    node = auditor.node_name or ""
    earlier = await asyncio.to_thread(_lock_earlier_dirs, auditor)
    try:
        await _recover(auditor, store, node, earlier)
    finally:
        for directory in earlier:
            directory.unlock()


async def _recover(
    auditor: Auditor, store: AuditEventStore, node: str, earlier: list[WriterDir]
) -> None:
    for directory in earlier:
        auditor.shipper.add(directory)
    for directory in earlier:
        await auditor.shipper.caught_up(directory)
        auditor.shipper.remove(directory)
    writers = [w for w in (_writer_of(d) for d in earlier) if w is not None]
    low, below = f"{node}@0", f"{node}@:"  # every NODE_NAME@<digits>
    previous = await _retrying(partial(store.last_writer, low, auditor.writer))
    if previous is not None and previous not in writers and not _alive(auditor, previous):
        writers.append(previous)
    closed = 0
    for writer in sorted(writers):
        starts = [_parse(body) for body in await _retrying(partial(store.open_starts, writer))]
        opened = [s for s in starts if s is not None and s.kind in TRANSFER_KINDS]
        if not opened:
            continue
        # an interrupted end of one of them was written by a later run of this node, if any
        later = max(writer, low) if writer.startswith(f"{node}@") else low
        seqs = [s.seq for s in opened]
        ends = await _retrying(partial(store.interrupted_ends, seqs, later, below))
        done = {
            (e.fields.get("startWriter"), e.fields.get("startSeq"))
            for e in (_parse(body) for body in ends)
            if e is not None
        }
        for start in opened:
            if (start.writer, start.seq) not in done:
                auditor.close_interrupted(start)
                closed += 1
    if closed:
        log.warning("%d transfers of earlier runs closed as interrupted", closed)
    await asyncio.to_thread(auditor.journal.flush, None)
    for directory in earlier:
        await asyncio.to_thread(directory.remove)


def _lock_earlier_dirs(auditor: Auditor) -> list[WriterDir]:
    found = []
    root, own = auditor.journal.root, auditor.journal.dir.path
    for path in sorted(root.iterdir()):
        if path == own or not path.is_dir():
            continue
        directory = WriterDir(path)
        with contextlib.suppress(OSError):
            if directory.lock():
                found.append(directory)
    return found


def _alive(auditor: Auditor, writer: str) -> bool:
    """Whether ``writer``'s journal is here and locked by a live process (the same
    ``NODE_NAME`` serving twice from one ``DATA_DIR``): its transfers are not to be closed."""
    path = auditor.journal.root / writer_dirname(writer)
    if not path.is_dir():
        return False
    directory = WriterDir(path)
    try:
        if directory.lock():
            directory.unlock()
            return False
    except OSError:
        return False
    return True


def _writer_of(directory: WriterDir) -> str | None:
    """The writer of an earlier run's directory (None: unknown, and nothing on disk)."""
    with contextlib.suppress(OSError):
        return (directory.path / WRITER).read_text().strip() or None
    for _, path in directory.segments():
        with contextlib.suppress(OSError, MalformedEvent), path.open("rb") as handle:
            return parse(handle.readline().rstrip(b"\n")).writer
    return None


def _parse(body: str) -> AuditEvent | None:
    try:
        return parse(body.encode("ascii"))
    except (MalformedEvent, UnicodeEncodeError):
        log.error("an audit event in the database is no canonical event: skipped")
        return None


async def _retrying(attempt: Callable[[], Awaitable[T]]) -> T:
    delay = RETRY_S
    while True:
        try:
            return await attempt()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("audit recovery waits for the database (%s)", type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX_S, 2 * delay)
