"""``GET /metrics``: the gateway's Prometheus metrics, for a scraper, not for agents.

Off (HTTP 404 with ``000-002``, like any unknown URL) while ``METRICS_TOKEN`` is empty; otherwise
it needs ``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time), else HTTP 401 with
``000-003``, as the admin API answers a bad token.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ccgateway import retcodes
from ccgateway.errors import GatewayError
from ccgateway.web.state import INTERFACE, gateway, metrics

PATH = "/metrics"


async def metrics_page(request: web.Request) -> web.StreamResponse:
    core = gateway(request)
    token = core.settings.metrics_token
    if not token:
        raise GatewayError(retcodes.BAD_INTERFACE_PARAMETER, "metrics off", http_status=404)
    request[INTERFACE] = "metrics"
    given = request.headers.get("Authorization", "")
    expected = f"Bearer {token}"
    if not hmac.compare_digest(given.encode(errors="surrogatepass"), expected.encode()):
        raise GatewayError(retcodes.NO_RIGHT, "metrics token", http_status=401)
    if request.method not in ("GET", "HEAD"):
        raise GatewayError(
            retcodes.BAD_INTERFACE_PARAMETER,
            "method not allowed",
            http_status=405,
            headers={"Allow": "GET, HEAD"},
        )
    body = metrics(request).exposition(await core.sessions.signed_in_count())
    return web.Response(
        body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}
    )
