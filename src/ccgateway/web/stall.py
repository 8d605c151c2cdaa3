"""Dropping a download whose client stopped reading (CLIENT_STALL_TIMEOUT_S).

Progress is what the client accepted: the bytes its TCP stack acknowledged (Linux ``TCP_INFO``
``tcpi_bytes_acked``, which also sees inside one long ``sendfile``), else the bytes the transfer
handed to the connection. A client that reads nothing closes its receive window, so neither moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator

from aiohttp import web

from ccgateway.audit.trail import DownloadAttempt

# struct tcp_info: tcpi_bytes_acked is the u64 at byte 120 (Linux >= 4.1).
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_BYTES_ACKED_AT = 120
_TCP_INFO_LEN = 232


class ClientStalled(Exception):
    """The client accepted no byte for the stall timeout."""


@contextlib.asynccontextmanager
async def watching_progress(
    request: web.Request, attempt: DownloadAttempt, stall_s: float
) -> AsyncIterator[None]:
    """Run the block; raise ``ClientStalled`` when progress stops for ``stall_s`` seconds."""
    loop = asyncio.get_running_loop()
    sock = _socket_of(request)
    acked_at_start = _bytes_acked(sock)

    def progress() -> tuple[int, int]:
        return attempt.bytes_sent, _bytes_acked(sock)

    async def push_deadline(deadline: asyncio.Timeout) -> None:
        last = progress()
        while True:
            await asyncio.sleep(min(1.0, stall_s / 4))
            now = progress()
            if now != last:
                last = now
                deadline.reschedule(loop.time() + stall_s)

    deadline = asyncio.timeout(stall_s)
    try:
        async with deadline:
            watcher = asyncio.create_task(push_deadline(deadline))
            try:
                yield
            finally:
                watcher.cancel()
    except TimeoutError:
        if deadline.expired():
            # a cancelled sendfile cannot say how far it got: the client's TCP acknowledgements can
            acked = _bytes_acked(sock) - acked_at_start
            attempt.bytes_sent = max(attempt.bytes_sent, acked)
            raise ClientStalled from None
        raise


def _socket_of(request: web.Request) -> socket.socket | None:
    transport = request.transport
    if transport is None or _TCP_INFO is None:
        return None
    sock = transport.get_extra_info("socket")
    return sock if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6) else None


def _bytes_acked(sock: socket.socket | None) -> int:
    if sock is None or _TCP_INFO is None:
        return 0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_LEN)
    except OSError:
        return 0
    if len(info) < _BYTES_ACKED_AT + 8:
        return 0
    return int(struct.unpack_from("=Q", info, _BYTES_ACKED_AT)[0])
