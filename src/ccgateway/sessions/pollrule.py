"""The rule of an event poll on a session: pure (no I/O, no clock of its own), one place.

A poll presents a GUID for an agent (``""`` when it presented none: never accepted). Given the
stored session (or None) and the ``PollRules`` of the moment (``now_ms`` and the settings), the
poll is, checked in this order:

1. refused, ``NO_SESSION``, when the agent has no session;
2. refused, ``IDLE``, when the session was last seen more than ``idle_timeout_ms`` before now
   (exactly ``idle_timeout_ms`` ago is still signed in), whatever the GUID: the caller signs the
   session out, at the version the refusal carries;
3. refused, ``GUID``, unless the GUID is accepted (``guid_accepted``, in ``stores/base.py`` for
   the stores' use too): the session's own, or a retired one whose grace has not ended
   (``now_ms <= valid_until``);
4. when ``rotate_after_ms`` is set (AUTHMODE=2) and at least that long has passed since the GUID
   was issued: refused, ``ROTATE``, when the poll brought no ``new_guid`` (``""``: the caller
   asks again with one, so a new GUID is made and sent only when one is due); else accepted and
   ``ROTATED``: ``new_guid`` becomes the GUID, issued now; the old one is retired until
   ``now_ms + guid_timeout_ms``, after the retired GUIDs still valid (those whose
   ``valid_until`` is before now are dropped); last seen becomes now;
5. else accepted and ``TOUCHED`` (last seen becomes now) when last seen is ``touch_every_ms`` or
   more ago;
6. else accepted, ``UNCHANGED``: heard from moments ago, nothing is written (on a shared store,
   a write saved).

A refused poll changes nothing (it carries the version of the session it found, 0 without one).
A write (touch or rotation) increments the session's version by one. An accepted poll then claims
the agent's oldest event, if one waits, in the same step (the store does that).

Two implementations, on purpose: ``decide`` here, which ``MemorySessionStore.poll`` runs (the
stores sit below ``sessions``: ``gateway.py`` hands it ``decide``), and its mirror, the Lua script
``POLL`` in ``stores/redis/scripts.py``, which ``RedisSessionStore.poll`` runs inside Redis (one
atomic round trip; Lua cannot call this module). A change to one must change the other:
``tests/contract/test_poll_rule.py`` runs one table of every branch against both stores, with
``decide`` as the oracle, and fails on a divergence. (``RedisSessionStore.poll`` checks the GUID
again with ``guid_accepted`` on the session the script returns.)

The GUIDs here are the digests the stores hold (``SessionRecord.guid``): the manager digests a
presented GUID before it asks.

``SessionManager`` uses the same pieces outside a poll: ``admit`` (``authenticate``), ``is_idle``
(``is_signed_in``). The sign-in rule, ``may_replace`` (a sign-in replaces an existing session only
when forced or over an idle one), and ``is_idle`` live in ``stores/base.py`` for the stores' use
(``SessionStore.sign_in``; mirrored by the Lua script ``SIGN_IN``) and are re-exported here.
"""

from __future__ import annotations

import dataclasses
import hmac
from typing import Final

from ccgateway.stores.base import (
    Accepted,
    Change,
    PollRefused,
    PollRules,
    Refusal,
    SessionRecord,
    guid_accepted,
    is_idle,
    may_replace,
)

__all__ = [
    "admit",
    "decide",
    "due_for_rotation",
    "guid_accepted",
    "is_current",
    "is_idle",
    "may_replace",
    "rotated",
]

_NO_SESSION: Final = PollRefused(Refusal.NO_SESSION)


def due_for_rotation(session: SessionRecord, now_ms: int, rotate_after_ms: int | None) -> bool:
    """``rotate_after_ms`` set and at least that long since the GUID was issued (step 4)."""
    return rotate_after_ms is not None and now_ms - session.guid_issued_ms >= rotate_after_ms


def rotated(
    session: SessionRecord, now_ms: int, new_guid: str, guid_timeout_ms: int
) -> SessionRecord:
    """``new_guid`` issued now; the GUID it replaces retired until ``now_ms + guid_timeout_ms``,
    after the retired GUIDs still valid at ``now_ms`` (step 4; last seen and version untouched)."""
    retired = tuple((g, until) for g, until in session.retired if until >= now_ms)
    retired += ((session.guid, now_ms + guid_timeout_ms),)
    return dataclasses.replace(session, guid=new_guid, guid_issued_ms=now_ms, retired=retired)


def is_current(session: SessionRecord, guid: str) -> bool:
    """Whether ``guid`` is the session's current GUID (constant time). Only the current GUID may
    change the session's GUID (``updateGuid``) or end it (sign-out): a retired one, still accepted
    for its grace, may not lock its owner out."""
    return hmac.compare_digest(session.guid.encode(), guid.encode())


def admit(
    session: SessionRecord | None, guid: str, now_ms: int, idle_timeout_ms: int
) -> SessionRecord | PollRefused:
    """``session`` if a request presenting ``guid`` at ``now_ms`` is let in, else why not
    (steps 1 to 3)."""
    if session is None:
        return _NO_SESSION
    if is_idle(session, now_ms, idle_timeout_ms):
        return PollRefused(Refusal.IDLE, session.version)
    if not guid_accepted(session, guid, now_ms):
        return PollRefused(Refusal.GUID, session.version)
    return session


def decide(session: SessionRecord | None, guid: str, rules: PollRules) -> Accepted | PollRefused:
    """The whole rule (steps 1 to 6): what a poll presenting ``guid`` does to ``session``."""
    now = rules.now_ms
    admitted = admit(session, guid, now, rules.idle_timeout_ms)
    if isinstance(admitted, PollRefused):
        return admitted
    if due_for_rotation(admitted, now, rules.rotate_after_ms):
        if not rules.new_guid:
            return PollRefused(Refusal.ROTATE, admitted.version)
        after = rotated(admitted, now, rules.new_guid, rules.guid_timeout_ms)
        change = Change.ROTATED
    elif now - admitted.last_seen_ms >= rules.touch_every_ms:
        after, change = admitted, Change.TOUCHED
    else:
        return Accepted(admitted, Change.UNCHANGED)
    return Accepted(
        dataclasses.replace(after, last_seen_ms=now, version=admitted.version + 1), change
    )
