"""Local files (or a shared mount): stat, chunked reads off the event loop, and a sendfile path."""

from __future__ import annotations

import asyncio
import os
import stat as stat_module
from collections.abc import AsyncIterator
from pathlib import Path

from ccgateway.sources.base import SourceError, SourceMissing, SourceStat

CHUNK_BYTES = 1024 * 1024


class LocalSource:
    def __init__(self, path: Path) -> None:
        self._path = path

    @property
    def uri(self) -> str:
        return str(self._path)

    @property
    def local_path(self) -> Path | None:
        return self._path

    async def stat(self) -> SourceStat:
        try:
            info = await asyncio.to_thread(os.stat, self._path)
        except FileNotFoundError:
            raise SourceMissing(f"{self._path}: no such file") from None
        except OSError as exc:
            raise SourceError(f"{self._path}: {exc.strerror}") from None
        if not stat_module.S_ISREG(info.st_mode):
            raise SourceMissing(f"{self._path}: not a regular file")
        return SourceStat(size=info.st_size, mtime_ns=info.st_mtime_ns)

    async def read(self, start: int, length: int) -> AsyncIterator[bytes]:
        try:
            fd = await asyncio.to_thread(os.open, self._path, os.O_RDONLY)
        except OSError as exc:
            raise SourceMissing(f"{self._path}: {exc.strerror}") from None
        try:
            offset, end = start, start + length
            while offset < end:
                want = min(CHUNK_BYTES, end - offset)
                chunk = await asyncio.to_thread(os.pread, fd, want, offset)
                if not chunk:
                    raise SourceError(f"{self._path}: file ended at byte {offset}")
                offset += len(chunk)
                yield chunk
        except OSError as exc:
            raise SourceError(f"{self._path}: {exc.strerror}") from None
        finally:
            os.close(fd)
