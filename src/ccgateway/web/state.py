"""Typed state: the slots ``app.py`` fills on the application, and those a request carries."""

from __future__ import annotations

from aiohttp import web

from ccgateway.gateway import Gateway
from ccgateway.web.metrics import GatewayMetrics

GATEWAY = web.AppKey("gateway", Gateway)
METRICS = web.AppKey("metrics", GatewayMetrics)

INTERFACE = web.RequestKey("interface", str)  # the interface's documented log name
AGENT_ID = web.RequestKey("agent_id", int)  # the agent id of the path, once parsed
CLIENT_GONE = web.RequestKey("client_gone", bool)  # the connection broke mid-answer


def gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY]


def metrics(request: web.Request) -> GatewayMetrics:
    return request.app[METRICS]
