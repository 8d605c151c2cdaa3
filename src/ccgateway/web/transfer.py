"""The one streaming responder for every download interface and every media source.

It answers 200, 206, 304, 412 or 416 from ``wire.ranges.decide`` (our own conditional and range
logic, not aiohttp's ``FileResponse``), with strong validators from the registered SHA-256, and
sends the bytes with zero-copy ``sendfile`` when the source is a local file on a plain-HTTP
connection, or in 1 MiB chunks otherwise (TLS, remote sources). The attempt's outcome, status,
the ranges served and the bytes handed to the network are written into the ``DownloadAttempt``
for its audit ``end`` event. What to send,
and whether the agent may have it, was decided by ``recordings.downloads``.

A transfer that cannot be finished (the source failed after the headers went out) is cut: the
connection is aborted short of Content-Length, so no client mistakes it for a complete file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import struct
import urllib.parse
from pathlib import Path

from aiohttp import web

from ccgateway.audit.events import Outcome
from ccgateway.audit.trail import DownloadAttempt
from ccgateway.config import Settings
from ccgateway.recordings.downloads import ReadyDownload
from ccgateway.sources.base import MediaSource, SourceError, reading
from ccgateway.sources.splice import relay
from ccgateway.web.stall import ClientStalled, watching_progress
from ccgateway.web.state import gateway
from ccgateway.wire.digest import digest_header_for
from ccgateway.wire.ranges import Decision, Validators, decide, http_date, strong_etag

CONTENT_TYPE = "application/octet-stream;charset=utf-8"

log = logging.getLogger("ccgateway.transfer")


async def send_download(request: web.Request, download: ReadyDownload) -> web.StreamResponse:
    settings = gateway(request).settings
    attempt = download.attempt
    size = download.size
    validators = Validators(
        etag=strong_etag(download.sha256), last_modified=download.mtime_ns / 1e9, size=size
    )
    decision = decide(request.method, request.headers, validators)
    attempt.status = decision.status
    if decision.status == 304:
        attempt.outcome = Outcome.COMPLETED
        return web.Response(status=304, headers=_not_modified_headers(validators))
    headers = _headers(request, download, validators)
    if decision.status in (412, 416):
        attempt.outcome = Outcome.REFUSED
        if decision.status == 416:
            headers["Content-Range"] = f"bytes */{size}"
        return web.Response(status=decision.status, headers=headers)
    path = download.source.local_path
    accel_redirect = settings.accel_redirect
    if accel_redirect and path is not None and _nginx_agrees(request, decision, headers):
        return _offload(decision, headers, accel_redirect, path, attempt)
    with download.slot():
        return await _stream(request, download, decision, headers, attempt, settings)


async def _stream(
    request: web.Request,
    download: ReadyDownload,
    decision: Decision,
    headers: dict[str, str],
    attempt: DownloadAttempt,
    settings: Settings,
) -> web.StreamResponse:
    size = download.size
    start, length = 0, size
    if decision.status == 206:
        chosen = decision.ranges[0]
        start, length = chosen.start, chosen.length
        headers["Content-Range"] = chosen.content_range(size)
    if request.method != "HEAD" and length:
        attempt.ranges = [[start, start + length - 1]]
    response = web.StreamResponse(status=decision.status, headers=headers)
    response.content_length = length
    await response.prepare(request)
    attempt.mark_first_byte()
    if request.method == "HEAD" or length == 0:
        await response.write_eof()
        attempt.outcome = Outcome.COMPLETED
        return response
    stall_s = settings.client_stall_timeout_s
    try:
        async with watching_progress(request, attempt, stall_s):
            await _send_body(
                request, response, download.source, start, length, attempt, settings.sendfile
            )
    except SourceError as exc:
        attempt.outcome = Outcome.SOURCE_FAILED
        log.warning("download cut after %d bytes: %s", attempt.bytes_sent, exc)
        _abort(request)
        return response
    except ClientStalled:
        attempt.outcome = Outcome.ABORTED
        log.info("download dropped: the client accepted no byte for %s s", stall_s)
        _abort(request, reset=True)
        return response
    except (ConnectionError, asyncio.CancelledError):
        attempt.outcome = Outcome.ABORTED
        raise
    except Exception as exc:  # the head is out: no other answer can follow, only a cut
        attempt.outcome = Outcome.SOURCE_FAILED
        log.warning(
            "download cut after %d bytes: unexpected %s", attempt.bytes_sent, type(exc).__name__
        )
        _abort(request)
        return response
    await response.write_eof()
    attempt.outcome = Outcome.COMPLETED
    return response


async def _send_body(
    request: web.Request,
    response: web.StreamResponse,
    source: MediaSource,
    start: int,
    length: int,
    attempt: DownloadAttempt,
    sendfile: bool,
) -> None:
    path = source.local_path
    if sendfile and path is not None and not _is_tls(request):
        await _sendfile(request, path, start, length, attempt)
        return

    def sent(count: int) -> None:
        attempt.bytes_sent += count

    if not _is_tls(request) and await relay(source, request.transport, start, length, sent):
        return  # spliced in the kernel, upstream socket to client socket
    async with reading(source, start, length) as chunks:
        async for chunk in chunks:
            await response.write(chunk)
            attempt.bytes_sent += len(chunk)


async def _sendfile(
    request: web.Request, path: os.PathLike[str], start: int, length: int, attempt: DownloadAttempt
) -> None:
    loop = asyncio.get_running_loop()
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("connection lost")
    try:
        handle = await asyncio.to_thread(open, path, "rb")
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror}") from None
    try:
        handle.seek(start)
        try:
            sent = await loop.sendfile(transport, handle, start, length)
        except BaseException:
            attempt.bytes_sent = max(0, handle.tell() - start)
            raise
        attempt.bytes_sent = sent
        if sent < length:
            raise SourceError(f"{path}: file ended {length - sent} bytes early")
    finally:
        handle.close()


def _offload(
    decision: Decision,
    headers: dict[str, str],
    prefix: str,
    path: Path,
    attempt: DownloadAttempt,
) -> web.StreamResponse:
    """Let nginx send the file: it applies the request's Range itself, to the same decision.

    nginx sees our ETag and Last-Modified (deploy/nginx re-emits them before its range filter
    runs), so it judges If-Range exactly as ``decide`` did; 304, 412 and 416 never reach this
    point, nor requests nginx would judge otherwise (``_nginx_agrees``).
    """
    if decision.status != 206:
        del headers["Accept-Ranges"]  # nginx adds its own to a 200, and none to a 206
    attempt.outcome = Outcome.OFFLOADED  # nginx sends the bytes: the audit says it knows none
    size = decision.validators.size
    chosen = [[r.start, r.start + r.length - 1] for r in decision.ranges]
    attempt.ranges = chosen or ([[0, size - 1]] if size else [])
    headers["X-Accel-Redirect"] = prefix + urllib.parse.quote(str(path))
    headers["X-Accel-Buffering"] = "no"
    return web.Response(status=200, headers=headers)


# One Range member in a syntax that nginx's range filter reads exactly as ``decide`` does.
_NGINX_RANGE = re.compile(r"bytes=(?:[0-9]{1,18}-[0-9]{0,18}|-[0-9]{1,18})", re.IGNORECASE)


def _nginx_agrees(request: web.Request, decision: Decision, headers: dict[str, str]) -> bool:
    """Whether nginx, which re-reads the request's headers after X-Accel-Redirect, will answer
    as ``decision`` says; otherwise the gateway sends the bytes itself.

    nginx judges If-Match against its own ETag (none: it runs before our ETag is added) and
    would answer 412, as it does to an If-Unmodified-Since it cannot parse; it answers 416 to
    Range values ``decide`` ignores, 200 to ranges ``decide`` merges into one, and compares an
    If-Range date only in its own date parser.
    """
    if request.method != "GET" or "If-Match" in request.headers:
        return False
    if "If-Unmodified-Since" in request.headers:
        return False  # nginx answers 412 to a date it cannot read, which ``decide`` ignores
    if "Range" not in request.headers:
        return True
    if_range = request.headers.get("If-Range")
    if if_range is not None and not if_range.startswith('"'):
        if if_range != headers["Last-Modified"]:
            return False
    return decision.status == 206 and bool(_NGINX_RANGE.fullmatch(request.headers["Range"]))


def _not_modified_headers(validators: Validators) -> dict[str, str]:
    """A 304 carries the validators and caching rules a 200 would, and no body's headers."""
    return {
        "ETag": validators.etag,
        "Last-Modified": http_date(validators.last_modified),
        "Cache-Control": "private, no-store",
    }


def _headers(
    request: web.Request, download: ReadyDownload, validators: Validators
) -> dict[str, str]:
    headers = {
        "Content-Type": CONTENT_TYPE,
        "Accept-Ranges": "bytes",
        "ETag": validators.etag,
        "Last-Modified": http_date(validators.last_modified),
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": content_disposition(download.filename),
    }
    digest = digest_header_for(request.headers.get("Want-Repr-Digest"), download.sha256)
    if digest is not None:
        headers["Repr-Digest"] = digest
    return headers


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII ``filename`` and the exact name as RFC 8187 ``filename*``."""
    ascii_name = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    encoded = urllib.parse.quote(filename, safe="")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"


def _is_tls(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and transport.get_extra_info("sslcontext") is not None


def _abort(request: web.Request, *, reset: bool = False) -> None:
    """Cut the connection. ``reset``: with a TCP reset, dropping what the client has not taken
    (else the kernel would go on offering it to a client that reads nothing)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if reset and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
