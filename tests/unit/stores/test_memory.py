from __future__ import annotations

import asyncio
import dataclasses

from ccgateway.sessions.pollrule import decide
from ccgateway.stores.base import Event, SessionRecord
from ccgateway.stores.memory import MemoryEventBus, MemorySessionStore


def session(agent_id: int = 101, guid: str = "g1") -> SessionRecord:
    return SessionRecord(agent_id, guid, 0, 0, 0, "AgentGateway0")


async def test_create_is_exclusive_and_swap_compares_versions() -> None:
    store = MemorySessionStore(MemoryEventBus(), decide)
    assert await store.create(session())
    assert not await store.create(session(guid="g2"))
    current = await store.get(101)
    assert current is not None and current.guid == "g1"
    assert await store.swap(current, dataclasses.replace(current, guid="g3"))
    assert not await store.swap(current, dataclasses.replace(current, guid="g4"))
    latest = await store.get(101)
    assert latest is not None and latest.guid == "g3" and latest.version == current.version + 1
    assert not await store.delete(101, version=current.version)
    assert await store.delete(101, version=latest.version)
    assert await store.get(101) is None


async def test_idle_since() -> None:
    store = MemorySessionStore(MemoryEventBus(), decide)
    await store.create(dataclasses.replace(session(101), last_seen_ms=10))
    await store.create(dataclasses.replace(session(102), last_seen_ms=20))
    assert await store.idle_since(15) == [101]


async def test_events_fifo_per_agent_and_clear() -> None:
    bus = MemoryEventBus()
    for name in ("a", "b"):
        await bus.publish(Event(name, 101, None, 0))
    await bus.publish(Event("c", 102, None, 0))
    first = await bus.next(101, 0)
    second = await bus.next(101, 0)
    assert first is not None and second is not None
    assert [first.event_type, second.event_type] == ["a", "b"]
    assert await bus.next(101, 0) is None
    await bus.clear(102)
    assert await bus.next(102, 0) is None


async def test_waiting_next_is_woken_by_publish() -> None:
    bus = MemoryEventBus()
    waiter = asyncio.create_task(bus.next(101, 5))
    await asyncio.sleep(0.01)
    await bus.publish(Event("x", 101, None, 0))
    event = await asyncio.wait_for(waiter, 1)
    assert event is not None and event.event_type == "x"


async def test_next_times_out_with_none() -> None:
    assert await MemoryEventBus().next(101, 0.02) is None


async def test_queue_is_bounded() -> None:
    bus = MemoryEventBus(max_queued=3)
    for i in range(5):
        await bus.publish(Event(str(i), 101, None, 0))
    got = [await bus.next(101, 0) for _ in range(4)]
    assert [e.event_type if e else None for e in got] == ["2", "3", "4", None]
