"""One download: ``.part`` file, resume with ``Range`` + ``If-Range``, retries, ``Repr-Digest``.

The flow of :func:`download`:

1. The part is ``FILE.part`` (or ``DIR/<target key>.part``). With ``resume`` a part left by an
   earlier run is kept when its side-car names the ETag it was fetched against; otherwise it is
   removed.
2. Each request carries the GUID current at that moment. A part with bytes in it asks for
   ``Range: bytes=<size>-`` with ``If-Range: <etag>``. A ``206`` appends. A ``200`` means the
   file changed on the gateway: the part is emptied and refilled from byte 0, never spliced.
3. A cut connection, a timeout or a 5xx is retried with exponential backoff; the count starts
   again whenever bytes arrived, so a long download survives any number of interruptions.
4. At the end the part's SHA-256 must equal ``Repr-Digest``; then it is renamed into place.
   A mismatch deletes the part and raises :class:`VerificationError`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import aiohttp

from ccgateway.client._connection import Connection, is_json, read_reply
from ccgateway.client._errors import (
    CertificateError,
    ProtocolError,
    RefusedError,
    SignedOutError,
    TransportError,
    VerificationError,
)
from ccgateway.client._part import PartFile
from ccgateway.client._targets import Target, safe_name
from ccgateway.wire.digest import SHA256, parse_repr_digest

log = logging.getLogger("ccgateway.client")

Progress = Callable[[int, int | None], None]
"""Called with (bytes in the part, total size or None) as bytes arrive; may go back to 0."""

_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+)")
_STALE_GUID = "000-003"


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a failing download: ``attempts`` in a row without progress, then give up."""

    attempts: int = 8
    backoff: float = 0.5
    max_backoff: float = 15.0

    def delay(self, failures: int) -> float:
        base = min(self.max_backoff, self.backoff * 2.0 ** max(failures - 1, 0))
        return base * random.uniform(0.75, 1.25)  # noqa: S311 - jitter, not a secret


@dataclass(frozen=True)
class DownloadResult:
    """A finished, verified download."""

    path: Path
    size: int
    sha256: str
    etag: str | None
    resumed_from: int  # bytes of an earlier run's part that were kept
    requests: int  # GET requests sent
    restarts: int  # times the part was emptied because the file changed on the gateway


class _RetryNow(Exception):
    """Send again at once (the GUID changed while the request was out)."""


class _Download:
    def __init__(
        self,
        conn: Connection,
        agent_id: int,
        target: Target,
        dest: Path,
        retry: RetryPolicy,
        progress: Progress | None,
        require_digest: bool,
    ) -> None:
        self.conn, self.target, self.retry, self.progress = conn, target, retry, progress
        self.path, self.query = target.request(agent_id)
        self.directory = dest if dest.is_dir() else None
        self.final = None if self.directory is not None else dest
        part = (
            (self.directory / f"{target.key}.part")
            if self.directory
            else dest.parent / (dest.name + ".part")
        )
        self.part = PartFile(part)
        self.require_digest = require_digest
        self.total: int | None = None
        self.requests = self.restarts = self.received = 0
        self.sent_range = False

    async def run(self, resume: bool) -> DownloadResult:
        resumed = await self.part.prepare(resume)
        failures, complete = 0, False
        try:
            while not complete:
                before = self.received
                try:
                    complete = await self._attempt()
                except (TransportError, _RetryNow) as exc:
                    if isinstance(exc, CertificateError):
                        raise
                    failures = 1 if self.received > before else failures + 1
                    if failures > self.retry.attempts:
                        raise TransportError(f"{self.target.interface}: {exc}") from exc
                    if isinstance(exc, TransportError):
                        await self._pause(exc, failures)
            return await self._finish(resumed)
        except BaseException:
            await self.part.close(keep=True)
            raise

    async def _pause(self, exc: TransportError, failures: int) -> None:
        delay = self.retry.delay(failures)
        at = f"resuming at byte {self.part.size}" if self.part.meta.get("etag") else "retrying"
        log.info("%s: %s; %s in %.1f s", self.target.interface, exc, at, delay)
        await asyncio.sleep(delay)

    async def _attempt(self) -> bool:
        self.requests += 1
        guid = self.conn.guid
        headers = {"Want-Repr-Digest": "sha-256=10", "Accept-Encoding": "identity"}
        etag = self.part.meta.get("etag")
        self.sent_range = bool(self.part.size and isinstance(etag, str))
        if self.sent_range:
            headers["Range"] = f"bytes={self.part.size}-"
            headers["If-Range"] = str(etag)
        async with self.conn.request("GET", self.path, params=self.query, headers=headers) as resp:
            if is_json(resp) or resp.status not in (200, 206, 416):
                await self._refused(resp, guid)
            if resp.status == 416:
                return await self._unsatisfiable(resp)
            await self._take_headers(resp)
            await self._receive(resp)
        return self.total is None or self.part.size >= self.total

    async def _refused(self, resp: aiohttp.ClientResponse, guid: str | None) -> NoReturn:
        interface = self.target.interface
        if is_json(resp):
            reply = await read_reply(resp, interface)
            if reply.retcode == _STALE_GUID and self.conn.guid != guid:
                raise _RetryNow("the GUID rotated while the request was out")
            if reply.ok:
                raise ProtocolError(f"{interface}: a JSON answer where a file was due")
            error = SignedOutError if reply.retcode == "100-006" else RefusedError
            raise error(reply.retcode, reply.message, interface)
        if resp.status >= 500 or resp.status in (408, 429):
            raise TransportError(f"HTTP {resp.status}")
        raise ProtocolError(f"{interface}: unexpected HTTP {resp.status}")

    async def _unsatisfiable(self, resp: aiohttp.ClientResponse) -> bool:
        match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
        if match is None or int(match.group(3)) != self.part.size or not self.part.size:
            log.warning("%s: the part does not fit the file; restarting", self.target.interface)
            self.restarts += 1
            await self.part.restart()
            raise _RetryNow("the part did not fit the file")
        self.total = self.part.size
        await self._take_validators(resp)
        self._take_name(resp)
        return True

    async def _take_headers(self, resp: aiohttp.ClientResponse) -> None:
        if resp.status == 206:
            match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
            if match is None or match.group(1) is None or int(match.group(1)) != self.part.size:
                raise ProtocolError(f"{self.target.interface}: a 206 for another range")
            if resp.headers.get("ETag") != self.part.meta.get("etag"):
                raise ProtocolError(f"{self.target.interface}: a 206 of another version")
            self.total = int(match.group(3))
        else:
            if self.sent_range:
                self.restarts += 1
                log.warning(
                    "%s: the file changed on the gateway; restarting from byte 0 (not splicing)",
                    self.target.interface,
                )
            if self.part.size:
                await self.part.restart()
            self.total = resp.content_length
        await self._take_validators(resp)
        self._take_name(resp)

    def _take_name(self, resp: aiohttp.ClientResponse) -> None:
        """In a directory, the file is named as the gateway's Content-Disposition says."""
        if self.final is None and self.directory is not None:
            name = resp.content_disposition.filename if resp.content_disposition else None
            self.final = self.directory / safe_name(Path(name or self.target.key).name)

    async def _take_validators(self, resp: aiohttp.ClientResponse) -> None:
        digest = parse_repr_digest(resp.headers.get("Repr-Digest", "")).get(SHA256)
        if digest is None and self.require_digest:
            raise VerificationError(
                f"{self.target.interface}: the gateway sent no Repr-Digest (sha-256), "
                "so the download cannot be verified"
            )
        etag = resp.headers.get("ETag")
        strong = etag if etag and etag.startswith('"') else None
        await self.part.save_meta(etag=strong, digest=digest.hex() if digest else None)

    async def _receive(self, resp: aiohttp.ClientResponse) -> None:
        self._report()
        buffer = bytearray()
        try:
            async for chunk in resp.content.iter_chunked(_CHUNK):
                buffer += chunk
                self.received += len(chunk)
                if len(buffer) >= _CHUNK:
                    await self.part.write(bytes(buffer))
                    buffer.clear()
                self._report(len(buffer))
        finally:
            if buffer:
                await self.part.write(bytes(buffer))
        if self.total is not None and self.part.size < self.total:
            raise TransportError("the answer ended early")

    def _report(self, pending: int = 0) -> None:
        if self.progress is not None:
            self.progress(self.part.size + pending, self.total)

    async def _finish(self, resumed: int) -> DownloadResult:
        actual = self.part.digest()
        expected_hex = self.part.meta.get("digest")
        if isinstance(expected_hex, str) and bytes.fromhex(expected_hex) != actual:
            await self.part.close(keep=False)
            raise VerificationError(
                f"{self.target.interface}: SHA-256 {actual.hex()} is not the announced "
                f"{expected_hex}; the partial file was deleted"
            )
        if expected_hex is None:
            log.warning("%s: not verified (no Repr-Digest)", self.target.interface)
        final = self.final or (self.part.path.parent / self.target.key)
        size = self.part.size
        await self.part.commit(final)
        etag = self.part.meta.get("etag")
        return DownloadResult(
            path=final,
            size=size,
            sha256=actual.hex(),
            etag=etag if isinstance(etag, str) else None,
            resumed_from=resumed,
            requests=self.requests,
            restarts=self.restarts,
        )


async def download(
    conn: Connection,
    agent_id: int,
    target: Target,
    dest: Path,
    *,
    resume: bool = False,
    retry: RetryPolicy | None = None,
    progress: Progress | None = None,
    require_digest: bool = True,
) -> DownloadResult:
    """Download ``target`` to ``dest`` (a file, or an existing directory); see the module notes."""
    job = _Download(conn, agent_id, target, dest, retry or RetryPolicy(), progress, require_digest)
    return await job.run(resume)
