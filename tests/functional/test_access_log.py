"""One access-log line per request, with the documented method names; never a secret."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import PASSWORD, RunningGateway, guid_of


async def test_log_lines_name_the_interface_and_never_carry_secrets(
    gw: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    guid, _ = await gw.client.sign_in(101)
    assert guid is not None
    await gw.client.poll(101, guid)
    gw.clock.advance(60_000)
    response, _ = await gw.client.poll(101, guid)
    rotated = response.headers["Set-GUID"]
    current = guid_of(response)  # only the current GUID may call updateGuid (issue 14, L9)
    _, body = await gw.client.call("PUT", "onlineagent/101/updateGuid", guid=current)
    updated = body["result"]["guid"]
    await gw.client.call(
        "PUT", "onlineagent/101/forcelogin", json={"password": PASSWORD, "phonenum": "7101"}
    )
    await gw.client.sign_in(102, "wrong-password-xyz")
    await gw.client.call("DELETE", "onlineagent/101/logout", guid=updated)
    await gw.client.call("DELETE", "onlineagent/101/forcelogout", guid=updated)

    text = caplog.text
    for secret in (guid, rotated, updated, guid.split(".")[0], PASSWORD, "wrong-password-xyz"):
        assert secret not in text
    access = [r.getMessage() for r in caplog.records if r.name == "ccgateway.access"]
    assert len(access) == 8
    assert access[0].startswith("interface=login agent=101 retcode=0 status=200")
    names = [line.split()[0] for line in access]
    assert names == [
        "interface=login",
        "interface=getAgentEvent",
        "interface=getAgentEvent",
        "interface=updateGuid",
        "interface=forceLogin",
        "interface=login",
        "interface=logout",
        "interface=forceLogout",
    ]
    assert "retcode=100-004" in access[5]
    assert all("duration_ms=" in line for line in access)
