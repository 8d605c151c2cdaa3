"""Typed application state: the slots ``app.py`` fills and handlers read."""

from __future__ import annotations

from aiohttp import web

from ccgateway.gateway import Gateway
from ccgateway.web.metrics import GatewayMetrics

GATEWAY = web.AppKey("gateway", Gateway)
METRICS = web.AppKey("metrics", GatewayMetrics)


def gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


def metrics(request: web.Request) -> GatewayMetrics:
    return request.app[METRICS]
