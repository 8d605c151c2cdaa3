"""The aiohttp application: middlewares, routes, and the background sweeper, around a Gateway."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
from collections.abc import AsyncIterator
from typing import TypedDict

from aiohttp import web

from ccgateway.gateway import Gateway
from ccgateway.recordings.announcements import ANNOUNCE_EVERY_S
from ccgateway.web import logfilter
from ccgateway.web.connections import CONNECTIONS, Connections
from ccgateway.web.metrics import GatewayMetrics
from ccgateway.web.middlewares import CHAIN
from ccgateway.web.routes import add_routes
from ccgateway.web.state import GATEWAY, METRICS

MAX_BODY_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024  # a request line, and each header field


# How every gateway runs its app: a handler whose client went away is cancelled, so an abandoned
# long poll takes no event and an abandoned download stops at once.
class RunnerOptions(TypedDict):
    access_log: None
    shutdown_timeout: float
    handler_cancellation: bool


RUNNER_OPTIONS: RunnerOptions = {
    "access_log": None,
    "shutdown_timeout": 5.0,
    "handler_cancellation": True,
}
SWEEP_EVERY_S = 5.0

BACKGROUND = "ccgateway-background-"  # the names of the node's own background tasks
log = logging.getLogger("ccgateway")


def release_freed_memory() -> None:
    """Make glibc give big freed blocks back to the system (Argon2's 19 MiB per hash).

    Without a fixed mmap threshold glibc raises it after the first big free, and every hashing
    thread then keeps ~19 MiB for good. 4 MiB keeps the 1 MiB transfer chunks on the heap, where
    they are recycled: below 1 MiB each chunk would be a fresh mmap, faulted in page by page.
    A no-op where glibc is not the C library.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 4 * 1024 * 1024)
    except (OSError, AttributeError):
        pass


_M_MMAP_THRESHOLD = -3


def create_app(gateway: Gateway) -> web.Application:
    settings = gateway.settings
    logfilter.install()
    app = web.Application(
        middlewares=CHAIN,
        client_max_size=MAX_BODY_BYTES,
        handler_args={
            "max_field_size": MAX_HEADER_BYTES,
            "max_line_size": MAX_HEADER_BYTES,
            "keepalive_timeout": settings.keepalive_timeout_s,
        },
    )
    app[GATEWAY] = gateway
    app[METRICS] = GatewayMetrics()
    connections = Connections(settings.max_connections_per_ip, settings.header_timeout_s)
    app[CONNECTIONS] = connections
    app[METRICS].watch_connections(connections.counts)
    app[METRICS].watch_lockouts(lambda: gateway.lockout.started)
    app[METRICS].watch_audit(gateway.auditor.stats)
    app.on_shutdown.append(_stop_taking_requests)
    add_routes(app)
    app.cleanup_ctx.append(_idle_sweeper)
    app.cleanup_ctx.append(_announcer)
    return app


async def _stop_taking_requests(app: web.Application) -> None:
    """Shutting down: new requests answer 000-009 (503, Connection: close), waiting event polls
    answer empty at once, downloads in progress go on for up to SHUTDOWN_TIMEOUT_S. Sessions are
    left as they are, so with shared sessions (Redis) agents carry on on another node."""
    core = app[GATEWAY]
    core.flow.draining = True
    core.sessions.wake_polls()


async def _idle_sweeper(app: web.Application) -> AsyncIterator[None]:
    """Sign out agents that stopped polling; authentication also checks this on every request."""
    gateway = app[GATEWAY]

    async def sweep_forever() -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            try:
                gone = await gateway.sessions.sign_out_idle()
            except Exception:
                log.exception("idle sweep failed")
                continue
            for agent_id in gone:
                log.info(
                    "agent %s signed out: no event poll for %s ms",
                    agent_id,
                    gateway.settings.agent_idle_timeout_ms,
                )

    task = asyncio.create_task(sweep_forever(), name=f"{BACKGROUND}sweeper")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _announcer(app: web.Application) -> AsyncIterator[None]:
    """Announce recordings registered elsewhere (the CLI, another node) to signed-in agents."""
    gateway = app[GATEWAY]

    async def announce_forever() -> None:
        while True:
            await asyncio.sleep(ANNOUNCE_EVERY_S)
            try:
                await gateway.catalog.announce_pending(gateway.settings.video_events)
                await gateway.files.announce_pending(gateway.settings.video_events)
            except Exception:
                log.exception("announcing new recordings failed")

    task = asyncio.create_task(announce_forever(), name=f"{BACKGROUND}announcer")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
