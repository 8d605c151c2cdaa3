"""``RedisSessionStore``: sessions shared by every node, and the event poll in one round trip."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio

from ccgateway.stores.base import (
    Event,
    Polled,
    PollRefused,
    PollRules,
    Refusal,
    SessionRecord,
    SignInRules,
    guid_accepted,
)
from ccgateway.stores.redis import scripts
from ccgateway.stores.redis.codec import (
    event_from,
    event_json,
    session_fields,
    session_from,
    stored_session,
    text,
)
from ccgateway.stores.redis.events import RedisEventBus
from ccgateway.stores.redis.keys import DEFAULT_TTL_S

_REFUSALS = {1: Refusal.NO_SESSION, 2: Refusal.IDLE, 3: Refusal.GUID, 4: Refusal.ROTATE}

DEFAULT_KEY_ID = "0"


class RedisSessionStore:
    """Sessions on one Redis; create, swap, delete and poll are atomic scripts.

    Built with the node's ``RedisEventBus`` (``events``): the store shares its key layout
    (``events.keys``) and ``poll`` claims from its queues, over its lane. ``attributes`` and
    ``retired`` travel as JSON (``codec.py``).

    ``key_id`` names the GUID key the session's digests were made with (``gateway.py`` passes
    ``sessions/manager.py`` ``guid_key_id``): each hash carries it, and a hash with another (or
    none: written by a version that kept GUIDs in clear) is no session; the sweep
    (``idle_since``) deletes it.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        events: RedisEventBus,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        key_id: str = DEFAULT_KEY_ID,
    ) -> None:
        if not key_id or any(c.isspace() for c in key_id):
            raise ValueError("key_id must be a non-empty word")
        self._key_id = key_id
        self._redis = client
        self._events = events
        self._keys = events.keys
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._create = client.register_script(scripts.CREATE)
        self._swap = client.register_script(scripts.SWAP)
        self._delete = client.register_script(scripts.DELETE)
        self._prune = client.register_script(scripts.PRUNE)
        self._sign_in = client.register_script(scripts.SIGN_IN)
        self._sign_out = client.register_script(scripts.SIGN_OUT)

    async def get(self, agent_id: int) -> SessionRecord | None:
        raw = await self._redis.hgetall(self._keys.session(agent_id))
        return stored_session(raw, self._key_id)

    def _fields(self, session: SessionRecord, version: int) -> list[str | int]:
        return [*session_fields(session, version), "key_id", self._key_id]

    async def create(self, session: SessionRecord) -> bool:
        created = await self._create(
            keys=[self._keys.session(session.agent_id), self._keys.last_seen],
            args=[
                self._ttl_ms,
                session.last_seen_ms,
                session.agent_id,
                *self._fields(session, version=1),
            ],
        )
        return int(created) == 1

    async def swap(self, old: SessionRecord, new: SessionRecord) -> bool:
        swapped = await self._swap(
            keys=[self._keys.session(old.agent_id), self._keys.last_seen],
            args=[
                old.version,
                self._ttl_ms,
                new.last_seen_ms,
                old.agent_id,
                *self._fields(new, version=old.version + 1),
            ],
        )
        return int(swapped) == 1

    async def delete(self, agent_id: int, version: int | None = None) -> bool:
        deleted = await self._delete(
            keys=[self._keys.session(agent_id), self._keys.last_seen],
            args=[agent_id, "" if version is None else version],
        )
        return int(deleted) == 1

    async def sign_in(
        self, session: SessionRecord, events: Sequence[Event], rules: SignInRules
    ) -> SessionRecord | None:
        """One script, ``SIGN_IN`` (the mirror of ``may_replace``)."""
        agent_id = session.agent_id
        queue, inflight, gen = self._keys.queue(agent_id)
        version = await self._sign_in(
            keys=[self._keys.session(agent_id), self._keys.last_seen, queue, inflight, gen],
            args=[
                rules.now_ms,
                rules.idle_timeout_ms,
                1 if rules.force else 0,
                self._key_id,
                self._ttl_ms,
                agent_id,
                session.last_seen_ms,
                len(events),
                *(event_json(event) for event in events),
                *session_fields(session, version=0),  # the script sets the version
            ],
        )
        version = int(version)
        return dataclasses.replace(session, version=version) if version else None

    async def sign_out(self, agent_id: int, version: int | None = None) -> bool:
        """One script, ``SIGN_OUT``."""
        signed_out = await self._sign_out(
            keys=[self._keys.session(agent_id), self._keys.last_seen, *self._keys.queue(agent_id)],
            args=[agent_id, "" if version is None else version, self._ttl_ms],
        )
        return int(signed_out) == 1

    async def idle_since(self, before_ms: int) -> list[int]:
        last_seen = self._keys.last_seen
        members = await self._redis.zrangebyscore(last_seen, "-inf", f"({before_ms}")
        agent_ids = [int(text(cast("bytes | str", member))) for member in members]
        if not agent_ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for agent_id in agent_ids:
                pipe.hget(self._keys.session(agent_id), "key_id")
            present = await pipe.execute()
        idle = []
        for agent_id, key_id in zip(agent_ids, present, strict=True):
            if key_id is not None and text(key_id) == self._key_id:
                idle.append(agent_id)
            else:
                # The hash expired (TTL), or is no session (another key_id): drop it and its
                # member, unless it was recreated meanwhile.
                await self._prune(
                    keys=[self._keys.session(agent_id), last_seen], args=[agent_id, self._key_id]
                )
        return idle

    async def count(self) -> int:
        """``ZCARD`` of ``last_seen``: O(1), one round trip."""
        return int(await self._redis.zcard(self._keys.last_seen))

    async def poll(self, agent_id: int, guid: str, rules: PollRules) -> Polled | PollRefused:
        """An event poll's first step in one round trip (one script, ``POLL``, the mirror of
        ``sessions/pollrule.py``), over the bus's lane.

        ``guid`` and ``rules.new_guid`` are digests (``SessionRecord.guid``). The GUID is
        compared again here, in constant time, with the session the script returned (should they
        ever disagree, the claimed event goes back and the poll is refused).
        """
        keys = self._keys
        queue, inflight, gen = keys.queue(agent_id)
        reply = await self._events.run_claiming(
            scripts.POLL_SCRIPT,
            [keys.session(agent_id), keys.last_seen, inflight, queue, gen],
            [
                str(rules.now_ms),
                rules.new_guid,
                guid,
                str(agent_id),
                f"{rules.idle_timeout_ms} {rules.touch_every_ms}"
                f" {-1 if rules.rotate_after_ms is None else rules.rotate_after_ms}"
                f" {rules.guid_timeout_ms} {self._ttl_ms} {self._key_id}",
            ],
            agent_id,
            _polled_claim,
        )
        if isinstance(reply, list):
            reason, version = reply
            return PollRefused(_REFUSALS[int(reason)], int(version))
        data = json.loads(reply)
        session = session_from(data["session"])
        generation, raw = int(data["generation"]), data["event"] or None
        if not guid_accepted(session, guid, rules.now_ms):
            if raw is not None:
                await self._events.give_back(agent_id, generation, raw)
            return PollRefused(Refusal.GUID, session.version)
        return Polled(session, None if raw is None else event_from(raw), generation)


def _polled_claim(reply: Any) -> tuple[int, bytes | str | None]:
    """(generation, event) from ``POLL``'s reply; a refused poll claimed nothing."""
    if isinstance(reply, list):
        return 0, None
    data = json.loads(reply)
    return int(data["generation"]), data["event"] or None
