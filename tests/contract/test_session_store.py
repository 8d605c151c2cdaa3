"""The SessionStore contract, for every backend (see conftest)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
import redis.asyncio

from ccgateway.agents.directory import AgentDirectory, credential_of
from ccgateway.config import load_settings
from ccgateway.errors import GatewayError
from ccgateway.node.clock import ManualClock
from ccgateway.sessions.manager import TOUCH_EVERY_MS, SessionManager
from ccgateway.stores.base import AgentRecord, Event, Role, SessionRecord
from ccgateway.stores.redis import RedisEventBus, RedisSessionStore, lane, open_redis
from tests.contract.conftest import Node, PeerFactory
from tests.contract.test_event_bus import HoldingProxy


def session(agent_id: int = 101, guid: str = "g1", last_seen_ms: int = 0) -> SessionRecord:
    return SessionRecord(agent_id, guid, 0, 0, last_seen_ms, "AgentGateway0")


def full_session() -> SessionRecord:
    return SessionRecord(
        agent_id=4242,
        guid="0f8c9f5e-8d6b-4c1a-9a6e-3c1d2b7e9f00.AgentGateway7",
        guid_issued_ms=1_700_000_000_123,
        signed_in_ms=1_700_000_000_001,
        last_seen_ms=1_700_000_000_456,
        node="AgentGateway7",
        retired=(("old-guid-1.AgentGateway7", 1_700_000_030_000), ("old-2", 9_999_999_999_999)),
        version=17,  # ignored by create: a new session is at version 1
        attributes={
            "phonenum": "70101",
            "status": 4,
            "ratio": 0.5,
            "flag": True,
            "nothing": None,
            "name": "Zoë 李",
            "big": 2**62,
            "nested": {"skills": [1, 2, 3], "vdn": {"id": 1}},
        },
    )


# -- create -------------------------------------------------------------------------------------


async def test_create_is_exclusive_and_starts_at_version_1(backend: Node) -> None:
    store, _ = backend
    assert await store.get(101) is None
    assert await store.create(session(guid="g1"))
    assert not await store.create(session(guid="g2"))
    current = await store.get(101)
    assert current == dataclasses.replace(session(guid="g1"), version=1)


async def test_concurrent_creates_exactly_one_wins(backend: Node, peer: PeerFactory) -> None:
    stores = [backend[0], (await peer())[0]]
    results = await asyncio.gather(
        *(stores[i % 2].create(session(guid=f"g{i}")) for i in range(10))
    )
    assert sum(results) == 1
    winner = results.index(True)
    stored = await stores[1].get(101)
    assert stored is not None and stored.guid == f"g{winner}" and stored.version == 1


async def test_sessions_are_per_agent(backend: Node) -> None:
    store, _ = backend
    assert await store.create(session(101, "a"))
    assert await store.create(session(102, "b"))
    first, second = await store.get(101), await store.get(102)
    assert first is not None and first.guid == "a"
    assert second is not None and second.guid == "b"


async def test_every_field_round_trips(backend: Node) -> None:
    store, _ = backend
    record = full_session()
    assert await store.create(record)
    stored = await store.get(record.agent_id)
    assert stored == dataclasses.replace(record, version=1)
    assert stored is not None and isinstance(stored.retired, tuple)
    assert all(isinstance(pair, tuple) for pair in stored.retired)
    changed = dataclasses.replace(
        stored,
        guid="new-guid",
        guid_issued_ms=1_700_000_100_000,
        last_seen_ms=1_700_000_100_001,
        node="AgentGateway8",
        retired=(),
        attributes={"status": 3},
    )
    assert await store.swap(stored, changed)
    assert await store.get(record.agent_id) == dataclasses.replace(changed, version=2)


# -- swap ---------------------------------------------------------------------------------------


async def test_swap_compares_versions(backend: Node) -> None:
    store, _ = backend
    assert not await store.swap(session(), session(guid="g2"))  # no session yet
    assert await store.create(session())
    current = await store.get(101)
    assert current is not None
    assert await store.swap(current, dataclasses.replace(current, guid="g3", version=99))
    latest = await store.get(101)
    assert latest is not None and latest.guid == "g3" and latest.version == current.version + 1
    assert not await store.swap(current, dataclasses.replace(current, guid="g4"))  # stale
    assert await store.get(101) == latest
    assert await store.swap(latest, dataclasses.replace(latest, guid="g5"))
    final = await store.get(101)
    assert final is not None and final.guid == "g5" and final.version == 3


async def test_concurrent_swaps_from_one_version_exactly_one_succeeds(
    backend: Node, peer: PeerFactory
) -> None:
    stores = [backend[0], (await peer())[0]]
    assert await stores[0].create(session())
    old = await stores[0].get(101)
    assert old is not None
    results = await asyncio.gather(
        *(
            stores[i % 2].swap(old, dataclasses.replace(old, guid=f"g{i}", last_seen_ms=i))
            for i in range(10)
        )
    )
    assert sum(results) == 1
    winner = results.index(True)
    stored = await stores[1].get(101)
    assert stored is not None
    assert (stored.guid, stored.last_seen_ms, stored.version) == (f"g{winner}", winner, 2)


async def test_swap_after_delete_is_refused(backend: Node) -> None:
    store, _ = backend
    assert await store.create(session())
    current = await store.get(101)
    assert current is not None
    assert await store.delete(101)
    assert not await store.swap(current, dataclasses.replace(current, guid="g2"))
    assert await store.get(101) is None


# -- delete -------------------------------------------------------------------------------------


async def test_delete_without_version(backend: Node) -> None:
    store, _ = backend
    assert not await store.delete(101)
    assert await store.create(session())
    assert await store.delete(101)
    assert await store.get(101) is None
    assert not await store.delete(101)


async def test_delete_with_version(backend: Node) -> None:
    store, _ = backend
    assert await store.create(session())
    first = await store.get(101)
    assert first is not None
    assert await store.swap(first, dataclasses.replace(first, guid="g2"))
    assert not await store.delete(101, version=first.version)
    assert await store.get(101) is not None
    assert await store.delete(101, version=first.version + 1)
    assert await store.get(101) is None
    assert not await store.delete(101, version=first.version + 1)


async def test_create_after_delete_starts_again_at_version_1(backend: Node) -> None:
    store, _ = backend
    assert await store.create(session(guid="g1"))
    current = await store.get(101)
    assert current is not None
    assert await store.swap(current, dataclasses.replace(current, guid="g2"))
    assert await store.delete(101)
    assert await store.create(session(guid="g3"))
    again = await store.get(101)
    assert again is not None and again.guid == "g3" and again.version == 1


# -- idle_since ---------------------------------------------------------------------------------


async def test_idle_since_is_strictly_before(backend: Node) -> None:
    store, _ = backend
    assert await store.idle_since(1_000) == []
    for agent_id, last_seen in ((101, 10), (102, 20), (103, 15)):
        assert await store.create(session(agent_id, last_seen_ms=last_seen))
    assert sorted(await store.idle_since(15)) == [101]
    assert sorted(await store.idle_since(16)) == [101, 103]
    assert sorted(await store.idle_since(21)) == [101, 102, 103]
    assert await store.idle_since(10) == []


async def test_idle_since_follows_swap_and_delete(backend: Node) -> None:
    store, _ = backend
    assert await store.create(session(101, last_seen_ms=10))
    assert await store.create(session(102, last_seen_ms=10))
    current = await store.get(101)
    assert current is not None
    assert await store.swap(current, dataclasses.replace(current, last_seen_ms=50))
    assert await store.idle_since(20) == [102]
    assert await store.delete(102)
    assert await store.idle_since(20) == []
    assert sorted(await store.idle_since(51)) == [101]


# -- several nodes ------------------------------------------------------------------------------


@pytest.mark.usefixtures("two_nodes")
async def test_two_nodes_share_sessions(backend: Node, peer: PeerFactory) -> None:
    a, _ = backend
    b, _ = await peer()
    assert await a.create(session(101, "g1", last_seen_ms=10))
    assert not await b.create(session(101, "other"))
    seen_by_b = await b.get(101)
    assert seen_by_b is not None and seen_by_b.guid == "g1"
    assert await b.swap(seen_by_b, dataclasses.replace(seen_by_b, guid="g2", last_seen_ms=30))
    seen_by_a = await a.get(101)
    assert seen_by_a is not None and (seen_by_a.guid, seen_by_a.version) == ("g2", 2)
    assert not await a.swap(seen_by_b, dataclasses.replace(seen_by_b, guid="stale"))
    assert await a.idle_since(20) == [] and await b.idle_since(31) == [101]
    assert await a.delete(101, version=2)
    assert await b.get(101) is None and await b.idle_since(31) == []


# -- Redis key layout ---------------------------------------------------------------------------


async def test_redis_sessions_expire_and_stale_idle_members_are_pruned(
    raw_redis: redis.asyncio.Redis, prefix: str, backend: Node
) -> None:
    store, _ = backend
    assert await store.create(session(101, last_seen_ms=10))
    ttl_ms = await raw_redis.pttl(f"{prefix}session:101")
    assert 23 * 3600_000 < ttl_ms <= 24 * 3600_000
    current = await store.get(101)
    assert current is not None
    await raw_redis.pexpire(f"{prefix}session:101", 1_000)
    assert await store.swap(current, dataclasses.replace(current, last_seen_ms=11))
    assert await raw_redis.pttl(f"{prefix}session:101") > 23 * 3600_000  # refreshed by swap
    assert await raw_redis.zscore(f"{prefix}last_seen", "101") == 11
    # The hash expires without the scripts (the TTL): idle_since skips and prunes its member.
    await raw_redis.delete(f"{prefix}session:101")
    assert await store.idle_since(100) == []
    assert await raw_redis.zscore(f"{prefix}last_seen", "101") is None


# -- count --------------------------------------------------------------------------------------


async def test_count_follows_create_swap_and_delete(backend: Node, peer: PeerFactory) -> None:
    store, _ = backend
    other, _ = await peer()
    assert await store.count() == 0
    assert await store.create(session(101))
    assert await store.create(session(102))
    assert not await other.create(session(101, "again"))  # refused: not counted twice
    assert await store.count() == 2 and await other.count() == 2
    current = await store.get(101)
    assert current is not None
    assert await other.swap(current, dataclasses.replace(current, guid="g2", last_seen_ms=5))
    assert await store.count() == 2
    assert await other.delete(101)
    assert not await store.delete(101)
    assert await store.count() == 1 and await other.count() == 1
    assert await store.delete(102)
    assert await store.count() == 0


# -- an event poll through SessionManager (one step of the store) ----------------------------------

INTERVAL_MS, GRACE_MS, IDLE_MS = 60_000, 90_000, 120_000


def agent(work_no: int) -> AgentRecord:
    return AgentRecord(work_no, "", 1, Role.AGENT, True, "")


class SameAgents:
    """The directory's store: every work number is an agent, never changed (polls check it)."""

    async def get(self, work_no: int) -> AgentRecord | None:
        return agent(work_no)

    async def add(self, agent: AgentRecord) -> bool:
        return False

    async def set_password_hash(
        self, work_no: int, password_hash: str, *, session_epoch: str | None = None
    ) -> bool:
        return False

    async def set_session_epoch(self, work_no: int, session_epoch: str) -> bool:
        return False

    async def remove(self, work_no: int) -> bool:
        return False

    async def list(self) -> list[AgentRecord]:
        return []


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def managers(
    backend: Node, peer: PeerFactory, clock: ManualClock
) -> AsyncIterator[Callable[..., Awaitable[SessionManager]]]:
    """Opens SessionManagers of one shared state (the first on ``backend``), on ``clock``."""
    directories: list[AgentDirectory] = []

    async def open_manager(node: Node | None = None, **settings: str) -> SessionManager:
        store, bus = node or await peer()
        directory = AgentDirectory(SameAgents())
        directories.append(directory)
        values = {
            "AUTHMODE": "2",
            "GUIDINTERVAL": str(INTERVAL_MS),
            "GUIDTIMEOUT": str(GRACE_MS),
            "NODE_NAME": f"AgentGateway{len(directories) - 1}",
            **settings,
        }
        return SessionManager(load_settings(environ={}, **values), clock, directory, store, bus)

    yield open_manager
    for directory in directories:
        directory.close()


async def signed_in(backend: Node, clock: ManualClock, agent_id: int = 101) -> str:
    """A session as sign-in stores it, with its queue cleared; its GUID."""
    store, bus = backend
    now = clock.now_ms()
    guid = f"{uuid.uuid4()}.AgentGateway0"
    credential = credential_of(agent(agent_id))
    record = SessionRecord(agent_id, guid, now, now, now, "AgentGateway0", credential=credential)
    assert await store.create(record)
    await bus.clear(agent_id)
    return guid


def ev(name: str, agent_id: int = 101) -> Event:
    return Event(name, agent_id, {"name": name}, 1_700_000_000_000)


def retcode_of(error: pytest.ExceptionInfo[GatewayError]) -> str:
    return error.value.retcode.code


async def test_poll_hands_out_the_waiting_event_and_touches_every_5_s(
    backend: Node, managers: Callable[..., Awaitable[SessionManager]], clock: ManualClock
) -> None:
    store, bus = backend
    manager = await managers(backend)
    guid = await signed_in(backend, clock)
    for name in ("a", "b"):
        await bus.publish(ev(name))
    clock.advance(TOUCH_EVERY_MS - 1)
    session, got = await manager.poll_events(101, guid, 5)
    assert got is not None and got.event_type == "a" and got.content == {"name": "a"}
    assert (session.guid, session.version, session.last_seen_ms) == (guid, 1, clock.now_ms() - 4999)
    clock.advance(1)
    session, got = await manager.poll_events(101, guid, 5)
    assert got is not None and got.event_type == "b"
    assert (session.version, session.last_seen_ms) == (2, clock.now_ms())
    assert await store.get(101) == session
    assert await store.idle_since(clock.now_ms()) == []
    assert await store.idle_since(clock.now_ms() + 1) == [101]
    session, got = await manager.poll_events(101, guid, 0)
    assert got is None and session.version == 2


async def test_poll_rotates_and_the_old_guid_keeps_working_for_the_grace(
    backend: Node, managers: Callable[..., Awaitable[SessionManager]], clock: ManualClock
) -> None:
    store, bus = backend
    manager = await managers(backend)
    first = await signed_in(backend, clock)
    clock.advance(INTERVAL_MS - 1)
    session, _ = await manager.poll_events(101, first, 0)
    assert session.guid == first
    clock.advance(1)
    await bus.publish(ev("a"))
    session, got = await manager.poll_events(101, first, 0)
    second = session.guid
    assert got is not None and got.event_type == "a"
    assert second != first and second.endswith(".AgentGateway0")
    assert session.guid_issued_ms == clock.now_ms()
    assert session.retired == ((first, clock.now_ms() + GRACE_MS),)
    assert await store.get(101) == session
    rotated = clock.now_ms()
    clock.advance(GRACE_MS)  # the last moment of the grace; second is due for rotation too
    session, _ = await manager.poll_events(101, first, 0)
    third = session.guid
    assert third not in (first, second)
    assert session.retired == ((first, rotated + GRACE_MS), (second, clock.now_ms() + GRACE_MS))
    clock.advance(1)
    with pytest.raises(GatewayError) as refused:
        await manager.poll_events(101, first, 0)
    assert retcode_of(refused) == "000-003"
    assert (await manager.poll_events(101, second, 0))[0].guid == third
    clock.advance(INTERVAL_MS)  # rotates again: the expired first is dropped
    session, _ = await manager.poll_events(101, third, 0)
    assert session.retired == (
        (second, rotated + 2 * GRACE_MS),
        (third, clock.now_ms() + GRACE_MS),
    )
    assert await store.get(101) == session


async def test_authmode_1_never_rotates(
    backend: Node, managers: Callable[..., Awaitable[SessionManager]], clock: ManualClock
) -> None:
    manager = await managers(backend, AUTHMODE="1")
    guid = await signed_in(backend, clock)
    clock.advance(IDLE_MS)  # two intervals
    session, _ = await manager.poll_events(101, guid, 0)
    assert session.guid == guid and session.retired == () and session.version == 2


async def test_refused_polls_take_no_event(
    backend: Node, managers: Callable[..., Awaitable[SessionManager]], clock: ManualClock
) -> None:
    _, bus = backend
    manager = await managers(backend)
    with pytest.raises(GatewayError) as refused:
        await manager.poll_events(101, "nobody", 0)
    assert retcode_of(refused) == "100-006"
    guid = await signed_in(backend, clock)
    await bus.publish(ev("a"))
    for wrong in (None, "", guid.upper(), guid + "x", guid[:-1], f"{uuid.uuid4()}.AgentGateway0"):
        with pytest.raises(GatewayError) as refused:
            await manager.poll_events(101, wrong, 0)
        assert retcode_of(refused) == "000-003"
    _, got = await manager.poll_events(101, guid, 0)
    assert got is not None and got.event_type == "a"


async def test_an_idle_agent_is_signed_out_by_its_next_poll(
    backend: Node, managers: Callable[..., Awaitable[SessionManager]], clock: ManualClock
) -> None:
    store, bus = backend
    manager = await managers(backend)
    guid = await signed_in(backend, clock)
    clock.advance(IDLE_MS)
    await manager.poll_events(101, guid, 0)  # exactly the timeout: still signed in
    await bus.publish(ev("a"))
    clock.advance(IDLE_MS + 1)
    with pytest.raises(GatewayError) as refused:
        await manager.poll_events(101, guid, 0)
    assert retcode_of(refused) == "100-006"
    assert await store.get(101) is None and await store.count() == 0
    assert await bus.next(101, 0) is None  # its queue went with it


async def test_a_held_poll_of_a_replaced_session_takes_no_event(
    backend: Node, managers: Callable[..., Awaitable[SessionManager]], clock: ManualClock
) -> None:
    store, bus = backend
    a = await managers(backend)
    b = await managers()
    old = await signed_in(backend, clock)
    held = asyncio.create_task(a.poll_events(101, old, 5))
    await asyncio.sleep(0.1)
    assert not held.done()
    assert await store.delete(101)  # force sign-in, on whichever node
    new = await signed_in(backend, clock)
    await bus.publish(ev("AgentOther_InService"))
    session, got = await asyncio.wait_for(held, 3)
    assert got is None and session.guid == old
    with pytest.raises(GatewayError):
        await b.poll_events(101, old, 0)
    _, got = await b.poll_events(101, new, 0)
    assert got is not None and got.event_type == "AgentOther_InService"


async def test_polls_on_every_node_get_each_event_once_in_order(
    backend: Node, managers: Callable[..., Awaitable[SessionManager]], clock: ManualClock
) -> None:
    _, bus = backend
    nodes = [await managers(backend), await managers(), await managers()]
    guid = await signed_in(backend, clock)

    async def consume(manager: SessionManager) -> list[int]:
        got: list[int] = []
        while (event := (await manager.poll_events(101, guid, 0.5))[1]) is not None:
            got.append(int(event.event_type))
        return got

    consumers = [asyncio.create_task(consume(nodes[i % 3])) for i in range(6)]
    for i in range(60):
        await bus.publish(ev(str(i)))
        if i % 10 == 0:
            await asyncio.sleep(0.01)
    per_consumer = await asyncio.wait_for(asyncio.gather(*consumers), 10)
    assert sorted(n for got in per_consumer for n in got) == list(range(60))
    for got in per_consumer:
        assert got == sorted(got)


async def test_wake_polls_answers_held_polls_empty_at_once(
    backend: Node, managers: Callable[..., Awaitable[SessionManager]], clock: ManualClock
) -> None:
    _, bus = backend
    manager = await managers(backend)
    guid = await signed_in(backend, clock)
    held = [asyncio.create_task(manager.poll_events(101, guid, 10)) for _ in range(3)]
    await asyncio.sleep(0.1)
    assert not any(poll.done() for poll in held)
    started = time.monotonic()
    manager.wake_polls()
    answers = await asyncio.wait_for(asyncio.gather(*held), 2)
    assert [event for _, event in answers] == [None, None, None]
    _, got = await manager.poll_events(101, guid, 10)  # later polls do not hold
    assert got is None and time.monotonic() - started < 1
    await bus.publish(ev("a"))  # but an event already waiting is still handed out
    _, got = await manager.poll_events(101, guid, 10)
    assert got is not None and got.event_type == "a"


async def test_redis_a_poll_that_finds_an_event_is_one_round_trip(
    raw_redis: redis.asyncio.Redis,
    backend: Node,
    managers: Callable[..., Awaitable[SessionManager]],
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, bus = backend
    manager = await managers(backend)
    guid = await signed_in(backend, clock)
    await bus.publish(ev("a"))
    await bus.publish(ev("b"))
    client: redis.asyncio.Redis = store._redis  # type: ignore[attr-defined]
    sent: list[str] = []
    execute: Callable[..., Awaitable[Any]] = client.execute_command
    pack = lane.pack

    async def counting(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return await execute(*args, **options)

    def packing(args: Sequence[lane.Arg]) -> bytes:  # the poll's own connection
        sent.append(str(args[0]))
        return pack(args)

    monkeypatch.setattr(client, "execute_command", counting)
    monkeypatch.setattr(lane, "pack", packing)
    await manager.poll_events(101, guid, 5)  # connects and loads the script on first use
    sent.clear()
    clock.advance(INTERVAL_MS)  # touches and rotates too
    session, got = await manager.poll_events(101, guid, 5)
    assert got is not None and got.event_type == "b" and session.guid != guid
    assert sent == ["EVALSHA"]


async def test_redis_a_poll_cancelled_while_its_reply_is_late_loses_no_event(
    raw_redis: redis.asyncio.Redis,
    prefix: str,
    backend: Node,
    managers: Callable[..., Awaitable[SessionManager]],
    clock: ManualClock,
) -> None:
    """The one-step poll claimed the event, its reply is delayed, the poll is cancelled: the
    event goes back to the head of the queue, for the next poll."""
    _, bus = backend
    guid = await signed_in(backend, clock)
    settings = raw_redis.connection_pool.connection_kwargs
    proxy = HoldingProxy(settings["host"], settings["port"])
    async with proxy.serving() as port:
        client = await open_redis(f"redis://127.0.0.1:{port}/{settings.get('db', 0)}")
        remote_bus = RedisEventBus(client, prefix)
        try:
            remote = await managers((RedisSessionStore(client, remote_bus), remote_bus))
            _, got = await remote.poll_events(101, guid, 0)  # connected, nothing waiting
            assert got is None
            await bus.publish(ev("late"))
            await bus.publish(ev("next"))
            proxy.hold()
            poll = asyncio.create_task(remote.poll_events(101, guid, 5))
            await asyncio.sleep(0.2)
            assert not poll.done()
            poll.cancel()
            proxy.release()
            with pytest.raises(asyncio.CancelledError):
                await poll
            _, got = await remote.poll_events(101, guid, 1)
            assert got is not None and got.event_type == "late"
        finally:
            await remote_bus.aclose()
            await client.aclose()
    local = await managers(backend)
    _, got = await local.poll_events(101, guid, 1)
    assert got is not None and got.event_type == "next"
