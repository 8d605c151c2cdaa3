"""The Redis key layout: its one owner, shared by ``RedisSessionStore`` and ``RedisEventBus``.

Under a prefix (default ``ccgw:``):

``<prefix>session:<agent_id>``
    hash, one field per ``SessionRecord`` field (``retired`` and ``attributes`` as JSON; ``guid``
    and the retired GUIDs as digests, never GUIDs), plus ``key_id`` (``RedisSessionStore``: a hash
    without the store's is no session); expires
    ``ttl_s`` (24 h) after its last create or swap (or a poll's write), so an abandoned session
    does not live forever.
``<prefix>last_seen``
    sorted set, agent id -> ``last_seen_ms``; kept in step with the hashes by the same Lua scripts
    (create, swap, delete, poll), read by ``idle_since`` and (``ZCARD``, O(1)) by ``count``.
    Members left by an expired hash are pruned by ``idle_since`` (until then ``count`` includes
    them).
``<prefix>events:<agent_id>``
    list, the agent's queued events as JSON, oldest first, at most ``max_queued`` long.
``<prefix>inflight:<agent_id>``
    list, events a blocking ``BLMOVE`` took out of ``events`` but that no poll has claimed yet
    (normally empty but for an instant); always older than anything still in ``events``.
``<prefix>gen:<agent_id>``
    string, the agent's queue generation (absent reads as 0), incremented by each ``clear``
    together with the deletion of ``events`` and ``inflight``; expires ``ttl_s`` after the last
    ``clear``.
``<prefix>signin_failures:<agent_id>``
    list, the epoch ms of the work number's last failed sign-ins (at most the lockout's attempts),
    oldest first; expires a lockout window after the last one (``lockouts.py``).
``<prefix>signin_lock:<agent_id>``
    string, the epoch ms until which the work number's sign-ins are locked; expires then.

Correctness never depends on the TTLs: they only bound what a crashed or forgotten agent leaves.
Every script touches keys of one agent plus ``last_seen``: Redis Cluster would place them in
different slots (a single primary, or Sentinel, is needed).
"""

from __future__ import annotations

DEFAULT_PREFIX = "ccgw:"
DEFAULT_TTL_S = 24 * 60 * 60


class RedisKeys:
    """The names of the keys under one prefix (see the module docstring)."""

    __slots__ = ("last_seen", "prefix")

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self.last_seen = f"{prefix}last_seen"

    def session(self, agent_id: int) -> str:
        return f"{self.prefix}session:{agent_id}"

    def queue(self, agent_id: int) -> tuple[str, str, str]:
        """The agent's ``events``, ``inflight`` and ``gen`` keys."""
        prefix = self.prefix
        return (
            f"{prefix}events:{agent_id}",
            f"{prefix}inflight:{agent_id}",
            f"{prefix}gen:{agent_id}",
        )

    def sign_in_lockout(self, agent_id: int) -> tuple[str, str]:
        """The work number's ``signin_failures`` and ``signin_lock`` keys."""
        prefix = self.prefix
        return f"{prefix}signin_failures:{agent_id}", f"{prefix}signin_lock:{agent_id}"
