"""The sign-in lockout: the one place of its rule.

After ``SIGNIN_LOCKOUT_ATTEMPTS`` failed sign-ins of one work number within
``SIGNIN_LOCKOUT_WINDOW_S`` (a sliding window: the last that many failures all fall within it),
the work number is locked for ``SIGNIN_LOCKOUT_S``: every sign-in and force sign-in of it answers
``110-016``, the right password too, without hashing anything. The failure that starts the lock
answers ``110-016`` already. An unknown work number is counted and locked exactly as a known one,
so the answers never tell whether a work number exists. A successful sign-in forgets the failures.
``unlock`` (``ccgateway agents unlock``, the admin API) lifts a lock early.

The counts live in the ``LockoutStore`` beside the sessions (process memory, or Redis shared by
every node). ``started`` counts the lockouts this node started (``/metrics``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ccgateway import retcodes
from ccgateway.config import Settings
from ccgateway.errors import GatewayError
from ccgateway.node.clock import Clock
from ccgateway.stores.base import LockoutStore


@dataclass(frozen=True)
class LockoutRule:
    attempts: int  # 0: no lockout
    window_ms: int
    lock_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> LockoutRule:
        return cls(
            attempts=settings.signin_lockout_attempts,
            window_ms=settings.signin_lockout_window_s * 1000,
            lock_ms=settings.signin_lockout_s * 1000,
        )

    def locks(self, failures: Sequence[int], now_ms: int) -> bool:
        """Whether these failure times (oldest first, the latest at ``now_ms``) lock."""
        return (
            self.attempts > 0
            and len(failures) >= self.attempts
            and failures[-self.attempts] > now_ms - self.window_ms
        )


class LockStarted(GatewayError):
    """``110-016`` from the failure that started the lock (``SessionManager`` audits it)."""

    def __init__(self, until_ms: int, failures: int) -> None:
        super().__init__(retcodes.AGENT_LOCKED)
        self.until_ms = until_ms
        self.failures = failures


class Lockout:
    def __init__(self, rule: LockoutRule, clock: Clock, store: LockoutStore) -> None:
        self.rule = rule
        self._clock = clock
        self._store = store
        self.started = 0

    async def refuse_if_locked(self, agent_id: int) -> None:
        """Before a sign-in checks its password: ``110-016`` while the work number is locked."""
        if self.rule.attempts and await self._store.locked_until(agent_id, self._clock.now_ms()):
            raise GatewayError(retcodes.AGENT_LOCKED)

    async def failed(self, agent_id: int) -> None:
        """A sign-in's password was wrong (or the work number unknown): count it; ``110-016``
        when this failure locks the work number (``LockStarted`` when it started the lock), or
        it was locked meanwhile."""
        rule = self.rule
        if not rule.attempts:
            return
        now = self._clock.now_ms()
        failures = await self._store.add_failure(agent_id, now, rule.attempts, rule.window_ms)
        if not rule.locks(failures, now):
            return
        if await self._store.lock(agent_id, now + rule.lock_ms, now):
            self.started += 1
            raise LockStarted(now + rule.lock_ms, len(failures))
        raise GatewayError(retcodes.AGENT_LOCKED)

    async def succeeded(self, agent_id: int) -> None:
        """A sign-in's password was right: forget the failures; ``110-016`` if the work number
        was locked while the password was being checked."""
        if self.rule.attempts and not await self._store.clear_failures(
            agent_id, self._clock.now_ms()
        ):
            raise GatewayError(retcodes.AGENT_LOCKED)

    async def unlock(self, agent_id: int) -> bool:
        """Lift the work number's lock and forget its failures; whether it was locked."""
        return await self._store.unlock(agent_id)
