"""Sign-in, sign-out and GUID authentication, for AUTHMODE 1 (static) and 2 (dynamic).

A GUID is ``<uuid>.<node name>``, the uuid drawn from ``secrets``. Under AUTHMODE=2 an event poll
rotates the GUID once ``GUIDINTERVAL`` has passed since it was issued; a rotated-out GUID stays
accepted until ``GUIDTIMEOUT`` after its rotation, but only the current GUID may call
``updateGuid`` or sign out. ``updateGuid`` and force sign-in replace the GUID at once. An agent
that has not polled for ``AGENT_IDLE_TIMEOUT`` is signed out (a poll records itself at most every
``TOUCH_EVERY_MS``, so that may happen up to 5 s early). The rule of a poll, and the GUID and
idle checks every request shares, are ``pollrule``'s.

A session lasts only while its agent's directory entry is the one it was granted on
(``credential_of``, read through the directory's 2 s cache): once the agent is removed, added
again, given a new password, signed out by an administrator (``end_session`` and the directory's
``end_sessions``), or its VDN, role or video right change, the next request of the session (a
poll, ``updateGuid``, a download) and every announcement find it ended: it is removed and
answered 100-006.

An event poll (``poll_events``) authenticates, records itself, rotates and takes the next event in
one atomic step of the store (``SessionStore.poll``: one round trip on Redis), then waits for an
event if none was waiting. ``wake_polls`` (shutdown) makes waiting polls answer empty at once.

Sign-in and sign-out are each one atomic step of the store too (``SessionStore.sign_in``: the
sign-in rule ``may_replace``, the new session, the cleared queue and the sign-in events;
``SessionStore.sign_out``: the session and its queue), and a sign-in hands back the session it
created, never a concurrent one's.

The stores never hold a GUID: they hold its keyed digest (``guid_digest``, HMAC-SHA256 with
``GUID_DIGEST_KEY``), and every GUID presented is digested before it is compared. The clear GUID
exists only in the answer that issues it (sign-in, ``updateGuid``, the poll that rotates) and in the
client's requests; the records this manager hands out carry the clear GUID the client is to use
(the one it presented, or the one just issued). A poll sends no new GUID to the store unless a
rotation is due (the store answers ``Refusal.ROTATE``; the manager then asks once more with one).

Errors: no session → 100-006 (an idle one is signed out first); a session but a wrong, missing or
expired GUID → 000-003.

Every session that begins or ends is an audit event of kind ``session`` (``sign_in``,
``forced_sign_in``, ``sign_out``, ``idle_sign_out``, ``ended_by_directory``, ``ended_by_admin``),
written here once the store confirmed it; a wrong password or unknown work number is a
``security`` event ``sign_in_failed`` (the work number as given, never the password), and the
failure that starts a lockout one more, ``locked_out``. The directory changes an administrator
makes through this manager (``add_agent``, ``set_password``, ``remove_agent``, ``sign_out_now``,
``unlock``) are ``admin`` events: the directory itself (``agents``) may not import ``audit``, so
they are recorded here, one layer up (docs/audit.md).

The agent's request rate (``AgentBudget``, REQUEST_RATE_PER_AGENT) is spent here, by requests whose
GUID (``authenticate``, ``poll_events``) or password (``sign_in``) was accepted, and only by them:
a request over it answers 000-007 before its GUID is checked. Sign-ins also pass the lockout
(``lockout``) before and after their password is checked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ccgateway import retcodes
from ccgateway.agents.directory import AgentDirectory, credential_of
from ccgateway.audit.events import Kind
from ccgateway.audit.recorder import Recorder
from ccgateway.config import Settings
from ccgateway.errors import GatewayError
from ccgateway.node.clock import Clock
from ccgateway.node.limits import AgentBudget
from ccgateway.sessions.lockout import Lockout, LockStarted
from ccgateway.sessions.pollrule import admit, is_current, is_idle
from ccgateway.sessions.signin_events import sign_in_events
from ccgateway.stores.base import (
    AgentRecord,
    Event,
    EventBus,
    PollRefused,
    PollRules,
    Refusal,
    Role,
    SessionRecord,
    SessionStore,
    SignInRules,
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


def guid_digest(key: str, guid: str) -> str:
    """The GUID as the stores hold it: HMAC-SHA256 under ``key`` (``GUID_DIGEST_KEY``), hex;
    ``""`` for no GUID (never accepted)."""
    if not guid:
        return ""
    return hmac.new(key.encode(), guid.encode(), hashlib.sha256).hexdigest()


def guid_key_id(key: str) -> str:
    """A name for ``key`` that does not reveal it: a store tags its sessions with it, so that
    sessions digested under another key are no session (``RedisSessionStore``)."""
    return hmac.new(key.encode(), b"ccgateway GUID key id", hashlib.sha256).hexdigest()[:16]


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
        recorder: Recorder | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._directory = directory
        self._store = store
        self._events = events
        self._guid_key = settings.guid_digest_key
        self._lockout = lockout
        self._budget = budget
        self._recorder = recorder
        self._waking = False  # see wake_polls
        self._waiting: set[asyncio.Future[Event | None]] = set()

    # -- sign-in and sign-out -------------------------------------------------------------------

    async def sign_in(
        self, agent_id: int, request: SignIn, *, force: bool = False, client: str = ""
    ) -> tuple[SessionRecord, AgentRecord]:
        """``client``: the client's address, for the audit."""
        self._check_budget(agent_id)
        if self._lockout is not None:
            await self._lockout.refuse_if_locked(agent_id)
        agent = await self._directory.authenticate(agent_id, request.password)
        if agent is None:
            self._record(Kind.SECURITY, "sign_in_failed", agent_id, client)
        if self._lockout is not None:
            try:
                if agent is None:
                    await self._lockout.failed(agent_id)  # 110-016 when this failure locks
                else:
                    await self._lockout.succeeded(agent_id)  # 110-016 if locked meanwhile
            except LockStarted as started:
                fields = {"untilMs": started.until_ms, "failures": started.failures}
                self._record(Kind.SECURITY, "locked_out", agent_id, client, fields=fields)
                raise
        if agent is None:
            raise GatewayError(retcodes.WRONG_PASSWORD)
        self._charge_budget(agent_id)
        now, idle_ms = self._clock.now_ms(), self._settings.agent_idle_timeout_ms
        guid = new_guid(self._settings.node_name)
        session = SessionRecord(
            agent_id=agent_id,
            guid=self._digest(guid),
            guid_issued_ms=now,
            signed_in_ms=now,
            last_seen_ms=now,
            node=self._settings.node_name,
            attributes={
                "phonenum": request.phone_number,
                "status": request.status,
                **request.attributes,
            },
            credential=credential_of(agent),
        )
        stored = await self._store.sign_in(
            session,
            sign_in_events(agent_id, request.status, now),
            SignInRules(now_ms=now, idle_timeout_ms=idle_ms, force=force),
        )
        if stored is None:
            raise GatewayError(retcodes.ALREADY_SIGNED_IN)
        self._record(Kind.SESSION, "forced_sign_in" if force else "sign_in", agent_id, client)
        return dataclasses.replace(stored, guid=guid), agent

    async def sign_out(self, agent_id: int, guid: str | None, *, client: str = "") -> None:
        """Sign the agent out (logout and forcelogout: this gateway holds no calls to release)."""
        for _ in range(_CAS_ATTEMPTS):
            session = await self._current(agent_id, guid)
            if await self._store.sign_out(agent_id, session.version):
                self._record(Kind.SESSION, "sign_out", agent_id, client)
                return
        raise GatewayError(retcodes.NO_RIGHT)

    async def sign_out_now(self, agent_id: int, *, client: str = "") -> bool:
        """An administrator's sign-out: a new session epoch for the agent (so its session ends on
        every node within the directory cache's 2 s, whatever store it is in), and its session
        in this node's store removed now (on Redis: every node's). False when no session was
        removed here. ``AgentError`` when there is no such agent."""
        await self._directory.end_sessions(agent_id)
        self._record(Kind.ADMIN, "agent_signed_out", agent_id, client)
        for _ in range(_CAS_ATTEMPTS):
            session = await self._store.get(agent_id)
            if session is None:
                return False
            if await self._end(session, "ended_by_admin", client):
                return True
        return False  # changed under us each time; the new epoch ends it at its next request

    # -- the directory, as an administrator changes it ------------------------------------------

    async def add_agent(
        self,
        work_no: int,
        password: str,
        *,
        name: str = "",
        vdn: int = 1,
        role: Role = Role.AGENT,
        may_download_video: bool = True,
        client: str = "",
    ) -> AgentRecord:
        """``AgentDirectory.add``, audited (``agent_added``)."""
        agent = await self._directory.add(
            work_no,
            password,
            name=name,
            vdn=vdn,
            role=role,
            may_download_video=may_download_video,
        )
        fields = {"vdn": vdn, "role": role.value, "videoDownload": may_download_video}
        self._record(Kind.ADMIN, "agent_added", work_no, client, fields=fields)
        return agent

    async def set_password(self, work_no: int, password: str, *, client: str = "") -> None:
        """``AgentDirectory.set_password``, audited (``password_changed``; never the password)."""
        await self._directory.set_password(work_no, password)
        self._record(Kind.ADMIN, "password_changed", work_no, client)

    async def remove_agent(self, work_no: int, *, client: str = "") -> None:
        """``AgentDirectory.remove``, audited (``agent_removed``)."""
        await self._directory.remove(work_no)
        self._record(Kind.ADMIN, "agent_removed", work_no, client)

    async def unlock(self, work_no: int, *, client: str = "") -> bool:
        """Lift the work number's sign-in lockout (``Lockout.unlock``), audited
        (``agent_unlocked``, with ``wasLocked``); whether it was locked."""
        was_locked = self._lockout is not None and await self._lockout.unlock(work_no)
        fields = {"wasLocked": was_locked}
        self._record(Kind.ADMIN, "agent_unlocked", work_no, client, fields=fields)
        return was_locked

    async def sign_out_idle(self) -> list[int]:
        """Sign out every agent silent for longer than the idle timeout; returns their ids."""
        cutoff = self._clock.now_ms() - self._settings.agent_idle_timeout_ms
        gone = []
        for agent_id in await self._store.idle_since(cutoff):
            session = await self._store.get(agent_id)
            if session is not None and session.last_seen_ms < cutoff:
                if await self._store.sign_out(agent_id, session.version):
                    self._record(Kind.SESSION, "idle_sign_out", agent_id, "")
                    gone.append(agent_id)
        return gone

    async def signed_in_count(self) -> int:
        """How many agents are signed in (one store call; cheap, fit for a metrics gauge).

        An agent idle past the timeout counts until the sweeper signs it out (within seconds).
        """
        return await self._store.count()

    async def is_signed_in(self, agent_id: int) -> bool:
        """Whether the agent has a live session (announcements go only to those)."""
        session = await self._store.get(agent_id)
        now, idle_ms = self._clock.now_ms(), self._settings.agent_idle_timeout_ms
        if session is None or is_idle(session, now, idle_ms):
            return False
        if await self._still_granted(session):
            return True
        await self._end(session, "ended_by_directory")
        return False

    # -- authentication -------------------------------------------------------------------------

    async def authenticate(self, agent_id: int, guid: str | None) -> SessionRecord:
        """The agent's session if ``guid`` is currently accepted for it (with ``guid``)."""
        granted = await self._admitted(agent_id, guid, current_only=False)
        return dataclasses.replace(granted, guid=guid or "")

    async def poll_events(
        self, agent_id: int, guid: str | None, wait_s: float
    ) -> tuple[SessionRecord, Event | None]:
        """An event poll: it is the heartbeat, and under AUTHMODE=2 it rotates the GUID (the
        poll rule, ``pollrule``); then the agent's oldest event, waiting up to ``wait_s`` for one
        (none once ``wake_polls`` was called).

        The authentication, the session write and the claim of an event already waiting are one
        atomic step of the store (``SessionStore.poll``; one round trip on Redis): a session
        replaced after it (force sign-in, sign-out) takes no event from this poll. Only when a
        rotation is due does it take a second step, with the new GUID's digest.

        The session handed back carries the GUID the client is to use next: the one it
        presented, or the one this poll issued.
        """
        self._check_budget(agent_id)
        digest = self._digest(guid or "")
        now = self._clock.now_ms()
        polled = await self._store.poll(agent_id, digest, self._rules(now, ""))
        issued = ""
        if isinstance(polled, PollRefused) and polled.reason is Refusal.ROTATE:
            issued = new_guid(self._settings.node_name)
            polled = await self._store.poll(agent_id, digest, self._rules(now, issued))
        if isinstance(polled, PollRefused):
            raise await self._refused(agent_id, polled)
        # An event the poll claimed for an ended session is dropped with the session's queue.
        await self._granted(polled.session)
        self._charge_budget(agent_id)
        clear = issued if issued and polled.session.guid == self._digest(issued) else guid
        session = dataclasses.replace(polled.session, guid=clear or "")
        if polled.event is not None or wait_s <= 0:
            return session, polled.event
        return session, await self._wait(agent_id, wait_s, polled.generation)

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

    def _digest(self, guid: str) -> str:
        return guid_digest(self._guid_key, guid)

    def _rules(self, now: int, issued: str) -> PollRules:
        """The rules of a poll at ``now``, rotating to ``issued`` (its digest) if given."""
        settings = self._settings
        return PollRules(
            now_ms=now,
            idle_timeout_ms=settings.agent_idle_timeout_ms,
            touch_every_ms=TOUCH_EVERY_MS,
            rotate_after_ms=settings.guid_interval_ms if settings.auth_mode == 2 else None,
            guid_timeout_ms=settings.guid_timeout_ms,
            new_guid=self._digest(issued),
        )

    async def replace_guid(self, agent_id: int, guid: str | None) -> SessionRecord:
        """updateGuid: issue a new GUID now; the one presented stops being accepted."""
        for _ in range(_CAS_ATTEMPTS):
            session = await self._current(agent_id, guid)
            now, issued = self._clock.now_ms(), new_guid(self._settings.node_name)
            updated = dataclasses.replace(
                session,
                guid=self._digest(issued),
                guid_issued_ms=now,
                last_seen_ms=now,
                retired=(),
            )
            if await self._store.swap(session, updated):
                return dataclasses.replace(updated, guid=issued, version=session.version + 1)
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
        """``authenticate``, with the session's current GUID only (``pollrule.is_current``); the
        session as stored (its GUID a digest)."""
        return await self._admitted(agent_id, guid, current_only=True)

    async def _admitted(
        self, agent_id: int, guid: str | None, *, current_only: bool
    ) -> SessionRecord:
        """The session (as stored: its GUID a digest) if ``guid`` is accepted for it
        (``pollrule.admit``; with ``current_only``, its current GUID only) and it is still
        granted; the agent's request budget is checked before and spent after."""
        self._check_budget(agent_id)
        now = self._clock.now_ms()
        session = await self._store.get(agent_id)
        digest = self._digest(guid or "")
        admitted = admit(session, digest, now, self._settings.agent_idle_timeout_ms)
        if isinstance(admitted, PollRefused):
            raise await self._refused(agent_id, admitted)
        if current_only and not is_current(admitted, digest):
            raise GatewayError(retcodes.NO_RIGHT)
        granted = await self._granted(admitted)
        self._charge_budget(agent_id)
        return granted

    async def _granted(self, session: SessionRecord) -> SessionRecord:
        """``session``, if still granted; else it has ended: removed, and 100-006 raised."""
        if await self._still_granted(session):
            return session
        await self._end(session, "ended_by_directory")
        raise GatewayError(retcodes.NOT_SIGNED_IN)

    async def _still_granted(self, session: SessionRecord) -> bool:
        """Whether the agent's directory entry is still the one ``session`` was granted on.

        A difference seen in the cache is confirmed against the stored entry, so a session just
        granted on a newer entry than this node's cache holds is not ended by mistake.
        """
        agent = await self._directory.get(session.agent_id)
        if agent is not None and credential_of(agent) == session.credential:
            return True
        agent = await self._directory.get_fresh(session.agent_id)
        return agent is not None and credential_of(agent) == session.credential

    async def _end(self, session: SessionRecord, why: str, client: str = "") -> bool:
        """Remove ``session`` (if unchanged since read) and its queued events; audited as ``why``
        (``ended_by_directory``, ``ended_by_admin``) when it was removed."""
        ended = await self._store.sign_out(session.agent_id, session.version)
        if ended:
            self._record(Kind.SESSION, why, session.agent_id, client)
        return ended

    async def _refused(self, agent_id: int, refused: PollRefused) -> GatewayError:
        """The error a refused request answers; an idle session is signed out first."""
        if refused.reason is Refusal.GUID:
            return GatewayError(retcodes.NO_RIGHT)
        if refused.reason is Refusal.IDLE:
            if await self._store.sign_out(agent_id, refused.version):
                self._record(Kind.SESSION, "idle_sign_out", agent_id, "")
        return GatewayError(retcodes.NOT_SIGNED_IN)

    def _record(
        self,
        kind: Kind,
        name: str,
        agent_id: int,
        client: str,
        *,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        """Append an audit event (none without a recorder)."""
        if self._recorder is not None:
            self._recorder.record(kind, name, agent_id=agent_id, client=client, fields=fields)
