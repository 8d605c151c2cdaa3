"""Where media bytes live: the MediaSource interface and its errors.

::

    SourceError            the source cannot serve the registered file (answered 108-008)
     ├── SourceMissing     nothing at that location any more
     └── SourceChanged     something is there, but not the bytes that were registered

Every backend raises only these, translating its library's exceptions at its own edge.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class SourceError(Exception):
    """The source failed; the message names the cause (never a credential)."""


class SourceMissing(SourceError):
    pass


class SourceChanged(SourceError):
    pass


@dataclass(frozen=True)
class SourceStat:
    """What a source says about its bytes now; ``etag`` is a remote source's own validator."""

    size: int
    mtime_ns: int
    etag: str | None = None


class MediaSource(Protocol):
    @property
    def uri(self) -> str: ...

    async def stat(self) -> SourceStat: ...

    def read(self, start: int, length: int) -> AsyncIterator[bytes]:
        """The bytes ``start .. start+length-1``, in chunks; raises SourceError when it fails."""
        ...

    @property
    def local_path(self) -> Path | None:
        """A path the server may hand to ``sendfile``, when the bytes are a local file."""
        ...


@asynccontextmanager
async def reading(
    source: MediaSource, start: int, length: int
) -> AsyncIterator[AsyncIterator[bytes]]:
    """``source.read(start, length)``, closed on leaving the block however it is left.

    An ``async for`` that stops early (the client went away, a write failed) leaves an async
    generator suspended until the garbage collector finalizes it; closing it here releases the
    upstream connection (or file) at once.
    """
    chunks = source.read(start, length)
    try:
        yield chunks
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


def redact(location: str) -> str:
    """A location fit for a log line or a message: no user info, query string or fragment.

    ``https://user:pw@host/a.mp4?X-Amz-Signature=...`` becomes ``https://host/a.mp4``; a local
    path or an ``s3://bucket/key`` is returned as it is (it carries no secret).
    """
    parts = urllib.parse.urlsplit(location)
    if parts.scheme not in ("http", "https"):
        return location
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None else f"{host}:{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def remote_mtime_ns(seconds: int, etag: str | None) -> int:
    """A remote source's ``mtime_ns``: its Last-Modified second, with its ETag folded in.

    HTTP dates have whole seconds, so the sub-second digits are free: they carry a 30-bit
    fingerprint of the ETag. Comparing the registered ``(size, mtime_ns)`` with a fresh
    ``stat()`` then also notices an object replaced within the same second by one of the same
    size (an S3 overwrite), with no column for the ETag. Dates are compared at whole seconds
    everywhere else (``wire.ranges``), so the Last-Modified the gateway sends is unchanged.
    """
    fingerprint = 0
    if etag:
        fingerprint = int.from_bytes(hashlib.sha256(etag.encode()).digest()[:4]) % 1_000_000_000
    return seconds * 1_000_000_000 + fingerprint


RECV_BYTES = 120 * 1024


def tune_transport(transport: object) -> None:
    """Make an upstream connection receive in blocks that glibc serves from its heap.

    asyncio reads a socket into a fresh ``bytes`` of ``max_size`` (256 KiB) per ``recv``. With
    the gateway's fixed 128 KiB mmap threshold (``app.release_freed_memory``) each of those is
    an mmap, zero-filled and unmapped again: a proxied stream ran at half speed. Blocks just
    under the threshold come from the heap. Transports without ``max_size`` are left alone.
    """
    if transport is not None and isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = RECV_BYTES  # type: ignore[attr-defined]
