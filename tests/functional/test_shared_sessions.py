"""Two gateway nodes sharing Redis and one database: any node serves any agent."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from ccgateway import retcodes
from ccgateway.recordings.catalog import Registration
from ccgateway.stores.base import FileType
from tests.audit_trail import transfers
from tests.conftest import GatewayFactory, RunningGateway
from tests.functional.conftest import CONF, REC0
from tests.media import write_playable

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + "/3"


@pytest.fixture
async def shared_redis() -> AsyncIterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        await client.flushdb()
    except (OSError, redis.ConnectionError) as exc:
        await client.aclose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} is required under CI: {exc}")
        pytest.skip(f"Redis not reachable: {exc}")
    yield REDIS_URL
    await client.flushdb()
    await client.aclose()


@pytest.fixture
async def nodes(
    make_gateway: GatewayFactory, shared_redis: str, tmp_path: Path
) -> tuple[RunningGateway, RunningGateway]:
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    settings = {
        "SESSIONS_URL": shared_redis,
        "GUID_DIGEST_KEY": "shared-guid-digest-key-0123456789",
        "DATABASE_URL": database,
        "GUIDINTERVAL": "60000",
        "GUIDTIMEOUT": "90000",
        # A held poll waits up to 2 s (not the suite's 100 ms): long enough to span another
        # node's announcement on a loaded machine.
        "AGENT_POLL_WAIT_INTERVAL": "1000",
    }
    node0 = await make_gateway(NODE_NAME="AgentGateway0", **settings)
    node1 = await make_gateway(clock=node0.clock, NODE_NAME="AgentGateway1", **settings)
    await node0.add_agent(101)
    return node0, node1


async def test_sign_in_on_one_node_poll_and_rotate_on_the_other(
    nodes: tuple[RunningGateway, RunningGateway],
) -> None:
    node0, node1 = nodes
    guid, body = await node0.client.sign_in(101)
    assert body["retcode"] == "0" and guid is not None and guid.endswith(".AgentGateway0")
    _, body = await node1.client.poll(101, guid)
    assert body["event"]["eventType"] == "AgentOther_InService"
    _, body = await node0.client.poll(101, guid)
    assert body["event"]["eventType"] == "AgentState_Ready"  # exactly once, in order
    _, again = await node1.client.sign_in(101)
    assert again["retcode"] == retcodes.ALREADY_SIGNED_IN.code
    node1.clock.advance(60_000)  # one clock for both nodes, as NTP gives real ones
    response, body = await node1.client.poll(101, guid)
    rotated = response.headers["Set-GUID"].split("=", 1)[1]
    assert rotated != guid and rotated.endswith(".AgentGateway1")
    _, body = await node0.client.poll(101, rotated)
    assert body["retcode"] == "0"
    _, body = await node0.client.poll(101, guid)  # the old one, within GUIDTIMEOUT
    assert body["retcode"] == "0"
    node1.clock.advance(90_001)  # GUIDTIMEOUT after the rotation, plus 1 ms
    _, body = await node1.client.poll(101, guid)
    assert body["retcode"] == retcodes.NO_RIGHT.code
    _, body = await node1.client.call("DELETE", "onlineagent/101/logout", guid=rotated)
    assert body["retcode"] == "0"
    _, body = await node0.client.poll(101, rotated)
    assert body["retcode"] == retcodes.NOT_SIGNED_IN.code


async def test_a_held_poll_on_one_node_gets_an_event_published_on_the_other(
    nodes: tuple[RunningGateway, RunningGateway], tmp_path: Path
) -> None:
    node0, node1 = nodes
    guid, _ = await node0.client.sign_in(101)
    for _ in range(2):
        await node1.client.poll(101, guid)
    held = asyncio.create_task(node1.client.poll(101, guid))
    await asyncio.sleep(0.05)
    hd = write_playable(tmp_path / "hd.mp4")  # whole: AgentMediaEvent_Record (else _Fail)
    await node0.gateway.catalog.register(
        Registration(CONF, REC0, frozenset({101}), {FileType.HD: str(hd)}, vdn=1)
    )
    assert await node0.gateway.catalog.announce_pending(video_events=True) == 1
    assert await node1.gateway.catalog.announce_pending(video_events=True) == 0  # claimed once
    _, body = await asyncio.wait_for(held, 5)
    assert body["event"]["eventType"] == "AgentMediaEvent_Record"
    assert body["event"]["content"]["recordID"] == REC0
    url = node1.client.base + f"recordfile/101/videofiledownload?conferenceId={CONF}&fileType=0"
    async with node1.client.http.get(url, headers={"Guid": guid or ""}) as response:
        assert response.status == 200 and await response.read() == hd.read_bytes()
    (row,) = await transfers(node1, 1)  # written just after the last byte, then shipped
    assert row.start.writer.startswith("AgentGateway1@") and row.outcome == "completed"


async def test_silence_sign_out_works_across_nodes(
    nodes: tuple[RunningGateway, RunningGateway],
) -> None:
    node0, node1 = nodes
    guid, _ = await node0.client.sign_in(101)
    node1.clock.advance(120_001)
    assert await node1.gateway.sessions.sign_out_idle() == [101]
    _, body = await node0.client.poll(101, guid)
    assert body["retcode"] == retcodes.NOT_SIGNED_IN.code


async def test_h2_an_admin_sign_out_on_one_node_ends_the_session_on_the_other_at_once(
    nodes: tuple[RunningGateway, RunningGateway],
) -> None:
    """Issue 14, H2: on a shared session store the admin's sign-out is at once on every node,
    though the other node's directory cache still holds the agent's old entry."""
    node0, node1 = nodes
    guid, _ = await node0.client.sign_in(101)
    _, body = await node1.client.poll(101, guid)  # node1 caches 101's directory entry
    assert body["retcode"] == "0"
    assert await node0.gateway.sessions.sign_out_now(101)
    _, body = await node1.client.poll(101, guid)
    assert body["retcode"] == retcodes.NOT_SIGNED_IN.code
    again, body = await node1.client.sign_in(101)  # and signs in again on any node at once
    assert body["retcode"] == "0"
    _, body = await node0.client.poll(101, again)
    assert body["retcode"] == "0"
