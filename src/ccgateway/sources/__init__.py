"""Media sources by location: ``open_source`` picks the backend for a registered location."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from ccgateway.sources.base import MediaSource, SourceError
from ccgateway.sources.local import LocalSource


def open_source(location: str) -> MediaSource:
    """The source for a registered location: an absolute local path (or ``file://`` URL)."""
    path = location.removeprefix("file://")
    if not path.startswith("/"):
        raise SourceError(f"unsupported source location {location!r}: give an absolute path")
    return LocalSource(Path(path))


async def digest(
    source: MediaSource, progress: Callable[[int, int], None] | None = None
) -> tuple[int, int, str]:
    """Stream the source once: its size, mtime (ns) and SHA-256 hex."""
    stat = await source.stat()
    sha = hashlib.sha256()
    done = 0
    async for chunk in source.read(0, stat.size):
        sha.update(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, stat.size)
    after = await source.stat()
    if after != stat:
        raise SourceError(f"{source.uri} changed while it was being read")
    return stat.size, stat.mtime_ns, sha.hexdigest()
