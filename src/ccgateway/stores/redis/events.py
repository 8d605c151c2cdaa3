"""``RedisEventBus``: per-agent event queues in Redis, each event claimed by exactly one poll.

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
before ``events``. A claim (one short script, ``CLAIM`` or ``POLL``: ``run_claiming``) is
shielded; if the poll is cancelled while it runs, what it took is pushed back to the head of
``inflight`` (unless the queue was cleared meanwhile). Each event is claimed by exactly one poll,
on any node.

Clearing: ``clear`` (sign-out, new sign-in) bumps the generation. A poll learns the generation with
its first claim and claims only under it: once the queue was cleared, it claims nothing and returns
None, whichever node cleared, so a poll of the old session never takes the new session's events.
It is not woken by the clear itself: it returns at the next publish (whose event it hands back,
see ``CLAIM``) or at its timeout.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import redis.asyncio
from redis.commands.core import AsyncScript

from ccgateway.stores.base import Event
from ccgateway.stores.redis import scripts
from ccgateway.stores.redis.codec import event_from, event_json
from ccgateway.stores.redis.keys import DEFAULT_PREFIX, DEFAULT_TTL_S, RedisKeys
from ccgateway.stores.redis.lane import DEFAULT_REPLY_TIMEOUT_S, Script, ScriptLane

log = logging.getLogger("ccgateway.stores.redis")

ClaimReader = Callable[[Any], tuple[int, bytes | str | None]]
"""Reads (generation, the claimed event's JSON or None) from a claiming script's reply."""


class RedisEventBus:
    """Per-agent FIFO queues in Redis lists; each event reaches exactly one poll on any node.

    A waiting ``next`` blocks in ``BLMOVE`` (no busy waiting), holding one pooled connection.
    ``clear`` starts a new generation of the queue: a poll begun before it returns None.
    ``keys`` is the key layout, under ``prefix``; a ``RedisSessionStore`` built with this bus
    shares it.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str = DEFAULT_PREFIX,
        *,
        max_queued: int = 1000,
        ttl_s: float = DEFAULT_TTL_S,
        reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S,
    ) -> None:
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        self.keys = RedisKeys(prefix)
        self._redis = client
        self._max_queued = max_queued
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._publish = client.register_script(scripts.PUBLISH)
        self._give_back_script = client.register_script(scripts.GIVE_BACK)
        self._clear = client.register_script(scripts.CLEAR)
        self._fallbacks: dict[Script, AsyncScript] = {}
        self._giving_back: set[asyncio.Task[None]] = set()
        # Its scripts' replies are awaited ``reply_timeout_s`` at most (``lane.py``).
        self._lane = ScriptLane.for_client(client, reply_timeout_s=reply_timeout_s)

    async def aclose(self) -> None:
        """Close the bus's own connection (the scripts' lane); the client stays open."""
        if self._lane is not None:
            await self._lane.aclose()

    async def publish(self, event: Event) -> None:
        events, inflight, _ = self.keys.queue(event.work_no)
        await self._publish(
            keys=[events, inflight],
            args=[event_json(event), self._max_queued, self._ttl_ms],
        )

    async def next(
        self, agent_id: int, timeout_s: float, *, generation: int | None = None
    ) -> Event | None:
        events, inflight, gen = self.keys.queue(agent_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        # Unless given, learnt by the first claim. Given (by ``RedisSessionStore.poll``, whose
        # claim just found the queue empty), the poll begins with the wait: a round trip less.
        wait_first = generation is not None and timeout_s > 0
        while True:
            if not wait_first:
                current, raw = await self._claim(agent_id, events, inflight, gen, generation)
                if generation is None:
                    generation = current
                elif current != generation:
                    # Cleared since this poll began (sign-out, new sign-in): what is queued now
                    # is the new session's. The claim took nothing and handed back what the wait
                    # moved.
                    return None
                if raw is not None:
                    return event_from(raw)
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

    async def clear(self, agent_id: int) -> None:
        """Drop the queue and start a new generation: polls begun before return None."""
        await self._clear(keys=list(self.keys.queue(agent_id)), args=[self._ttl_ms])

    async def run_claiming(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[str | int],
        agent_id: int,
        claimed: ClaimReader,
    ) -> Any:
        """Run ``script``, which may claim one of ``agent_id``'s events; its reply.

        It goes over the bus's lane (through redis-py without one). The wait for the reply is
        shielded: should the caller be cancelled meanwhile, the event the reply claimed
        (``claimed`` reads it) goes back to the head of ``inflight`` (``give_back``).
        """
        if self._lane is not None:
            call = await self._lane.run(script, keys, args)
        else:
            call = asyncio.ensure_future(self._fallback(script)(keys=keys, args=args))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            giving_back = asyncio.ensure_future(self._give_back_claim(call, agent_id, claimed))
            self._giving_back.add(giving_back)
            giving_back.add_done_callback(self._given_back)
            # Wait for it (its failure is logged by ``_given_back``); if cancelled again
            # meanwhile, it goes on in the background.
            await asyncio.wait([giving_back])
            raise

    async def give_back(self, agent_id: int, generation: int, raw: bytes | str) -> None:
        """Return a claimed event (its JSON) to the head of ``inflight``, for the next poll.

        Unless the queue was cleared since ``generation``: the event was the old session's, and
        is dropped.
        """
        _, inflight, gen = self.keys.queue(agent_id)
        await self._give_back_script(keys=[inflight, gen], args=[generation, raw, self._ttl_ms])

    async def _claim(
        self, agent_id: int, events: str, inflight: str, gen: str, generation: int | None
    ) -> tuple[int, bytes | str | None]:
        """The current generation, and the event claimed (none under another generation)."""
        reply = await self.run_claiming(
            scripts.CLAIM_SCRIPT,
            [inflight, events, gen],
            [self._ttl_ms, "" if generation is None else generation],
            agent_id,
            _claimed,
        )
        return _claimed(reply)

    def _fallback(self, script: Script) -> AsyncScript:
        """``script`` as redis-py runs it (without a lane)."""
        fallback = self._fallbacks.get(script)
        if fallback is None:
            fallback = self._fallbacks[script] = self._redis.register_script(script.text)
        return fallback

    async def _give_back_claim(
        self, claim: Awaitable[Any], agent_id: int, claimed: ClaimReader
    ) -> None:
        """Wait for a claim whose poll was cancelled; give back what it took."""
        try:
            generation, raw = claimed(await claim)
        except Exception:
            return  # the claim failed: it took nothing
        if raw is not None:
            await self.give_back(agent_id, generation, raw)

    def _given_back(self, task: asyncio.Task[None]) -> None:
        self._giving_back.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("an event claimed by a cancelled poll may be lost", exc_info=error)


def _claimed(reply: Any) -> tuple[int, bytes | str | None]:
    generation, raw = reply
    return int(generation), cast("bytes | str | None", raw)
