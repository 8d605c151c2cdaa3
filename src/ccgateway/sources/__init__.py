"""Media sources by location: ``open_source`` picks the backend for a registered location.

- an absolute path or ``file://`` URL: ``LocalSource`` (sendfile-able)
- ``http://`` / ``https://``: ``HttpSource``, a streaming proxy of the recording server
- ``s3://bucket/key``: ``S3Source``, any S3-compatible store

The remote backends share process-wide pools (one HTTP session, one S3 client), opened on first
use on the running event loop: ``configure_sources`` sets their options before that, and
``close_sources`` closes them (the gateway's exit does).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from ccgateway.sources.base import MediaSource, SourceError, redact
from ccgateway.sources.http import HttpOptions, HttpPool, HttpSource
from ccgateway.sources.local import LocalSource
from ccgateway.sources.s3 import S3Config, S3Pool, S3Source

_pools: dict[str, HttpPool | S3Pool] = {}
_retired: list[HttpPool | S3Pool] = []  # replaced while possibly in use: closed with the rest


def configure_sources(http: HttpOptions | None = None, s3: S3Config | None = None) -> None:
    """Options for the sources opened from now on; ``close_sources`` also closes the old pools."""
    if http is not None:
        _replace("http", HttpPool(http))
    if s3 is not None:
        _replace("s3", S3Pool(s3))


def _replace(kind: str, pool: HttpPool | S3Pool) -> None:
    old = _pools.get(kind)
    if old is not None:
        _retired.append(old)
    _pools[kind] = pool


def http_pool() -> HttpPool:
    pool = _pools.get("http")
    if not isinstance(pool, HttpPool):
        pool = _pools["http"] = HttpPool()
    return pool


def s3_pool() -> S3Pool:
    pool = _pools.get("s3")
    if not isinstance(pool, S3Pool):
        pool = _pools["s3"] = S3Pool(S3Config.from_environ())
    return pool


async def close_sources() -> None:
    """Close the HTTP session and the S3 client; the next use opens new ones."""
    pools = [*_retired, *_pools.values()]
    _pools.clear()
    _retired.clear()
    for pool in pools:
        await pool.aclose()


def open_source(location: str) -> MediaSource:
    """The source for a registered location (see the module's docstring for the schemes)."""
    scheme = location.split(":", 1)[0].lower() if "://" in location else ""
    if scheme in ("http", "https"):
        return HttpSource(location, http_pool())
    if scheme == "s3":
        return S3Source(location, s3_pool())
    path = location.removeprefix("file://")
    if not path.startswith("/"):
        raise SourceError(
            f"unsupported source location {redact(location)!r}: give an absolute path, "
            "an http(s):// URL or s3://bucket/key"
        )
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
        raise SourceError(f"{redact(source.uri)} changed while it was being read")
    return stat.size, stat.mtime_ns, sha.hexdigest()
