"""The admin API registers recordings; signed-in participants get ``AgentMediaEvent_Record``."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from ccgateway import retcodes
from ccgateway.recordings.catalog import Registration
from ccgateway.stores.base import FileType
from tests.conftest import GatewayFactory, RunningGateway
from tests.functional.conftest import CONF, REC0, REC1, write_random
from tests.media import write_playable

TOKEN = "admin-token-0123456789abcdef"


async def admin(
    gw: RunningGateway, method: str, path: str, json: Any = None, token: str = TOKEN
) -> tuple[int, Any]:
    url = gw.client.base.replace("/agentgateway/resource/", "/ccgateway/admin/v1/") + path
    async with gw.client.http.request(
        method, url, json=json, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        return response.status, await response.json(content_type=None)


async def next_event(gw: RunningGateway, agent_id: int, guid: str | None) -> Any:
    for _ in range(50):
        _, body = await gw.client.poll(agent_id, guid)
        if body["event"] is not None and body["event"]["eventType"] == "AgentMediaEvent_Record":
            return body["event"]
    raise AssertionError("no record event")


async def test_register_through_admin_api_announces_to_signed_in_participants(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = await make_gateway(ADMIN_TOKEN=TOKEN)
    for agent_id in (101, 102, 103):
        await gw.add_agent(agent_id)
    guid_101, _ = await gw.client.sign_in(101)
    guid_103, _ = await gw.client.sign_in(103)
    hd = write_playable(tmp_path / "hd.mp4")  # whole: AgentMediaEvent_Record (else _Fail)
    status, body = await admin(
        gw,
        "POST",
        "recordings",
        {
            "conferenceId": CONF,
            "recordId": REC0,
            "participants": [101, 102],
            "vdn": 1,
            "callId": "1606459553-176",
            "files": {"hd": str(hd)},
        },
    )
    assert status == 200 and body["retcode"] == "0", body
    recording = body["result"]["recordings"][0]
    assert recording["recordId"] == REC0 and recording["fileTypes"] == [0]
    assert recording["files"][0]["sha256"] == hashlib.sha256(hd.read_bytes()).hexdigest()
    assert recording["files"][0]["size"] == hd.stat().st_size
    event = await next_event(gw, 101, guid_101)
    assert event["workNo"] == "101"
    content = event["content"]
    assert content["fileName"] == f"conferenceId={CONF};recordId0={REC0};"
    assert content["recordID"] == REC0
    assert content["fileMediaType"] == 2
    assert content["callId"] == "1606459553-176"
    assert content["locationId"] == "255"
    assert isinstance(content["taskId"], int)
    seen_by_103 = []  # not a participant: no record event for 103
    while (body := (await gw.client.poll(103, guid_103))[1])["event"] is not None:
        seen_by_103.append(body["event"]["eventType"])
    assert "AgentMediaEvent_Record" not in seen_by_103
    status, body = await admin(
        gw,
        "POST",
        "recordings",
        {
            "conferenceId": CONF,
            "recordId": REC1,
            "participants": [101],
            "files": {"sd": str(hd)},
        },
    )
    event = await next_event(gw, 101, guid_101)
    assert event["content"]["fileName"] == f"conferenceId={CONF};recordId0={REC0};recordId1={REC1};"


async def test_recording_added_elsewhere_is_announced_by_the_running_gateway(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = await make_gateway()
    await gw.add_agent(101)
    guid, _ = await gw.client.sign_in(101)
    hd = write_playable(tmp_path / "hd.mp4")
    # what `ccgateway recordings add` does: write the catalog, announce nothing itself
    await gw.gateway.catalog.register(
        Registration(CONF, REC0, frozenset({101}), {FileType.HD: str(hd)}, vdn=1)
    )
    event = await asyncio.wait_for(next_event(gw, 101, guid), 10)
    assert event["content"]["recordID"] == REC0


async def test_no_event_when_video_events_are_off(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = await make_gateway(IF_SUPPORT_VIDEO="OFF")
    await gw.add_agent(101)
    guid, _ = await gw.client.sign_in(101)
    hd = write_random(tmp_path / "hd.mp4", 100)
    await gw.gateway.catalog.register(
        Registration(CONF, REC0, frozenset({101}), {FileType.HD: str(hd)}, vdn=1)
    )
    assert await gw.gateway.catalog.announce_pending(video_events=False) == 0


async def test_admin_api_needs_the_token_and_is_off_without_one(
    make_gateway: GatewayFactory,
) -> None:
    off = await make_gateway()
    status, body = await admin(off, "GET", "conferences")
    assert status == 404 and body["retcode"] == retcodes.BAD_INTERFACE_PARAMETER.code
    on = await make_gateway(ADMIN_TOKEN=TOKEN)
    status, body = await admin(on, "GET", "conferences", token="wrong-token-000000000000")
    assert status == 401 and body["retcode"] == retcodes.NO_RIGHT.code
    status, body = await admin(on, "GET", "conferences")
    assert status == 200 and body["result"] == []


async def test_admin_api_refuses_bad_registrations(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = await make_gateway(ADMIN_TOKEN=TOKEN)
    hd = write_random(tmp_path / "hd.mp4", 100)
    good = {
        "conferenceId": CONF,
        "recordId": REC0,
        "participants": [101],
        "files": {"hd": str(hd)},
        "vdn": 1,
    }
    bad_cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "conferenceId": "../x"}, retcodes.ADMIN_BAD_REQUEST.code),
        ({**good, "participants": []}, retcodes.ADMIN_BAD_REQUEST.code),
        ({**good, "participants": [5]}, retcodes.ADMIN_BAD_REQUEST.code),
        ({**good, "files": {}}, retcodes.ADMIN_BAD_REQUEST.code),
        ({**good, "files": {"uhd": str(hd)}}, retcodes.ADMIN_BAD_REQUEST.code),
        (
            {**good, "files": {"hd": str(tmp_path / "absent.mp4")}},
            retcodes.ADMIN_SOURCE_FAILED.code,
        ),
        ({**good, "files": {"hd": "relative.mp4"}}, retcodes.ADMIN_SOURCE_FAILED.code),
        ({**good, "vdn": "x"}, retcodes.ADMIN_BAD_REQUEST.code),
    ]
    for payload, code in bad_cases:
        status, body = await admin(gw, "POST", "recordings", payload)
        assert status == 400 and body["retcode"] == code, payload
    status, body = await admin(gw, "POST", "recordings", good)
    assert status == 200
    status, body = await admin(gw, "POST", "recordings", good)
    assert status == 400 and "already exists" not in str(body)  # details stay in the log
    status, body = await admin(gw, "GET", f"conferences/{CONF}")
    assert status == 200 and body["result"]["participants"] == [101]
    status, body = await admin(gw, "DELETE", f"recordings/{REC0}")
    assert status == 200
    status, body = await admin(gw, "DELETE", f"conferences/{CONF}")
    assert status == 200
    status, body = await admin(gw, "GET", f"conferences/{CONF}")
    assert status == 404 and body["retcode"] == retcodes.ADMIN_NOT_FOUND.code
