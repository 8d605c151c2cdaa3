"""One suite for every SessionStore / EventBus backend: process memory and Redis.

``backend`` yields the (SessionStore, EventBus) pair of one gateway node; ``peer`` opens more
nodes sharing its state (for Redis: another client, hence other connections, on the same key
prefix; for memory, the one process holds only one node, so it hands back the same pair).
Redis runs at ``TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); each test gets its own
key prefix and its keys are deleted afterwards. Without a reachable Redis its cases are skipped,
unless ``CI=true``, where they fail.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack
from typing import Protocol

import pytest
import redis.asyncio
import redis.exceptions

from ccgateway.sessions.pollrule import decide
from ccgateway.stores.base import EventBus, SessionStore
from ccgateway.stores.memory import MemoryEventBus, MemorySessionStore
from ccgateway.stores.redis import RedisEventBus, RedisSessionStore, open_redis

# Read at import: the autouse ``clean_environ`` fixture runs before any fixture here.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI") == "true"
DEFAULT_MAX_QUEUED = 1000

Node = tuple[SessionStore, EventBus]


class PeerFactory(Protocol):
    def __call__(self, *, max_queued: int = ...) -> Awaitable[Node]: ...


async def _connect() -> redis.asyncio.Redis:
    try:
        return await open_redis(REDIS_URL)
    except (redis.exceptions.ConnectionError, OSError) as error:
        message = f"Redis is not reachable at {REDIS_URL} (set TEST_REDIS_URL): {error}"
        if IN_CI:
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)


@pytest.fixture(params=["memory", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def prefix() -> str:
    """This test's own Redis key prefix."""
    return f"ccgw-test-{uuid.uuid4().hex}:"


@pytest.fixture
async def admin(kind: str, prefix: str) -> AsyncIterator[redis.asyncio.Redis | None]:
    """A raw client for Redis (None for memory); deletes the test's keys afterwards."""
    if kind != "redis":
        yield None
        return
    async with redis_client(prefix) as client:
        yield client


@contextlib.asynccontextmanager
async def redis_client(prefix: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A raw client for Redis; deletes the keys under ``prefix`` afterwards."""
    client = await _connect()
    try:
        yield client
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def raw_redis(admin: redis.asyncio.Redis | None) -> redis.asyncio.Redis:
    """The raw client, for the Redis-only cases (skipped for memory)."""
    if admin is None:
        pytest.skip("Redis key layout only")
    return admin


@pytest.fixture
async def nodes(
    kind: str, prefix: str, admin: redis.asyncio.Redis | None
) -> AsyncIterator[PeerFactory]:
    """Opens nodes of one shared state (the first is ``backend``); ``max_queued`` bounds the bus.

    For memory a non-default ``max_queued`` gives a fresh node (one process has only one).
    """
    if kind == "memory":
        events = MemoryEventBus()
        pair: Node = (MemorySessionStore(events, decide), events)

        async def memory_node(*, max_queued: int = DEFAULT_MAX_QUEUED) -> Node:
            if max_queued != DEFAULT_MAX_QUEUED:
                fresh = MemoryEventBus(max_queued=max_queued)
                return MemorySessionStore(fresh, decide), fresh
            return pair

        yield memory_node
        return

    async with AsyncExitStack() as stack:

        async def redis_node(*, max_queued: int = DEFAULT_MAX_QUEUED) -> Node:
            client = await _connect()
            stack.push_async_callback(client.aclose)
            bus = RedisEventBus(client, prefix, max_queued=max_queued)
            stack.push_async_callback(bus.aclose)
            return RedisSessionStore(client, bus), bus

        yield redis_node


@pytest.fixture
async def backend(nodes: PeerFactory) -> Node:
    """One node's (SessionStore, EventBus), for memory and for Redis."""
    return await nodes()


@pytest.fixture
def peer(backend: Node, nodes: PeerFactory) -> PeerFactory:
    """Opens another node sharing ``backend``'s state (for memory: the same pair)."""
    return nodes


@pytest.fixture
def two_nodes(kind: str) -> None:
    """Marks a case that needs two separate nodes: N/A for memory (one process, one node)."""
    if kind == "memory":
        pytest.skip("N/A for memory: one process holds one node")
