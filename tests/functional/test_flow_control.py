"""Flow control: limits hit answer a retcode with Retry-After; released limits serve again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from pathlib import Path

import aiohttp
import pytest

from ccgateway import retcodes
from ccgateway.recordings.catalog import Registration
from ccgateway.stores.base import FileType
from tests.audit_trail import transfers as audit_rows
from tests.conftest import GatewayFactory, RunningGateway
from tests.functional.conftest import CONF, REC0

BIG = 64 * 1024 * 1024
OTHER = "c3f6a0de-5e8b-4a71-9d2c-7b41e0f9a8d3"  # a conference id nobody registered


async def big_recording(gw: RunningGateway, tmp_path: Path, agents: frozenset[int]) -> str:
    path = tmp_path / "big.mp4"
    with path.open("wb") as handle:
        handle.truncate(BIG)
    await gw.gateway.catalog.register(
        Registration(CONF, REC0, agents, {FileType.HD: str(path)}, vdn=1)
    )
    return f"recordfile/{{agent}}/videofiledownload?conferenceId={CONF}&fileType=0"


async def test_agent_request_rate_is_limited_then_refills(make_gateway: GatewayFactory) -> None:
    """The agent's own requests (GUID accepted) spend its rate; nobody else's do (L4)."""
    gw = await make_gateway(REQUEST_RATE_PER_AGENT="2")
    await gw.add_agent(101)
    await gw.add_agent(102)
    guids = {agent: (await gw.client.sign_in(agent))[0] for agent in (101, 102)}
    await asyncio.sleep(0.6)  # the sign-in's token comes back: a full burst of twice the rate
    path = f"recordfile/{{agent}}/videofiledownload?conferenceId={OTHER}&fileType=0"

    async def call(agent: int) -> tuple[aiohttp.ClientResponse, dict[str, str]]:
        response, body = await gw.client.call("GET", path.format(agent=agent), guid=guids[agent])
        return response, body

    answers = [await call(101) for _ in range(5)]
    codes = [body["retcode"] for _, body in answers]
    # a burst of twice the rate passes (each a plain business answer), then 000-007 with 429
    assert codes[:4] == [retcodes.NO_SUCH_CONFERENCE.code] * 4
    limited, body = answers[4]
    assert limited.status == 429 and body["retcode"] == retcodes.RATE_LIMITED.code
    assert body["message"] == retcodes.RATE_LIMITED.message
    assert int(limited.headers["Retry-After"]) >= 1
    # another agent is not affected; and after half a second one more call passes
    other, other_body = await call(102)
    assert other.status == 200 and other_body["retcode"] == retcodes.NO_SUCH_CONFERENCE.code
    await asyncio.sleep(0.55)
    again, again_body = await call(101)
    assert again.status == 200 and again_body["retcode"] == retcodes.NO_SUCH_CONFERENCE.code


async def test_node_request_rate_is_limited(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(REQUEST_RATE="3")
    answers = [await gw.client.call("GET", f"agentevent/{101 + i}") for i in range(8)]
    statuses = [response.status for response, _ in answers]
    assert statuses[:6] == [200] * 6
    response, body = answers[6]
    assert response.status == 503 and body["retcode"] == retcodes.NODE_BUSY.code
    assert "Retry-After" in response.headers


async def test_concurrent_downloads_per_agent_and_per_node(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = await make_gateway(MAX_DOWNLOADS_PER_AGENT="1", MAX_DOWNLOADS="2")
    for agent in (101, 102, 103):
        await gw.add_agent(agent)
    template = await big_recording(gw, tmp_path, frozenset({101, 102, 103}))
    guids = {agent: (await gw.client.sign_in(agent))[0] or "" for agent in (101, 102, 103)}

    def url(agent: int) -> str:
        return gw.client.base + template.format(agent=agent)

    async with aiohttp.ClientSession(read_bufsize=65536) as http:
        first = await http.get(url(101), headers={"Guid": guids[101]})
        assert first.status == 200
        # the same agent again: 000-008, HTTP 429, and HEAD still answers (it takes no slot)
        async with http.get(url(101), headers={"Guid": guids[101]}) as refused:
            assert refused.status == 429 and refused.headers["Retry-After"] == "1"
            assert (await refused.json(content_type=None))["retcode"] == "000-008"
        async with http.head(url(101), headers={"Guid": guids[101]}) as head:
            assert head.status == 200 and head.headers["Content-Length"] == str(BIG)
        second = await http.get(url(102), headers={"Guid": guids[102]})
        assert second.status == 200
        # the node holds MAX_DOWNLOADS=2: a third agent is told the node is busy
        async with http.get(url(103), headers={"Guid": guids[103]}) as busy:
            assert busy.status == 503
            assert (await busy.json(content_type=None))["retcode"] == "000-009"
        # one download ends (read to the end): its slot is free again
        await first.read()
        first.release()
        async with http.get(url(103), headers={"Guid": guids[103]}) as served:
            assert served.status == 200
            assert len(await served.read()) == BIG
        second.close()
    rows = await audit_rows(gw, 5)
    refused_rows = [r for r in rows if r.outcome == "refused"]
    assert sorted(r.retcode for r in refused_rows) == ["000-008", "000-009"]
    assert sorted(r.status for r in refused_rows) == [429, 503]


async def test_a_client_that_stops_reading_is_dropped_and_audited_aborted(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    for sendfile in ("ON", "OFF"):
        gw = await make_gateway(
            CLIENT_STALL_TIMEOUT_S="1", SENDFILE=sendfile, DATA_DIR=str(tmp_path / sendfile)
        )
        await gw.add_agent(101)
        template = await big_recording(gw, tmp_path, frozenset({101}))
        guid, _ = await gw.client.sign_in(101)
        host, port = gw.client.base.split("//")[1].split("/")[0].split(":")
        path = "/agentgateway/resource/" + template.format(agent=101)
        reader, writer = await asyncio.open_connection(host, int(port))
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nGuid: {guid}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.read(1024)  # then read nothing more
        assert head.startswith(b"HTTP/1.1 200")
        (row,) = await audit_rows(gw, 1)  # written once the gateway gave up (within ~2 s)
        assert row.outcome == "aborted" and 0 < row.bytes_sent < BIG
        with pytest.raises(ConnectionResetError):  # reset, short of the file: visibly broken
            while await reader.read(1 << 20):
                pass
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_a_body_that_never_arrives_is_answered_408(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(HEADER_TIMEOUT_S="1")
    host, port = gw.client.base.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"PUT /agentgateway/resource/onlineagent/101 HTTP/1.1\r\nHost: x\r\n"
        b'Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{"pass'
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # after about 1 s
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    writer.close()
    await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["retcode"] == retcodes.BAD_INTERFACE_PARAMETER.code
