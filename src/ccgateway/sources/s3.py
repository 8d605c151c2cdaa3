"""Recordings in S3-compatible object storage (``s3://bucket/key``), streamed with aiobotocore.

``stat()`` is HeadObject (ContentLength, LastModified, ETag). A read is one ranged GetObject with
``IfMatch`` set to the ETag that ``stat()`` saw, so an object replaced meanwhile answers 412
(``SourceChanged``) instead of splicing versions; the body is relayed in chunks of at most 1 MiB as
it arrives, and the caller's drain paces the reads. botocore retries the request (never a body
that has begun); a read that ends early closes its connection.

Errors are mapped at this edge: NoSuchKey / NoSuchBucket / 404 -> ``SourceMissing``;
PreconditionFailed / 412 / 416 -> ``SourceChanged``; AccessDenied, bad keys, timeouts, connection
failures -> ``SourceError``. Each message names the object, the operation and the cause, never a
credential. The endpoint, region and keys come from ``S3Config`` (keys never in its repr).

``open_body`` is the GetObject of the zero-copy relay (``splice``) for an ``http://`` endpoint:
signed locally as a SigV4 URL (no network; Range and If-Match are signed headers), sent with the
raw HTTP/1.1 client, retried like botocore before the first byte, its errors mapped as above from
the status and the error document's ``Code``. Stat stays HeadObject through aiobotocore.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from ccgateway.sources.base import (
    SourceChanged,
    SourceError,
    SourceMissing,
    SourceStat,
    remote_mtime_ns,
    tune_transport,
)
from ccgateway.sources.rawhttp import RawHttpPool, RawResponse, request_with_retries
from ccgateway.sources.splice import RawBody

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

CHUNK_BYTES = 1024 * 1024
MISSING = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404", "410"})
CHANGED = frozenset({"PreconditionFailed", "InvalidRange", "412", "416"})
RETRY_STATUSES = frozenset({500, 502, 503, 504})
SIGNED_FOR_S = 300
_ERROR_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")


@dataclass(frozen=True)
class S3Config:
    endpoint_url: str = ""
    region: str = ""
    access_key_id: str = field(default="", repr=False)
    secret_access_key: str = field(default="", repr=False)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    retries: int = 2
    pool_size: int = 256


class S3Pool:
    """One aiobotocore S3 client (and its connection pool), opened on first use."""

    def __init__(self, config: S3Config | None = None) -> None:
        self.config = config or S3Config()
        self._client: S3Client | None = None
        self._stack: AsyncExitStack | None = None
        self._lock = asyncio.Lock()
        self.raw = RawHttpPool(self.config.pool_size)

    async def client(self) -> S3Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            client = self._client
            if client is None:
                stack = AsyncExitStack()
                client = await stack.enter_async_context(self._create())
                self._client, self._stack = client, stack
        return client

    def _create(self) -> AbstractAsyncContextManager[S3Client]:
        config = self.config
        options = AioConfig(
            connect_timeout=config.connect_timeout_s,
            read_timeout=config.read_timeout_s,
            retries={"total_max_attempts": config.retries + 1, "mode": "standard"},
            max_pool_connections=config.pool_size,
            s3={"addressing_style": "path" if config.endpoint_url else "auto"},
            signature_version="s3v4",  # signed URLs sign Range and If-Match too
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return get_session().create_client(
            "s3",
            endpoint_url=config.endpoint_url or None,
            region_name=config.region or None,
            aws_access_key_id=config.access_key_id or None,
            aws_secret_access_key=config.secret_access_key or None,
            config=options,
        )

    async def aclose(self) -> None:
        self.raw.close()
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()


def parse_s3_location(location: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); raises SourceError for anything else."""
    rest = location.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    if not bucket or not key or rest == location:
        raise SourceError(f"{location!r}: an S3 location is s3://bucket/key")
    return bucket, key


class S3Source:
    def __init__(self, location: str, pool: S3Pool) -> None:
        self._bucket, self._key = parse_s3_location(location)
        self._pool = pool
        self._uri = f"s3://{self._bucket}/{self._key}"
        self._seen: SourceStat | None = None

    @property
    def uri(self) -> str:
        return self._uri

    @property
    def local_path(self) -> Path | None:
        return None

    def __repr__(self) -> str:
        return f"S3Source({self._uri!r})"

    async def stat(self) -> SourceStat:
        client = await self._pool.client()
        try:
            head = await client.head_object(Bucket=self._bucket, Key=self._key)
        except (ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
            raise self._error("HeadObject", exc) from None
        etag = head.get("ETag") or None
        seconds = int(head["LastModified"].timestamp())
        self._seen = SourceStat(head["ContentLength"], remote_mtime_ns(seconds, etag), etag)
        return self._seen

    async def read(self, start: int, length: int) -> AsyncIterator[bytes]:
        if length <= 0:
            return
        seen = self._seen or await self.stat()
        end = start + length - 1
        if start < 0 or end >= seen.size:
            raise SourceError(f"{self._uri}: bytes {start}-{end} are beyond its {seen.size}")
        client = await self._pool.client()
        request: dict[str, Any] = {"Bucket": self._bucket, "Key": self._key}
        request["Range"] = f"bytes={start}-{end}"
        if seen.etag:
            request["IfMatch"] = seen.etag
        else:
            request["IfUnmodifiedSince"] = datetime.fromtimestamp(seen.mtime_ns // 10**9, UTC)
        try:
            answer = await client.get_object(**request)
        except (ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
            raise self._error("GetObject", exc) from None
        body = answer["Body"]
        connection = getattr(body.raw_stream, "connection", None)
        tune_transport(getattr(connection, "transport", None))
        received = 0
        try:
            self._check_range(seen, answer.get("ContentRange", ""), answer.get("ETag"), start, end)
            async for chunk in body.iter_chunks(CHUNK_BYTES):
                received += len(chunk)
                yield chunk
            if received != length:
                raise SourceError(f"{self._uri}: body ended after {received} of {length} bytes")
        except (BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
            raise SourceError(
                f"{self._uri}: GetObject broken after {received} bytes: {_cause(exc)}"
            ) from None
        finally:
            body.close()

    async def open_body(self, start: int, length: int) -> RawBody | None:
        """The ranged GetObject on a plain socket, for ``splice.relay``: signed locally (SigV4,
        Range and If-Match among the signed headers), sent by the raw HTTP client. None for an
        https:// (or default AWS) endpoint and for an object without an ETag: ``read`` serves
        those."""
        if length <= 0 or not self._pool.config.endpoint_url.lower().startswith("http://"):
            return None
        seen = self._seen or await self.stat()
        end = start + length - 1
        if start < 0 or end >= seen.size:
            raise SourceError(f"{self._uri}: bytes {start}-{end} are beyond its {seen.size}")
        if not seen.etag:
            return None
        client = await self._pool.client()
        params = {"Bucket": self._bucket, "Key": self._key, "Range": f"bytes={start}-{end}"}
        params["IfMatch"] = seen.etag
        headers = {"Range": params["Range"], "If-Match": seen.etag}
        response = await self._get_raw(client, params, headers)
        config = self._pool.config
        if response.status != 206:
            document = await response.read_small(16384, config.read_timeout_s)
            found = _ERROR_CODE.search(document)
            code = found[1].decode("utf-8", "replace") if found else str(response.status)
            raise self._status_error("GetObject", code, response.status)
        try:
            self._check_range(
                seen,
                response.headers.get("content-range", ""),
                response.headers.get("etag"),
                start,
                end,
            )
            if not response.delimited or response.content_length != length:
                raise SourceError(f"{self._uri}: GetObject answered a body of another length")
        except BaseException:
            response.close()
            raise
        return RawBody(response, length, self._uri, config.read_timeout_s)

    async def _get_raw(
        self, client: S3Client, params: dict[str, str], headers: dict[str, str]
    ) -> RawResponse:
        """Sign and send, retrying connection failures, timeouts and 5xx like botocore."""
        config = self._pool.config

        async def send() -> RawResponse:
            try:  # signed afresh for each attempt
                url = await client.generate_presigned_url(
                    "get_object", Params=params, ExpiresIn=SIGNED_FOR_S
                )
            except (ClientError, BotoCoreError) as exc:
                raise self._error("GetObject", exc) from None
            return await self._pool.raw.request(
                "GET",
                url,
                headers,
                connect_timeout_s=config.connect_timeout_s,
                read_timeout_s=config.read_timeout_s,
            )

        return await request_with_retries(
            send,
            retries=config.retries,
            retry_statuses=RETRY_STATUSES,
            failed=lambda exc: SourceError(f"{self._uri}: GetObject failed: {exc}"),
        )

    def _check_range(
        self, seen: SourceStat, content_range: str, etag: str | None, start: int, end: int
    ) -> None:
        expected = f"bytes {start}-{end}/{seen.size}"
        if etag and seen.etag and etag != seen.etag:
            raise SourceChanged(f"{self._uri}: its ETag changed from {seen.etag} to {etag}")
        if content_range != expected:
            raise SourceChanged(f"{self._uri}: asked for {expected}, got {content_range!r}")

    def _error(self, operation: str, exc: BaseException) -> SourceError:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            return self._status_error(operation, str(error.get("Code") or status), status)
        return SourceError(f"{self._uri}: {operation} failed: {_cause(exc)}")

    def _status_error(self, operation: str, code: str, status: int) -> SourceError:
        what = f"{self._uri}: {operation} failed: {code} (HTTP {status})"
        if code in MISSING or status in (404, 410):
            return SourceMissing(what)
        if code in CHANGED or status in (412, 416):
            return SourceChanged(what + ": changed since it was registered")
        return SourceError(what)


def _cause(exc: BaseException) -> str:
    """botocore's and aiohttp's messages name the endpoint and the cause, never the keys."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
