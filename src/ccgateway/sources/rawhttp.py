"""A minimal HTTP/1.1 client over plain sockets, for bodies relayed with ``splice``.

Only what the zero-copy relay needs: send one GET (or HEAD) to an ``http://`` server, read the
response head, and hand over the socket positioned at the body, whose length the head's
``Content-Length`` gives. Connections are kept alive and pooled per host and port when the body
was read to its end; an idle connection is checked before it is reused and dropped when the
server has closed it. TLS, chunked bodies and everything else stay with aiohttp.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

MAX_HEAD_BYTES = 64 * 1024
IDLE_S = 15.0
# A fixed receive buffer (the kernel doubles it): autotuning would grow it to tcp_rmem's maximum
# (32 MiB here) on a fast stream, and a stalled client would then let that much more be pulled.
RECEIVE_BUFFER = 1024 * 1024


class RawHttpError(Exception):
    """The request failed before a response head arrived; ``timeout`` when it took too long."""

    def __init__(self, why: str, *, timeout: bool = False) -> None:
        super().__init__(why)
        self.timeout = timeout


@dataclass
class RawResponse:
    """A response head, and its connection positioned ``len(leftover)`` bytes into the body."""

    status: int
    headers: dict[str, str]
    sock: socket.socket
    leftover: bytes
    keep_alive: bool
    _pool: RawHttpPool | None = field(default=None, repr=False)
    _key: tuple[str, int] = ("", 0)

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length", "")
        return int(value) if value.isdigit() else None

    @property
    def delimited(self) -> bool:
        """Whether the body is exactly Content-Length bytes (not chunked, not up to close)."""
        return "transfer-encoding" not in self.headers and self.content_length is not None

    def release(self) -> None:
        """The body was read to its end: back to the pool (when the server keeps it alive)."""
        if self._pool is not None and self.keep_alive and self.sock.fileno() >= 0:
            self._pool.put(self._key, self.sock)
            self._pool = None
        else:
            self.close()

    def close(self) -> None:
        self._pool = None
        self.sock.close()

    async def read_small(self, limit: int, timeout_s: float) -> bytes:
        """Up to ``limit`` bytes of a short body (an error document), then close."""
        loop = asyncio.get_running_loop()
        data = bytearray(self.leftover)
        want = min(self.content_length or limit, limit)
        try:
            async with asyncio.timeout(timeout_s):
                while len(data) < want:
                    chunk = await loop.sock_recv(self.sock, want - len(data))
                    if not chunk:
                        break
                    data += chunk
        except (OSError, TimeoutError):
            pass
        finally:
            self.close()
        return bytes(data[:want])


class RawHttpPool:
    """Idle keep-alive connections per (host, port), at most ``max_idle`` in all."""

    def __init__(self, max_idle: int = 256) -> None:
        self._max_idle = max_idle
        self._idle: dict[tuple[str, int], list[tuple[socket.socket, float]]] = {}

    def put(self, key: tuple[str, int], sock: socket.socket) -> None:
        if sum(len(v) for v in self._idle.values()) >= self._max_idle:
            sock.close()
            return
        self._idle.setdefault(key, []).append((sock, time.monotonic()))

    def take(self, key: tuple[str, int]) -> socket.socket | None:
        """An idle connection the server has not closed, or None."""
        idle = self._idle.get(key, [])
        while idle:
            sock, since = idle.pop()
            if time.monotonic() - since < IDLE_S and _still_open(sock):
                return sock
            sock.close()
        return None

    def close(self) -> None:
        for idle in self._idle.values():
            for sock, _ in idle:
                sock.close()
        self._idle.clear()

    async def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> RawResponse:
        """Send the request and read the response head (a reused connection that turns out to
        be closed is replaced by a new one once)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise RawHttpError(f"not a plain http:// URL: {parts.scheme}")
        host, port = parts.hostname, parts.port or 80
        key = (host, port)
        lines = [f"{method} {request_target(parts)} HTTP/1.1", f"Host: {host_header(parts)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        wire = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        sock = self.take(key)
        if sock is not None:
            try:
                return await self._exchange(sock, wire, method, read_timeout_s, key)
            except RawHttpError as exc:
                if exc.timeout:
                    raise
            # a kept-alive connection the server closed meanwhile: once more on a new one
        sock = await _connect(host, port, connect_timeout_s)
        return await self._exchange(sock, wire, method, read_timeout_s, key)

    async def _exchange(
        self, sock: socket.socket, wire: bytes, method: str, timeout_s: float, key: tuple[str, int]
    ) -> RawResponse:
        loop = asyncio.get_running_loop()
        head = bytearray()
        try:
            async with asyncio.timeout(timeout_s):
                await loop.sock_sendall(sock, wire)
                while (end := head.find(b"\r\n\r\n")) < 0:
                    if len(head) > MAX_HEAD_BYTES:
                        raise RawHttpError("response head too large")
                    chunk = await loop.sock_recv(sock, 16384)
                    if not chunk:
                        raise RawHttpError("server closed the connection without a response")
                    head += chunk
        except TimeoutError:
            sock.close()
            raise RawHttpError(f"no answer within {timeout_s:g} s", timeout=True) from None
        except OSError as exc:
            sock.close()
            raise RawHttpError(exc.strerror or type(exc).__name__) from None
        except BaseException:
            sock.close()
            raise
        try:
            version, status, fields = _parse_head(bytes(head[:end]))
        except ValueError as exc:
            sock.close()
            raise RawHttpError(f"bad response head: {exc}") from None
        connection = fields.get("connection", "").lower()
        keep_alive = "close" not in connection and (
            version == "HTTP/1.1" or "keep-alive" in connection
        )
        leftover = bytes(head[end + 4 :])
        if method == "HEAD":
            leftover = b""
        return RawResponse(status, fields, sock, leftover, keep_alive, self, key)


def _parse_head(head: bytes) -> tuple[str, int, dict[str, str]]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ValueError(f"status line {status_line[:40]!r}")
    fields: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ValueError(f"header line {line[:40]!r}")
        name, value = name.lower(), value.strip()
        fields[name] = f"{fields[name]}, {value}" if name in fields else value
    return version, int(code), fields


# What a request target keeps as it is: the path's and query's reserved characters, and escapes.
_TARGET_SAFE = "/%:@!$&'()*+,;=~?"


def request_target(parts: urllib.parse.SplitResult) -> str:
    """The request line's target, percent-encoded as aiohttp would send it: a space or a
    non-ASCII character (UTF-8) in a registered URL becomes an escape; escapes stay as they are."""
    target = urllib.parse.quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        target += "?" + urllib.parse.quote(parts.query, safe=_TARGET_SAFE)
    return target


def host_header(parts: urllib.parse.SplitResult) -> str:
    """``Host``: the URL's host, with its port unless it is http's default (80). A URL signed for
    S3 signs the host without a default port, so sending ``host:80`` broke the signature."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return host if parts.port in (None, 80) else f"{host}:{parts.port}"


async def _connect(host: str, port: int, timeout_s: float) -> socket.socket:
    loop = asyncio.get_running_loop()
    why = "no address"
    try:
        async with asyncio.timeout(timeout_s):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            for family, kind, proto, _, address in infos:
                sock = socket.socket(family, kind, proto)
                try:
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
                    await loop.sock_connect(sock, address)
                except OSError as exc:
                    sock.close()
                    why = exc.strerror or type(exc).__name__
                    continue
                except BaseException:
                    sock.close()
                    raise
                return sock
    except TimeoutError:
        raise RawHttpError(f"cannot connect within {timeout_s:g} s", timeout=True) from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
    raise RawHttpError(f"cannot connect: {why}")


def _still_open(sock: socket.socket) -> bool:
    """An idle kept-alive connection is usable when nothing (not even EOF) is waiting on it."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False  # EOF, or bytes nobody asked for


async def request_with_retries(
    send: Callable[[], Awaitable[RawResponse]],
    *,
    retries: int,
    retry_statuses: frozenset[int],
    failed: Callable[[RawHttpError], Exception],
) -> RawResponse:
    """``send`` until it answers, retrying connection failures, timeouts and ``retry_statuses``
    (before any byte of a body, with a growing pause); the last failure is raised as ``failed``."""
    for attempt in range(retries + 1):
        last = attempt == retries
        try:
            response = await send()
        except RawHttpError as exc:
            if last:
                raise failed(exc) from None
        else:
            if response.status not in retry_statuses or last:
                return response
            response.close()
        await asyncio.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")
