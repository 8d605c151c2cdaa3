"""Typed application state: the slots ``app.py`` fills and handlers read."""

from __future__ import annotations

from aiohttp import web

from ccgateway.gateway import Gateway

GATEWAY = web.AppKey("gateway", Gateway)


def gateway(request: web.Request) -> Gateway:
    return request.app[GATEWAY]
