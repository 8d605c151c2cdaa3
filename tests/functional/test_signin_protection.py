"""Regression tests of M6 (sign-in floods and password guessing) and L4 (other people's requests
in an agent's name), issue 14, over real HTTP. Each test named m6/l4 failed on the commit before
its fix.

M6: the hashing queue is bounded (SIGNIN_QUEUE_MAX, 503 ``000-009``), sign-ins are counted per
client address whatever the agent id (SIGNIN_RATE_PER_IP / SIGNIN_BURST_PER_IP, 429 ``000-007``),
and a work number, known or not, is locked (``110-016``) after SIGNIN_LOCKOUT_ATTEMPTS failed
sign-ins within SIGNIN_LOCKOUT_WINDOW_S, for SIGNIN_LOCKOUT_S, until then or an unlock.
L4: only requests whose GUID (or password) is accepted spend an agent's request rate. (The last
test, without an id, checks what L4's fix keeps: the agent's own requests are still limited.)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from click.testing import CliRunner
from yarl import URL

from ccgateway import retcodes
from ccgateway.cli import cli
from ccgateway.node.clock import ManualClock
from tests.conftest import PASSWORD, GatewayFactory, RunningGateway
from tests.functional.test_metrics import samples

ADMIN_TOKEN = "admin-token-0123456789"
METRICS_TOKEN = "metrics-token-0123456789"
MINUTE_MS = 60_000
LOCKED = "110-016"  # retcodes.AGENT_LOCKED, spelled out as a user sees it
# This module's own Redis database: the gateway's keys have the default prefix (ccgw:).
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + "/12"


async def sign_in_code(gw: RunningGateway, agent_id: int, password: str) -> str:
    _, body = await gw.client.sign_in(agent_id, password)
    return str(body["retcode"])


async def admin(gw: RunningGateway, method: str, path: str) -> tuple[int, Any]:
    url = URL(gw.client.base).with_path("/ccgateway/admin/v1/" + path)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with gw.client.http.request(method, url, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def lockouts_started(gw: RunningGateway) -> float:
    url = URL(gw.client.base).with_path("/metrics")
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    async with gw.client.http.get(url, headers=headers) as response:
        text = await response.text()
    return samples(text)["ccgateway_signin_lockouts_total"][()]


# -- M6: the hashing queue -------------------------------------------------------------------------


async def test_m6_a_sign_in_flood_is_refused_past_the_hashing_queue(
    make_gateway: GatewayFactory,
) -> None:
    """Sign-ins naming many agents (so no per-agent limit applies) wait for the two hashing
    threads at most SIGNIN_QUEUE_MAX deep; the rest answer 503 000-009 with Retry-After at once,
    so the queue a real sign-in waits behind stays short."""
    gw = await make_gateway(SIGNIN_QUEUE_MAX="4")
    await gw.add_agent(101)

    async def bogus(agent_id: int) -> tuple[int, str, str | None]:
        response, body = await gw.client.call(
            "PUT", f"onlineagent/{agent_id}", json={"password": "guess", "phonenum": "1"}
        )
        return response.status, str(body["retcode"]), response.headers.get("Retry-After")

    answers = await asyncio.gather(*(bogus(300 + i) for i in range(40)))
    busy = [a for a in answers if a[0] == 503]
    assert busy, answers
    assert all(code == retcodes.NODE_BUSY.code and after == "1" for _, code, after in busy)
    others = [a for a in answers if a[0] != 503]
    assert len(others) >= 6  # two hashing and four waiting were taken
    assert all(a[:2] == (200, retcodes.WRONG_PASSWORD.code) for a in others), others
    # once the flood has drained, a real sign-in is served as usual
    assert await sign_in_code(gw, 101, PASSWORD) == retcodes.SUCCESS.code


# -- M6: sign-ins per address ----------------------------------------------------------------------


async def test_m6_sign_ins_per_address_are_limited_whatever_the_agent(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(SIGNIN_RATE_PER_IP="1", SIGNIN_BURST_PER_IP="5")
    await gw.add_agent(101)
    # every sign-in counts, even one refused before its password is checked (no phonenum here:
    # these answer in a millisecond, so no token comes back meanwhile)
    codes = []
    for agent in range(300, 305):
        _, body = await gw.client.call("PUT", f"onlineagent/{agent}", json={"password": "guess"})
        codes.append(body["retcode"])
    assert codes == [retcodes.SIGN_IN_PARAMETER_INVALID.code] * 5
    response, body = await gw.client.call(
        "PUT", "onlineagent/101", json={"password": PASSWORD, "phonenum": "1"}
    )
    assert response.status == 429 and body["retcode"] == retcodes.RATE_LIMITED.code
    assert response.headers["Retry-After"] == "1"
    forced, forced_body = await gw.client.call(
        "PUT", "onlineagent/101/forcelogin", json={"password": PASSWORD, "phonenum": "1"}
    )
    assert forced.status == 429 and forced_body["retcode"] == retcodes.RATE_LIMITED.code
    await asyncio.sleep(1.1)  # one sign-in a second comes back
    assert await sign_in_code(gw, 101, PASSWORD) == retcodes.SUCCESS.code


# -- M6: lockout -----------------------------------------------------------------------------------


async def test_m6_failed_sign_ins_lock_known_and_unknown_work_numbers_alike(
    make_gateway: GatewayFactory,
) -> None:
    """Defaults: 10 failures in 10 minutes lock for 5 minutes, the right password too; an
    unknown work number answers exactly as a known one at every step (no existence oracle)."""
    clock = ManualClock()
    gw = await make_gateway(clock=clock, METRICS_TOKEN=METRICS_TOKEN)
    await gw.add_agent(101)
    known, unknown = [], []
    for _ in range(10):
        known.append(await sign_in_code(gw, 101, "guess"))
        unknown.append(await sign_in_code(gw, 555, "guess"))
    assert known == unknown == [retcodes.WRONG_PASSWORD.code] * 9 + [LOCKED]
    assert await sign_in_code(gw, 101, PASSWORD) == LOCKED
    _, forced = await gw.client.sign_in(101, PASSWORD, force=True)
    assert forced["retcode"] == LOCKED
    assert await sign_in_code(gw, 555, PASSWORD) == LOCKED
    assert await lockouts_started(gw) == 2
    clock.advance(5 * MINUTE_MS - 1)
    assert await sign_in_code(gw, 101, PASSWORD) == LOCKED
    clock.advance(1)  # the lock has ended; the count starts again
    assert await sign_in_code(gw, 101, PASSWORD) == retcodes.SUCCESS.code
    assert await sign_in_code(gw, 555, "guess") == retcodes.WRONG_PASSWORD.code


async def test_m6_failures_count_within_the_window_and_a_success_forgets_them(
    make_gateway: GatewayFactory,
) -> None:
    clock = ManualClock()
    gw = await make_gateway(clock=clock, SIGNIN_LOCKOUT_ATTEMPTS="3", SIGNIN_LOCKOUT_WINDOW_S="60")
    await gw.add_agent(101)
    assert await sign_in_code(gw, 101, "guess") == retcodes.WRONG_PASSWORD.code
    clock.advance(MINUTE_MS)  # out of the window by the time the third comes
    assert await sign_in_code(gw, 101, "guess") == retcodes.WRONG_PASSWORD.code
    assert await sign_in_code(gw, 101, "guess") == retcodes.WRONG_PASSWORD.code
    _, body = await gw.client.sign_in(101, PASSWORD, force=True)
    assert body["retcode"] == retcodes.SUCCESS.code
    assert await sign_in_code(gw, 101, "guess") == retcodes.WRONG_PASSWORD.code
    assert await sign_in_code(gw, 101, "guess") == retcodes.WRONG_PASSWORD.code
    assert await sign_in_code(gw, 101, "guess") == LOCKED


async def test_m6_the_admin_api_lifts_a_lockout(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(ADMIN_TOKEN=ADMIN_TOKEN, SIGNIN_LOCKOUT_ATTEMPTS="2")
    await gw.add_agent(101)
    for _ in range(2):
        await sign_in_code(gw, 101, "guess")
    assert await sign_in_code(gw, 101, PASSWORD) == LOCKED
    status, body = await admin(gw, "POST", "agents/101/unlock")
    assert (status, body["retcode"]) == (200, "0")
    assert body["result"] == {"workNo": 101, "wasLocked": True}
    assert await sign_in_code(gw, 101, PASSWORD) == retcodes.SUCCESS.code
    status, body = await admin(gw, "POST", "agents/101/unlock")
    assert body["result"] == {"workNo": 101, "wasLocked": False}
    for bad in ("100", "1000000", "abc", "0101x"):
        status, body = await admin(gw, "POST", f"agents/{bad}/unlock")
        assert (status, body["retcode"]) == (400, retcodes.ADMIN_BAD_REQUEST.code), bad


async def test_m6_the_cli_cannot_reach_a_memory_lockout_and_says_where_to_go(
    tmp_path: Path,
) -> None:
    runner = CliRunner(env={"CCGW_DATA_DIR": str(tmp_path / "data")})
    result = runner.invoke(cli, ["agents", "unlock", "101"])
    assert result.exit_code == 1
    assert "POST /ccgateway/admin/v1/agents/101/unlock" in result.output


@pytest.fixture
async def lockout_redis() -> AsyncIterator[str]:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.flushdb()
    except (OSError, redis.exceptions.ConnectionError) as exc:
        await client.aclose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} is required under CI: {exc}")
        pytest.skip(f"Redis not reachable: {exc}")
    yield REDIS_URL
    await client.flushdb()
    await client.aclose()


async def test_m6_a_lockout_is_shared_by_the_nodes_and_lifted_by_the_cli_on_redis(
    make_gateway: GatewayFactory, lockout_redis: str, tmp_path: Path
) -> None:
    """Failures counted on two nodes lock the work number on both; ``ccgateway agents unlock``,
    a separate process on the same Redis, lifts it for both."""
    shared = {
        "SESSIONS_URL": lockout_redis,
        "GUID_DIGEST_KEY": "lockout-guid-digest-key-0123456789",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
        "SIGNIN_LOCKOUT_ATTEMPTS": "4",
    }
    node0 = await make_gateway(NODE_NAME="AgentGateway0", **shared)
    node1 = await make_gateway(clock=node0.clock, NODE_NAME="AgentGateway1", **shared)
    await node0.add_agent(101)
    codes = [await sign_in_code((node0, node1)[i % 2], 101, "guess") for i in range(4)]
    assert codes == [retcodes.WRONG_PASSWORD.code] * 3 + [LOCKED]
    for node in (node0, node1):
        assert await sign_in_code(node, 101, PASSWORD) == LOCKED
    env = {f"CCGW_{key}": value for key, value in shared.items()}
    runner = CliRunner(env={**env, "CCGW_DATA_DIR": str(tmp_path / "cli")})
    result = await asyncio.to_thread(runner.invoke, cli, ["agents", "unlock", "101"])
    assert (result.exit_code, result.output) == (0, "agent 101 unlocked\n")
    assert await sign_in_code(node1, 101, PASSWORD) == retcodes.SUCCESS.code
    result = await asyncio.to_thread(runner.invoke, cli, ["agents", "unlock", "101"])
    assert (result.exit_code, result.output) == (0, "agent 101 was not locked\n")


# -- L4: requests in another agent's name ----------------------------------------------------------


async def test_l4_unauthenticated_requests_do_not_spend_an_agents_rate(
    make_gateway: GatewayFactory,
) -> None:
    """Agent 101 and someone else share one address (NAT): requests naming 101 without its GUID
    answer as before, and 101 keeps its whole budget."""
    gw = await make_gateway(REQUEST_RATE_PER_AGENT="1")
    await gw.add_agent(101)
    guid, _ = await gw.client.sign_in(101)
    assert guid is not None
    for _ in range(30):
        response, body = await gw.client.call("DELETE", "onlineagent/101/logout", guid="stolen?")
        assert (response.status, body["retcode"]) == (200, retcodes.NO_RIGHT.code)
        response, body = await gw.client.call("GET", "agentevent/101")
        assert (response.status, body["retcode"]) == (200, retcodes.NO_RIGHT.code)
    response, body = await gw.client.call("PUT", "onlineagent/101/updateGuid", guid=guid)
    assert (response.status, body["retcode"]) == (200, "0")


async def test_the_agents_own_requests_still_spend_its_rate(
    make_gateway: GatewayFactory,
) -> None:
    gw = await make_gateway(REQUEST_RATE_PER_AGENT="1")
    await gw.add_agent(101)
    guid, _ = await gw.client.sign_in(101)
    await asyncio.sleep(1.1)  # the sign-in's token comes back: a full burst of 2
    url = "recordfile/101/videofiledownload?conferenceId=7a008307-34ad-435b-bccd-222be5ac5385"
    answers = [await gw.client.call("GET", url + "&fileType=0", guid=guid) for _ in range(3)]
    codes = [(response.status, body["retcode"]) for response, body in answers]
    assert codes[:2] == [(200, retcodes.NO_SUCH_CONFERENCE.code)] * 2
    assert codes[2] == (429, retcodes.RATE_LIMITED.code)
    assert int(answers[2][0].headers["Retry-After"]) >= 1
