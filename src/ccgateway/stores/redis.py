"""Redis-backed SessionStore and EventBus: the shared state of a scale-out deployment.

Every gateway node (one per process) talks to the same Redis; the nodes then agree on who is
signed in and share one event queue per agent. Needs Redis >= 6.2 (``BLMOVE``), a single primary
(or Sentinel): the scripts touch two keys that Redis Cluster would place in different slots.

Key layout, under a prefix (default ``ccgw:``):

``<prefix>session:<agent_id>``
    hash, one field per ``SessionRecord`` field (``retired`` and ``attributes`` as JSON); expires
    ``ttl_s`` (24 h) after its last create or swap, so an abandoned session does not live forever.
``<prefix>last_seen``
    sorted set, agent id -> ``last_seen_ms``; kept in step with the hashes by the same Lua scripts
    (create, swap, delete), read by ``idle_since`` and (``ZCARD``, O(1)) by ``count``. Members
    left by an expired hash are pruned by ``idle_since`` (until then ``count`` includes them).
``<prefix>events:<agent_id>``
    list, the agent's queued events as JSON, oldest first, at most ``max_queued`` long.
``<prefix>inflight:<agent_id>``
    list, events a blocking ``BLMOVE`` took out of ``events`` but that no poll has claimed yet
    (normally empty but for an instant); always older than anything still in ``events``.
``<prefix>gen:<agent_id>``
    string, the agent's queue generation (absent reads as 0), incremented by each ``clear``
    together with the deletion of ``events`` and ``inflight``; expires ``ttl_s`` after the last
    ``clear``.

Correctness never depends on the TTLs: they only bound what a crashed or forgotten agent leaves.

Long polls and connections: a waiting ``RedisEventBus.next`` holds one pooled connection for as
long as it blocks (``BLMOVE``). Size the client's pool for the number of agents that may long-poll
one node at once plus some headroom for the other commands (redis-py's default is 100, and a plain
``ConnectionPool`` raises ``MaxConnectionsError`` past it), and Redis's ``maxclients`` (default
10000) for all the nodes together. The client must have no ``socket_timeout`` shorter than the
longest poll (``open_redis`` sets none), or a long poll fails with redis' ``TimeoutError``.

Cancellation: redis-py disconnects a connection whose reply was abandoned by a cancelled command,
so a cancelled poll neither leaks nor poisons a connection. An event is never lost to one either:
the blocking wait moves an event into the ``inflight`` list rather than popping it, so an event
whose ``BLMOVE`` reply went to a cancelled poll stays there, and every poll claims ``inflight``
before ``events``. The claim itself (one short script) is shielded; if the poll is cancelled while
it runs, what it took is pushed back to the head of ``inflight`` (unless the queue was cleared
meanwhile). Each event is claimed by exactly one poll, on any node.

Clearing: ``clear`` (sign-out, new sign-in) bumps the generation. A poll learns the generation with
its first claim and claims only under it: once the queue was cleared, it claims nothing and returns
None, whichever node cleared, so a poll of the old session never takes the new session's events.
It is not woken by the clear itself: it returns at the next publish (whose event it hands back,
see ``_CLAIM``) or at its timeout.

An event poll in one round trip: ``RedisSessionStore.poll`` (one script, ``_POLL``) checks the
GUID, records "last seen" and rotates the GUID when due, and claims the oldest event under the
generation it reads, atomically; ``SessionManager.poll_events`` uses it and, when no event was
waiting, blocks in ``RedisEventBus.next`` under that generation. A poll that found an event waiting
thus costs one ``EVALSHA``; the session and its queue are read in the same instant, so a session
replaced (force sign-in) after it never hands this poll the new session's events. Anything else
(no session, idle, a GUID not accepted) changes nothing and is left to the two-call path.

Connections: the poll and claim scripts, the commands every poll sends, go over the bus's own
pipelined connection (``ScriptLane``, ``stores/resp.py``: half redis-py's CPU per call), opened
with the client's address, credentials and database; with a TLS or Sentinel client they go
through redis-py. Close the bus (``aclose``) before the client.

Errors: redis-py's exceptions (``redis.exceptions.ConnectionError``, ``TimeoutError``, ...)
propagate as they are; nothing here translates or swallows them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import redis.asyncio
from redis.commands.core import AsyncScript

from ccgateway.stores.base import (
    Event,
    EventBus,
    Polled,
    PollRules,
    SessionRecord,
    guid_accepted,
)
from ccgateway.stores.resp import Script, ScriptLane

log = logging.getLogger("ccgateway.stores.redis")

DEFAULT_PREFIX = "ccgw:"
DEFAULT_TTL_S = 24 * 60 * 60
DEFAULT_MAX_CONNECTIONS = 1024

# KEYS: session, last_seen. ARGV: ttl_ms, last_seen_ms, agent_id, field, value, ...
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

# KEYS: session, last_seen. ARGV: expected version, ttl_ms, last_seen_ms, agent_id, field, ...
_SWAP = """
local version = redis.call('HGET', KEYS[1], 'version')
if not version or version ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"""

# KEYS: session, last_seen. ARGV: agent_id, version ('' for any).
_DELETE = """
local version = redis.call('HGET', KEYS[1], 'version')
if not version then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
if ARGV[2] ~= '' and version ~= ARGV[2] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: session, last_seen. ARGV: agent_id. Drops a last_seen member whose hash has expired.
_PRUNE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 0
"""

# KEYS: events, inflight. ARGV: event JSON, max_queued, ttl_ms.
_PUBLISH = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

# KEYS: inflight, events, gen. ARGV: ttl_ms, the poll's generation ('' on its first claim).
# Returns {generation, event or nil}. The oldest event: inflight's head, else events' head; none
# if the generation is not the poll's (the queue was cleared since the poll began). Then whatever
# ``inflight`` holds (say what this poll's own wait just moved there) goes back to the head of
# ``events``, in order: a poll of the new session blocked on ``events`` wakes up to claim it.
_CLAIM = """
local generation = tonumber(redis.call('GET', KEYS[3]) or '0')
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= generation then
  if redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') then
    while redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT') do end
    redis.call('PEXPIRE', KEYS[2], ARGV[1])
  end
  return {generation, false}
end
local event = redis.call('LPOP', KEYS[1])
if event then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
  end
  return {generation, event}
end
return {generation, redis.call('LPOP', KEYS[2])}
"""

# An event poll's first step, in one round trip (``RedisSessionStore.poll``): check the GUID, touch
# or rotate the session, claim the oldest event (as ``_CLAIM`` does on a poll's first claim).
# KEYS: session, last_seen, inflight, events, gen.
# ARGV: now_ms, new_guid, SHA-1 hex of the presented GUID, agent_id, and the rules' constants in
#       one string: "idle_timeout_ms touch_every_ms rotate_after_ms (-1: never) guid_timeout_ms
#       ttl_ms" (each argument costs redis-py some microseconds to pack).
# Returns 0 without a session, 2 when idle, 3 when the GUID is not accepted (nothing changed),
# else one JSON object: {"session": the hash's fields after the poll, "generation": n, "event":
# the event's JSON or false}. One bulk string, not an array of fields: parsing the reply is the
# client's biggest cost (some 5 us per element in redis-py without hiredis).
# GUIDs are compared by their SHA-1 digests: how long a comparison takes can tell an attacker
# about the digest of the GUID at most, not about the GUID.
_POLL = """
local s = redis.call('HMGET', KEYS[1], 'guid', 'guid_issued_ms', 'last_seen_ms', 'retired',
  'version')
local guid, version = s[1], s[5]
if not guid or not version then
  return 0
end
local now = tonumber(ARGV[1])
local idle, touch, rotate, grace, ttl = string.match(ARGV[5], '^(%d+) (%d+) (-?%d+) (%d+) (%d+)$')
local seen = tonumber(s[3])
if now - seen > tonumber(idle) then
  return 2
end
local retired = cjson.decode(s[4])
local accepted = redis.sha1hex(guid) == ARGV[3]
for _, pair in ipairs(retired) do
  if redis.sha1hex(pair[1]) == ARGV[3] and now <= pair[2] then
    accepted = true
  end
end
if not accepted then
  return 3
end
rotate = tonumber(rotate)
local due = rotate >= 0 and now - tonumber(s[2]) >= rotate
if due or now - seen >= tonumber(touch) then
  local fields = {'last_seen_ms', ARGV[1], 'version', tostring(tonumber(version) + 1)}
  if due then
    local kept = {}
    for _, pair in ipairs(retired) do
      if pair[2] >= now then
        kept[#kept + 1] = '[' .. cjson.encode(pair[1]) .. ',' ..
          string.format('%.0f', pair[2]) .. ']'
      end
    end
    kept[#kept + 1] = '[' .. cjson.encode(guid) .. ',' ..
      string.format('%.0f', now + tonumber(grace)) .. ']'
    table.insert(fields, 'guid')
    table.insert(fields, ARGV[2])
    table.insert(fields, 'guid_issued_ms')
    table.insert(fields, ARGV[1])
    table.insert(fields, 'retired')
    table.insert(fields, '[' .. table.concat(kept, ',') .. ']')
  end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[4])
end
local generation = tonumber(redis.call('GET', KEYS[5]) or '0')
local event = redis.call('LPOP', KEYS[3])
if event then
  if redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('PEXPIRE', KEYS[3], ttl)
  end
else
  event = redis.call('LPOP', KEYS[4])
end
local fields = redis.call('HGETALL', KEYS[1])
local session = {}
for i = 1, #fields, 2 do
  session[fields[i]] = fields[i + 1]
end
return cjson.encode({session = session, generation = generation, event = event})
"""

# KEYS: inflight, gen. ARGV: generation, event JSON, ttl_ms. An event claimed by a cancelled poll
# goes back to inflight's head, unless the queue was cleared since (it is the old session's).
_GIVE_BACK = """
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('LPUSH', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: events, inflight, gen. ARGV: ttl_ms.
_CLEAR = """
redis.call('DEL', KEYS[1], KEYS[2])
local generation = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
return generation
"""


async def open_redis(
    url: str, *, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> redis.asyncio.Redis:
    """A client for ``url`` (``redis://``, ``rediss://`` or ``unix://``), checked with a PING.

    ``max_connections`` bounds the pool: one connection per concurrent long poll, plus headroom
    (see the module docstring). Responses are left undecoded (bytes). Close it with ``aclose()``.
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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _session_fields(session: SessionRecord, version: int) -> list[str | int]:
    fields: dict[str, str | int] = {
        "agent_id": session.agent_id,
        "guid": session.guid,
        "guid_issued_ms": session.guid_issued_ms,
        "signed_in_ms": session.signed_in_ms,
        "last_seen_ms": session.last_seen_ms,
        "node": session.node,
        "retired": _dumps([[guid, until] for guid, until in session.retired]),
        "version": version,
        "attributes": _dumps(dict(session.attributes)),
    }
    return [item for pair in fields.items() for item in pair]


def _session_from(raw: Mapping[bytes | str, bytes | str]) -> SessionRecord:
    fields = {_text(k): _text(v) for k, v in raw.items()}
    retired = json.loads(fields["retired"])
    return SessionRecord(
        agent_id=int(fields["agent_id"]),
        guid=fields["guid"],
        guid_issued_ms=int(fields["guid_issued_ms"]),
        signed_in_ms=int(fields["signed_in_ms"]),
        last_seen_ms=int(fields["last_seen_ms"]),
        node=fields["node"],
        retired=tuple((str(guid), int(until)) for guid, until in retired),
        version=int(fields["version"]),
        attributes=json.loads(fields["attributes"]),
    )


def _event_json(event: Event) -> str:
    return _dumps(
        {
            "event_type": event.event_type,
            "work_no": event.work_no,
            "content": None if event.content is None else dict(event.content),
            "gen_time_ms": event.gen_time_ms,
        }
    )


def _event_from(raw: bytes | str) -> Event:
    data = json.loads(raw)
    return Event(
        event_type=data["event_type"],
        work_no=int(data["work_no"]),
        content=data["content"],
        gen_time_ms=int(data["gen_time_ms"]),
    )


class RedisSessionStore:
    """Sessions shared by every node on one Redis; create, swap and delete are atomic scripts.

    ``attributes`` and ``retired`` travel as JSON: values must be JSON-serialisable, and they come
    back as JSON gives them (tuples as lists, mappings as dicts).
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str = DEFAULT_PREFIX,
        *,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._last_seen = f"{prefix}last_seen"
        self._create = client.register_script(_CREATE)
        self._swap = client.register_script(_SWAP)
        self._delete = client.register_script(_DELETE)
        self._prune = client.register_script(_PRUNE)
        self._poll = client.register_script(_POLL)

    def _key(self, agent_id: int) -> str:
        return f"{self._prefix}session:{agent_id}"

    async def get(self, agent_id: int) -> SessionRecord | None:
        raw = await self._redis.hgetall(self._key(agent_id))
        return _session_from(raw) if raw else None

    async def create(self, session: SessionRecord) -> bool:
        created = await self._create(
            keys=[self._key(session.agent_id), self._last_seen],
            args=[
                self._ttl_ms,
                session.last_seen_ms,
                session.agent_id,
                *_session_fields(session, version=1),
            ],
        )
        return int(created) == 1

    async def swap(self, old: SessionRecord, new: SessionRecord) -> bool:
        swapped = await self._swap(
            keys=[self._key(old.agent_id), self._last_seen],
            args=[
                old.version,
                self._ttl_ms,
                new.last_seen_ms,
                old.agent_id,
                *_session_fields(new, version=old.version + 1),
            ],
        )
        return int(swapped) == 1

    async def delete(self, agent_id: int, version: int | None = None) -> bool:
        deleted = await self._delete(
            keys=[self._key(agent_id), self._last_seen],
            args=[agent_id, "" if version is None else version],
        )
        return int(deleted) == 1

    async def idle_since(self, before_ms: int) -> list[int]:
        members = await self._redis.zrangebyscore(self._last_seen, "-inf", f"({before_ms}")
        agent_ids = [int(_text(cast("bytes | str", member))) for member in members]
        if not agent_ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for agent_id in agent_ids:
                pipe.exists(self._key(agent_id))
            present = await pipe.execute()
        idle = []
        for agent_id, exists in zip(agent_ids, present, strict=True):
            if exists:
                idle.append(agent_id)
            else:  # the hash expired (TTL): drop its member, unless it was recreated meanwhile
                await self._prune(keys=[self._key(agent_id), self._last_seen], args=[agent_id])
        return idle

    async def count(self) -> int:
        """``ZCARD`` of ``last_seen``: O(1), one round trip."""
        return int(await self._redis.zcard(self._last_seen))

    async def poll(
        self, agent_id: int, guid: str, rules: PollRules, events: EventBus
    ) -> Polled | None:
        """An event poll's first step in one round trip (one script, ``_POLL``).

        Only with a ``RedisEventBus`` on the same client and key prefix (else None). The script
        compares SHA-1 digests; the GUID is then compared again here, in constant time, with the
        session it returned (should they ever disagree, the claimed event goes back).
        """
        if not (
            isinstance(events, RedisEventBus)
            and events._redis is self._redis
            and events._prefix == self._prefix
        ):
            return None
        queue, inflight, gen = events._keys(agent_id)
        call = await events._send(
            _POLL_SCRIPT,
            self._poll,
            [self._key(agent_id), self._last_seen, inflight, queue, gen],
            [
                str(rules.now_ms),
                rules.new_guid,
                # SHA-1 as Redis' Lua has it; only its preimage resistance matters here.
                hashlib.sha1(guid.encode()).hexdigest(),  # noqa: S324
                str(agent_id),
                f"{rules.idle_timeout_ms} {rules.touch_every_ms}"
                f" {-1 if rules.rotate_after_ms is None else rules.rotate_after_ms}"
                f" {rules.guid_timeout_ms} {self._ttl_ms}",
            ],
        )
        reply = await events._claim_shielded(call, inflight, gen, _polled_claim)
        if isinstance(reply, int):
            return None  # refused: no session, idle, or not this GUID
        data = json.loads(reply)
        session = _session_from(data["session"])
        generation, raw = int(data["generation"]), data["event"] or None
        if not guid_accepted(session, guid, rules.now_ms):
            if raw is not None:
                await events._give_back(call, inflight, gen, _polled_claim)
            return None
        return Polled(session, None if raw is None else _event_from(raw), generation)


class RedisEventBus:
    """Per-agent FIFO queues in Redis lists; each event reaches exactly one poll on any node.

    A waiting ``next`` blocks in ``BLMOVE`` (no busy waiting), holding one pooled connection.
    ``clear`` starts a new generation of the queue: a poll begun before it returns None.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str = DEFAULT_PREFIX,
        *,
        max_queued: int = 1000,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        self._redis = client
        self._prefix = prefix
        self._max_queued = max_queued
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._publish = client.register_script(_PUBLISH)
        self._claim_script = client.register_script(_CLAIM)
        self._give_back_script = client.register_script(_GIVE_BACK)
        self._clear = client.register_script(_CLEAR)
        self._giving_back: set[asyncio.Task[None]] = set()
        self._lane = ScriptLane.for_client(client)

    async def aclose(self) -> None:
        """Close the bus's own connection (the scripts' lane); the client stays open."""
        if self._lane is not None:
            await self._lane.aclose()

    def _keys(self, agent_id: int) -> tuple[str, str, str]:
        """``events``, ``inflight`` and ``gen``."""
        return (
            f"{self._prefix}events:{agent_id}",
            f"{self._prefix}inflight:{agent_id}",
            f"{self._prefix}gen:{agent_id}",
        )

    async def publish(self, event: Event) -> None:
        events, inflight, _ = self._keys(event.work_no)
        await self._publish(
            keys=[events, inflight],
            args=[_event_json(event), self._max_queued, self._ttl_ms],
        )

    async def next(
        self, agent_id: int, timeout_s: float, *, generation: int | None = None
    ) -> Event | None:
        events, inflight, gen = self._keys(agent_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        # Unless given, learnt by the first claim. Given (by ``RedisSessionStore.poll``, whose
        # claim just found the queue empty), the poll begins with the wait: a round trip less.
        wait_first = generation is not None and timeout_s > 0
        while True:
            if not wait_first:
                current, raw = await self._claim(events, inflight, gen, generation)
                if generation is None:
                    generation = current
                elif current != generation:
                    # Cleared since this poll began (sign-out, new sign-in): what is queued now
                    # is the new session's. The claim took nothing and handed back what the wait
                    # moved.
                    return None
                if raw is not None:
                    return _event_from(raw)
            wait_first = False
            # Whole milliseconds, rounded up: Redis reads a timeout under 1 ms as 0, "forever".
            remaining_ms = math.ceil((deadline - loop.time()) * 1000)
            if remaining_ms <= 0:
                return None
            # Moved, not popped: should this poll be cancelled before the reply reaches it, the
            # event waits in ``inflight`` for the next claim. Another poll may claim it first;
            # then this one goes on waiting. A clear does not wake it (see the module docstring).
            await self._redis.blmove(
                events, inflight, cast("int", remaining_ms / 1000), "LEFT", "RIGHT"
            )

    async def _claim(
        self, events: str, inflight: str, gen: str, generation: int | None
    ) -> tuple[int, bytes | str | None]:
        """The current generation, and the event claimed (none under another generation)."""
        call = await self._send(
            _CLAIM_SCRIPT,
            self._claim_script,
            [inflight, events, gen],
            [self._ttl_ms, "" if generation is None else generation],
        )
        return _claimed(await self._claim_shielded(call, inflight, gen, _claimed))

    async def _send(
        self,
        script: Script,
        fallback: AsyncScript,
        keys: list[str],
        args: list[str | int],
    ) -> asyncio.Future[Any]:
        """Send a script over the lane (redis-py's ``fallback`` without one); its reply."""
        if self._lane is not None:
            return await self._lane.run(script, keys, args)
        return asyncio.ensure_future(fallback(keys=keys, args=args))

    async def _claim_shielded(
        self,
        claim: asyncio.Future[Any],
        inflight: str,
        gen: str,
        claimed: Callable[[Any], tuple[int, bytes | str | None]],
    ) -> Any:
        """Await a claiming script's reply; if cancelled meanwhile, give what it claims back.

        ``claimed`` reads (generation, event or None) from the script's reply.
        """
        try:
            return await asyncio.shield(claim)
        except asyncio.CancelledError:
            giving_back = asyncio.ensure_future(self._give_back(claim, inflight, gen, claimed))
            self._giving_back.add(giving_back)
            giving_back.add_done_callback(self._given_back)
            # Wait for it (its failure is logged by ``_given_back``); if cancelled again
            # meanwhile, it goes on in the background.
            await asyncio.wait([giving_back])
            raise

    async def _give_back(
        self,
        claim: Awaitable[Any],
        inflight: str,
        gen: str,
        claimed: Callable[[Any], tuple[int, bytes | str | None]],
    ) -> None:
        """Wait for a claim whose poll was cancelled; return what it took to ``inflight``'s head.

        Unless the queue was cleared since: the event was the old session's, and is dropped.
        """
        try:
            generation, raw = claimed(await claim)
        except Exception:
            return  # the claim failed: it took nothing
        if raw is not None:
            await self._give_back_script(keys=[inflight, gen], args=[generation, raw, self._ttl_ms])

    def _given_back(self, task: asyncio.Task[None]) -> None:
        self._giving_back.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("an event claimed by a cancelled poll may be lost", exc_info=error)

    async def clear(self, agent_id: int) -> None:
        """Drop the queue and start a new generation: polls begun before return None."""
        await self._clear(keys=list(self._keys(agent_id)), args=[self._ttl_ms])


def _claimed(reply: Any) -> tuple[int, bytes | str | None]:
    generation, raw = reply
    return int(generation), cast("bytes | str | None", raw)


def _polled_claim(reply: Any) -> tuple[int, bytes | str | None]:
    """(generation, event) from ``_POLL``'s reply; a refused poll claimed nothing."""
    if isinstance(reply, int):
        return 0, None
    data = json.loads(reply)
    return int(data["generation"]), data["event"] or None


_POLL_SCRIPT = Script(_POLL)
_CLAIM_SCRIPT = Script(_CLAIM)
