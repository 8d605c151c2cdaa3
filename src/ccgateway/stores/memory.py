"""In-process SessionStore and EventBus: the embedded default for one gateway process.

``MemorySessionStore.poll`` runs the poll rule it was built with (``sessions/pollrule.decide``,
handed over by ``gateway.py``: the stores sit below ``sessions``) and claims from its
``MemoryEventBus`` with no ``await`` in between: one atomic step in the event loop. ``sign_in``
(the rule ``may_replace``, the queue's reset, the sign-in events) and ``sign_out`` are atomic the
same way: the waiting polls are only woken after the step.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import deque
from collections.abc import Sequence

from ccgateway.stores.base import (
    Change,
    Event,
    Polled,
    PollRefused,
    PollRule,
    PollRules,
    SessionRecord,
    SignInRules,
    may_replace,
)


class MemorySessionStore:
    """Sessions in a dict; ``poll`` applies ``rule`` and claims from ``events``, its bus."""

    def __init__(self, events: MemoryEventBus, rule: PollRule) -> None:
        self._sessions: dict[int, SessionRecord] = {}
        self._events = events
        self._rule = rule

    async def get(self, agent_id: int) -> SessionRecord | None:
        return self._sessions.get(agent_id)

    async def create(self, session: SessionRecord) -> bool:
        if session.agent_id in self._sessions:
            return False
        self._sessions[session.agent_id] = dataclasses.replace(session, version=1)
        return True

    async def swap(self, old: SessionRecord, new: SessionRecord) -> bool:
        current = self._sessions.get(old.agent_id)
        if current is None or current.version != old.version:
            return False
        self._sessions[old.agent_id] = dataclasses.replace(new, version=old.version + 1)
        return True

    async def delete(self, agent_id: int, version: int | None = None) -> bool:
        current = self._sessions.get(agent_id)
        if current is None or (version is not None and current.version != version):
            return False
        del self._sessions[agent_id]
        return True

    async def sign_in(
        self, session: SessionRecord, events: Sequence[Event], rules: SignInRules
    ) -> SessionRecord | None:
        existing = self._sessions.get(session.agent_id)
        if existing is not None and not may_replace(existing, rules):
            return None
        version = 1 if existing is None else existing.version + 1
        stored = self._sessions[session.agent_id] = dataclasses.replace(session, version=version)
        self._events.reset(session.agent_id)
        for event in events:
            self._events.put(event)
        await self._events.wake(session.agent_id)
        return stored

    async def sign_out(self, agent_id: int, version: int | None = None) -> bool:
        current = self._sessions.get(agent_id)
        if current is None or (version is not None and current.version != version):
            return False
        del self._sessions[agent_id]
        self._events.reset(agent_id)
        await self._events.wake(agent_id)
        return True

    async def idle_since(self, before_ms: int) -> list[int]:
        return [s.agent_id for s in self._sessions.values() if s.last_seen_ms < before_ms]

    async def count(self) -> int:
        return len(self._sessions)

    async def poll(self, agent_id: int, guid: str, rules: PollRules) -> Polled | PollRefused:
        decided = self._rule(self._sessions.get(agent_id), guid, rules)
        if isinstance(decided, PollRefused):
            return decided
        if decided.change is not Change.UNCHANGED:
            self._sessions[agent_id] = decided.session
        generation, event = self._events.claim(agent_id)
        return Polled(decided.session, event, generation)


class MemoryEventBus:
    """Per-agent FIFO queues; a waiting poll is woken by the publish that fills its queue."""

    def __init__(self, max_queued: int = 1000) -> None:
        self._max_queued = max_queued
        self._queues: dict[int, deque[Event]] = {}
        self._signals: dict[int, asyncio.Condition] = {}
        self._generations: dict[int, int] = {}

    def _signal(self, agent_id: int) -> asyncio.Condition:
        signal = self._signals.get(agent_id)
        if signal is None:
            signal = self._signals[agent_id] = asyncio.Condition()
        return signal

    async def publish(self, event: Event) -> None:
        self.put(event)
        signal = self._signal(event.work_no)
        async with signal:
            signal.notify()

    def put(self, event: Event) -> None:
        """Queue ``event`` without waking anyone (``publish`` wakes one poll)."""
        queue = self._queues.get(event.work_no)
        if queue is None:
            queue = self._queues[event.work_no] = deque(maxlen=self._max_queued)
        queue.append(event)

    def reset(self, agent_id: int) -> None:
        """Drop the queue and start a new generation, without waking anyone (``clear`` does)."""
        self._queues.pop(agent_id, None)
        self._generations[agent_id] = self._generations.get(agent_id, 0) + 1

    async def wake(self, agent_id: int) -> None:
        """Wake every poll waiting on the agent's queue (each then sees what changed)."""
        signal = self._signals.get(agent_id)
        if signal is not None:
            async with signal:
                signal.notify_all()

    def claim(self, agent_id: int) -> tuple[int, Event | None]:
        """The queue's generation, and its oldest event taken (None when empty), at once.

        Not a coroutine: atomic with the step of its caller (``MemorySessionStore.poll``).
        """
        queue = self._queues.get(agent_id)
        return self._generations.get(agent_id, 0), (queue.popleft() if queue else None)

    async def next(
        self, agent_id: int, timeout_s: float, *, generation: int | None = None
    ) -> Event | None:
        if generation is None:
            generation = self._generations.get(agent_id, 0)
        elif generation != self._generations.get(agent_id, 0):
            return None  # cleared since the poll began
        queue = self._queues.get(agent_id)
        if queue:
            return queue.popleft()
        if timeout_s <= 0:
            return None
        signal = self._signal(agent_id)

        def ready() -> bool:
            changed = self._generations.get(agent_id, 0) != generation
            return changed or bool(self._queues.get(agent_id))

        async with signal:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait_for(ready), timeout_s)
        if self._generations.get(agent_id, 0) != generation:
            return None  # cleared while waiting (sign-out, new sign-in): not this poll's events
        queue = self._queues.get(agent_id)
        return queue.popleft() if queue else None

    async def clear(self, agent_id: int) -> None:
        """Drop the queue, and release polls waiting on it with no event."""
        self.reset(agent_id)
        await self.wake(agent_id)
