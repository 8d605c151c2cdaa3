"""A TCP relay between a client and a gateway that cuts connections or slows them down.

Tests put it in front of a real ``ccgateway serve`` to interrupt downloads where they choose:
``cut_after`` lists byte counts; the first connection whose downstream (gateway → client) bytes
reach the next count is cut there (after ``on_cut`` ran). ``rate`` limits each connection's
downstream to that many bytes a second; ``delay`` holds every chunk that long, both ways (a slow
network: each round trip takes twice that). :func:`threaded_relay` runs one on its own thread for
synchronous tests (the CLI's).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

_CHUNK = 64 * 1024


class Relay:
    def __init__(
        self,
        upstream_port: int,
        *,
        cut_after: Iterable[int] = (),
        rate: float | None = None,
        delay: float = 0.0,
        on_cut: Callable[[int], object] | None = None,
    ) -> None:
        self.upstream_port = upstream_port
        self.plan = deque(cut_after)
        self.rate = rate
        self.delay = delay
        self.on_cut = on_cut
        self.cuts = 0
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[object]] = set()
        self._closing = False

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop accepting, cut every connection and wait until each one is closed."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=10)
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.sleep(0.01)  # let the aborted transports run connection_lost

    async def __aenter__(self) -> Relay:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self._writers.add(writer)
        self.connections += 1
        up_writer: asyncio.StreamWriter | None = None
        tasks: list[asyncio.Task[None]] = []
        try:
            if self._closing:
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._writers.add(up_writer)
            tasks = [
                asyncio.create_task(self._pipe(reader, up_writer)),
                asyncio.create_task(self._downstream(up_reader, writer)),
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except OSError:
            pass
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)
            for w in (writer, up_writer):
                if w is not None:
                    w.transport.abort()
                    self._writers.discard(w)
            self._handlers.discard(handler)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(_CHUNK):
            if self.delay:
                await asyncio.sleep(self.delay)
            writer.write(chunk)
            await writer.drain()

    async def _downstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent, started = 0, time.monotonic()
        while chunk := await reader.read(_CHUNK):
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.plan and sent + len(chunk) >= self.plan[0]:
                writer.write(chunk[: self.plan[0] - sent])
                await writer.drain()
                self.plan.popleft()
                self.cuts += 1
                if self.on_cut is not None:
                    self.on_cut(self.cuts)
                return
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
            if self.rate:
                ahead = sent / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)


@contextmanager
def threaded_relay(
    upstream_port: int,
    *,
    cut_after: Iterable[int] = (),
    rate: float | None = None,
    on_cut: Callable[[int], object] | None = None,
) -> Iterator[Relay]:
    """A :class:`Relay` on its own event loop thread, for synchronous tests."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    relay = Relay(upstream_port, cut_after=cut_after, rate=rate, on_cut=on_cut)
    try:
        asyncio.run_coroutine_threadsafe(relay.start(), loop).result(10)
        yield relay
    finally:
        asyncio.run_coroutine_threadsafe(relay.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
