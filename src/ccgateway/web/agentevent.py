"""``GET agentevent/{agentid}``: the long poll, which is also the heartbeat and the GUID channel.

It answers at once when an event is queued, otherwise holds up to AGENT_POLL_WAIT_TIMES x
AGENT_POLL_WAIT_INTERVAL ms and answers ``{"message":"","retcode":"0","event":null}``. Under
AUTHMODE=2 every successful poll carries ``Set-GUID`` with the agent's current GUID, so a client
that lost one answer still learns a rotation from the next.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ccgateway.stores.base import Event
from ccgateway.web.responses import json_body
from ccgateway.web.state import gateway
from ccgateway.wire.envelope import event_envelope
from ccgateway.wire.guid import request_guid


async def get_agent_event(request: web.Request, agent_id: int) -> web.StreamResponse:
    core = gateway(request)
    session, event = await core.sessions.poll_events(
        agent_id, request_guid(request.headers), core.settings.poll_wait_ms / 1000
    )
    body = event_envelope(wire_event(event) if event is not None else None)
    guid = session.guid if core.settings.auth_mode == 2 else None
    return json_body(request, "0", body, guid=guid)


def wire_event(event: Event) -> dict[str, Any]:
    return {
        "eventType": event.event_type,
        "workNo": str(event.work_no),
        "content": dict(event.content) if event.content is not None else None,
        "eventGenTime": event.gen_time_ms,
    }
