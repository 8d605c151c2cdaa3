"""Flow control at the door of the agent API: the node's request rate, a shutting-down node's
refusal, and a deadline for request bodies. The per-agent rate is applied in ``routes.dispatch``,
once the agent id is known; download slots in ``transfer.send_download``.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler

from ccgateway import retcodes
from ccgateway.errors import GatewayError
from ccgateway.web.state import gateway

AGENT_API = "/agentgateway/resource/"


@web.middleware
async def flow_control_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(AGENT_API):
        return await handler(request)
    core = gateway(request)
    core.flow.admit_request()
    if request.body_exists:
        await _read_body(request, core.settings.header_timeout_s)
    return await handler(request)


async def _read_body(request: web.Request, timeout_s: float) -> None:
    """Read the body now (aiohttp keeps it for the handler), within HEADER_TIMEOUT_S."""
    try:
        async with asyncio.timeout(timeout_s):
            await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise GatewayError(retcodes.BAD_INTERFACE_PARAMETER, "body too large") from None
    except TimeoutError:
        raise GatewayError(
            retcodes.BAD_INTERFACE_PARAMETER,
            "request body not received in time",
            http_status=408,
            headers={"Connection": "close"},
        ) from None
