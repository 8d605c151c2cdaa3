"""Registering an MCU recording probes each file: its facts are kept and shown, and a recording
with a damaged file is still registered, announced as ``AgentMediaEvent_Record_Fail``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import GatewayFactory, RunningGateway
from tests.functional.conftest import CONF, REC0, write_random
from tests.functional.test_admin_and_events import TOKEN, admin
from tests.media import HEIGHT, SECONDS, WIDTH, playable_bytes, write_playable

RECORD_KEYS = {"taskId", "caller", "called", "locationId", "recordID", "fileName", "callId"}


async def record_event(gw: RunningGateway, agent_id: int, guid: str | None) -> Any:
    """The next record event in the agent's queue, of either name."""
    for _ in range(50):
        _, body = await gw.client.poll(agent_id, guid)
        event = body["event"]
        if event is not None and event["eventType"].startswith("AgentMediaEvent_Record"):
            return event
    raise AssertionError("no record event")


async def register(gw: RunningGateway, record_id: str, hd: Path) -> dict[str, Any]:
    status, body = await admin(
        gw,
        "POST",
        "recordings",
        {
            "conferenceId": CONF,
            "recordId": record_id,
            "participants": [101],
            "vdn": 1,
            "callId": "1606459553-176",
            "files": {"hd": str(hd)},
        },
    )
    assert status == 200 and body["retcode"] == "0", body
    recording = next(r for r in body["result"]["recordings"] if r["recordId"] == record_id)
    file: dict[str, Any] = recording["files"][0]
    return file


async def test_a_demo_recording_registers_with_its_facts(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = await make_gateway(ADMIN_TOKEN=TOKEN)
    await gw.add_agent(101)
    guid, _ = await gw.client.sign_in(101)
    hd = write_playable(tmp_path / "hd.mp4")
    file = await register(gw, REC0, hd)
    assert file["state"] == "ready"
    facts = file["facts"]
    assert (facts["width"], facts["height"]) == (WIDTH, HEIGHT)
    assert facts["videoCodec"] == "h264" and facts["audioCodec"] is None
    assert facts["durationS"] == SECONDS
    assert facts["fastStart"] is True and facts["reason"] == ""
    assert facts["size"] == hd.stat().st_size and facts["mediaType"] == "video/mp4"
    event = await record_event(gw, 101, guid)
    assert event["eventType"] == "AgentMediaEvent_Record"
    status, body = await admin(gw, "GET", f"conferences/{CONF}")
    assert status == 200, body
    assert body["result"]["recordings"][0]["files"][0]["facts"] == facts  # as stored


async def test_damaged_files_register_and_are_announced_as_failed(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = await make_gateway(ADMIN_TOKEN=TOKEN)
    await gw.add_agent(101)
    guid, _ = await gw.client.sign_in(101)
    whole = playable_bytes()
    truncated = tmp_path / "truncated.mp4"  # fast-start: the index survives, the media does not
    truncated.write_bytes(whole[: len(whole) * 2 // 3])
    noise = write_random(tmp_path / "noise.mp4", 5000)
    for record_id, path, reason in (
        ("rec-truncated", truncated, "truncated"),
        ("rec-noise", noise, "not a media file"),
    ):
        file = await register(gw, record_id, path)
        assert file["state"] == "damaged"
        assert file["facts"]["state"] == "damaged" and reason in file["facts"]["reason"]
        event = await record_event(gw, 101, guid)
        assert event["eventType"] == "AgentMediaEvent_Record_Fail"
        content = event["content"]
        assert RECORD_KEYS <= content.keys() and content["recordID"] == record_id
        assert content["fileMediaType"] == 2 and content["callId"] == "1606459553-176"
        assert f"conferenceId={CONF};" in content["fileName"]
    status, body = await admin(gw, "GET", f"conferences/{CONF}")
    assert status == 200, body
    shown = {r["recordId"]: r["files"][0] for r in body["result"]["recordings"]}
    truncated_facts = shown["rec-truncated"]["facts"]
    assert shown["rec-truncated"]["state"] == "damaged"
    assert "truncated" in truncated_facts["reason"]
    assert (truncated_facts["width"], truncated_facts["height"]) == (WIDTH, HEIGHT)  # the index
    assert shown["rec-noise"]["state"] == "damaged"
    assert shown["rec-noise"]["facts"]["width"] is None
