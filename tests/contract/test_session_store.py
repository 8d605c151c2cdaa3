"""The SessionStore contract, for every backend (see conftest)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
import redis.asyncio

from ccgateway.stores.base import SessionRecord
from tests.contract.conftest import Node, PeerFactory


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
