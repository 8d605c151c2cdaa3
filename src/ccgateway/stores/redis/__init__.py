"""Redis-backed SessionStore and EventBus: the shared state of a scale-out deployment.

Every gateway node (one per process) talks to the same Redis; the nodes then agree on who is
signed in and share one event queue per agent. Needs Redis >= 6.2 (``BLMOVE``), a single primary
(or Sentinel): the scripts touch two keys that Redis Cluster would place in different slots.

The modules:

- ``keys``: the key layout (its one owner, documented there), shared by both stores;
- ``scripts``: the Lua scripts, each with the keys and arguments it takes;
- ``codec``: sessions as hash fields, events as JSON;
- ``sessions``: ``RedisSessionStore``;
- ``events``: ``RedisEventBus`` (long polls, cancellation, clearing: see there);
- ``lane``: ``ScriptLane``, the lean pipelined connection the poll and claim scripts go over;
- ``lockouts``: ``RedisLockoutStore``, the sign-in lockouts' counts (with their own scripts).

A node builds the bus first, then the store with it: ``RedisSessionStore(client, bus)``.

An event poll in one round trip: ``RedisSessionStore.poll`` (one script, ``POLL``, the mirror of
``sessions/pollrule.py``) checks the GUID's digest, records "last seen" and rotates the GUID
when due (asked again with the new GUID's digest: ``Refusal.ROTATE``), and
claims the oldest event under the generation it reads, atomically; ``SessionManager.poll_events``
uses it and, when no event was waiting, blocks in ``RedisEventBus.next`` under that generation. A
poll that found an event waiting thus costs one ``EVALSHA``; the session and its queue are read in
the same instant, so a session replaced (force sign-in) after it never hands this poll the new
session's events. A refused poll (no session, idle, a GUID not accepted) changes nothing.

Connections: the poll and claim scripts, the commands every poll sends, go over the bus's own
pipelined connection (``ScriptLane``, ``lane.py``: half redis-py's CPU per call), opened with the
client's address, credentials and database; with a TLS or Sentinel client they go through
redis-py. Close the bus (``aclose``) before the client.

Sign-in and sign-out are one script each too (``SIGN_IN``, ``SIGN_OUT``): session, queue and
sign-in events change together.

Errors: redis-py's exceptions (``redis.exceptions.ConnectionError``, ``TimeoutError``, ...)
propagate as they are; nothing here translates or swallows them.
"""

from __future__ import annotations

import redis.asyncio

from ccgateway.stores.redis.events import RedisEventBus
from ccgateway.stores.redis.keys import DEFAULT_PREFIX, DEFAULT_TTL_S, RedisKeys
from ccgateway.stores.redis.sessions import RedisSessionStore

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_PREFIX",
    "DEFAULT_TTL_S",
    "RedisEventBus",
    "RedisKeys",
    "RedisSessionStore",
    "open_redis",
]

DEFAULT_MAX_CONNECTIONS = 1024


async def open_redis(
    url: str, *, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> redis.asyncio.Redis:
    """A client for ``url`` (``redis://``, ``rediss://`` or ``unix://``), checked with a PING.

    ``max_connections`` bounds the pool: one connection per concurrent long poll, plus headroom
    (see ``events.py``). Responses are left undecoded (bytes). Close it with ``aclose()``.
    """
    client = redis.asyncio.Redis.from_url(
        url,
        max_connections=max_connections,
        socket_timeout=None,
        socket_connect_timeout=10,
    )
    try:
        await client.ping()
    except BaseException:
        await client.aclose()
        raise
    return client
