"""The SessionStore contract, for every backend (see conftest)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import pytest
import redis.asyncio

from ccgateway.agents.directory import AgentDirectory, credential_of, hash_password
from ccgateway.config import load_settings
from ccgateway.errors import GatewayError
from ccgateway.node.clock import ManualClock
from ccgateway.sessions.manager import TOUCH_EVERY_MS, SessionManager, SignIn, guid_digest
from ccgateway.stores.base import AgentRecord, Event, EventBus, Role, SessionRecord
from ccgateway.stores.redis import RedisEventBus, RedisSessionStore, lane, open_redis
from ccgateway.stores.redis.codec import session_fields
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


PASSWORD = "Secret-101"


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def agent(work_no: int) -> AgentRecord:
    return AgentRecord(work_no, f"Agent {work_no}", 1, Role.AGENT, True, password_hash())


class SameAgents:
    """The directory's store: every work number is an agent (password ``PASSWORD``), never
    changed (every poll checks it)."""

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


def digest(guid: str) -> str:
    """The GUID as the stores hold it (the managers here have no GUID_DIGEST_KEY)."""
    return guid_digest("", guid)


def as_stored(session: SessionRecord) -> SessionRecord:
    """A session as a manager hands it out (clear GUID), as the store holds it (its digest)."""
    return dataclasses.replace(session, guid=digest(session.guid))


async def signed_in(backend: Node, clock: ManualClock, agent_id: int = 101) -> str:
    """A session as sign-in stores it, with its queue cleared; its GUID."""
    store, bus = backend
    now = clock.now_ms()
    guid = f"{uuid.uuid4()}.AgentGateway0"
    credential = credential_of(agent(agent_id))
    record = SessionRecord(
        agent_id, digest(guid), now, now, now, "AgentGateway0", credential=credential
    )
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
    assert await store.get(101) == as_stored(session)
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
    assert session.retired == ((digest(first), clock.now_ms() + GRACE_MS),)
    assert await store.get(101) == as_stored(session)
    rotated = clock.now_ms()
    clock.advance(GRACE_MS)  # the last moment of the grace; second is due for rotation too
    session, _ = await manager.poll_events(101, first, 0)
    third = session.guid
    assert third not in (first, second)
    assert session.retired == (
        (digest(first), rotated + GRACE_MS),
        (digest(second), clock.now_ms() + GRACE_MS),
    )
    clock.advance(1)
    with pytest.raises(GatewayError) as refused:
        await manager.poll_events(101, first, 0)
    assert retcode_of(refused) == "000-003"
    assert (await manager.poll_events(101, second, 0))[0].guid == second  # as presented
    assert (await manager.poll_events(101, third, 0))[0].guid == third
    clock.advance(INTERVAL_MS)  # rotates again: the expired first is dropped
    session, _ = await manager.poll_events(101, third, 0)
    assert session.retired == (
        (digest(second), rotated + 2 * GRACE_MS),
        (digest(third), clock.now_ms() + GRACE_MS),
    )
    assert await store.get(101) == as_stored(session)


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
    clock.advance(TOUCH_EVERY_MS)  # touches too
    session, got = await manager.poll_events(101, guid, 5)
    assert got is not None and got.event_type == "b" and session.guid == guid
    assert sent == ["EVALSHA"]
    # L14: a new GUID goes to Redis only when one is due: the poll that rotates takes two.
    await bus.publish(ev("c"))
    sent.clear()
    clock.advance(INTERVAL_MS)
    session, got = await manager.poll_events(101, guid, 5)
    assert got is not None and got.event_type == "c" and session.guid != guid
    assert sent == ["EVALSHA", "EVALSHA"]


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


# -- L5: sign-in and sign-out, each one atomic step of the store --------------------------------

SIGN_IN = SignIn(password=PASSWORD, phone_number="70101")


async def test_l5_concurrent_force_sign_ins_each_get_their_own_guid_and_one_wins(
    backend: Node, managers: Callable[..., Awaitable[SessionManager]]
) -> None:
    """L5: concurrent force sign-ins (on two nodes) each get a GUID of their own, and exactly one
    of them works afterwards: each sign-in hands back the session it created, not another's."""
    nodes = [await managers(backend), await managers()]
    await nodes[0].sign_in(101, SIGN_IN)
    signed = await asyncio.gather(
        *(nodes[i % 2].sign_in(101, SIGN_IN, force=True) for i in range(12))
    )
    guids = [session.guid for session, _ in signed]
    assert len(set(guids)) == len(guids)
    working = []
    for guid in guids:
        try:
            await nodes[1].poll_events(101, guid, 0)
            working.append(guid)
        except GatewayError as error:
            assert error.retcode.code == "000-003"
    assert len(working) == 1
    stored = await backend[0].get(101)
    (winner,) = [session for session, _ in signed if session.guid == working[0]]
    assert stored is not None and stored.version == winner.version


async def test_l5_sign_in_refuses_a_live_session_and_replaces_an_idle_one(
    backend: Node, managers: Callable[..., Awaitable[SessionManager]], clock: ManualClock
) -> None:
    """L5: the sign-in rule (``may_replace``), in the store's one step."""
    manager = await managers(backend)
    first, _ = await manager.sign_in(101, SIGN_IN)
    clock.advance(IDLE_MS)  # exactly the idle timeout: still signed in
    with pytest.raises(GatewayError) as refused:
        await manager.sign_in(101, SIGN_IN)
    assert retcode_of(refused) == "100-002"
    clock.advance(1)
    second, _ = await manager.sign_in(101, SIGN_IN)
    assert second.guid != first.guid and second.version == first.version + 1
    third, _ = await manager.sign_in(101, SIGN_IN, force=True)
    assert third.version == second.version + 1
    with pytest.raises(GatewayError) as refused:
        await manager.poll_events(101, second.guid, 0)
    assert retcode_of(refused) == "000-003"
    session, got = await manager.poll_events(101, third.guid, 0)
    assert session.guid == third.guid and got is not None
    assert got.event_type == "AgentOther_InService"


class SlowClear:
    """An EventBus whose ``clear`` waits first: the window between a sign-out's two steps."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    async def publish(self, event: Event) -> None:
        await self._bus.publish(event)

    async def next(
        self, agent_id: int, timeout_s: float, *, generation: int | None = None
    ) -> Event | None:
        return await self._bus.next(agent_id, timeout_s, generation=generation)

    async def clear(self, agent_id: int) -> None:
        await asyncio.sleep(0.3)
        await self._bus.clear(agent_id)


async def test_l5_a_sign_in_during_a_sign_out_keeps_its_events(
    backend: Node, managers: Callable[..., Awaitable[SessionManager]]
) -> None:
    """L5: a sign-out that deleted the session and then cleared the queue, in two round trips,
    wiped the events of a sign-in that came in between; now both are one step each."""
    store, bus = backend
    signing_out = await managers((store, SlowClear(bus)))
    signing_in = await managers()
    old, _ = await signing_in.sign_in(101, SIGN_IN)
    await signing_out.poll_events(101, old.guid, 0)  # the sign-in events, taken
    leaving = asyncio.create_task(signing_out.sign_out(101, old.guid))
    for _ in range(100):
        if await store.get(101) is None:
            break
        await asyncio.sleep(0.01)
    new, _ = await signing_in.sign_in(101, SIGN_IN)
    await leaving
    names = []
    while (event := (await signing_in.poll_events(101, new.guid, 0))[1]) is not None:
        names.append(event.event_type)
    assert names == ["AgentOther_InService", "AgentState_Ready"]


# -- L14: Redis holds digests of GUIDs, never a GUID ---------------------------------------------


async def test_l14_redis_holds_keyed_digests_and_polls_send_no_guid(
    raw_redis: redis.asyncio.Redis,
    prefix: str,
    backend: Node,
    managers: Callable[..., Awaitable[SessionManager]],
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """L14: the session hash held the GUIDs in clear, and every poll sent a new GUID in its
    script's arguments. Now Redis holds HMAC-SHA256 digests under GUID_DIGEST_KEY, and a poll
    sends only digests, a new one only when a rotation is due."""
    key = "k" * 32
    manager = await managers(backend, GUID_DIGEST_KEY=key)
    sent: list[bytes] = []
    pack = lane.pack

    def packing(args: Sequence[lane.Arg]) -> bytes:
        packed = pack(args)
        sent.append(packed)
        return packed

    monkeypatch.setattr(lane, "pack", packing)
    first, _ = await manager.sign_in(101, SIGN_IN)
    clock.advance(TOUCH_EVERY_MS)
    await manager.poll_events(101, first.guid, 0)
    clock.advance(INTERVAL_MS)
    rotated, _ = await manager.poll_events(101, first.guid, 0)
    assert rotated.guid != first.guid
    await manager.poll_events(101, rotated.guid, 0)
    held = [*sent]  # what the polls sent, and all Redis holds
    async for name in raw_redis.scan_iter(match=f"{prefix}*"):
        kind = await raw_redis.type(name)
        if kind == b"hash":
            held += [cast("bytes", v) for kv in (await raw_redis.hgetall(name)).items() for v in kv]
        elif kind == b"list":
            held += [cast("bytes", v) for v in await raw_redis.lrange(name, 0, -1)]
    everything = b" ".join(held)
    for guid in (first.guid, rotated.guid):
        assert guid.split(".")[0].encode() not in everything
    raw = await raw_redis.hgetall(f"{prefix}session:101")
    assert raw[b"guid"] == digest_under(key, rotated.guid).encode()
    assert json.loads(raw[b"retired"])[0][0] == digest_under(key, first.guid)


def digest_under(key: str, guid: str) -> str:
    return hmac.new(key.encode(), guid.encode(), hashlib.sha256).hexdigest()


async def test_l14_a_session_left_by_an_older_version_is_no_session(
    raw_redis: redis.asyncio.Redis,
    prefix: str,
    backend: Node,
    managers: Callable[..., Awaitable[SessionManager]],
    clock: ManualClock,
) -> None:
    """L14: after an upgrade, a session hash written by the version that kept GUIDs in clear is
    no session (100-006, never a crash); the agent signs in again, plainly, over it; the sweep
    removes such a hash."""
    store, _ = backend
    manager = await managers(backend)
    now = clock.now_ms()
    for agent_id in (101, 102):
        guid = f"{uuid.uuid4()}.AgentGateway0"
        old = SessionRecord(agent_id, guid, now, now, now, "AgentGateway0", version=3)
        fields = [str(field) for field in session_fields(old, version=3)]
        old_hash = dict(zip(fields[::2], fields[1::2], strict=True))
        del old_hash["credential"]  # a field the older version did not write
        await raw_redis.hset(f"{prefix}session:{agent_id}", mapping=old_hash)  # type: ignore[arg-type]
        await raw_redis.zadd(f"{prefix}last_seen", {str(agent_id): now})
    assert await store.get(101) is None
    for call in (
        manager.poll_events(101, guid, 0),
        manager.authenticate(101, guid),
        manager.replace_guid(101, guid),
        manager.sign_out(101, guid),
    ):
        with pytest.raises(GatewayError) as refused:
            await call
        assert retcode_of(refused) == "100-006"
    session, _ = await manager.sign_in(101, SIGN_IN)
    assert session.version == 4
    assert (await manager.poll_events(101, session.guid, 0))[1] is not None
    clock.advance(IDLE_MS + 1)
    assert await store.idle_since(clock.now_ms()) == [101]
    assert await raw_redis.exists(f"{prefix}session:102") == 0
    assert await store.count() == 1


async def test_l14_changing_the_guid_key_signs_everyone_out(
    raw_redis: redis.asyncio.Redis,
    prefix: str,
    backend: Node,
    managers: Callable[..., Awaitable[SessionManager]],
) -> None:
    """L14: sessions made under another GUID_DIGEST_KEY (another key id) are no session."""
    store, bus = backend
    manager = await managers(backend)
    session, _ = await manager.sign_in(101, SIGN_IN)
    other = RedisSessionStore(store._redis, bus, key_id="another")  # type: ignore[attr-defined, arg-type]
    assert await other.get(101) is None
    moved = await managers((other, bus))
    with pytest.raises(GatewayError) as refused:
        await moved.poll_events(101, session.guid, 0)
    assert retcode_of(refused) == "100-006"
    again, _ = await moved.sign_in(101, SIGN_IN)
    assert (await moved.poll_events(101, again.guid, 0))[1] is not None
