"""A lean Redis connection for the event poll's scripts: one pipelined RESP2 connection.

Why not redis-py here: a poll that finds its event waiting is one ``EVALSHA``, and through
redis-py that call costs the node some 95 us of CPU (pool checkout, argument encoding, parser)
against some 40 us here; on an otherwise idle machine, where every request starts with cold
caches, the gap grows to 150 us per poll (260 against 110 us, measured on a 2-core machine).
Everything else (blocking waits, sign-in, sweeps) stays on redis-py.

The connection is shared by every poll of a node. Requests are written at once, replies are
matched to them in order (Redis answers one connection in order), so there is no checkout, and a
caller that stops waiting (cancelled) leaves the connection healthy: its reply is read and
dropped. ``ScriptLane.run`` returns an ``asyncio.Future``, not a coroutine, so a caller can shield
it and still collect the reply after being cancelled (``RedisEventBus`` does, to hand an event
back). Scripts go by SHA-1 (``EVALSHA``); should Redis not know one (restarted, flushed), the
same request is sent again as ``EVAL`` with the script's text.

Plain TCP and Unix sockets only, with AUTH and SELECT taken from the redis-py client's settings;
``ScriptLane.for_client`` returns None for anything else (TLS, Sentinel): then redis-py runs the
scripts. A lost connection fails every request waiting on it with redis-py's ``ConnectionError``;
the next request connects again. So does a hung one: a request with no reply for
``reply_timeout_s`` (``DEFAULT_REPLY_TIMEOUT_S``) fails, with every request waiting behind it, with
redis-py's ``TimeoutError`` ("no reply from Redis within ..."), and the connection is dropped: a
Redis that stops answering stalls the node's polls for that long at most, not for ever.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, cast

import redis.asyncio
import redis.exceptions
from redis.asyncio.connection import Connection, UnixDomainSocketConnection

Arg = bytes | str | int

_CRLF = b"\r\n"

# Redis answers a script in microseconds to milliseconds: this long a silence is a hung server.
DEFAULT_REPLY_TIMEOUT_S = 5.0


class RespError(redis.exceptions.ResponseError):
    """An error reply from Redis (``-ERR ...``)."""


class Script:
    """A Lua script and its SHA-1, as ``EVALSHA`` names it."""

    def __init__(self, text: str) -> None:
        self.text = text.encode()
        self.sha = hashlib.sha1(self.text).hexdigest().encode()  # noqa: S324 (Redis' naming)


def pack(args: Sequence[Arg]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def parse(buffer: bytearray, pos: int = 0) -> tuple[Any, int] | None:
    """One reply from ``buffer`` at ``pos``: (value, position after it), or None if incomplete.

    Error replies come back as ``RespError`` values (not raised): they answer one request.
    """
    end = buffer.find(_CRLF, pos)
    if end < 0:
        return None
    kind, line, pos = buffer[pos], bytes(buffer[pos + 1 : end]), end + 2
    if kind == 0x24:  # $ bulk string
        size = int(line)
        if size < 0:
            return None, pos
        if len(buffer) < pos + size + 2:
            return None
        return bytes(buffer[pos : pos + size]), pos + size + 2
    if kind == 0x3A:  # : integer
        return int(line), pos
    if kind == 0x2A:  # * array
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            parsed = parse(buffer, pos)
            if parsed is None:
                return None
            item, pos = parsed
            items.append(item)
        return items, pos
    if kind == 0x2B:  # + simple string
        return line.decode(), pos
    if kind == 0x2D:  # - error
        return RespError(line.decode(errors="replace")), pos
    raise redis.exceptions.InvalidResponse(f"unexpected RESP type {chr(kind)!r}")


class _Protocol(asyncio.Protocol):
    """Requests out as they come, replies in to the oldest waiting request."""

    def __init__(self, reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S) -> None:
        self._buffer = bytearray()
        self._waiting: collections.deque[Callable[[Any], None]] = collections.deque()
        self._sent: collections.deque[float] = collections.deque()  # when each waiting one was
        self._timeout = reply_timeout_s
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)

    def send(self, payload: bytes, on_reply: Callable[[Any], None]) -> None:
        if self.lost is not None or self._transport is None:
            raise redis.exceptions.ConnectionError("Redis connection lost")
        self._transport.write(payload)
        self._waiting.append(on_reply)
        loop = asyncio.get_running_loop()
        self._sent.append(loop.time())
        if self._timer is None:
            self._timer = loop.call_later(self._timeout, self._check_overdue)

    def _check_overdue(self) -> None:
        """The oldest waiting request has had no reply for ``reply_timeout_s``: fail them all."""
        self._timer = None
        if not self._sent or self.lost is not None:
            return
        loop = asyncio.get_running_loop()
        left = self._sent[0] + self._timeout - loop.time()
        if left > 0:
            self._timer = loop.call_later(left, self._check_overdue)
            return
        self._fail(redis.exceptions.TimeoutError(f"no reply from Redis within {self._timeout:g} s"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        pos = 0
        while self._waiting:
            try:
                parsed = parse(self._buffer, pos)
            except (ValueError, redis.exceptions.InvalidResponse) as error:
                self._fail(redis.exceptions.ConnectionError(f"bad reply from Redis: {error}"))
                return
            if parsed is None:
                break
            value, pos = parsed
            self._sent.popleft()
            self._waiting.popleft()(value)
        del self._buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(redis.exceptions.ConnectionError(f"Redis connection lost: {exc or 'closed'}"))

    def _fail(self, error: Exception) -> None:
        self.lost = error
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.abort()
        self._sent.clear()
        while self._waiting:
            self._waiting.popleft()(error)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class ScriptLane:
    """The node's pipelined connection for scripts; opened on first use, reopened after a loss."""

    def __init__(
        self,
        connect: Callable[[Callable[[], _Protocol]], Any],
        setup: Sequence[Sequence[Arg]],
        *,
        reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S,
    ) -> None:
        """``connect(protocol_factory)`` opens the connection; ``setup``: commands sent first
        (AUTH, SELECT); ``reply_timeout_s``: see the module docstring."""
        if reply_timeout_s <= 0:
            raise ValueError("reply_timeout_s must be positive")
        self._connect = connect
        self._reply_timeout_s = reply_timeout_s
        self._setup = [pack(command) for command in setup]
        self._protocol: _Protocol | None = None
        self._opening: asyncio.Lock | None = None
        self._closed = False

    @classmethod
    def for_client(
        cls, client: redis.asyncio.Redis, *, reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S
    ) -> ScriptLane | None:
        """A lane to the server of ``client``, with its credentials and database, if plain."""
        pool = client.connection_pool
        settings = pool.connection_kwargs
        setup: list[list[Arg]] = []
        if settings.get("password") is not None:
            username = settings.get("username")
            setup.append(["AUTH", *([username] if username else []), settings["password"]])
        if int(settings.get("db") or 0):
            setup.append(["SELECT", int(settings["db"])])
        loop = asyncio.get_running_loop
        if pool.connection_class is UnixDomainSocketConnection:
            path = settings["path"]
            return cls(
                lambda factory: loop().create_unix_connection(factory, path),
                setup,
                reply_timeout_s=reply_timeout_s,
            )
        if pool.connection_class is Connection:
            host, port = settings.get("host", "localhost"), int(settings.get("port", 6379))
            return cls(
                lambda factory: loop().create_connection(factory, host, port),
                setup,
                reply_timeout_s=reply_timeout_s,
            )
        return None

    async def run(
        self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]
    ) -> asyncio.Future[Any]:
        """Send the script now; the Future gets its reply (or raises its error).

        Awaiting this coroutine only connects when needed; what it returns is already on its
        way to Redis.
        """
        protocol = await self._open()
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        tail = [len(keys), *keys, *args]

        def settle(value: Any) -> None:
            if reply.done():
                return  # the caller gave up waiting; the reply is dropped
            if isinstance(value, Exception):
                reply.set_exception(value)
            else:
                reply.set_result(value)

        def first(value: Any) -> None:
            if isinstance(value, RespError) and str(value).startswith("NOSCRIPT"):
                try:
                    protocol.send(pack(["EVAL", script.text, *tail]), settle)
                except redis.exceptions.ConnectionError as error:
                    settle(error)
                return
            settle(value)

        protocol.send(pack(["EVALSHA", script.sha, *tail]), first)
        return reply

    async def _open(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        if self._closed:
            raise redis.exceptions.ConnectionError("the script lane is closed")
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._protocol is not None and self._protocol.lost is None:
                return self._protocol
            try:
                timeout = self._reply_timeout_s
                factory = functools.partial(_Protocol, timeout)
                _, protocol = await asyncio.wait_for(self._connect(factory), 10)
            except (OSError, TimeoutError) as error:
                raise redis.exceptions.ConnectionError(f"cannot reach Redis: {error}") from error
            protocol = cast("_Protocol", protocol)
            try:
                for command in self._setup:
                    answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                    protocol.send(command, functools.partial(_settle, answer))
                    if isinstance(result := await answer, Exception):
                        raise result
                if self._closed:
                    raise redis.exceptions.ConnectionError("the script lane is closed")
            except BaseException:  # cancelled, refused (AUTH, SELECT) or closed meanwhile
                protocol.close()
                raise
            self._protocol = protocol
            return protocol

    async def aclose(self) -> None:
        self._closed = True
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    """Hand a reply to a future nobody may be waiting for any more (its caller cancelled)."""
    if not future.done():
        future.set_result(value)
