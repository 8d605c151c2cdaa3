"""Recordings on an HTTP(S) recording server (the MCU's), proxied as a stream.

``stat()`` is a HEAD: the size from Content-Length, the Last-Modified second and the server's
ETag (folded into ``mtime_ns`` by ``remote_mtime_ns``, so the registered size and mtime_ns also
pin the ETag). Every ranged GET then carries a precondition built from what ``stat()`` saw:
``If-Match`` with a strong ETag, else ``If-Unmodified-Since`` with the Last-Modified date; the
answer must be a 206 whose ``Content-Range`` names exactly the requested bytes of a file of the
same size. A file that changed (412, 416, another total, another ETag) raises ``SourceChanged``,
so the bytes of two versions are never spliced.

The body is relayed as it arrives (``iter_any``, no extra copy); the caller's ``await write()``
drains the client before the next read, and aiohttp stops reading the socket once
``read_buffer_bytes`` x 2 wait unread, so a slow client slows the upstream down. Connect and
per-read timeouts bound a dead upstream; only opening the response (connect, headers, a 502/503/
504) is retried, never a body that has begun. A read that ends early (cancelled, closed, failed)
closes its upstream connection; one that finishes returns it to the pool. Messages name the URL
without its user info or query string (``redact``).

``open_body`` is the same ranged GET for the zero-copy relay (``splice``): sent with the raw
HTTP/1.1 client (``rawhttp``) on plain sockets for an ``http://`` URL, with the same
precondition, checks and retries; ``read`` (aiohttp) serves https://, chunked answers and TLS
clients.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yarl

from ccgateway.sources.base import (
    SourceChanged,
    SourceError,
    SourceMissing,
    SourceStat,
    redact,
    remote_mtime_ns,
    tune_transport,
)
from ccgateway.sources.rawhttp import (
    RawHttpPool,
    RawResponse,
    request_with_retries,
)
from ccgateway.sources.splice import RawBody

RETRY_STATUSES = frozenset({502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class HttpOptions:
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    retries: int = 2
    pool_size: int = 256
    read_buffer_bytes: int = 128 * 1024


class HttpPool:
    """The one pooled ``aiohttp.ClientSession`` of every HTTP source, opened on first use."""

    def __init__(
        self, options: HttpOptions | None = None, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.options = options or HttpOptions()
        self._session = session
        self._owned = session is None
        self.raw = RawHttpPool(self.options.pool_size)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            options = self.options
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=options.pool_size, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=options.connect_timeout_s,
                    sock_connect=options.connect_timeout_s,
                    sock_read=options.read_timeout_s,
                ),
                read_bufsize=options.read_buffer_bytes,
                auto_decompress=False,
            )
            self._owned = True
        return self._session

    async def aclose(self) -> None:
        self.raw.close()
        session, self._session = self._session, None
        if session is not None and self._owned:
            await session.close()


@dataclass(frozen=True)
class _Validators:
    size: int
    etag: str | None
    last_modified: str | None


class HttpSource:
    def __init__(self, url: str, pool: HttpPool) -> None:
        self._url = url
        self._pool = pool
        self._name = redact(url)
        self._seen: _Validators | None = None

    @property
    def uri(self) -> str:
        return self._url

    @property
    def local_path(self) -> Path | None:
        return None

    def __repr__(self) -> str:
        return f"HttpSource({self._name!r})"

    async def stat(self) -> SourceStat:
        seen = await self._head()
        seconds = _seconds(seen.last_modified) or 0
        return SourceStat(seen.size, remote_mtime_ns(seconds, seen.etag), seen.etag)

    async def _head(self) -> _Validators:
        response = await self._open("HEAD", {"Accept-Encoding": "identity"})
        try:
            if response.status != 200:
                raise self._status_error(response.status, "HEAD")
            size = response.content_length
            if size is None:
                raise SourceError(f"{self._name}: HEAD gave no Content-Length")
            etag = response.headers.get("ETag")
            last_modified = response.headers.get("Last-Modified")
        finally:
            response.release()
        if not _is_strong(etag) and _seconds(last_modified) is None:
            raise SourceError(
                f"{self._name}: the server sends neither a strong ETag nor Last-Modified, "
                "so a changed file could not be told apart"
            )
        self._seen = _Validators(size, etag, last_modified)
        return self._seen

    async def read(self, start: int, length: int) -> AsyncIterator[bytes]:
        if length <= 0:
            return
        seen, headers = await self._ranged(start, length)
        end = start + length - 1
        response = await self._open("GET", headers)
        if response.connection is not None:
            tune_transport(response.connection.transport)
        received = 0
        finished = False
        try:
            self._check_partial(
                response.status, response.headers, response.content_length, seen, start, end
            )
            async for chunk in response.content.iter_any():
                received += len(chunk)
                yield chunk
            if received != length:
                raise SourceError(f"{self._name}: body ended after {received} of {length} bytes")
            finished = True
        except aiohttp.ClientError as exc:
            raise SourceError(
                f"{self._name}: transfer broken after {received} bytes: {self._why(exc)}"
            ) from None
        except TimeoutError:
            raise SourceError(
                f"{self._name}: no data for {self._pool.options.read_timeout_s:g} s "
                f"after {received} bytes"
            ) from None
        finally:
            if finished:
                response.release()
            else:
                response.close()

    async def open_body(self, start: int, length: int) -> RawBody | None:
        """The ranged GET on a plain socket, for ``splice.relay``; None for https:// (and for a
        body that is not exactly Content-Length bytes), which the chunked ``read`` serves."""
        if length <= 0 or not self._url.lower().startswith("http://"):
            return None
        seen, headers = await self._ranged(start, length)
        end = start + length - 1
        response = await self._open_raw(headers)
        try:
            self._check_partial(
                response.status, response.headers, response.content_length, seen, start, end
            )
        except BaseException:
            response.close()
            raise
        if not response.delimited:
            response.close()
            return None
        if response.content_length != length:
            response.close()
            raise SourceError(
                f"{self._name}: asked for {length} bytes, the answer has {response.content_length}"
            )
        return RawBody(response, length, self._name, self._pool.options.read_timeout_s)

    async def _ranged(self, start: int, length: int) -> tuple[_Validators, dict[str, str]]:
        """What ``stat()`` saw, and the request headers for the range with its precondition."""
        seen = self._seen or await self._head()
        end = start + length - 1
        if start < 0 or end >= seen.size:
            raise SourceError(f"{self._name}: bytes {start}-{end} are beyond its {seen.size}")
        headers = {"Range": f"bytes={start}-{end}", "Accept-Encoding": "identity"}
        if seen.etag is not None and _is_strong(seen.etag):
            headers["If-Match"] = seen.etag
        elif seen.last_modified is not None:
            headers["If-Unmodified-Since"] = seen.last_modified
        return seen, headers

    async def _open_raw(self, headers: dict[str, str]) -> RawResponse:
        """``_open`` for the raw client: the same retries, before any byte of a body."""
        options = self._pool.options

        def send() -> Awaitable[RawResponse]:
            return self._pool.raw.request(
                "GET",
                self._url,
                headers,
                connect_timeout_s=options.connect_timeout_s,
                read_timeout_s=options.read_timeout_s,
            )

        return await request_with_retries(
            send,
            retries=options.retries,
            retry_statuses=RETRY_STATUSES,
            failed=lambda exc: SourceError(f"{self._name}: {self._why(exc)}"),
        )

    async def _open(self, method: str, headers: Mapping[str, str]) -> aiohttp.ClientResponse:
        """Send the request, retrying connection failures, timeouts and 502/503/504."""
        options = self._pool.options
        for attempt in range(options.retries + 1):
            last = attempt == options.retries
            try:
                response = await self._pool.session().request(
                    method, self._url, headers=headers, allow_redirects=False
                )
            except aiohttp.ClientConnectionError as exc:
                if last:
                    raise SourceError(f"{self._name}: {self._why(exc)}") from None
            except TimeoutError:
                if last:
                    raise SourceError(
                        f"{self._name}: no answer within {options.read_timeout_s:g} s"
                    ) from None
            except aiohttp.ClientError as exc:
                raise SourceError(f"{self._name}: {self._why(exc)}") from None
            else:
                if response.status not in RETRY_STATUSES or last:
                    return response
                response.close()
            await asyncio.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")

    def _check_partial(
        self,
        status: int,
        headers: Mapping[str, str],
        content_length: int | None,
        seen: _Validators,
        start: int,
        end: int,
    ) -> None:
        """Headers are looked up by their lower-case names (aiohttp's are case-insensitive)."""
        if status == 200 and start == 0 and end == seen.size - 1:
            total, first, last = content_length, 0, end
        elif status == 206:
            found = _CONTENT_RANGE.fullmatch(headers.get("content-range", "").strip())
            if found is None:
                raise SourceError(f"{self._name}: 206 without a single-range Content-Range")
            first, last = int(found[1]), int(found[2])
            total = None if found[3] == "*" else int(found[3])
        elif status == 200:
            raise SourceError(f"{self._name}: the server ignores Range (answered 200)")
        else:
            raise self._status_error(status, "GET")
        etag = headers.get("etag")
        if total is not None and total != seen.size:
            raise SourceChanged(f"{self._name}: now {total} bytes, not {seen.size}")
        if etag is not None and seen.etag is not None and etag != seen.etag:
            raise SourceChanged(f"{self._name}: its ETag changed from {seen.etag} to {etag}")
        if (first, last) != (start, end):
            raise SourceError(f"{self._name}: asked for bytes {start}-{end}, got {first}-{last}")

    def _status_error(self, status: int, method: str) -> SourceError:
        if status in (404, 410):
            return SourceMissing(f"{self._name}: {method} answered {status}, no such file")
        if status in (412, 416):
            return SourceChanged(f"{self._name}: changed since it was registered ({status})")
        return SourceError(f"{self._name}: {method} answered {status}")

    def _why(self, exc: BaseException) -> str:
        """The exception as a message, with the URL's query string and user info cut out."""
        text = (str(exc) or type(exc).__name__).replace(self._url, self._name)
        url = yarl.URL(self._url)
        for secret in (url.raw_query_string, url.query_string, url.raw_user, url.raw_password):
            if secret:
                text = text.replace(secret, "...")
        return text


def _is_strong(etag: str | None) -> bool:
    return etag is not None and etag.startswith('"') and etag.endswith('"') and len(etag) > 2


def _seconds(last_modified: str | None) -> int | None:
    if not last_modified:
        return None
    try:
        when = email.utils.parsedate_to_datetime(last_modified)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return int(when.timestamp())
