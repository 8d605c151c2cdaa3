"""Fixtures shared by every test: a clean environment and a gateway on a real loopback socket."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from ccgateway.app import RUNNER_OPTIONS, create_app
from ccgateway.audit.recorder import Recorder
from ccgateway.config import load_settings
from ccgateway.gateway import Gateway, open_gateway
from ccgateway.node.clock import ManualClock
from ccgateway.stores.base import Role

PASSWORD = "s3cret-pw"


@pytest.fixture(autouse=True)
def clean_environ() -> Iterator[None]:
    """No CCGW_* or proxy variable of the developer's shell leaks into a test."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("CCGW_") or name.lower().endswith("_proxy"):
            del os.environ[name]
    yield
    os.environ.clear()
    os.environ.update(saved)


class AgentClient:
    """Talks to a running gateway the way an agent desktop does."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def call(
        self,
        method: str,
        path: str,
        *,
        guid: str | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[aiohttp.ClientResponse, Any]:
        sent = dict(headers or {})
        if guid is not None:
            sent["Guid"] = guid
        async with self.http.request(
            method, self.base + path, json=json, data=data, headers=sent
        ) as response:
            raw = await response.read()
            body = await response.json(content_type=None) if raw else None
            return response, body

    async def sign_in(
        self, agent_id: int, password: str = PASSWORD, *, force: bool = False, **fields: Any
    ) -> tuple[str | None, Any]:
        body = {"password": password, "phonenum": f"7{agent_id}", **fields}
        path = f"onlineagent/{agent_id}" + ("/forcelogin" if force else "")
        response, payload = await self.call("PUT", path, json=body)
        return guid_of(response), payload

    async def poll(self, agent_id: int, guid: str | None) -> tuple[aiohttp.ClientResponse, Any]:
        return await self.call("GET", f"agentevent/{agent_id}", guid=guid)


def guid_of(response: aiohttp.ClientResponse) -> str | None:
    value = response.headers.get("Set-GUID")
    if value is None:
        return None
    assert value.count("=") == 1 and value.startswith("JSESSIONID=")
    return value.split("=", 1)[1]


class RunningGateway:
    def __init__(self, gateway: Gateway, clock: ManualClock, client: AgentClient) -> None:
        self.gateway = gateway
        self.clock = clock
        self.client = client

    async def add_agent(self, work_no: int, **fields: Any) -> None:
        await self.gateway.agents.add(work_no, fields.pop("password", PASSWORD), **fields)


GatewayFactory = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """Start gateways (on 127.0.0.1, real HTTP) with settings overrides and a manual clock (and
    the audit ``recorder`` given)."""
    async with AsyncExitStack() as stack:

        async def make(
            clock: ManualClock | None = None, *, recorder: Recorder | None = None, **overrides: str
        ) -> RunningGateway:
            values = {
                "DATA_DIR": str(tmp_path / "data"),
                "AGENT_POLL_WAIT_TIMES": "2",
                "AGENT_POLL_WAIT_INTERVAL": "50",
                # tests fire requests far faster than agents do: rates off unless a test sets them
                "REQUEST_RATE_PER_AGENT": "100000",
                "REQUEST_RATE": "1000000",
                **overrides,
            }
            settings = load_settings(environ={}, **values)
            clock = clock or ManualClock()
            gateway = await stack.enter_async_context(
                open_gateway(settings, clock, node=True, recorder=recorder)
            )
            server = TestServer(create_app(gateway), host="127.0.0.1", **RUNNER_OPTIONS)
            await server.start_server()
            stack.push_async_callback(server.close)
            http = await stack.enter_async_context(aiohttp.ClientSession())
            base = str(server.make_url("/agentgateway/resource/"))
            return RunningGateway(gateway, clock, AgentClient(http, base))

        yield make


@pytest.fixture
async def gw(make_gateway: GatewayFactory) -> RunningGateway:
    """A default gateway (AUTHMODE=2) with agents 101, 102 (VDN 1) and inspector 201."""
    running = await make_gateway()
    await running.add_agent(101, name="Alice")
    await running.add_agent(102, name="Bob")
    await running.add_agent(201, name="Ines", role=Role.INSPECTOR)
    return running
