"""Zero-copy relay of a remote body to the client's connection (Linux ``splice``).

When the recording comes from a plain-HTTP upstream (an ``http://`` recording server, or an S3
endpoint reached with a signed URL) and the client's connection is plain HTTP too, the body never
enters Python: ``pump`` moves it upstream socket -> pipe -> client socket with ``os.splice``,
driven by the event loop's ``add_reader``/``add_writer``. The source opens the response itself
(``Splicing.open_body``: request, precondition, checks, retries before the first byte), so the
rules of each backend stay in its module; anything else (TLS on either side, a chunked body, no
``splice``) falls back to the chunked ``read`` path.

- Backpressure: nothing is read from upstream while the pipe holds bytes the client has not
  taken, nor, once the client has kept the relay waiting, while its connection still queues
  RESUME_BELOW unsent bytes; a slow client leaves the upstream's TCP window closed.
- Timeouts: waiting ``read_timeout_s`` for upstream bytes fails the transfer; waiting for a slow
  client does not, but its connection is checked every second.
- Cancellation and failures close the upstream connection at once; only a body relayed to its
  end returns its connection to the pool.
- The client side works on its own duplicate of the connection's descriptor, so a transport
  that closes meanwhile can never let the relay write into a reused descriptor number.
- ``progress(n)`` is called as each block reaches the client's socket (the audit's bytes_sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ccgateway.sources.base import MediaSource, SourceError
from ccgateway.sources.rawhttp import RawResponse

SUPPORTED = sys.platform == "linux" and hasattr(os, "splice")
PIPE_BYTES = 1024 * 1024
CLIENT_CHECK_S = 1.0
# After waiting STALLED_S or more for a client, read upstream again only once fewer than
# RESUME_BELOW bytes wait unsent on its connection (checked every HOLD_POLL_S). A stalled
# receiver on loopback was seen to reopen its window by 1.5-2 MB about a second into the stall
# (on the spliced path only); that burst is then served from what is already queued, not
# pulled from upstream.
STALLED_S = 0.2
RESUME_BELOW = 1024 * 1024
HOLD_POLL_S = 0.05
SIOCOUTQNSD = 0x894B
_IN = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)
# More of the body follows: fewer, fuller segments to the client (measured: ~25% less CPU).
_MORE = _IN | getattr(os, "SPLICE_F_MORE", 0)


class UpstreamFailed(Exception):
    """The upstream side of a pump failed after ``received`` bytes of the body."""

    def __init__(self, received: int, why: str) -> None:
        super().__init__(why)
        self.received = received
        self.why = why


@dataclass
class RawBody:
    """An upstream response positioned at the first byte of the ``length`` bytes asked for."""

    response: RawResponse
    length: int
    name: str  # the source, fit for a message (no credentials, no query string)
    read_timeout_s: float


@runtime_checkable
class Splicing(Protocol):
    async def open_body(self, start: int, length: int) -> RawBody | None:
        """The response for bytes ``start .. start+length-1`` (checked, its head read), or None
        when this source cannot be relayed that way right now (nothing was sent to anyone)."""
        ...


async def relay(
    source: MediaSource,
    transport: asyncio.BaseTransport | None,
    start: int,
    length: int,
    progress: Callable[[int], None],
) -> bool:
    """Send the bytes with ``splice`` when source and connection allow it; False, having sent
    nothing, when they do not. Raises SourceError (upstream failed) or ConnectionError (client
    went away) like the chunked path."""
    if not SUPPORTED or transport is None or not isinstance(source, Splicing):
        return False
    if transport.get_extra_info("sslcontext") is not None or transport.is_closing():
        return False
    raw = transport.get_extra_info("socket")
    if raw is None or raw.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
        return False
    body = await source.open_body(start, length)
    if body is None:
        return False
    upstream = body.response
    leftover = upstream.leftover[:length]
    finished = False
    client = raw.dup()
    try:
        await _flushed(transport)
        if leftover:
            await asyncio.get_running_loop().sock_sendall(client, leftover)
            progress(len(leftover))
        await pump(
            upstream.sock,
            client,
            length - len(leftover),
            read_timeout_s=body.read_timeout_s,
            progress=progress,
            alive=lambda: not transport.is_closing(),
        )
        finished = True
    except UpstreamFailed as exc:
        raise SourceError(
            f"{body.name}: transfer broken after {len(leftover) + exc.received} bytes: {exc.why}"
        ) from None
    finally:
        client.close()
        if finished and len(upstream.leftover) <= length:  # nothing past the body was read
            upstream.release()
        else:
            upstream.close()
    return True


async def pump(
    src: socket.socket,
    dst: socket.socket,
    count: int,
    *,
    read_timeout_s: float,
    progress: Callable[[int], None],
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """Move exactly ``count`` bytes from ``src`` to ``dst`` through a pipe, in the kernel."""
    loop = asyncio.get_running_loop()
    src_fd, dst_fd = src.fileno(), dst.fileno()
    pipe_r, pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        capacity = _grow(pipe_w)
        to_read, in_pipe, received = count, 0, 0
        waited = False  # long, for the client: read upstream only once its backlog is small
        while to_read or in_pipe:
            moved_in = moved_out = 0
            hold = waited and _unsent(dst_fd) > RESUME_BELOW
            waited = hold
            if to_read and in_pipe < capacity and not hold:
                try:
                    moved_in = os.splice(
                        src_fd, pipe_w, min(to_read, capacity - in_pipe), flags=_IN
                    )
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise UpstreamFailed(received, exc.strerror or type(exc).__name__) from None
                else:
                    if moved_in == 0:
                        raise UpstreamFailed(received, "the server closed the connection")
                    to_read -= moved_in
                    in_pipe += moved_in
                    received += moved_in
            if in_pipe:
                try:
                    moved_out = os.splice(pipe_r, dst_fd, in_pipe, flags=_MORE if to_read else _IN)
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise ConnectionResetError(f"client connection: {exc.strerror}") from None
                else:
                    in_pipe -= moved_out
                    progress(moved_out)
            if moved_in or moved_out:
                continue
            if in_pipe:  # the client is not taking bytes: wait for it, not for upstream
                since = loop.time()
                if not await _ready(loop, dst_fd, True, CLIENT_CHECK_S) and not alive():
                    raise ConnectionResetError("the client's connection closed")
                waited = waited or loop.time() - since >= STALLED_S
            else:
                with contextlib.suppress(OSError):  # push what MORE let the kernel hold back
                    dst.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if hold:  # its connection still holds a backlog: let the client work on it
                    await asyncio.sleep(HOLD_POLL_S)
                    if not alive():
                        raise ConnectionResetError("the client's connection closed")
                elif not await _ready(loop, src_fd, False, read_timeout_s):
                    raise UpstreamFailed(received, f"no data for {read_timeout_s:g} s")
    finally:
        os.close(pipe_r)
        os.close(pipe_w)


def _unsent(sock_fd: int) -> int:
    """Bytes queued on a TCP connection that the peer has not yet been sent (0 if unknown)."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock_fd, SIOCOUTQNSD, b"\0\0\0\0"))[0])
    except OSError:
        return 0


def _grow(pipe: int) -> int:
    """Ask for a 1 MiB pipe (fewer wake-ups); keep the default when the system refuses."""
    try:
        return fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        return fcntl.fcntl(pipe, fcntl.F_GETPIPE_SZ)


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, write: bool, timeout_s: float) -> bool:
    """Whether ``fd`` became readable (writable) within ``timeout_s``."""
    waiter: asyncio.Future[bool] = loop.create_future()

    def settle(ready: bool) -> None:
        if not waiter.done():
            waiter.set_result(ready)

    if write:
        loop.add_writer(fd, settle, True)
    else:
        loop.add_reader(fd, settle, True)
    timer = loop.call_later(timeout_s, settle, False)
    try:
        return await waiter
    finally:
        timer.cancel()
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _flushed(transport: asyncio.BaseTransport) -> None:
    """Wait until the transport has handed everything it buffered (the head) to the socket."""
    size = getattr(transport, "get_write_buffer_size", None)
    while size is not None and size() > 0:
        if transport.is_closing():
            raise ConnectionResetError("the client's connection closed")
        await asyncio.sleep(0.001)
