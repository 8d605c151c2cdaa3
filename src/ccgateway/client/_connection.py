"""One HTTP connection pool to a gateway: base URL, TLS trust, the current GUID, error mapping.

- **TLS is always verified.** ``ca`` trusts a PEM file (the gateway's self-signed certificate,
  or a private CA) instead of the system store; ``fingerprint`` pins the server certificate's
  SHA-256 instead. There is no way to turn verification off. Plain ``http://`` is allowed (a
  loopback or a TLS-terminating proxy), and a ``ca`` or ``fingerprint`` with it is an error.
- **GUID.** Every 2xx answer carrying ``Set-GUID`` replaces the GUID (as the JavaScript SDK
  does); every request reads the GUID current at the moment it is sent.
- **Errors.** aiohttp's exceptions become :mod:`ccgateway.client` errors here, in one place.
- **Closing waits for every connection.** aiohttp closes some TLS connections gracefully and
  stops tracking them: one whose connect finished after the session was closed, one whose
  connect was cancelled just after its handshake, one with a pinned fingerprint that did not
  match, one released with an unread body. Each needs a round trip (``close_notify``) to
  finish, and a loop closed before that (``asyncio.run`` returning) leaves its socket open.
  So every socket the session opens is noted (``socket_factory``), and :meth:`Connection.close`
  returns once each is closed (within :data:`SETTLE_TIMEOUT`, then they are shut down).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import ssl
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from ccgateway.client._errors import (
    CertificateError,
    ClientError,
    ProtocolError,
    RefusedError,
    TransportError,
)
from ccgateway.wire.guid import GUID, SET_GUID, parse_set_guid

log = logging.getLogger("ccgateway.client")

BASE_PATH = "/agentgateway/resource/"
SSLOption = ssl.SSLContext | aiohttp.Fingerprint | bool
SETTLE_TIMEOUT = 2.0
"""Seconds :meth:`Connection.close` waits for graceful TLS closes before shutting sockets down."""
_SETTLE_POLL = 0.005


@dataclass(frozen=True)
class Reply:
    """A JSON envelope: ``retcode``, ``message`` and the whole body."""

    retcode: str
    message: str
    body: Mapping[str, Any]

    @property
    def ok(self) -> bool:
        return self.retcode == "0"

    def raise_for_retcode(self, interface: str) -> None:
        if not self.ok:
            raise RefusedError(self.retcode, self.message, interface)


def base_url(server: str) -> URL:
    """``https://host:8043`` → ``https://host:8043/agentgateway/resource/`` (a path is kept)."""
    url = URL(server)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"server {server!r}: give an http:// or https:// URL with a host")
    if url.path in ("", "/"):
        return url.with_path(BASE_PATH).with_query(None).with_fragment(None)
    path = url.path if url.path.endswith("/") else url.path + "/"
    return url.with_path(path).with_query(None).with_fragment(None)


def parse_fingerprint(text: str) -> bytes:
    """A SHA-256 fingerprint as hex, with or without ``:`` (``AB:CD:…``); ValueError otherwise."""
    cleaned = "".join(text.split()).replace(":", "").lower()
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError("a SHA-256 fingerprint is 64 hex digits (colons allowed)")
    return raw


def ssl_option(url: URL, ca: str | os.PathLike[str] | None, fingerprint: str | None) -> SSLOption:
    if ca is not None and fingerprint is not None:
        raise ValueError("give either a CA file or a fingerprint, not both")
    if url.scheme == "http":
        if ca is not None or fingerprint is not None:
            raise ValueError("a CA file or fingerprint needs an https:// server")
        return True
    if fingerprint is not None:
        return aiohttp.Fingerprint(parse_fingerprint(fingerprint))
    if ca is not None:
        try:
            context = ssl.create_default_context(cafile=os.fspath(ca))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"CA file {os.fspath(ca)}: {exc}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context
    return True  # the system's trust store, hostname checked


def translate(exc: BaseException) -> ClientError:
    """The client error for an aiohttp or socket failure."""
    if isinstance(exc, ClientError):
        return exc
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return CertificateError("TLS: the server certificate is not the pinned fingerprint")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = getattr(exc.certificate_error, "verify_message", None) or exc.certificate_error
        return CertificateError(f"TLS: the server certificate is not trusted ({reason})")
    if isinstance(exc, aiohttp.ClientSSLError):
        return CertificateError(f"TLS handshake failed: {exc}")
    if isinstance(exc, TimeoutError):
        return TransportError("timed out")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError("the transfer was cut short")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return TransportError("the server closed the connection")
    return TransportError(str(exc) or type(exc).__name__)


class _SocketRegistry:
    """The ``socket_factory`` of a session: it notes each socket, to wait until all are closed."""

    def __init__(self) -> None:
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def __call__(self, addr_info: aiohttp.AddrInfoType) -> socket.socket:
        family, kind, proto, _, _ = addr_info
        sock = socket.socket(family=family, type=kind, proto=proto)  # as aiohappyeyeballs does
        self._sockets.add(sock)
        return sock

    def open(self) -> list[socket.socket]:
        return [sock for sock in self._sockets if sock.fileno() != -1]


class Connection:
    """The HTTP session to one gateway for one agent, and that agent's current GUID."""

    def __init__(
        self,
        server: str,
        *,
        ca: str | os.PathLike[str] | None = None,
        fingerprint: str | None = None,
        connect_timeout: float = 15.0,
        read_timeout: float = 60.0,
    ) -> None:
        self.base = base_url(server)
        self._ssl = ssl_option(self.base, ca, fingerprint)
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self._sockets = _SocketRegistry()
        self.guid: str | None = None

    def open(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=32, socket_factory=self._sockets)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                cookie_jar=aiohttp.CookieJar(unsafe=True),  # sticky cookies, as the Java demo
                headers={"Accept": "application/json, application/octet-stream"},
            )

    async def close(self) -> None:
        """Close the session, then wait until every connection it opened is closed."""
        await self.close_session()
        await self.wait_closed()

    async def close_session(self) -> None:
        """Abort the connections the session holds (requests in flight fail); no new requests."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def wait_closed(self) -> None:
        """Wait until every socket the session opened is closed (see the module notes).

        Call it once nothing uses the connection any more: a request still connecting would
        open a socket after the wait. Graceful closes get :data:`SETTLE_TIMEOUT` seconds; the
        sockets still open then are shut down, which makes their transports close at once.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_TIMEOUT
        shut_down = False
        while sockets := self._sockets.open():
            if loop.time() >= deadline:
                if shut_down:
                    log.warning("%d connection(s) to %s did not close", len(sockets), self.base)
                    return
                log.debug("shutting down %d connection(s) still closing", len(sockets))
                for sock in sockets:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                shut_down = True
                deadline = loop.time() + SETTLE_TIMEOUT
            await asyncio.sleep(_SETTLE_POLL)

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        sent = dict(extra or {})
        if self.guid is not None:
            sent[GUID] = self.guid
        return sent

    def adopt(self, response: aiohttp.ClientResponse) -> None:
        """Take the GUID of a 2xx answer's ``Set-GUID``."""
        if 200 <= response.status < 300 and (value := response.headers.get(SET_GUID)):
            guid = parse_set_guid(value)
            if guid is not None:
                self.guid = guid

    @asynccontextmanager
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        time_limit: float | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send with the current GUID; any failure inside the block comes out translated."""
        if self._session is None:
            raise ClientError("the client is not open (use it as an async context manager)")
        per_call = aiohttp.ClientTimeout(total=time_limit) if time_limit is not None else None
        try:
            async with self._session.request(
                method,
                self.base.join(URL(path)),
                params=params,
                json=json_body,
                headers=self.headers(headers),
                timeout=per_call or self._timeout,
            ) as response:
                self.adopt(response)
                yield response
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise translate(exc) from exc

    async def call(
        self,
        method: str,
        path: str,
        interface: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        time_limit: float | None = None,
    ) -> Reply:
        """A JSON interface: its envelope (retcode not checked), or ProtocolError."""
        async with self.request(
            method, path, params=params, json_body=json_body, time_limit=time_limit
        ) as response:
            return await read_reply(response, interface)


async def read_reply(response: aiohttp.ClientResponse, interface: str) -> Reply:
    """The envelope of a JSON answer (any HTTP status)."""
    raw = await response.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("retcode"), str):
        raise ProtocolError(f"{interface}: HTTP {response.status} without a JSON envelope")
    message = body.get("message")
    return Reply(body["retcode"], message if isinstance(message, str) else "", body)


def is_json(response: aiohttp.ClientResponse) -> bool:
    return "json" in response.headers.get("Content-Type", "").lower()
