"""The storage interfaces, and the frozen values that cross them.

Each interface is small and async so that it can be backed by an embedded engine (SQLite, process
memory) or by a shared one (PostgreSQL, Redis) without the core noticing.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

from ccgateway.stores.facts import MediaFacts


class Role(enum.StrEnum):
    AGENT = "agent"
    INSPECTOR = "inspector"


@dataclass(frozen=True)
class AgentRecord:
    work_no: int
    name: str
    vdn: int
    role: Role
    may_download_video: bool
    password_hash: str
    # Drawn anew when the agent is added, re-passworded or signed out by an administrator: a
    # session granted under another epoch has ended (``agents.directory.credential_of``).
    session_epoch: str = ""


@dataclass(frozen=True)
class SessionRecord:
    """One signed-in agent.

    ``guid`` is the GUID as the stores hold it: its keyed digest (``sessions/manager.py``
    ``guid_digest``), never the GUID itself; the GUIDs presented are digested the same way before
    any comparison. (``SessionManager`` hands its callers the record with the clear GUID.)
    ``retired`` holds (the digests of) GUIDs rotated out and the epoch ms until which each is
    still accepted. ``version`` increases on every change; ``SessionStore.swap`` compares it.
    ``credential`` is the fingerprint of the agent's directory entry the session was granted on
    (``agents.directory.credential_of``): once the entry's differs, the session has ended.
    """

    agent_id: int
    guid: str
    guid_issued_ms: int
    signed_in_ms: int
    last_seen_ms: int
    node: str
    retired: tuple[tuple[str, int], ...] = ()
    version: int = 0
    attributes: Mapping[str, Any] = field(default_factory=dict)
    credential: str = ""


def is_idle(session: SessionRecord, now_ms: int, idle_timeout_ms: int) -> bool:
    """Last seen more than ``idle_timeout_ms`` before ``now_ms`` (step 2 of the poll rule,
    ``sessions/pollrule.py``; here, below it, for the stores too)."""
    return now_ms - session.last_seen_ms > idle_timeout_ms


@dataclass(frozen=True)
class SignInRules:
    """The rules of a sign-in at one moment, for ``SessionStore.sign_in``: ``now_ms``, the idle
    timeout, and whether it is a force sign-in."""

    now_ms: int
    idle_timeout_ms: int
    force: bool


def may_replace(existing: SessionRecord, rules: SignInRules) -> bool:
    """The sign-in rule: whether a sign-in may replace the agent's ``existing`` session (else it
    is refused, ``100-002``): a force sign-in may, and any sign-in over an idle session may.

    Pure, one place: ``MemorySessionStore.sign_in`` runs it; the Lua script ``SIGN_IN``
    (``stores/redis/scripts.py``) MIRRORS it (a change to one must change the other;
    ``tests/contract/test_session_store.py`` runs its table against both stores).
    """
    return rules.force or is_idle(existing, rules.now_ms, rules.idle_timeout_ms)


def guid_accepted(session: SessionRecord, guid: str, now_ms: int) -> bool:
    """Whether ``guid`` is the session's GUID, or a retired one still valid at ``now_ms``.

    Every GUID is compared in constant time, and all of them are compared whatever matches. An
    empty ``guid`` (none presented) is never accepted. (Step 3 of the poll rule,
    ``sessions/pollrule.py``; here, below it, for the stores too.)
    """
    presented = guid.encode()
    accepted = hmac.compare_digest(session.guid.encode(), presented)
    for old, valid_until in session.retired:
        accepted |= hmac.compare_digest(old.encode(), presented) and now_ms <= valid_until
    return accepted and presented != b""


@dataclass(frozen=True)
class PollRules:
    """The rules of an event poll at one moment, for ``SessionStore.poll``.

    ``now_ms``; the idle timeout; how often a poll records itself as last seen; with
    ``rotate_after_ms`` set (AUTHMODE=2), how long a GUID lives before a poll replaces it by
    ``new_guid`` (a digest, as ``SessionRecord.guid``), and ``guid_timeout_ms``, how long the
    replaced one is still accepted. ``new_guid`` is ``""`` unless the caller knows a rotation is
    due: then a poll that would rotate is refused (``Refusal.ROTATE``) and the caller asks again
    with one. What a poll does with them is the poll rule, ``sessions/pollrule.py``.
    """

    now_ms: int
    idle_timeout_ms: int
    touch_every_ms: int
    rotate_after_ms: int | None
    guid_timeout_ms: int
    new_guid: str


@dataclass(frozen=True)
class Polled:
    """An accepted poll: the session as stored after it, and the event it claimed (or None).

    ``generation`` is the agent's event-queue generation the claim was made under: a wait for
    more (``EventBus.next(..., generation=...)``) takes events of that generation only.
    """

    session: SessionRecord
    event: Event | None
    generation: int


class Refusal(enum.Enum):
    """Why a poll was refused (``sessions/pollrule.py``)."""

    NO_SESSION = "no_session"
    IDLE = "idle"
    GUID = "guid"  # not accepted: wrong, expired or missing
    ROTATE = "rotate"  # accepted, a rotation is due, and the poll brought no new GUID: ask again


@dataclass(frozen=True)
class PollRefused:
    """A refused poll, which changed nothing and claimed nothing.

    ``version`` is that of the session it found (0 without one): an idle session is signed out at
    that version.
    """

    reason: Refusal
    version: int = 0


class Change(enum.Enum):
    """What an accepted poll wrote to its session (``sessions/pollrule.py``)."""

    UNCHANGED = "unchanged"
    TOUCHED = "touched"
    ROTATED = "rotated"


@dataclass(frozen=True)
class Accepted:
    """The poll rule's answer to an accepted poll: the session as stored after it (version + 1
    unless ``UNCHANGED``)."""

    session: SessionRecord
    change: Change


PollRule: TypeAlias = Callable[[SessionRecord | None, str, PollRules], Accepted | PollRefused]
"""The poll rule, ``sessions/pollrule.decide``: what a poll presenting a GUID does to a session.

The stores sit below ``sessions``: one that runs the rule in process is handed it when built
(``gateway.py`` does), one that runs it elsewhere mirrors it (Redis, in Lua).
"""


@dataclass(frozen=True)
class Event:
    """An agent event: ``event_type`` as the CC-Gateway names it, ``content`` as documented."""

    event_type: str
    work_no: int
    content: Mapping[str, Any] | None
    gen_time_ms: int


class AgentStore(Protocol):
    async def get(self, work_no: int) -> AgentRecord | None: ...

    async def add(self, agent: AgentRecord) -> bool:
        """Add an agent; False when the work number is taken."""
        ...

    async def set_password_hash(
        self, work_no: int, password_hash: str, *, session_epoch: str | None = None
    ) -> bool:
        """Store a new hash, and a new session epoch unless None (a rehash keeps sessions)."""
        ...

    async def set_session_epoch(self, work_no: int, session_epoch: str) -> bool: ...

    async def remove(self, work_no: int) -> bool: ...

    async def list(self) -> list[AgentRecord]: ...


class SessionStore(Protocol):
    async def get(self, agent_id: int) -> SessionRecord | None: ...

    async def create(self, session: SessionRecord) -> bool:
        """Store a new session; False when the agent already has one (exactly one racer wins)."""
        ...

    async def swap(self, old: SessionRecord, new: SessionRecord) -> bool:
        """Replace ``old`` by ``new`` if the stored session is still at ``old.version``."""
        ...

    async def delete(self, agent_id: int, version: int | None = None) -> bool:
        """Remove the agent's session (only at ``version``, when given)."""
        ...

    async def idle_since(self, before_ms: int) -> list[int]:
        """Agents whose last poll was before ``before_ms``."""
        ...

    async def count(self) -> int:
        """How many sessions are stored (signed-in agents, idle ones until they are swept)."""
        ...

    async def poll(self, agent_id: int, guid: str, rules: PollRules) -> Polled | PollRefused:
        """An event poll's first step, atomically (one round trip on a shared store).

        Applies the poll rule (``sessions/pollrule.py``) to the agent's session, ``guid`` being
        the GUID presented (``""`` when none was: never accepted), stores what it wrote, and
        claims the agent's oldest event, without waiting, from the EventBus the store was built
        with. A refused poll changes nothing and claims nothing.
        """
        ...

    async def sign_in(
        self, session: SessionRecord, events: Sequence[Event], rules: SignInRules
    ) -> SessionRecord | None:
        """A sign-in, atomically (one round trip on a shared store): unless the agent has a
        session that ``may_replace`` keeps, store ``session`` in place of any (at the replaced
        session's version + 1, or 1), clear the agent's event queue (as ``EventBus.clear``) and
        queue ``events`` on the EventBus the store was built with.

        Returns the session this call stored (never another caller's), or None when refused.
        """
        ...

    async def sign_out(self, agent_id: int, version: int | None = None) -> bool:
        """``delete`` and ``EventBus.clear`` of the agent's queue in one atomic step; False
        (nothing done) when there is no session or it is not at ``version``."""
        ...


class EventBus(Protocol):
    async def publish(self, event: Event) -> None:
        """Queue ``event`` for agent ``event.work_no``."""
        ...

    async def next(
        self, agent_id: int, timeout_s: float, *, generation: int | None = None
    ) -> Event | None:
        """The agent's oldest queued event, waiting up to ``timeout_s`` for one.

        Never an event queued after a ``clear`` that came after the call began (or, given
        ``generation``, from ``Polled``, after that generation): such a call returns None.
        ``generation`` is for the wait after a ``Polled`` that found no event: the call may
        begin by waiting for a publish.
        """
        ...

    async def clear(self, agent_id: int) -> None: ...


class LockoutStore(Protocol):
    """Failed sign-ins and sign-in locks, per work number (known or not), kept with the sessions
    (shared by every node on Redis). The rule, what locks whom and for how long, is
    ``sessions/lockout.py``'s; times are epoch ms of the gateway's clock."""

    async def add_failure(self, agent_id: int, now_ms: int, keep: int, ttl_ms: int) -> list[int]:
        """Record a failed sign-in at ``now_ms``; the agent's last ``keep`` failure times (this
        one included), oldest first. Failures may be forgotten ``ttl_ms`` after the last one."""
        ...

    async def lock(self, agent_id: int, until_ms: int, now_ms: int) -> bool:
        """Lock the agent until ``until_ms`` and forget its failures; False, changing nothing,
        when a lock is already in force at ``now_ms`` (exactly one racer starts a lock)."""
        ...

    async def locked_until(self, agent_id: int, now_ms: int) -> int | None:
        """The end of the lock in force at ``now_ms``, or None."""
        ...

    async def clear_failures(self, agent_id: int, now_ms: int) -> bool:
        """A sign-in succeeded: forget the agent's failures, unless a lock is in force at
        ``now_ms`` (then nothing changes and the answer is False)."""
        ...

    async def unlock(self, agent_id: int) -> bool:
        """Lift the agent's lock and forget its failures; True when a lock was there."""
        ...


class FileType(enum.IntEnum):
    """A recording's renditions, numbered as ``videofiledownload``'s ``fileType``."""

    HD = 0
    SD = 1
    AUX = 2


@dataclass(frozen=True)
class MediaFileRecord:
    """One rendition of a recording: where its bytes are and what they were when registered."""

    record_id: str
    file_type: FileType
    source: str
    size: int
    media_type: str
    mtime_ns: int
    sha256: str
    facts: MediaFacts | None = None  # as probed when registered; None: not probed yet


@dataclass(frozen=True)
class RecordingRecord:
    record_id: str
    conference_id: str
    position: int
    created_ms: int
    files: tuple[MediaFileRecord, ...] = ()
    announced_ms: int | None = None


@dataclass(frozen=True)
class ConferenceRecord:
    conference_id: str
    vdn: int
    call_id: str
    started_ms: int | None
    ended_ms: int | None
    participants: frozenset[int]
    location_id: str = "255"
    caller: str = ""
    called: str = ""
    recordings: tuple[RecordingRecord, ...] = ()


@dataclass(frozen=True)
class ConferenceViewer:
    """Who asks for a conference, as the visibility rule needs them: their work number, and the
    VDN they inspect (None for an agent who is no inspector).

    ``recordings/access.py`` names the rule (``sees_conference``) and builds the viewer
    (``conference_viewer``); ``CatalogStore.get_visible_conference`` mirrors the rule in its
    query. Keep the two in step (``tests/contract/test_sql_stores.py`` runs one table against
    both).
    """

    work_no: int
    inspected_vdn: int | None


class CatalogStore(Protocol):
    async def get_conference(self, conference_id: str) -> ConferenceRecord | None:
        """The conference with its participants, recordings (in order) and their files."""
        ...

    async def get_visible_conference(
        self, conference_id: str, viewer: ConferenceViewer
    ) -> ConferenceRecord | None:
        """The conference as ``get_conference`` reads it, if ``viewer`` may see it (the rule of
        ``recordings/access.py`` ``sees_conference``, mirrored in the query), else None.

        An absent and an invisible conference cost the same: one statement, the same one, that
        answers the conference only if it is visible (no timing oracle of existence); the
        participants, recordings and files are read only after it did.
        """
        ...

    async def add_recording(
        self, conference: ConferenceRecord, recording: RecordingRecord
    ) -> RecordingRecord:
        """Create the conference if new (else add participants), then append the recording.

        ValueError when the conference exists in another VDN than ``conference.vdn``.
        """
        ...

    async def remove_conference(self, conference_id: str) -> bool: ...

    async def remove_recording(self, record_id: str) -> bool: ...

    async def list_conferences(self) -> list[ConferenceRecord]: ...

    async def claim_unannounced(self, now_ms: int) -> list[RecordingRecord]:
        """Mark recordings not yet announced as announced now; return those this call marked."""
        ...


@dataclass(frozen=True)
class AuditEventRow:
    """One audit event as the ``audit_events`` table holds it: ``body`` (its canonical
    encoding, docs/audit.md) is authoritative, the other columns repeat some of its values for
    queries (``audit/columns.py``, the one rule, gives them)."""

    writer: str
    seq: int
    time_ms: int
    kind: str
    name: str
    agent_id: int | None
    conference_id: str
    record_id: str
    outcome: str
    start_seq: int | None
    client: str
    body: str


class AuditEventStore(Protocol):
    """The audit trail's events in the database (``audit_events``). Shipping hands them over;
    a node's start asks which transfers of its earlier runs are still open."""

    async def insert(self, rows: Sequence[AuditEventRow]) -> None:
        """Store ``rows``; one whose (writer, seq) is already there is left as it is."""
        ...

    async def last_writer(self, low: str, below: str) -> str | None:
        """The greatest writer ``w`` with events and ``low <= w < below``."""
        ...

    async def open_starts(self, writer: str) -> list[str]:
        """The bodies of ``writer``'s ``start`` events that have no ``end`` of ``writer``."""
        ...

    async def interrupted_ends(self, start_seqs: Sequence[int], low: str, below: str) -> list[str]:
        """The bodies of the ``end`` events with outcome ``interrupted`` whose ``start_seq`` is
        one of ``start_seqs``, written by writers ``w`` with ``low <= w < below``."""
        ...


AUDIO, VIDEO = 1, 2  # fileMediaType: what a file-server recording holds


@dataclass(frozen=True)
class FileRecordingRecord:
    """A recording on the file server, named by its drive-letter path (``fileName``)."""

    record_id: str
    file_name: str
    call_id: str
    location_id: str
    media: int  # fileMediaType: 1 audio, 2 video
    agent_id: int | None
    participants: frozenset[int]
    created_ms: int
    announced_ms: int | None = None


class FileStore(Protocol):
    """File-server recordings, and the digest cache of files not in the catalog."""

    async def cached_digest(self, path: str, size: int, mtime_ns: int) -> str | None: ...

    async def cache_digest(self, path: str, size: int, mtime_ns: int, sha256: str) -> None: ...

    async def add_recording(self, recording: FileRecordingRecord) -> bool:
        """False when the record id is taken."""
        ...

    async def find_by_call(self, call_id: str, media: int) -> list[FileRecordingRecord]: ...

    async def registrations(self, file_name: str) -> list[FileRecordingRecord]:
        """The registrations of this drive-letter path (as registered: ``Y:/...``), newest
        first; empty when it is not registered."""
        ...

    async def claim_unannounced(self, now_ms: int) -> list[FileRecordingRecord]: ...


@dataclass(frozen=True)
class AuditQuery:
    """Which audit events to read (``AuditEventReader``), each criterion given or not."""

    agent_id: int | None = None
    conference_id: str | None = None
    kind: str | None = None
    outcome: str | None = None  # a transfer's (its ``end``'s), or ``OPEN``: it has none
    since_ms: int | None = None
    limit: int = 1000


OPEN = "open"  # the outcome shown for a transfer with no ``end`` (yet)


@dataclass(frozen=True)
class AuditLine:
    """One line of the trail as read: an event's canonical encoding (``body``) and, for a
    transfer's ``start``, its ``end``'s, once written (by the same writer, or ``interrupted`` by
    the node's next run)."""

    body: str
    end: str | None = None


class AuditEventReader(Protocol):
    """Reads the ``audit_events`` table (docs/audit.md); writing is the journal's."""

    async def lines(self, query: AuditQuery) -> list[AuditLine]:
        """Newest first: every event except transfers' ``end``s, each ``start`` with its end.
        ``outcome`` selects transfers by their end's outcome (``OPEN``: none)."""
        ...

    async def events(self, query: AuditQuery) -> list[str]:
        """The raw events' encodings, newest first (``outcome``: ``end`` events of it)."""
        ...
