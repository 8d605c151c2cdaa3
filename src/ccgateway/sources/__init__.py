"""Media sources by location: ``Sources.open`` picks the backend for a registered location.

- an absolute path or ``file://`` URL: ``LocalSource`` (sendfile-able)
- ``http://`` / ``https://``: ``HttpSource``, a streaming proxy of the recording server
- ``s3://bucket/key``: ``S3Source``, any S3-compatible store

One ``Sources`` per gateway, built by the composition root (``gateway.py``) from the settings: it
owns the remote backends' pools (one HTTP session, one S3 client), opened on first use on the
running event loop, and closes them in ``aclose``. Domain code names ``Sources`` and the
``MediaSource`` interface (``base``), never a backend.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import aiohttp

from ccgateway.sources.base import MediaSource, SourceError, SourceMissing, redact
from ccgateway.sources.http import HttpOptions, HttpPool, HttpSource
from ccgateway.sources.local import LocalSource
from ccgateway.sources.s3 import S3Config, S3Pool, S3Source


class Sources:
    """The media sources of one gateway, and the pools of its remote backends."""

    def __init__(self, http: HttpOptions | None = None, s3: S3Config | None = None) -> None:
        self._http = HttpPool(http)
        self._s3 = S3Pool(s3)
        self._retired: list[HttpPool | S3Pool] = []  # replaced while possibly in use

    def configure(self, *, http: HttpOptions | None = None, s3: S3Config | None = None) -> None:
        """Options for the sources opened from now on; the old pools close with ``aclose``."""
        if http is not None:
            self._retired.append(self._http)
            self._http = HttpPool(http)
        if s3 is not None:
            self._retired.append(self._s3)
            self._s3 = S3Pool(s3)

    def open(self, location: str) -> MediaSource:
        """The source for a registered location (see the module's docstring for the schemes)."""
        scheme = location.split(":", 1)[0].lower() if "://" in location else ""
        if scheme in ("http", "https"):
            return HttpSource(location, self._http)
        if scheme == "s3":
            return S3Source(location, self._s3)
        path = location.removeprefix("file://")
        if not path.startswith("/"):
            raise SourceError(
                f"unsupported source location {redact(location)!r}: give an absolute path, "
                "an http(s):// URL or s3://bucket/key"
            )
        return LocalSource(Path(path))

    async def fetch_document(self, url: str, max_bytes: int) -> bytes:
        """A small document over HTTP(S) (a recording server's listing), at most ``max_bytes``
        plus one, through the pooled session: SourceMissing on 404/410, else SourceError."""
        name = redact(url)
        try:
            async with self._http.session().get(url, allow_redirects=False) as response:
                if response.status in (404, 410):
                    raise SourceMissing(f"{name}: not found ({response.status})")
                if response.status != 200:
                    raise SourceError(f"{name}: GET answered {response.status}")
                return await response.content.read(max_bytes + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SourceError(f"{name}: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        """Close the HTTP session and the S3 client; the next use opens new ones."""
        pools = [*self._retired, self._http, self._s3]
        self._retired.clear()
        self._http, self._s3 = HttpPool(self._http.options), S3Pool(self._s3.config)
        for pool in pools:
            await pool.aclose()


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
        raise SourceError(f"{redact(source.uri)} changed while it was being read")
    return stat.size, stat.mtime_ns, sha.hexdigest()
