"""Sign-in, sign-out and GUID authentication, for AUTHMODE 1 (static) and 2 (dynamic).

A GUID is ``<uuid>.<node name>``, the uuid drawn from ``secrets``. Under AUTHMODE=2 an event poll
rotates the GUID once ``GUIDINTERVAL`` has passed since it was issued; a rotated-out GUID stays
accepted until ``GUIDTIMEOUT`` after its rotation, but only the current GUID may call
``updateGuid`` or sign out. ``updateGuid`` and force sign-in replace the GUID at once. An agent
that has not polled for ``AGENT_IDLE_TIMEOUT`` is signed out (a poll records itself at most every
``TOUCH_EVERY_MS``, so that may happen up to 5 s early). The rule of a poll, and the GUID and
idle checks every request shares, are ``pollrule``'s.

An event poll (``poll_events``) authenticates, records itself, rotates and takes the next event in
one atomic step of the store (``SessionStore.poll``: one round trip on Redis), then waits for an
event if none was waiting. ``wake_polls`` (shutdown) makes waiting polls answer empty at once.

Errors: no session → 100-006 (an idle one is signed out first); a session but a wrong, missing or
expired GUID → 000-003.

The agent's request rate (``AgentBudget``, REQUEST_RATE_PER_AGENT) is spent here, by requests whose
GUID (``authenticate``, ``poll_events``) or password (``sign_in``) was accepted, and only by them:
a request over it answers 000-007 before its GUID is checked. Sign-ins also pass the lockout
(``lockout``) before and after their password is checked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ccgateway import retcodes
from ccgateway.agents.directory import AgentDirectory
from ccgateway.config import Settings
from ccgateway.errors import GatewayError
from ccgateway.node.clock import Clock
from ccgateway.node.limits import AgentBudget
from ccgateway.sessions.lockout import Lockout
from ccgateway.sessions.pollrule import admit, is_current, is_idle
from ccgateway.sessions.signin_events import sign_in_events
from ccgateway.stores.base import (
    AgentRecord,
    Event,
    EventBus,
    PollRefused,
    PollRules,
    Refusal,
    SessionRecord,
    SessionStore,
)

_CAS_ATTEMPTS = 8
# A poll records "last seen" at most this often: idle sign-out may come up to this much early.
TOUCH_EVERY_MS = 5_000


@dataclass(frozen=True)
class SignIn:
    """A validated sign-in request (wire fields already parsed)."""

    password: str
    phone_number: str
    status: int = 4
    attributes: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def new_guid(node_name: str) -> str:
    return f"{uuid.UUID(bytes=secrets.token_bytes(16), version=4)}.{node_name}"


class SessionManager:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        directory: AgentDirectory,
        store: SessionStore,
        events: EventBus,
        *,
        lockout: Lockout | None = None,
        budget: AgentBudget | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._directory = directory
        self._store = store
        self._events = events
        self._lockout = lockout
        self._budget = budget
        self._waking = False  # see wake_polls
        self._waiting: set[asyncio.Future[Event | None]] = set()

    # -- sign-in and sign-out -------------------------------------------------------------------

    async def sign_in(
        self, agent_id: int, request: SignIn, *, force: bool = False
    ) -> tuple[SessionRecord, AgentRecord]:
        self._check_budget(agent_id)
        if self._lockout is not None:
            await self._lockout.refuse_if_locked(agent_id)
        agent = await self._directory.authenticate(agent_id, request.password)
        if self._lockout is not None:
            if agent is None:
                await self._lockout.failed(agent_id)  # 110-016 when this failure locks
            else:
                await self._lockout.succeeded(agent_id)  # 110-016 if locked meanwhile
        if agent is None:
            raise GatewayError(retcodes.WRONG_PASSWORD)
        self._charge_budget(agent_id)
        now, idle_ms = self._clock.now_ms(), self._settings.agent_idle_timeout_ms
        session = SessionRecord(
            agent_id=agent_id,
            guid=new_guid(self._settings.node_name),
            guid_issued_ms=now,
            signed_in_ms=now,
            last_seen_ms=now,
            node=self._settings.node_name,
            attributes={
                "phonenum": request.phone_number,
                "status": request.status,
                **request.attributes,
            },
        )
        for _ in range(_CAS_ATTEMPTS):
            if await self._store.create(session):
                break
            existing = await self._store.get(agent_id)
            if existing is not None and not force and not is_idle(existing, now, idle_ms):
                raise GatewayError(retcodes.ALREADY_SIGNED_IN)
            if existing is not None:
                await self._store.delete(agent_id, existing.version)
        else:
            raise GatewayError(retcodes.ALREADY_SIGNED_IN)
        await self._events.clear(agent_id)
        for event in sign_in_events(agent_id, request.status, now):
            await self._events.publish(event)
        stored = await self._store.get(agent_id)
        return (stored or session), agent

    async def sign_out(self, agent_id: int, guid: str | None) -> None:
        """Sign the agent out (logout and forcelogout: this gateway holds no calls to release)."""
        for _ in range(_CAS_ATTEMPTS):
            session = await self._current(agent_id, guid)
            if await self._store.delete(agent_id, session.version):
                await self._events.clear(agent_id)
                return
        raise GatewayError(retcodes.NO_RIGHT)

    async def sign_out_idle(self) -> list[int]:
        """Sign out every agent silent for longer than the idle timeout; returns their ids."""
        cutoff = self._clock.now_ms() - self._settings.agent_idle_timeout_ms
        gone = []
        for agent_id in await self._store.idle_since(cutoff):
            session = await self._store.get(agent_id)
            if session is not None and session.last_seen_ms < cutoff:
                if await self._store.delete(agent_id, session.version):
                    await self._events.clear(agent_id)
                    gone.append(agent_id)
        return gone

    async def signed_in_count(self) -> int:
        """How many agents are signed in (one store call; cheap, fit for a metrics gauge).

        An agent idle past the timeout counts until the sweeper signs it out (within seconds).
        """
        return await self._store.count()

    async def is_signed_in(self, agent_id: int) -> bool:
        session = await self._store.get(agent_id)
        now, idle_ms = self._clock.now_ms(), self._settings.agent_idle_timeout_ms
        return session is not None and not is_idle(session, now, idle_ms)

    # -- authentication -------------------------------------------------------------------------

    async def authenticate(self, agent_id: int, guid: str | None) -> SessionRecord:
        """The agent's session if ``guid`` is currently accepted for it."""
        self._check_budget(agent_id)
        now = self._clock.now_ms()
        session = await self._store.get(agent_id)
        admitted = admit(session, guid or "", now, self._settings.agent_idle_timeout_ms)
        if isinstance(admitted, PollRefused):
            raise await self._refused(agent_id, admitted)
        self._charge_budget(agent_id)
        return admitted

    async def poll_events(
        self, agent_id: int, guid: str | None, wait_s: float
    ) -> tuple[SessionRecord, Event | None]:
        """An event poll: it is the heartbeat, and under AUTHMODE=2 it rotates the GUID (the
        poll rule, ``pollrule``); then the agent's oldest event, waiting up to ``wait_s`` for one
        (none once ``wake_polls`` was called).

        The authentication, the session write and the claim of an event already waiting are one
        atomic step of the store (``SessionStore.poll``; one round trip on Redis): a session
        replaced after it (force sign-in, sign-out) takes no event from this poll.
        """
        self._check_budget(agent_id)
        polled = await self._store.poll(agent_id, guid or "", self._rules(self._clock.now_ms()))
        if isinstance(polled, PollRefused):
            raise await self._refused(agent_id, polled)
        self._charge_budget(agent_id)
        if polled.event is not None or wait_s <= 0:
            return polled.session, polled.event
        return polled.session, await self._wait(agent_id, wait_s, polled.generation)

    def wake_polls(self) -> None:
        """Shutting down: every poll waiting for an event answers empty now, and later polls
        answer at once (an event already waiting is still handed out). Not undone."""
        self._waking = True
        for waiting in self._waiting:
            waiting.cancel()

    async def _wait(self, agent_id: int, wait_s: float, generation: int) -> Event | None:
        """The next event of ``generation`` (the poll's claim found none), up to ``wait_s``."""
        if self._waking:
            return None
        waiting = asyncio.ensure_future(self._events.next(agent_id, wait_s, generation=generation))
        self._waiting.add(waiting)
        try:
            return await waiting
        except asyncio.CancelledError:
            # ``wake_polls`` cancelled the wait (the bus hands back what it was claiming), not
            # this poll's own task: answer empty.
            task = asyncio.current_task()
            if self._waking and waiting.cancelled() and (task is None or not task.cancelling()):
                return None
            raise
        finally:
            self._waiting.discard(waiting)

    def _rules(self, now: int) -> PollRules:
        settings = self._settings
        return PollRules(
            now_ms=now,
            idle_timeout_ms=settings.agent_idle_timeout_ms,
            touch_every_ms=TOUCH_EVERY_MS,
            rotate_after_ms=settings.guid_interval_ms if settings.auth_mode == 2 else None,
            guid_timeout_ms=settings.guid_timeout_ms,
            new_guid=new_guid(settings.node_name),
        )

    async def replace_guid(self, agent_id: int, guid: str | None) -> SessionRecord:
        """updateGuid: issue a new GUID now; the one presented stops being accepted."""
        for _ in range(_CAS_ATTEMPTS):
            session = await self._current(agent_id, guid)
            now = self._clock.now_ms()
            updated = dataclasses.replace(
                session,
                guid=new_guid(self._settings.node_name),
                guid_issued_ms=now,
                last_seen_ms=now,
                retired=(),
            )
            if await self._store.swap(session, updated):
                return dataclasses.replace(updated, version=session.version + 1)
        raise GatewayError(retcodes.NO_RIGHT)

    # -- rules ----------------------------------------------------------------------------------

    def _check_budget(self, agent_id: int) -> None:
        """Before a GUID or password is checked: 000-007 while the agent's accepted requests
        have used up its rate (spent by ``_charge_budget`` once accepted, never before)."""
        if self._budget is not None:
            self._budget.check(agent_id)

    def _charge_budget(self, agent_id: int) -> None:
        if self._budget is not None:
            self._budget.charge(agent_id)

    async def _current(self, agent_id: int, guid: str | None) -> SessionRecord:
        """``authenticate``, with the session's current GUID only (``pollrule.is_current``)."""
        session = await self.authenticate(agent_id, guid)
        if not is_current(session, guid or ""):
            raise GatewayError(retcodes.NO_RIGHT)
        return session

    async def _refused(self, agent_id: int, refused: PollRefused) -> GatewayError:
        """The error a refused request answers; an idle session is signed out first."""
        if refused.reason is Refusal.GUID:
            return GatewayError(retcodes.NO_RIGHT)
        if refused.reason is Refusal.IDLE:
            await self._store.delete(agent_id, refused.version)
            await self._events.clear(agent_id)
        return GatewayError(retcodes.NOT_SIGNED_IN)
