"""A small time-bounded cache for records read on every download (agents, conferences).

Entries live ``ttl_s`` seconds, so a change made anywhere (another node, the CLI) is seen within
that time; the cache holds at most ``max_entries`` and forgets the oldest first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RecentCache(Generic[K, V]):
    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    async def get(self, key: K, load: Callable[[K], Awaitable[V]]) -> V:
        """The cached value of ``key``, or ``load(key)`` when absent or older than the TTL."""
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self._ttl_s:
            return entry[1]
        value = await load(key)
        self._entries[key] = (now, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return value

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def forget_where(self, matches: Callable[[K], bool]) -> None:
        """Forget every entry whose key ``matches`` (a change seen by several keys)."""
        for key in [key for key in self._entries if matches(key)]:
            del self._entries[key]
