"""``MemoryLockoutStore``: failed sign-ins and sign-in locks in process memory, beside the
in-process sessions (``SESSIONS_URL=memory://``). Each method is one step of the event loop (no
``await`` inside), hence atomic.

What an unknown work number leaves is bounded by time: failures older than their ``ttl_ms`` and
locks that have ended are dropped as new ones arrive (oldest first), so a flood of work numbers
holds at most what arrived within a lockout window.
"""

from __future__ import annotations

from collections import OrderedDict, deque


class MemoryLockoutStore:
    def __init__(self) -> None:
        # agent id -> (its last failure times, when they may be forgotten); least recent first
        self._failures: OrderedDict[int, tuple[deque[int], int]] = OrderedDict()
        self._locks: OrderedDict[int, int] = OrderedDict()  # agent id -> until ms, by start

    async def add_failure(self, agent_id: int, now_ms: int, keep: int, ttl_ms: int) -> list[int]:
        while self._failures:
            oldest, (_, forget_ms) = next(iter(self._failures.items()))
            if forget_ms > now_ms:
                break
            del self._failures[oldest]
        times, _ = self._failures.pop(agent_id, (deque[int](maxlen=keep), 0))
        if times.maxlen != keep:
            times = deque(times, maxlen=keep)
        times.append(now_ms)
        self._failures[agent_id] = (times, now_ms + ttl_ms)
        return list(times)

    async def lock(self, agent_id: int, until_ms: int, now_ms: int) -> bool:
        while self._locks:
            oldest, ends = next(iter(self._locks.items()))
            if ends > now_ms:
                break
            del self._locks[oldest]
        if self._locks.get(agent_id, 0) > now_ms:
            return False
        self._locks.pop(agent_id, None)
        self._locks[agent_id] = until_ms
        self._failures.pop(agent_id, None)
        return True

    async def locked_until(self, agent_id: int, now_ms: int) -> int | None:
        until = self._locks.get(agent_id)
        return until if until is not None and until > now_ms else None

    async def clear_failures(self, agent_id: int, now_ms: int) -> bool:
        if self._locks.get(agent_id, 0) > now_ms:
            return False
        self._failures.pop(agent_id, None)
        return True

    async def unlock(self, agent_id: int) -> bool:
        self._failures.pop(agent_id, None)
        return self._locks.pop(agent_id, None) is not None
