"""The event poll: events, long-poll wait, GUID rotation (AUTHMODE 1 and 2) and idle sign-out."""

from __future__ import annotations

import asyncio
import time

from ccgateway import retcodes
from ccgateway.stores.base import Event
from tests.conftest import GatewayFactory, RunningGateway, guid_of

MINUTE = 60_000


async def drain(gw: RunningGateway, agent_id: int, guid: str | None) -> list[str]:
    seen: list[str] = []
    while True:
        _, body = await gw.client.poll(agent_id, guid)
        assert body["retcode"] == "0", body
        if body["event"] is None:
            return seen
        assert body["event"]["workNo"] == str(agent_id)
        seen.append(body["event"]["eventType"])


async def take(gw: RunningGateway, agent_id: int, guid: str | None, count: int) -> list[str]:
    seen = []
    for _ in range(count):
        _, body = await gw.client.poll(agent_id, guid)
        assert body["event"] is not None, body
        seen.append(body["event"]["eventType"])
    return seen


async def test_sign_in_queues_in_service_and_ready(gw: RunningGateway) -> None:
    guid, _ = await gw.client.sign_in(101)
    assert await drain(gw, 101, guid) == ["AgentOther_InService", "AgentState_Ready"]


async def test_sign_in_events_follow_the_requested_status(gw: RunningGateway) -> None:
    guid, _ = await gw.client.sign_in(101, status=3)
    assert await drain(gw, 101, guid) == [
        "AgentOther_InService",
        "AgentState_Ready",
        "AgentState_SetNotReady_Success",
    ]
    guid, _ = await gw.client.sign_in(102, status="5")
    assert await drain(gw, 102, guid) == [
        "AgentOther_InService",
        "AgentState_Ready",
        "AgentState_Work",
    ]


async def test_empty_poll_waits_then_answers_null_event(gw: RunningGateway) -> None:
    guid, _ = await gw.client.sign_in(101)
    await drain(gw, 101, guid)
    started = time.perf_counter()
    response, body = await gw.client.poll(101, guid)
    waited = time.perf_counter() - started
    assert body == {"message": "", "retcode": "0", "event": None}
    assert 0.09 <= waited < 2  # AGENT_POLL_WAIT_TIMES=2 x AGENT_POLL_WAIT_INTERVAL=50 ms


async def test_held_poll_returns_as_soon_as_an_event_arrives(make_gateway: GatewayFactory) -> None:
    running = await make_gateway(AGENT_POLL_WAIT_TIMES="100", AGENT_POLL_WAIT_INTERVAL="100")
    await running.add_agent(101)
    guid, _ = await running.client.sign_in(101)
    await running.client.poll(101, guid)
    await running.client.poll(101, guid)
    started = time.perf_counter()
    poll = asyncio.create_task(running.client.poll(101, guid))
    await asyncio.sleep(0.2)
    await running.gateway.events.publish(Event("AgentEvent_Ringing", 101, {"callid": "1-2"}, 0))
    _, body = await poll
    assert time.perf_counter() - started < 2
    assert body["event"] == {
        "eventType": "AgentEvent_Ringing",
        "workNo": "101",
        "content": {"callid": "1-2"},
        "eventGenTime": 0,
    }


async def test_poll_with_wait_flag_off_answers_at_once(make_gateway: GatewayFactory) -> None:
    running = await make_gateway(
        AGENT_POLL_WAIT_FLAG="OFF", AGENT_POLL_WAIT_TIMES="100", AGENT_POLL_WAIT_INTERVAL="100"
    )
    await running.add_agent(101)
    guid, _ = await running.client.sign_in(101)
    await drain(running, 101, guid)
    started = time.perf_counter()
    _, body = await running.client.poll(101, guid)
    assert body["event"] is None and time.perf_counter() - started < 1


async def test_events_are_per_agent(gw: RunningGateway) -> None:
    guid_101, _ = await gw.client.sign_in(101)
    guid_102, _ = await gw.client.sign_in(102)
    await gw.gateway.events.publish(Event("AgentEvent_Talking", 102, None, 0))
    assert "AgentEvent_Talking" not in await drain(gw, 101, guid_101)
    assert (await drain(gw, 102, guid_102))[-1] == "AgentEvent_Talking"


async def test_dynamic_guid_rotates_and_old_one_expires_after_guidtimeout(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(GUIDINTERVAL="60000", GUIDTIMEOUT="90000")
    await gw.add_agent(101)
    first, _ = await gw.client.sign_in(101)
    response, _ = await gw.client.poll(101, first)
    assert guid_of(response) == first  # not yet due: the current GUID is repeated

    gw.clock.advance(MINUTE)
    response, body = await gw.client.poll(101, first)
    assert body["retcode"] == "0"
    second = guid_of(response)
    assert second is not None and second != first  # rotated, delivered in Set-GUID

    gw.clock.advance(40_000)  # second is 40 s old: no rotation; first still accepted
    response, body = await gw.client.poll(101, second)
    assert body["retcode"] == "0" and guid_of(response) == second
    response, body = await gw.client.poll(101, first)
    # L14: the gateway keeps digests only, so it cannot tell a rotated-out GUID the current one:
    # it answers the GUID presented; this client learns a new one at the next rotation (below).
    assert body["retcode"] == "0" and guid_of(response) == first

    gw.clock.advance(50_000)  # exactly GUIDTIMEOUT after the rotation: still accepted
    response, body = await gw.client.poll(101, first)
    assert body["retcode"] == "0"
    third = guid_of(response)
    assert third not in (None, first, second)

    gw.clock.advance(1)
    _, body = await gw.client.poll(101, first)
    assert body["retcode"] == retcodes.NO_RIGHT.code
    _, body = await gw.client.poll(101, second)
    assert body["retcode"] == "0"
    _, body = await gw.client.poll(101, third)
    assert body["retcode"] == "0"


async def test_static_mode_keeps_one_guid(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(AUTHMODE="1")
    await gw.add_agent(101)
    guid, _ = await gw.client.sign_in(101)
    for _ in range(5):
        gw.clock.advance(50_000)
        response, body = await gw.client.poll(101, guid)
        assert body["retcode"] == "0"
        assert "Set-GUID" not in response.headers


async def test_silent_agent_is_signed_out_after_two_minutes(gw: RunningGateway) -> None:
    guid, _ = await gw.client.sign_in(101)
    gw.clock.advance(119_000)
    _, body = await gw.client.poll(101, guid)
    assert body["retcode"] == "0"  # a poll within the limit keeps the agent signed in
    gw.clock.advance(120_001)
    _, body = await gw.client.poll(101, guid)
    assert body["retcode"] == retcodes.NOT_SIGNED_IN.code
    guid, body = await gw.client.sign_in(101)
    assert body["retcode"] == "0"


async def test_idle_sweep_signs_out_silent_agents_only(gw: RunningGateway) -> None:
    quiet, _ = await gw.client.sign_in(101)
    active, _ = await gw.client.sign_in(102)
    gw.clock.advance(100_000)
    await gw.client.poll(102, active)
    gw.clock.advance(30_000)
    assert await gw.gateway.sessions.sign_out_idle() == [101]
    _, body = await gw.client.poll(101, quiet)
    assert body["retcode"] == retcodes.NOT_SIGNED_IN.code
    _, body = await gw.client.poll(102, active)
    assert body["retcode"] == "0"


async def test_guid_checks(gw: RunningGateway) -> None:
    _, body = await gw.client.poll(101, "whatever")
    assert body["retcode"] == retcodes.NOT_SIGNED_IN.code  # not signed in
    guid, _ = await gw.client.sign_in(101)
    other, _ = await gw.client.sign_in(102)
    assert guid is not None
    for wrong in (None, "", other, guid + "x", guid.upper(), "x" * 5000):
        response, body = await gw.client.poll(101, wrong)
        assert response.status == 200
        assert body == {
            "message": "no right to invite resource",
            "retcode": "000-003",
            "result": "",
        }


async def test_guid_header_name_is_case_insensitive(gw: RunningGateway) -> None:
    guid, _ = await gw.client.sign_in(101)
    assert guid is not None
    _, body = await gw.client.call("GET", "agentevent/101", headers={"guid": guid})
    assert body["retcode"] == "0" and body["event"] is not None
    _, body = await gw.client.call("GET", "agentevent/101", headers={"GUID": guid})
    assert body["retcode"] == "0"


async def test_a_poll_held_by_a_replaced_session_takes_none_of_the_new_sessions_events(
    make_gateway: GatewayFactory,
) -> None:
    running = await make_gateway(AGENT_POLL_WAIT_TIMES="100", AGENT_POLL_WAIT_INTERVAL="100")
    await running.add_agent(101)
    old, _ = await running.client.sign_in(101)
    await take(running, 101, old, 2)  # InService, Ready (a drain would wait out the long poll)
    held = asyncio.create_task(running.client.poll(101, old))
    await asyncio.sleep(0.2)
    new, _ = await running.client.sign_in(101, force=True)
    _, body = await asyncio.wait_for(held, 5)
    assert body["event"] is None  # released empty-handed by the new sign-in
    assert await take(running, 101, new, 2) == ["AgentOther_InService", "AgentState_Ready"]


async def test_an_abandoned_poll_takes_no_event(make_gateway: GatewayFactory) -> None:
    running = await make_gateway(AGENT_POLL_WAIT_TIMES="100", AGENT_POLL_WAIT_INTERVAL="100")
    await running.add_agent(101)
    guid, _ = await running.client.sign_in(101)
    await take(running, 101, guid, 2)
    abandoned = asyncio.create_task(running.client.poll(101, guid))
    await asyncio.sleep(0.2)
    abandoned.cancel()  # the client goes away while its poll is held
    await asyncio.sleep(0.2)
    await running.gateway.events.publish(Event("AgentEvent_Ringing", 101, None, 0))
    _, body = await running.client.poll(101, guid)
    assert body["event"]["eventType"] == "AgentEvent_Ringing"
