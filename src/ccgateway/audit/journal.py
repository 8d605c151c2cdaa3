"""The local journal: a writer's events on disk, group-committed, until they are shipped.

Layout (docs/audit.md, "The journal"): ``<root>/<writer>/`` holds one directory per writer (for a
node, ``DATA_DIR/audit/``), with

- segments ``<first seq, 12 digits>.jsonl``: the canonical encoding of each event, one per line,
  in seq order; a new segment starts once the current one holds ``SEGMENT_BYTES``;
- ``shipped``: the last seq the database has (decimal), rewritten after each shipment; segments
  wholly at or below it are deleted;
- ``writer``: the writer's name;
- ``lock``: ``flock``-ed by the live process that owns the directory, so a node starting beside it
  never replays a journal still being written.

``Journal.append`` only queues the line in memory (a list under a lock): the request path never
waits for a disk. One thread, the *committer*, takes what was queued, writes it with one
``pwrite`` at the end of the current segment and ``fdatasync``-s it, then sleeps
``COMMIT_EVERY_S`` before the next group: at most one fsync every few milliseconds, whatever the
rate of events. Only committed bytes are read for shipping (``WriterDir.read`` up to
``Journal.committed``).

When a write or a sync fails (``ENOSPC`` or any ``OSError``), the segment is truncated back to what
was committed, the group goes back to the head of the queue, the journal says it is not
``writable``, and the committer retries every ``RETRY_EVERY_S``; the first write that succeeds makes
it writable again. Nothing queued is dropped while the process lives.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ccgateway.audit.events import AuditEvent, MalformedEvent, parse

SEGMENT_BYTES = 8 * 1024 * 1024
COMMIT_EVERY_S = 0.005
RETRY_EVERY_S = 0.25
SUFFIX = ".jsonl"
READ_CHUNK = 1 << 20  # bytes a read takes from a segment at once (a batch needs ~0.4 MiB)
SHIPPED = "shipped"
LOCK = "lock"
WRITER = "writer"

log = logging.getLogger("ccgateway.audit")


def writer_dirname(writer: str) -> str:
    """A writer's directory name: the writer with what a file name should not hold as ``_``."""
    return re.sub(r"[^A-Za-z0-9@._-]", "_", writer)


@dataclass(frozen=True, order=True)
class Position:
    """A place in a writer's segments: the segment (by its first seq) and a byte offset in it."""

    segment: int
    offset: int


class WriterDir:
    """One writer's directory: its segments, how far they were read and shipped, its lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.shipped = _read_shipped(path / SHIPPED)
        self._read_at: Position | None = None
        self._lock_fd: int | None = None

    def lock(self) -> bool:
        """Take the directory's lock (non-blocking): False while another process holds it."""
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing releases the flock

    def segments(self) -> list[tuple[int, Path]]:
        """The segments, by their first seq."""
        found = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.path):
                stem = entry.name.removesuffix(SUFFIX)
                if entry.name.endswith(SUFFIX) and stem.isdigit():
                    found.append((int(stem), Path(entry.path)))
        return sorted(found)

    def size_bytes(self) -> int:
        total = 0
        for _, path in self.segments():
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    def read(self, limit: int, until: Position | None = None) -> list[tuple[AuditEvent, bytes]]:
        """Up to ``limit`` events after the last read and after ``shipped``, in seq order, not
        past ``until`` (the live journal's committed end; None: everything whole on disk). A
        line that is not a whole canonical event (a torn last line) is skipped."""
        events: list[tuple[AuditEvent, bytes]] = []
        segments = self.segments()
        at = self._read_at
        if at is None and segments:
            at = Position(segments[0][0], 0)
        for first, path in segments:
            if at is None or first < at.segment or len(events) >= limit:
                continue
            if until is not None and first > until.segment:
                break
            offset = at.offset if first == at.segment else 0
            end = until.offset if until is not None and first == until.segment else None
            try:
                with path.open("rb") as handle:
                    size = os.fstat(handle.fileno()).st_size
                    stop = size if end is None else min(size, end)
                    handle.seek(offset)
                    data = handle.read(max(0, min(stop - offset, READ_CHUNK)))
            except FileNotFoundError:
                continue
            used = 0
            for line in data.splitlines(keepends=True):
                if not line.endswith(b"\n") or len(events) >= limit:
                    break
                used += len(line)
                body = line[:-1]
                try:
                    event = parse(body)
                except MalformedEvent:
                    log.error("a journal line of %s is no canonical event: skipped", path)
                    continue
                if event.seq > self.shipped:
                    events.append((event, body))
            at = Position(first, offset + used)
            if offset + len(data) < stop:
                break  # more of this segment than one chunk: the next read goes on here
        self._read_at = at
        return events

    def mark_shipped(self, seq: int, keep: int | None = None) -> None:
        """The database has every event up to ``seq``: note it, delete the segments wholly at or
        below it (except ``keep``, the segment being written)."""
        self.shipped = max(self.shipped, seq)
        try:
            temporary = self.path / (SHIPPED + ".tmp")
            temporary.write_text(str(self.shipped))
            os.replace(temporary, self.path / SHIPPED)
        except OSError:
            pass  # a lost note only ships some events again, idempotently
        segments = self.segments()
        for (first, path), (following, _) in zip(segments, segments[1:], strict=False):
            if following - 1 <= self.shipped and first != keep:
                with contextlib.suppress(OSError):
                    path.unlink()

    def remove(self) -> None:
        """Delete the directory and what it holds (every event in it was shipped)."""
        for entry in list(os.scandir(self.path)) if self.path.exists() else []:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        self.unlock()
        with contextlib.suppress(OSError):
            self.path.rmdir()


def _read_shipped(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


class Journal:
    """The live journal of one writer (see the module's doc). ``append`` is cheap and never
    blocks on the disk; ``flush`` waits for the committer."""

    def __init__(
        self,
        root: Path,
        writer: str,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        commit_every_s: float = COMMIT_EVERY_S,
    ) -> None:
        """Create the writer's directory (``FileExistsError`` if it exists: a writer is new)."""
        root.mkdir(parents=True, exist_ok=True)
        path = root / writer_dirname(writer)
        path.mkdir()
        self.root = root
        self.writer = writer
        self.dir = WriterDir(path)
        if not self.dir.lock():
            raise FileExistsError(f"{path} is locked")
        with contextlib.suppress(OSError):
            (path / WRITER).write_text(writer)
        self._segment_bytes = segment_bytes
        self._commit_every_s = commit_every_s
        self._queued: list[tuple[int, int, bytes]] = []  # (seq, time_ms, line)
        self._queue_lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._appended_seq = 0
        self._committed_seq = 0
        self._committed = Position(1, 0)
        self._segment: int | None = None
        self._fd: int | None = None
        self._offset = 0
        self._writable = True
        self._stopping = False
        self._thread = threading.Thread(target=self._commit_forever, name="audit-journal")
        self._thread.daemon = True
        self._thread.start()

    # -- the request path -----------------------------------------------------------------------

    def append(self, event: AuditEvent, body: bytes | None = None) -> None:
        """Queue ``event`` (``body``: its canonical encoding, if already made) for the next group
        commit. Never blocks on the disk; never fails."""
        line = (event.canonical() if body is None else body) + b"\n"
        with self._queue_lock:
            self._queued.append((event.seq, event.time_ms, line))
            self._appended_seq = event.seq
        if not self._wake.is_set():
            self._wake.set()

    @property
    def writable(self) -> bool:
        """False from a failed write until a write succeeds again."""
        return self._writable

    # -- what shipping and the metrics read -----------------------------------------------------

    @property
    def committed(self) -> Position:
        """The end of what is written and synced: shipping reads up to here."""
        return self._committed

    @property
    def current_segment(self) -> int | None:
        return self._segment

    def oldest_queued_ms(self) -> int | None:
        """The time of the oldest event not yet written (None: none waits)."""
        with self._queue_lock:
            return self._queued[0][1] if self._queued else None

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event appended so far is committed; False on timeout."""
        target = self._appended_seq
        self._wake.set()
        with self._done:
            return self._done.wait_for(lambda: self._committed_seq >= target, timeout)

    def close(self, timeout: float = 5.0) -> int:
        """Commit what is queued (trying for up to ``timeout`` s), stop the committer, and close
        the segment. Returns how many events could not be written (lost with the process)."""
        self.flush(timeout)
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with self._queue_lock:
            lost = len(self._queued)
        if lost:
            log.error(
                "%d audit events of %s could not be written to the journal", lost, self.writer
            )
        return lost

    # -- the committer --------------------------------------------------------------------------

    def _commit_forever(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._queue_lock:
                group, self._queued = self._queued, []
            if not group:
                if self._stopping:
                    return
                continue
            if self._write(group):
                with self._done:
                    self._committed_seq = group[-1][0]
                    self._done.notify_all()
                time.sleep(self._commit_every_s)
            else:
                with self._queue_lock:
                    self._queued[:0] = group
                if self._stopping:
                    return
                time.sleep(RETRY_EVERY_S)
                self._wake.set()

    def _write(self, group: list[tuple[int, int, bytes]]) -> bool:
        data = b"".join(line for _, _, line in group)
        try:
            if self._fd is None or self._offset >= self._segment_bytes:
                self._open_segment(group[0][0])
            fd, segment = self._fd, self._segment
            if fd is None or segment is None:
                raise OSError("no segment open")
            view, written = memoryview(data), 0
            while written < len(data):
                written += os.pwrite(fd, view[written:], self._offset + written)
            os.fdatasync(fd)
        except OSError as exc:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._offset)  # no torn line stays behind
            if self._writable:
                log.error(
                    "the audit journal cannot be written (%s): new downloads are refused until"
                    " it can; %d events wait in memory",
                    exc.strerror or exc,
                    len(group),
                )
            self._writable = False
            return False
        self._offset += len(data)
        self._committed = Position(segment, self._offset)
        if not self._writable:
            log.warning("the audit journal is writable again")
        self._writable = True
        return True

    def _open_segment(self, first_seq: int) -> None:
        path = self.dir.path / f"{first_seq:012d}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        offset = os.lseek(fd, 0, os.SEEK_END)
        directory = os.open(self.dir.path, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._segment, self._offset = fd, first_seq, offset
