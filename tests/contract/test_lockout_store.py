"""The LockoutStore contract (sign-in lockouts, M6 of issue 14), for process memory and Redis, and
the lockout rule (``sessions/lockout.py``) on each, across two nodes where they share state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import pytest
import redis.asyncio

from ccgateway import retcodes
from ccgateway.errors import GatewayError
from ccgateway.node.clock import ManualClock
from ccgateway.sessions.lockout import Lockout, LockoutRule
from ccgateway.stores.base import LockoutStore
from ccgateway.stores.memory_lockouts import MemoryLockoutStore
from ccgateway.stores.redis import RedisKeys
from ccgateway.stores.redis.lockouts import RedisLockoutStore
from tests.contract.conftest import _connect

Nodes = Callable[[], LockoutStore]
RULE = LockoutRule(attempts=3, window_ms=60_000, lock_ms=30_000)
T0 = 1_700_000_000_000


@pytest.fixture
async def stores(kind: str, prefix: str, admin: redis.asyncio.Redis | None) -> AsyncIterator[Nodes]:
    """Opens nodes' LockoutStores sharing one state (memory: one process, the same store)."""
    if kind == "memory":
        store = MemoryLockoutStore()
        yield lambda: store
        return
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            client = await _connect()
            stack.push_async_callback(client.aclose)
            clients.append(client)
        turn = iter(range(1000))
        yield lambda: RedisLockoutStore(clients[next(turn) % 2], RedisKeys(prefix))


async def test_failures_are_kept_newest_last_and_at_most_keep(stores: Nodes) -> None:
    store = stores()
    assert await store.add_failure(101, T0, 3, 60_000) == [T0]
    assert await store.add_failure(101, T0 + 1, 3, 60_000) == [T0, T0 + 1]
    assert await store.add_failure(101, T0 + 2, 3, 60_000) == [T0, T0 + 1, T0 + 2]
    assert await store.add_failure(101, T0 + 3, 3, 60_000) == [T0 + 1, T0 + 2, T0 + 3]
    assert await store.add_failure(102, T0 + 3, 3, 60_000) == [T0 + 3]  # per work number


async def test_one_lock_at_a_time_it_ends_and_forgets_the_failures(stores: Nodes) -> None:
    store, other = stores(), stores()
    await store.add_failure(101, T0, 3, 60_000)
    assert await store.lock(101, T0 + 1000, T0)
    assert not await other.lock(101, T0 + 5000, T0 + 1)  # already locked: unchanged
    assert await other.locked_until(101, T0 + 999) == T0 + 1000
    assert await other.locked_until(101, T0 + 1000) is None
    assert await store.locked_until(102, T0) is None
    assert not await store.clear_failures(101, T0 + 1)  # locked: a success changes nothing
    assert await store.clear_failures(101, T0 + 1000)
    assert await store.add_failure(101, T0 + 1000, 3, 60_000) == [T0 + 1000]  # forgotten at lock
    assert await other.lock(101, T0 + 3000, T0 + 2000)  # the first lock ended: a new one starts


async def test_concurrent_locks_exactly_one_starts(stores: Nodes) -> None:
    nodes = [stores(), stores()]
    started = await asyncio.gather(*(nodes[i % 2].lock(101, T0 + 1000, T0) for i in range(10)))
    assert sum(started) == 1


async def test_unlock_lifts_the_lock_and_forgets_the_failures(stores: Nodes) -> None:
    store, other = stores(), stores()
    await store.add_failure(101, T0, 3, 60_000)
    assert await store.lock(101, T0 + 1000, T0)
    await store.add_failure(101, T0, 3, 60_000)
    assert await other.unlock(101)
    assert await store.locked_until(101, T0) is None
    assert await store.add_failure(101, T0, 3, 60_000) == [T0]
    assert not await other.unlock(101)


async def test_m6_the_rule_locks_on_every_node_and_unlocks_for_all(stores: Nodes) -> None:
    """Failures counted on two nodes lock the work number on both; one unlock lifts it."""
    clock = ManualClock(T0)
    node0, node1 = Lockout(RULE, clock, stores()), Lockout(RULE, clock, stores())
    await node0.failed(555)
    await node1.failed(555)
    with pytest.raises(GatewayError) as locking:
        await node0.failed(555)
    assert locking.value.retcode is retcodes.AGENT_LOCKED
    assert node0.started + node1.started == 1
    for node in (node0, node1):
        with pytest.raises(GatewayError) as locked:
            await node.refuse_if_locked(555)
        assert locked.value.retcode is retcodes.AGENT_LOCKED
        with pytest.raises(GatewayError):
            await node.succeeded(555)
    assert await node1.unlock(555)
    await node0.refuse_if_locked(555)
    await node0.succeeded(555)


async def test_the_rule_counts_a_sliding_window(stores: Nodes) -> None:
    clock = ManualClock(T0)
    lockout = Lockout(RULE, clock, stores())
    await lockout.failed(101)
    clock.advance(30_000)
    await lockout.failed(101)
    clock.advance(30_000)  # the first failure has left the window
    await lockout.failed(101)
    await lockout.refuse_if_locked(101)
    clock.advance(29_999)
    with pytest.raises(GatewayError):  # three within 60 s
        await lockout.failed(101)
    clock.advance(RULE.lock_ms - 1)
    with pytest.raises(GatewayError):
        await lockout.refuse_if_locked(101)
    clock.advance(1)
    await lockout.refuse_if_locked(101)


async def test_redis_keys_live_under_the_prefix_and_expire(
    stores: Nodes, raw_redis: redis.asyncio.Redis, prefix: str
) -> None:
    store = stores()
    now = 10**12  # the TTLs are relative to the times given, not to Redis's clock
    await store.add_failure(101, now, 3, 60_000)
    await store.lock(102, now + 30_000, now)
    keys = sorted([k.decode() async for k in raw_redis.scan_iter(match=f"{prefix}*")])
    assert keys == [f"{prefix}signin_failures:101", f"{prefix}signin_lock:102"]
    for key in keys:
        assert 0 < await raw_redis.pttl(key) <= 60_000
