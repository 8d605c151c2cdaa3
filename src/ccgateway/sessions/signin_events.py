"""Agent events: the ones the gateway itself raises, named as the CC-Gateway names them."""

from __future__ import annotations

from ccgateway.stores.base import Event

IN_SERVICE = "AgentOther_InService"
READY = "AgentState_Ready"
SET_NOT_READY_SUCCESS = "AgentState_SetNotReady_Success"
WORK = "AgentState_Work"

# Sign-in status (3 busy, 4 idle, 5 wrap-up) → the events the CC-Gateway queues after sign-in.
SIGN_IN_EVENTS: dict[int, tuple[str, ...]] = {
    3: (IN_SERVICE, READY, SET_NOT_READY_SUCCESS),
    4: (IN_SERVICE, READY),
    5: (IN_SERVICE, READY, WORK),
}


def sign_in_events(agent_id: int, status: int, now_ms: int) -> list[Event]:
    return [
        Event(event_type=name, work_no=agent_id, content=None, gen_time_ms=now_ms)
        for name in SIGN_IN_EVENTS[status]
    ]
