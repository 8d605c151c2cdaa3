"""The EventBus contract, for every backend (see conftest)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio
from redis.asyncio.connection import AbstractConnection

from ccgateway.stores.base import Event, EventBus
from ccgateway.stores.redis import RedisEventBus, open_redis
from tests.contract.conftest import Node, PeerFactory


def event(name: str, agent_id: int = 101) -> Event:
    return Event(name, agent_id, {"name": name}, 1_700_000_000_000)


async def drain(bus: EventBus, agent_id: int = 101) -> list[str]:
    names = []
    while (got := await bus.next(agent_id, 0)) is not None:
        names.append(got.event_type)
    return names


async def outcome(task: asyncio.Task[Event | None]) -> list[str]:
    """What a poll that may have been cancelled delivered."""
    with contextlib.suppress(asyncio.CancelledError):
        got = await task
        return [got.event_type] if got is not None else []
    return []


# -- queueing -----------------------------------------------------------------------------------


async def test_events_are_fifo_per_agent(backend: Node) -> None:
    _, bus = backend
    for name in ("a", "b", "c"):
        await bus.publish(event(name))
    assert await drain(bus) == ["a", "b", "c"]
    assert await bus.next(101, 0) is None


async def test_agents_are_isolated(backend: Node) -> None:
    _, bus = backend
    await bus.publish(event("a1", 101))
    await bus.publish(event("b1", 102))
    await bus.publish(event("a2", 101))
    assert await drain(bus, 102) == ["b1"]
    assert await drain(bus, 103) == []
    assert await drain(bus, 101) == ["a1", "a2"]


async def test_event_fields_round_trip(backend: Node) -> None:
    _, bus = backend
    full = Event(
        "AgentOther_InService",
        101,
        {"workNo": "101", "status": 4, "ratio": 0.5, "ok": True, "none": None, "nested": [1, "é"]},
        1_700_000_000_123,
    )
    bare = Event("AgentState_Ready", 101, None, 0)
    await bus.publish(full)
    await bus.publish(bare)
    assert await bus.next(101, 0) == full
    assert await bus.next(101, 0) == bare


async def test_queue_is_bounded_dropping_the_oldest(nodes: PeerFactory) -> None:
    _, bus = await nodes(max_queued=3)
    for i in range(5):
        await bus.publish(event(str(i)))
    assert await drain(bus) == ["2", "3", "4"]


async def test_clear(backend: Node) -> None:
    _, bus = backend
    await bus.clear(101)  # nothing queued: fine
    await bus.publish(event("a", 101))
    await bus.publish(event("b", 102))
    await bus.clear(101)
    assert await bus.next(101, 0) is None
    assert await drain(bus, 102) == ["b"]
    await bus.publish(event("c", 101))
    assert await drain(bus, 101) == ["c"]


# -- waiting ------------------------------------------------------------------------------------


async def test_next_without_timeout_returns_at_once(backend: Node) -> None:
    _, bus = backend
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await bus.next(101, 0) is None
    assert await bus.next(101, -1) is None
    assert loop.time() - start < 0.5


async def test_next_times_out_with_none(backend: Node) -> None:
    _, bus = backend
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await bus.next(101, 0.3) is None
    assert 0.25 <= loop.time() - start < 1.5


async def test_waiting_next_wakes_promptly_on_publish_from_another_client(
    backend: Node, peer: PeerFactory
) -> None:
    _, bus = backend
    _, other = await peer()
    loop = asyncio.get_running_loop()
    waiter = asyncio.create_task(bus.next(101, 5))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    published = loop.time()
    await other.publish(event("x"))
    got = await asyncio.wait_for(waiter, 2)
    assert got is not None and got.event_type == "x"
    assert loop.time() - published < 0.5


async def test_a_waiter_ignores_other_agents(backend: Node) -> None:
    _, bus = backend
    waiter = asyncio.create_task(bus.next(101, 0.3))
    await asyncio.sleep(0.05)
    await bus.publish(event("other", 102))
    assert await waiter is None
    assert await drain(bus, 102) == ["other"]


async def test_each_event_reaches_exactly_one_of_many_waiters(
    backend: Node, peer: PeerFactory
) -> None:
    buses = [backend[1], (await peer())[1]]
    waiters = [asyncio.create_task(buses[i % 2].next(101, 3)) for i in range(6)]
    await asyncio.sleep(0.1)
    for i in range(6):
        await buses[i % 2].publish(event(str(i)))
    got = await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert sorted(e.event_type for e in got if e is not None) == [str(i) for i in range(6)]
    assert await drain(buses[0]) == []


# -- clearing -----------------------------------------------------------------------------------


async def test_a_poll_begun_before_clear_leaves_later_events_to_the_next(
    backend: Node, kind: str
) -> None:
    """The old session's held poll (sign-out, forced sign-in) takes none of the new one's events."""
    _, bus = backend
    await bus.publish(event("old"))
    assert await drain(bus) == ["old"]
    old_poll = asyncio.create_task(bus.next(101, 1))
    await asyncio.sleep(0.1)
    assert not old_poll.done()
    await bus.clear(101)
    if kind == "memory":  # released at once
        assert await asyncio.wait_for(asyncio.shield(old_poll), 0.5) is None
    for name in ("AgentOther_InService", "b", "c"):
        await bus.publish(event(name))
    assert await asyncio.wait_for(old_poll, 3) is None
    assert await drain(bus) == ["AgentOther_InService", "b", "c"]


async def test_a_poll_begun_before_clear_returns_none_without_a_publish(
    backend: Node, kind: str
) -> None:
    """Memory releases it at once; Redis by the poll's timeout at the latest."""
    _, bus = backend
    loop = asyncio.get_running_loop()
    old_poll = asyncio.create_task(bus.next(101, 1))
    await asyncio.sleep(0.1)
    cleared = loop.time()
    await bus.clear(101)
    assert await asyncio.wait_for(old_poll, 3) is None
    assert loop.time() - cleared < (0.5 if kind == "memory" else 1.5)
    await bus.publish(event("after"))
    assert await drain(bus) == ["after"]


async def test_the_new_sessions_waiting_poll_gets_the_first_event_promptly(
    backend: Node, peer: PeerFactory
) -> None:
    """Both polls wait as the event comes (the old one first): the new one gets it at once."""
    _, bus = backend
    _, other = await peer()
    loop = asyncio.get_running_loop()
    old_poll = asyncio.create_task(bus.next(101, 5))
    await asyncio.sleep(0.1)
    await other.clear(101)
    new_poll = asyncio.create_task(bus.next(101, 5))
    await asyncio.sleep(0.1)
    assert not new_poll.done()
    published = loop.time()
    await other.publish(event("AgentOther_InService"))
    got = await asyncio.wait_for(new_poll, 2)
    assert got is not None and got.event_type == "AgentOther_InService"
    assert loop.time() - published < 0.5
    assert await asyncio.wait_for(old_poll, 6) is None
    assert await drain(bus) == []


async def test_clear_between_polls_drops_nothing_published_after(backend: Node) -> None:
    _, bus = backend
    await bus.publish(event("a"))
    await bus.clear(101)
    await bus.clear(101)
    await bus.publish(event("b"))
    got = await bus.next(101, 1)
    assert got is not None and got.event_type == "b"
    waiter = asyncio.create_task(bus.next(101, 2))
    await asyncio.sleep(0.05)
    await bus.publish(event("c"))
    got = await asyncio.wait_for(waiter, 2)
    assert got is not None and got.event_type == "c"


# -- cancellation -------------------------------------------------------------------------------


async def test_a_cancelled_wait_loses_no_event(backend: Node, peer: PeerFactory) -> None:
    """The HTTP client went away while long-polling: the next poll still gets the event."""
    _, bus = backend
    _, other = await peer()
    waiter = asyncio.create_task(bus.next(101, 5))
    await asyncio.sleep(0.1)
    waiter.cancel()
    assert await outcome(waiter) == []
    await other.publish(event("after"))
    got = await bus.next(101, 2)  # the same client: its connection was not poisoned
    assert got is not None and got.event_type == "after"
    for _ in range(20):  # nor does the pool leak connections
        waiter = asyncio.create_task(bus.next(101, 5))
        await asyncio.sleep(0.01)
        waiter.cancel()
        await outcome(waiter)
    await other.publish(event("again"))
    assert await drain(bus) == ["again"]


async def test_cancelling_as_the_event_arrives_loses_nothing(
    backend: Node, peer: PeerFactory
) -> None:
    """Cancelled right after the publish returned: the wait's reply is on its way, or has come."""
    _, bus = backend
    _, other = await peer()
    for i in range(15):
        waiter = asyncio.create_task(bus.next(101, 5))
        await asyncio.sleep(0.05)
        await other.publish(event(str(i)))
        for _ in range(i % 5):
            await asyncio.sleep(0)
        waiter.cancel()
        assert await outcome(waiter) + await drain(bus) == [str(i)]


@pytest.mark.parametrize("steps", range(0, 16, 3))
async def test_cancelling_a_poll_at_any_step_loses_nothing(backend: Node, steps: int) -> None:
    """Events already queued; the poll is cancelled after ``steps`` turns of the event loop."""
    _, bus = backend
    for name in ("a", "b"):
        await bus.publish(event(name))
    poll = asyncio.create_task(bus.next(101, 5))
    for _ in range(steps):
        await asyncio.sleep(0)
    poll.cancel()
    delivered = await outcome(poll) + await drain(bus)
    assert delivered == ["a", "b"]


# -- several nodes ------------------------------------------------------------------------------


@pytest.mark.usefixtures("two_nodes")
async def test_two_nodes_share_queues(backend: Node, peer: PeerFactory) -> None:
    _, a = backend
    _, b = await peer()
    await a.publish(event("1"))
    await b.publish(event("2"))
    got = await b.next(101, 1)
    assert got is not None and got.event_type == "1"
    assert await drain(a) == ["2"]
    await a.publish(event("3"))
    await b.clear(101)
    assert await a.next(101, 0) is None


@pytest.mark.usefixtures("two_nodes")
async def test_a_clear_on_one_node_releases_a_poll_held_on_another(
    backend: Node, peer: PeerFactory
) -> None:
    _, a = backend
    _, b = await peer()
    held = asyncio.create_task(a.next(101, 1))
    await asyncio.sleep(0.1)
    assert not held.done()
    await b.clear(101)
    await b.publish(event("AgentOther_InService"))
    assert await asyncio.wait_for(held, 3) is None
    got = await b.next(101, 1)
    assert got is not None and got.event_type == "AgentOther_InService"
    assert await drain(a) == [] and await drain(b) == []


@pytest.mark.usefixtures("two_nodes")
async def test_nodes_consume_each_event_exactly_once(backend: Node, peer: PeerFactory) -> None:
    buses = [backend[1], (await peer())[1], (await peer())[1]]

    async def consume(bus: EventBus) -> list[str]:
        names = []
        while (got := await bus.next(101, 0.5)) is not None:
            names.append(got.event_type)
        return names

    consumers = [asyncio.create_task(consume(buses[i % 3])) for i in range(6)]
    for i in range(60):
        await buses[i % 3].publish(event(str(i)))
        if i % 10 == 0:
            await asyncio.sleep(0.01)
    per_consumer = await asyncio.wait_for(asyncio.gather(*consumers), 10)
    everything = [name for names in per_consumer for name in names]
    assert sorted(everything, key=int) == [str(i) for i in range(60)]
    for names in per_consumer:  # each consumer saw its share in publish order
        assert names == sorted(names, key=int)


# -- Redis key layout ---------------------------------------------------------------------------


async def test_redis_event_whose_blocking_reply_was_abandoned_is_delivered_next(
    raw_redis: redis.asyncio.Redis, prefix: str, backend: Node
) -> None:
    """A poll cancelled after Redis served its wait, before the reply was read (with a bare BLPOP
    the event would be gone): the event waits in ``inflight`` and comes first, in order."""
    _, bus = backend
    pool = raw_redis.connection_pool
    get_connection: Callable[[], Awaitable[AbstractConnection]] = pool.get_connection
    connection = await get_connection()
    try:
        await connection.send_command(
            "BLMOVE", f"{prefix}events:101", f"{prefix}inflight:101", "LEFT", "RIGHT", 5
        )
        await asyncio.sleep(0.1)  # blocked in Redis now
        await bus.publish(event("orphaned"))  # served to the abandoned wait, atomically
        await bus.publish(event("queued"))
        assert await raw_redis.lrange(f"{prefix}inflight:101", 0, -1) != []
    finally:
        await connection.disconnect()  # the reply is never read
        await pool.release(connection)
    assert await drain(bus) == ["orphaned", "queued"]
    assert await raw_redis.exists(f"{prefix}inflight:101", f"{prefix}events:101") == 0


class HoldingProxy:
    """A TCP relay to Redis that can hold back Redis's replies: a reply "late" at will."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._released = asyncio.Event()
        self._released.set()
        self._relays: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()
            await server.wait_closed()
            self.release()
            for writer in self._writers:
                writer.close()
            await asyncio.gather(*self._relays, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers += [writer, up_writer]
        for relay in (self._relay(reader, up_writer, False), self._relay(up_reader, writer, True)):
            task = asyncio.create_task(relay)
            self._relays.add(task)

    async def _relay(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, holdable: bool
    ) -> None:
        try:
            while data := await source.read(65536):
                if holdable:
                    await self._released.wait()
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()
            with contextlib.suppress(OSError):
                await sink.wait_closed()


async def test_redis_reply_arriving_after_cancellation_loses_no_event(
    raw_redis: redis.asyncio.Redis, prefix: str, backend: Node
) -> None:
    """Redis serves the wait, the reply is delayed on the wire, the poll is cancelled meanwhile.

    A bare BLPOP would have taken the event with it; here the next poll gets it."""
    _, bus = backend
    settings = raw_redis.connection_pool.connection_kwargs
    proxy = HoldingProxy(settings["host"], settings["port"])
    async with proxy.serving() as port:
        client = await open_redis(f"redis://127.0.0.1:{port}/{settings.get('db', 0)}")
        remote = RedisEventBus(client, prefix)
        try:
            waiter = asyncio.create_task(remote.next(101, 5))
            await asyncio.sleep(0.1)  # blocked in Redis now
            proxy.hold()
            await bus.publish(event("late"))  # served to the waiter; its reply is held
            await asyncio.sleep(0.05)
            assert not waiter.done()
            waiter.cancel()
            assert await outcome(waiter) == []
            proxy.release()
            got = await remote.next(101, 1)
            assert got is not None and got.event_type == "late"
        finally:
            await remote.aclose()
            await client.aclose()
    assert await drain(bus) == []


async def test_redis_event_keys_expire(
    raw_redis: redis.asyncio.Redis, prefix: str, backend: Node
) -> None:
    _, bus = backend
    await bus.publish(event("a"))
    assert 23 * 3600_000 < await raw_redis.pttl(f"{prefix}events:101") <= 24 * 3600_000
    await bus.clear(101)
    assert await raw_redis.get(f"{prefix}gen:101") == b"1"
    assert 23 * 3600_000 < await raw_redis.pttl(f"{prefix}gen:101") <= 24 * 3600_000
    assert await raw_redis.exists(f"{prefix}events:101", f"{prefix}inflight:101") == 0


async def test_redis_a_stale_poll_hands_what_its_wait_moved_back_in_order(
    raw_redis: redis.asyncio.Redis, prefix: str, backend: Node
) -> None:
    """The old poll's wait moves the new session's first event into ``inflight``; it claims
    nothing, and the events come out in publish order, to the next poll, on any node."""
    _, bus = backend
    old_poll = asyncio.create_task(bus.next(101, 5))
    await asyncio.sleep(0.1)
    await bus.clear(101)
    await raw_redis.rpush(f"{prefix}inflight:101", _raw_event("orphan"))  # an abandoned wait's
    await bus.publish(event("first"))
    await bus.publish(event("second"))
    assert await asyncio.wait_for(old_poll, 2) is None
    assert await drain(bus) == ["orphan", "first", "second"]
    assert await raw_redis.exists(f"{prefix}inflight:101", f"{prefix}events:101") == 0


def _raw_event(name: str) -> str:
    return json.dumps(
        {"event_type": name, "work_no": 101, "content": {"name": name}, "gen_time_ms": 0}
    )


async def test_a_wait_under_an_old_generation_takes_nothing(backend: Node) -> None:
    """``next(generation=...)``: the wait after a one-step poll, which read the generation."""
    _, bus = backend
    await bus.clear(101)  # generation 1
    await bus.publish(event("new"))
    assert await asyncio.wait_for(bus.next(101, 0.5, generation=0), 2) is None
    waiter = asyncio.create_task(bus.next(101, 5, generation=1))
    got = await asyncio.wait_for(waiter, 2)
    assert got is not None and got.event_type == "new"
    waiter = asyncio.create_task(bus.next(101, 5, generation=1))
    await asyncio.sleep(0.1)
    assert not waiter.done()  # blocks, no event waiting
    await bus.publish(event("later"))
    got = await asyncio.wait_for(waiter, 2)
    assert got is not None and got.event_type == "later"
    assert await drain(bus) == []
