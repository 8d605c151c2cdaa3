"""Behind a trusted reverse proxy the audit and the rate limits see the agent's address."""

from __future__ import annotations

from pathlib import Path

from ccgateway import retcodes
from tests.audit_trail import transfers as audit_rows
from tests.conftest import GatewayFactory
from tests.functional.conftest import CONF, REC0, Recordings, add_download_agents, register_demo


async def download(rec: Recordings, forwarded: str) -> int:
    guid = await rec.guid(101)
    url = rec.gw.client.base + rec.url(101, conferenceId=CONF, fileType="2", recordId=REC0)
    headers = {"Guid": guid, "X-Forwarded-For": forwarded}
    async with rec.gw.client.http.get(url, headers=headers) as response:
        await response.read()
        return response.status


async def recordings(make_gateway: GatewayFactory, tmp_path: Path, **settings: str) -> Recordings:
    gw = await make_gateway(**settings)
    await add_download_agents(gw)
    return Recordings(gw, await register_demo(gw, tmp_path / "media"))


async def test_without_trusted_proxies_the_header_is_ignored(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    rec = await recordings(make_gateway, tmp_path)
    assert await download(rec, "203.0.113.7") == 200
    (row,) = await audit_rows(rec.gw, 1)
    assert row.client == "127.0.0.1"


async def test_a_trusted_proxy_names_the_client_in_the_audit(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    rec = await recordings(make_gateway, tmp_path, TRUSTED_PROXIES="127.0.0.1")
    # the client wrote its own header; nginx appended the address it saw
    assert await download(rec, "198.51.100.1, 203.0.113.7") == 200
    (row,) = await audit_rows(rec.gw, 1)
    assert row.client == "203.0.113.7"


async def test_sign_in_limits_count_per_forwarded_client(make_gateway: GatewayFactory) -> None:
    """M6: behind TRUSTED_PROXIES the agent's own address has the sign-in budget, not nginx's."""
    gw = await make_gateway(
        SIGNIN_RATE_PER_IP="1", SIGNIN_BURST_PER_IP="5", TRUSTED_PROXIES="127.0.0.0/8"
    )

    async def sign_in(agent: int, client: str) -> str:
        headers = {"X-Forwarded-For": client}
        body = {"password": "guess"}  # no phonenum: refused at once, but counted
        path = f"onlineagent/{agent}"
        _, answer = await gw.client.call("PUT", path, json=body, headers=headers)
        return str(answer["retcode"])

    codes = [await sign_in(301 + i, "203.0.113.7") for i in range(6)]
    assert codes[:5] == [retcodes.SIGN_IN_PARAMETER_INVALID.code] * 5
    assert codes[5] == retcodes.RATE_LIMITED.code
    # another address behind the same proxy has its own budget
    assert await sign_in(310, "203.0.113.8") == retcodes.SIGN_IN_PARAMETER_INVALID.code
