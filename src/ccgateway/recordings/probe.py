"""Probed media facts: what a recording file holds, and whether it is whole (issue 16, item 5).

``probe_path`` (a local file) and ``probe_source`` (any ``MediaSource``) answer ``MediaFacts``:
duration, picture size, codecs, size, container and media type, whether an MP4 is fast-start
(its ``moov`` index before its ``mdat`` media data), and a state:

- ``ready``: the container opens and every packet of every stream demuxes;
- ``damaged``, with a reason: bytes FFmpeg cannot open as media, an ISO-BMFF (MP4) file without a
  ``moov`` box (a recorder that never finished the file), a top-level box or a sample of the index
  that lies past the end of the file (a truncated file), or a demux error;
- ``missing``: nothing at that location.

The checks, in order: a walk over the top-level ISO-BMFF boxes reading only their headers (a few
small reads: fast-start, moov present, nothing past the end), then a full demux of every stream
with PyAV, WITHOUT decoding (the index's sample count per stream against the packets read, each
packet's byte range against the file's size, FFmpeg's corrupt flag and errors). The facts of a
damaged file are those that could still be read (a truncated MP4's index still gives its size
and duration). Blocking work runs in a thread; a remote source is read there through a bridge to
the event loop with ``READ_AHEAD`` bytes fetched ahead of the demuxer.

``MediaFacts`` itself lives in ``ccgateway.stores.facts`` (the catalog stores it with each MCU
media file; it is importable from here too). Registering an MCU recording probes each file
(``recordings.catalog``); file-server recordings are not yet probed (issue 16).
"""

from __future__ import annotations

import asyncio
import os
import queue
import stat as stat_module
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import av
import av.container

from ccgateway.sources.base import MediaSource, SourceError, SourceMissing, reading, redact
from ccgateway.stores.facts import MediaFacts as MediaFacts  # importable from here too
from ccgateway.stores.facts import MediaState as MediaState

READ_AHEAD = 1024 * 1024  # bytes a remote source is read ahead of the demuxer (at least 1 MiB)
MAX_BOXES = 4096  # top-level boxes walked before giving up on the walk (never seen in practice)

# ISO-BMFF top-level box types that may open a file: seeing one at byte 0 makes it an MP4 family
# file, whose structure is then checked box by box.
_FIRST_BOXES = frozenset({b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid"})
# FFmpeg demuxers chosen by the file name alone (text art): any bytes "open" as these.
_ANY_BYTES_FORMATS = frozenset({"tty", "bin", "adf", "idf", "xbin"})
# Media types by FFmpeg demuxer name, for containers other than ISO-BMFF.
_MEDIA_TYPES = {
    "matroska,webm": "video/x-matroska",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
    "mpegts": "video/mp2t",
}


def missing(reason: str) -> MediaFacts:
    return MediaFacts(state=MediaState.MISSING, reason=reason)


async def probe_path(path: Path) -> MediaFacts:
    """Probe a local file (in a thread)."""
    return await asyncio.to_thread(probe_file, path)


def probe_file(path: Path) -> MediaFacts:
    """Probe a local file; blocking."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return missing(f"{path}: no such file")
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat_module.S_ISREG(info.st_mode):
            return missing(f"{path}: not a regular file")
        size = info.st_size
        return _probe(
            lambda: av.open(str(path), metadata_errors="replace"),
            lambda offset, length: os.pread(fd, length, offset),
            size,
        )
    finally:
        os.close(fd)


async def probe_source(source: MediaSource) -> MediaFacts:
    """Probe a source: a local one by its path, a remote one read ahead through a thread.

    A source that is not there answers ``missing``; one that fails while it is read raises
    ``SourceError`` (that says nothing about the file's bytes).
    """
    path = source.local_path
    if path is not None:
        return await probe_path(path)
    try:
        stat = await source.stat()
    except SourceMissing as exc:
        return missing(str(exc))
    remote = _RemoteFile(source, stat.size, asyncio.get_running_loop())
    try:
        facts = await asyncio.to_thread(
            _probe, lambda: av.open(remote, "r", metadata_errors="replace"), remote.pread, stat.size
        )
    except OSError as exc:  # PyAV passes on what the file object raised
        if remote.error is not None:
            raise remote.error from None
        raise SourceError(f"{redact(source.uri)}: {exc}") from None
    finally:
        await remote.aclose()
    if remote.error is not None:  # FFmpeg took the failed read for the end of the data
        raise remote.error
    return facts


# The probe itself: blocking, in a thread.


def _probe(
    open_container: Callable[[], av.container.InputContainer],
    pread: Callable[[int, int], bytes],
    size: int,
) -> MediaFacts:
    walk = _walk_boxes(pread, size)
    facts = MediaFacts(state=MediaState.READY, size=size, fast_start=walk.fast_start)
    try:
        container = open_container()
    except av.error.FFmpegError as exc:
        return _damaged(facts, walk.damage or f"not a media file FFmpeg can open ({_why(exc)})")
    except ValueError as exc:  # e.g. metadata that is no text: PyAV's own checks refuse it
        return _damaged(facts, walk.damage or f"not a media file FFmpeg can open ({exc})")
    with container:
        if container.format.name in _ANY_BYTES_FORMATS:
            return _damaged(facts, walk.damage or "not a media file FFmpeg can recognise")
        facts = _describe(container, facts, walk.is_mp4)
        damage = walk.damage or _demux(container, size)
    return _damaged(facts, damage) if damage else facts


def _damaged(facts: MediaFacts, reason: str) -> MediaFacts:
    return replace(facts, state=MediaState.DAMAGED, reason=reason)


def _why(exc: av.error.FFmpegError) -> str:
    return exc.strerror or type(exc).__name__


def _describe(
    container: av.container.InputContainer, facts: MediaFacts, is_mp4: bool
) -> MediaFacts:
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    duration: float | None = None
    if container.duration is not None and container.duration > 0:
        duration = container.duration / 1_000_000
    name = container.format.name or ""
    media_type: str | None
    if is_mp4 or "mp4" in name.split(","):
        media_type = "video/mp4" if video is not None else "audio/mp4"
    else:
        media_type = _MEDIA_TYPES.get(name)
    return replace(
        facts,
        container=name,
        media_type=media_type,
        duration_s=duration,
        width=video.codec_context.width or None if video is not None else None,
        height=video.codec_context.height or None if video is not None else None,
        video_codec=video.codec_context.codec.canonical_name if video is not None else None,
        audio_codec=audio.codec_context.codec.canonical_name if audio is not None else None,
    )


def _demux(container: av.container.InputContainer, size: int) -> str:
    """Read every packet of every stream, decoding nothing: the damage found, or ''."""
    streams = [s for s in container.streams if s.type in ("video", "audio")]
    if not streams:
        return "no audio or video stream"
    counts = dict.fromkeys((s.index for s in container.streams), 0)
    try:
        for packet in container.demux():
            if packet.size == 0:  # the flush packet at the end of each stream
                continue
            index = packet.stream.index
            counts[index] += 1
            if packet.pos is not None and packet.pos >= 0 and packet.pos + packet.size > size:
                return (
                    f"stream {index}: a sample at bytes {packet.pos}-{packet.pos + packet.size - 1}"
                    f" lies past the end of the file ({size} bytes)"
                )
            if packet.is_corrupt:
                return f"stream {index}: a corrupt sample at byte {packet.pos} (truncated file?)"
    except av.error.FFmpegError as exc:
        return f"demux error: {_why(exc)}"
    for stream in streams:
        if stream.frames and counts[stream.index] < stream.frames:
            return (
                f"stream {stream.index}: the index lists {stream.frames} samples, "
                f"only {counts[stream.index]} could be read (truncated file?)"
            )
    if not any(counts[s.index] for s in streams):
        return "no audio or video sample"
    return ""


@dataclass(frozen=True)
class _Walk:
    is_mp4: bool
    fast_start: bool | None
    damage: str


def _walk_boxes(pread: Callable[[int, int], bytes], size: int) -> _Walk:
    """The top-level ISO-BMFF boxes, from their headers alone: fast-start and structural damage.

    A file that does not begin with a box is not an MP4 (``is_mp4`` False): FFmpeg judges it.
    """
    offset, boxes = 0, 0
    moov_at = mdat_at = -1
    while offset < size and boxes < MAX_BOXES:
        header = pread(offset, 16) if size - offset >= 8 else b""
        if len(header) < 8:
            damage = f"truncated: the file ends inside a box header at byte {offset}"
            return _walk_end(boxes > 0, moov_at, mdat_at, damage)
        length = int.from_bytes(header[:4], "big")
        kind = header[4:8]
        if offset == 0 and kind not in _FIRST_BOXES:
            return _Walk(is_mp4=False, fast_start=None, damage="")
        header_length = 8
        if length == 1:
            if len(header) < 16:
                damage = f"truncated: the file ends inside the header of the box at byte {offset}"
                return _walk_end(True, moov_at, mdat_at, damage)
            length, header_length = int.from_bytes(header[8:16], "big"), 16
        elif length == 0:  # the last box, to the end of the file
            length = size - offset
        name = kind.decode("latin-1")
        if length < header_length:
            return _walk_end(
                True, moov_at, mdat_at, f"the {name!r} box at byte {offset} is malformed"
            )
        if kind == b"moov" and moov_at < 0:
            moov_at = offset
        if kind == b"mdat" and mdat_at < 0:
            mdat_at = offset
        if offset + length > size:
            damage = (
                f"truncated: the {name!r} box at byte {offset} declares {length} bytes, "
                f"the file ends after {size - offset} of them"
            )
            return _walk_end(True, moov_at, mdat_at, damage)
        offset += length
        boxes += 1
    if offset < size and moov_at < 0:  # too many boxes to walk: FFmpeg judges the rest
        return _Walk(is_mp4=True, fast_start=None, damage="")
    return _walk_end(True, moov_at, mdat_at, "")


def _walk_end(is_mp4: bool, moov_at: int, mdat_at: int, damage: str) -> _Walk:
    if not is_mp4:
        return _Walk(is_mp4=False, fast_start=None, damage=damage)
    if moov_at < 0 and not damage:
        damage = "no moov box (the MP4's index): the recorder did not finish the file"
    fast_start = moov_at >= 0 and (mdat_at < 0 or moov_at < mdat_at)
    return _Walk(is_mp4=True, fast_start=fast_start, damage=damage)


# A remote source as a blocking, seekable file for PyAV, read ahead on the event loop.


_END = object()


class _ReadAhead:
    """One ranged read of a source from ``start`` to its end, kept READ_AHEAD bytes ahead.

    The pump runs on the event loop; ``take`` runs in the probe's thread.
    """

    def __init__(self, source: MediaSource, start: int, size: int, loop: asyncio.AbstractEventLoop):
        self.position = start
        self._loop = loop
        self._chunks: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._buffered = 0
        self._drained = asyncio.Event()
        self._pending = b""
        self._offset = 0
        self._task = loop.create_task(self._pump(source, start, size - start))

    async def _pump(self, source: MediaSource, start: int, length: int) -> None:
        try:
            async with reading(source, start, length) as chunks:
                async for chunk in chunks:
                    with self._lock:
                        self._buffered += len(chunk)
                        full = self._buffered >= READ_AHEAD
                        if full:
                            self._drained.clear()
                    self._chunks.put(chunk)
                    if full:
                        await self._drained.wait()
        except SourceError as exc:
            self._chunks.put(exc)
        finally:
            self._chunks.put(_END)

    def take(self, length: int) -> bytes:
        """Up to ``length`` bytes at ``position`` (b'' at the end); raises the source's error."""
        if self._offset >= len(self._pending):
            item = self._chunks.get()
            if isinstance(item, SourceError):
                raise item
            if not isinstance(item, bytes):
                self._chunks.put(_END)
                return b""
            with self._lock:
                self._buffered -= len(item)
                drained = self._buffered < READ_AHEAD
            if drained:
                self._loop.call_soon_threadsafe(self._drained.set)
            self._pending, self._offset = item, 0
        data = self._pending[self._offset : self._offset + length]
        self._offset += len(data)
        self.position += len(data)
        return data

    async def aclose(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


class _RemoteFile:
    """The file-like object PyAV reads (``read``, ``seek``, ``tell``), in the probe's thread."""

    def __init__(self, source: MediaSource, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self._source = source
        self._size = size
        self._loop = loop
        self._position = 0
        self._ahead: _ReadAhead | None = None
        self._closed = False
        self.error: SourceError | None = None

    def read(self, length: int = -1) -> bytes:
        if length < 0:
            length = self._size - self._position
        if length == 0 or self._position >= self._size:
            return b""
        try:
            ahead = self._ahead
            if ahead is None or ahead.position != self._position:
                ahead = self._restart()
            data = ahead.take(length)
        except SourceError as exc:
            self.error = exc
            raise OSError(str(exc)) from None
        self._position += len(data)
        return data

    def _restart(self) -> _ReadAhead:
        old, start = self._ahead, self._position
        self._ahead = None

        async def swap() -> _ReadAhead:
            if old is not None:
                await old.aclose()
            if self._closed:  # the probe was given up (cancelled) while its thread read on
                raise SourceError(f"{redact(self._source.uri)}: probe cancelled")
            return _ReadAhead(self._source, start, self._size, self._loop)

        self._ahead = asyncio.run_coroutine_threadsafe(swap(), self._loop).result()
        return self._ahead

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._position
        elif whence == os.SEEK_END:
            offset += self._size
        elif whence != os.SEEK_SET:
            raise OSError(f"unsupported whence {whence}")
        if offset < 0:
            raise OSError("negative seek position")
        self._position = offset
        return offset

    def tell(self) -> int:
        return self._position

    def pread(self, offset: int, length: int) -> bytes:
        """A few bytes at ``offset`` (box headers), in one small ranged read of their own."""
        length = max(0, min(length, self._size - offset))
        if length == 0:
            return b""

        async def fetch() -> bytes:
            async with reading(self._source, offset, length) as chunks:
                return b"".join([chunk async for chunk in chunks])

        return asyncio.run_coroutine_threadsafe(fetch(), self._loop).result()

    async def aclose(self) -> None:
        self._closed = True
        if self._ahead is not None:
            await self._ahead.aclose()
            self._ahead = None
