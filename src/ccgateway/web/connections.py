"""Connection hygiene below HTTP: a cap on connections per client address, and a deadline for
request heads (slowloris).

``GuardedSite`` listens like aiohttp's ``TCPSite`` but wraps each connection's protocol in a
``ConnectionGuard``. A connection over ``MAX_CONNECTIONS_PER_IP`` gets a canned 503 with the
envelope ``000-009`` and is closed. A connection that starts a request (or opens and sends nothing)
must deliver the whole request head within ``HEADER_TIMEOUT_S``, or it is closed; the request
middleware tells the guard when a handler starts and ends. Idle keep-alive connections are
aiohttp's to close (``KEEPALIVE_TIMEOUT_S``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from enum import Enum
from typing import cast

from aiohttp import web
from aiohttp.typedefs import Handler

from ccgateway import retcodes
from ccgateway.web.metrics import ConnectionCounts

log = logging.getLogger("ccgateway.connections")


class _State(Enum):
    WAITING = "waiting for a request head"
    BUSY = "handling a request"
    IDLE = "idle between requests"


class Connections:
    """The node's open connections: how many per client address, and each one's guard."""

    def __init__(self, max_per_ip: int, header_timeout_s: float) -> None:
        self.max_per_ip = max_per_ip
        self.header_timeout_s = header_timeout_s
        self.by_address: dict[str, int] = {}
        self.guards: dict[asyncio.BaseTransport, ConnectionGuard] = {}
        self.refused = 0
        self.timed_out = 0

    def counts(self) -> ConnectionCounts:
        return ConnectionCounts(len(self.guards), self.refused, self.timed_out)

    def admit(self, address: str) -> bool:
        count = self.by_address.get(address, 0)
        if self.max_per_ip and count >= self.max_per_ip:
            self.refused += 1
            return False
        self.by_address[address] = count + 1
        return True

    def release(self, address: str) -> None:
        left = self.by_address.get(address, 1) - 1
        if left > 0:
            self.by_address[address] = left
        else:
            self.by_address.pop(address, None)


class ConnectionGuard(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection; forwards everything to it."""

    def __init__(self, inner: asyncio.Protocol, connections: Connections) -> None:
        self._inner = inner
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._address = ""
        self._admitted = False
        self._state = _State.WAITING
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self._connections.admit(self._address):
            log.warning(
                "refused a connection from %s: it holds %d already (MAX_CONNECTIONS_PER_IP)",
                self._address,
                self._connections.max_per_ip,
            )
            self._transport.write(BUSY_RESPONSE)
            self._transport.close()
            return
        self._admitted = True
        self._connections.guards[transport] = self
        self._start_timer()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return
        if self._state is _State.IDLE:
            self._state = _State.WAITING
            self._start_timer()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._cancel_timer()
        if self._transport is not None:
            self._connections.guards.pop(self._transport, None)
        self._connections.release(self._address)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # -- told by the request middleware ------------------------------------------------------------

    def request_started(self) -> None:
        self._state = _State.BUSY
        self._cancel_timer()

    def request_finished(self) -> None:
        self._state = _State.IDLE

    # -- the head deadline -------------------------------------------------------------------------

    def _start_timer(self) -> None:
        self._cancel_timer()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._connections.header_timeout_s, self._head_overdue)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_overdue(self) -> None:
        self._timer = None
        if self._state is not _State.WAITING or self._transport is None:
            return
        self._connections.timed_out += 1
        log.info(
            "closed a connection from %s: no complete request head within %s s",
            self._address,
            self._connections.header_timeout_s,
        )
        self._transport.abort()


def _busy_response() -> bytes:
    body = json.dumps(
        {"retcode": retcodes.NODE_BUSY.code, "message": retcodes.NODE_BUSY.message, "result": ""}
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json;charset=UTF-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


BUSY_RESPONSE = _busy_response()

CONNECTIONS = web.AppKey("connections", Connections)


@web.middleware
async def connection_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tell the connection's guard (if it has one) that a request head arrived, and when the
    handler is done."""
    connections = request.app.get(CONNECTIONS)
    transport = request.transport
    guard = None
    if connections is not None and transport is not None:
        guard = connections.guards.get(transport)
    if guard is None:
        return await handler(request)
    guard.request_started()
    try:
        return await handler(request)
    finally:
        guard.request_finished()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through ``ConnectionGuard``."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        app = runner.app
        if CONNECTIONS not in app:
            raise RuntimeError("the app has no Connections (create_app sets them)")
        self._connections = app[CONNECTIONS]

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        server = self._server
        if isinstance(server, asyncio.Server) and server.sockets:
            return int(server.sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        connections = self._connections

        def factory() -> asyncio.Protocol:
            return ConnectionGuard(server(), connections)

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            factory,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
            family=socket.AF_UNSPEC,
            ssl_handshake_timeout=connections.header_timeout_s if self._ssl_context else None,
        )
