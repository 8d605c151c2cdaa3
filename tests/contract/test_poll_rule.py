"""The poll rule, every branch, against every store (see conftest): one table.

``sessions/pollrule.py`` holds the rule, which ``MemorySessionStore.poll`` runs; the Lua script
``POLL`` (``stores/redis/scripts.py``) mirrors it inside Redis. Each case runs ``SessionStore.poll``
on both stores and compares what it did with ``pollrule.decide``, the oracle: a change to one
side only fails here. Each case also names the branch it takes (and, for a rotation, the retired
GUIDs it leaves), so a change to both sides is a change to this table too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from ccgateway.sessions import pollrule
from ccgateway.stores.base import (
    Change,
    Event,
    Polled,
    PollRefused,
    PollRules,
    Refusal,
    SessionRecord,
)
from tests.contract.conftest import Node

NOW = 1_700_000_000_000
IDLE_MS, TOUCH_MS, ROTATE_MS, GRACE_MS = 120_000, 5_000, 60_000, 90_000
GUID = "0f8c9f5e-8d6b-4c1a-9a6e-3c1d2b7e9f00.AgentGateway0"
OLD = "5b0c7e1a-2f3d-4e5f-8a9b-0c1d2e3f4a5b.AgentGateway1"
NEW_GUID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d.AgentGateway1"
EVENT = Event("AgentState_Ready", 101, {"workNo": "101", "status": 4}, NOW - 1)


def stored(
    *,
    seen_ago: int = 0,
    issued_ago: int = 0,
    retired: tuple[tuple[str, int], ...] = (),
) -> SessionRecord:
    """Agent 101's session as stored (version 1), last seen and its GUID issued so long ago."""
    return SessionRecord(
        agent_id=101,
        guid=GUID,
        guid_issued_ms=NOW - issued_ago,
        signed_in_ms=NOW - 10 * IDLE_MS,
        last_seen_ms=NOW - seen_ago,
        node="AgentGateway0",
        retired=retired,
        version=1,
        attributes={"phonenum": "70101", "status": 4},
    )


@dataclass(frozen=True)
class Case:
    name: str
    session: SessionRecord | None
    guid: str
    branch: Refusal | Change
    rotate_after_ms: int | None = ROTATE_MS
    retired_after: tuple[tuple[str, int], ...] | None = None  # a rotation's, when it rotates
    new_guid: str = NEW_GUID  # "": the poll brings none (a rotation due is refused, ROTATE)


CASES = [
    Case("no session", None, GUID, Refusal.NO_SESSION),
    Case("no session, no GUID", None, "", Refusal.NO_SESSION),
    Case("idle: just past the limit", stored(seen_ago=IDLE_MS + 1), GUID, Refusal.IDLE),
    Case("idle, whatever the GUID", stored(seen_ago=IDLE_MS + 1), "wrong", Refusal.IDLE),
    Case("idle, no GUID", stored(seen_ago=IDLE_MS + 1), "", Refusal.IDLE),
    Case("exactly at the idle limit: touched", stored(seen_ago=IDLE_MS), GUID, Change.TOUCHED),
    Case("wrong GUID", stored(), OLD, Refusal.GUID),
    Case("GUID in other case", stored(), GUID.upper(), Refusal.GUID),
    Case("GUID with a suffix", stored(), GUID + "x", Refusal.GUID),
    Case("GUID cut short", stored(), GUID[:-1], Refusal.GUID),
    Case("missing GUID", stored(), "", Refusal.GUID),
    Case("heard from just now", stored(), GUID, Change.UNCHANGED),
    Case("heard from recently", stored(seen_ago=TOUCH_MS - 1), GUID, Change.UNCHANGED),
    Case("touch due", stored(seen_ago=TOUCH_MS), GUID, Change.TOUCHED),
    Case(
        "retired GUID, the last moment of its grace",
        stored(retired=((OLD, NOW),)),
        OLD,
        Change.UNCHANGED,
    ),
    Case(
        "retired GUID, touch due",
        stored(seen_ago=TOUCH_MS, retired=((OLD, NOW + 1),)),
        OLD,
        Change.TOUCHED,
    ),
    Case("retired GUID, just past its grace", stored(retired=((OLD, NOW - 1),)), OLD, Refusal.GUID),
    Case(
        "retired GUID expired, the current one still works",
        stored(retired=((OLD, NOW - 1),)),
        GUID,
        Change.UNCHANGED,
    ),
    Case("rotation not yet due", stored(issued_ago=ROTATE_MS - 1), GUID, Change.UNCHANGED),
    Case(
        "rotation due",
        stored(issued_ago=ROTATE_MS),
        GUID,
        Change.ROTATED,
        retired_after=((GUID, NOW + GRACE_MS),),
    ),
    Case(
        "rotation due, touch due too, expired retired GUIDs dropped",
        stored(
            seen_ago=TOUCH_MS,
            issued_ago=2 * ROTATE_MS,
            retired=(("expired", NOW - 1), (OLD, NOW), ("later", NOW + 7)),
        ),
        GUID,
        Change.ROTATED,
        retired_after=((OLD, NOW), ("later", NOW + 7), (GUID, NOW + GRACE_MS)),
    ),
    Case(
        "rotation due, presenting a retired GUID",
        stored(issued_ago=ROTATE_MS, retired=((OLD, NOW + 1),)),
        OLD,
        Change.ROTATED,
        retired_after=((OLD, NOW + 1), (GUID, NOW + GRACE_MS)),
    ),
    Case(
        "L14: rotation due, no new GUID brought: refused, ask again with one",
        stored(issued_ago=ROTATE_MS),
        GUID,
        Refusal.ROTATE,
        new_guid="",
    ),
    Case(
        "L14: rotation due, touch due, retired GUID, no new GUID: refused, nothing touched",
        stored(seen_ago=TOUCH_MS, issued_ago=ROTATE_MS, retired=((OLD, NOW + 1),)),
        OLD,
        Refusal.ROTATE,
        new_guid="",
    ),
    Case(
        "no new GUID brought, rotation not due: touched",
        stored(seen_ago=TOUCH_MS, issued_ago=ROTATE_MS - 1),
        GUID,
        Change.TOUCHED,
        new_guid="",
    ),
    Case(
        "no new GUID brought, idle: idle first",
        stored(seen_ago=IDLE_MS + 1, issued_ago=ROTATE_MS),
        GUID,
        Refusal.IDLE,
        new_guid="",
    ),
    Case(
        "rotation due, wrong GUID: refused",
        stored(issued_ago=ROTATE_MS),
        "wrong",
        Refusal.GUID,
    ),
    Case(
        "no rotation without rotate_after (AUTHMODE=1)",
        stored(issued_ago=100 * ROTATE_MS),
        GUID,
        Change.UNCHANGED,
        rotate_after_ms=None,
    ),
    Case(
        "no rotation without rotate_after, touch due",
        stored(seen_ago=TOUCH_MS, issued_ago=100 * ROTATE_MS),
        GUID,
        Change.TOUCHED,
        rotate_after_ms=None,
    ),
]


def rules(case: Case) -> PollRules:
    return PollRules(
        now_ms=NOW,
        idle_timeout_ms=IDLE_MS,
        touch_every_ms=TOUCH_MS,
        rotate_after_ms=case.rotate_after_ms,
        guid_timeout_ms=GRACE_MS,
        new_guid=case.new_guid,
    )


def test_the_table_covers_every_branch() -> None:
    assert {case.branch for case in CASES} == {*Refusal, *Change}


@pytest.mark.parametrize("waiting", [True, False], ids=["event waiting", "no event"])
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_poll(backend: Node, case: Case, waiting: bool) -> None:
    store, bus = backend
    if case.session is not None:
        assert await store.create(case.session)
    before = await store.get(101)
    assert before == case.session
    await bus.clear(101)  # as sign-in does: generation 1
    if waiting:
        await bus.publish(EVENT)

    decided = pollrule.decide(before, case.guid, rules(case))
    polled = await store.poll(101, case.guid, rules(case))

    if isinstance(decided, PollRefused):
        assert decided.reason is case.branch
        assert decided.version == (0 if before is None else before.version)
        assert polled == decided
        assert await store.get(101) == before  # nothing changed, nothing claimed
        assert await bus.next(101, 0) == (EVENT if waiting else None)
        return
    assert decided.change is case.branch
    after = decided.session
    assert polled == Polled(after, EVENT if waiting else None, 1)
    assert await store.get(101) == after
    assert await bus.next(101, 0) is None  # claimed, or none was waiting
    assert await store.idle_since(after.last_seen_ms) == []  # last seen, as the store keeps it
    assert await store.idle_since(after.last_seen_ms + 1) == [101]
    assert before is not None
    if case.branch is Change.UNCHANGED:
        assert after == before
        return
    assert after.version == before.version + 1 and after.last_seen_ms == NOW
    if case.branch is Change.TOUCHED:
        assert after == dataclasses.replace(before, last_seen_ms=NOW, version=2)
        return
    assert case.retired_after is not None
    assert after == dataclasses.replace(
        before,
        guid=NEW_GUID,
        guid_issued_ms=NOW,
        last_seen_ms=NOW,
        retired=case.retired_after,
        version=2,
    )
