"""``RedisLockoutStore``: failed sign-ins and sign-in locks shared by every node.

Each method is one atomic step in Redis (a Lua script, or one command), so a lock started on one
node is in force on every node at once, and ``ccgateway agents unlock`` (another process on the
same Redis) lifts it for all. The keys (``keys.RedisKeys.sign_in_lockout``) live under the node's
prefix and expire by themselves: the failures a lockout window after the last one, a lock when it
ends. The scripts are here, not in ``scripts.py``, as nothing else runs them.
"""

from __future__ import annotations

from typing import cast

import redis.asyncio

from ccgateway.stores.redis.keys import RedisKeys

# KEYS: failures. ARGV: now_ms, keep, ttl_ms. Returns the kept failure times, oldest first.
ADD_FAILURE = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('LRANGE', KEYS[1], 0, -1)
"""

# KEYS: failures, lock. ARGV: until_ms, now_ms. 1 when this call started the lock.
LOCK = """
local ends = tonumber(redis.call('GET', KEYS[2]))
if ends and ends > tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', math.max(1, tonumber(ARGV[1]) - tonumber(ARGV[2])))
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: failures, lock. ARGV: now_ms. 0 (nothing changed) while a lock is in force.
CLEAR_FAILURES = """
local ends = tonumber(redis.call('GET', KEYS[2]))
if ends and ends > tonumber(ARGV[1]) then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
"""


class RedisLockoutStore:
    """``LockoutStore`` on the sessions' Redis, under their key prefix (``keys``)."""

    def __init__(self, client: redis.asyncio.Redis, keys: RedisKeys) -> None:
        self._redis = client
        self._keys = keys
        self._add_failure = client.register_script(ADD_FAILURE)
        self._lock = client.register_script(LOCK)
        self._clear_failures = client.register_script(CLEAR_FAILURES)

    async def add_failure(self, agent_id: int, now_ms: int, keep: int, ttl_ms: int) -> list[int]:
        failures, _ = self._keys.sign_in_lockout(agent_id)
        times = await self._add_failure(keys=[failures], args=[now_ms, keep, max(1, ttl_ms)])
        return [int(t) for t in cast("list[bytes]", times)]

    async def lock(self, agent_id: int, until_ms: int, now_ms: int) -> bool:
        started = await self._lock(
            keys=list(self._keys.sign_in_lockout(agent_id)), args=[until_ms, now_ms]
        )
        return int(started) == 1

    async def locked_until(self, agent_id: int, now_ms: int) -> int | None:
        _, lock = self._keys.sign_in_lockout(agent_id)
        raw = await self._redis.get(lock)
        until = int(raw) if raw is not None else None
        return until if until is not None and until > now_ms else None

    async def clear_failures(self, agent_id: int, now_ms: int) -> bool:
        cleared = await self._clear_failures(
            keys=list(self._keys.sign_in_lockout(agent_id)), args=[now_ms]
        )
        return int(cleared) == 1

    async def unlock(self, agent_id: int) -> bool:
        failures, lock = self._keys.sign_in_lockout(agent_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(lock)
            pipe.delete(failures)
            was_locked, _ = await pipe.execute()
        return int(was_locked) == 1
