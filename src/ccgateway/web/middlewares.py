"""What every request passes through, in order (``CHAIN``), and two of those steps: one
access-log line per request, and GatewayError → envelope.

The access line carries the interface's documented log name, the agent id, the retcode, the HTTP
status and the duration. It never carries a header, a body, a GUID or a password.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ccgateway import retcodes
from ccgateway.errors import GatewayError
from ccgateway.web.admin import admin_auth
from ccgateway.web.connections import connection_middleware
from ccgateway.web.flowcontrol import flow_control_middleware
from ccgateway.web.forwarded import forwarded_middleware
from ccgateway.web.responses import RETCODE, failure
from ccgateway.web.state import AGENT_ID, CLIENT_GONE, INTERFACE, metrics

access_log = logging.getLogger("ccgateway.access")
log = logging.getLogger("ccgateway.web")


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 0
    try:
        response = await handler(request)
        status = 0 if request.get(CLIENT_GONE) else response.status
        return response
    finally:
        metrics(request).count_request(
            request.get(INTERFACE, "-"), request.get(RETCODE, "-"), str(status or "aborted")
        )
        access_log.info(
            "interface=%s agent=%s retcode=%s status=%s method=%s client=%s duration_ms=%.1f",
            request.get(INTERFACE, "-"),
            request.get(AGENT_ID, "-"),
            request.get(RETCODE, "-"),
            status or "aborted",
            request.method,
            request.remote,
            (time.perf_counter() - started) * 1000,
        )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        response = failure(request, exc.retcode, status=exc.http_status)
        response.headers.update(exc.headers)
        if exc.headers.get("Connection") == "close":
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = failure(request, retcodes.BAD_INTERFACE_PARAMETER, status=exc.status)
        if "Allow" in exc.headers:  # aiohttp's own 405 (admin routes)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except ConnectionError:
        if request.writer.output_size == 0:
            log.exception("unexpected error in %s", request.get(INTERFACE, request.method))
            return failure(request, retcodes.UNKNOWN_ERROR, status=500)
        # The answer had begun when the connection broke: the client went away mid-download,
        # as when its request is cancelled. No fault of ours, and nothing more can reach it.
        request[CLIENT_GONE] = True
        return web.Response(status=500)
    except Exception:
        log.exception("unexpected error in %s", request.get(INTERFACE, request.method))
        if request.writer.output_size > 0 and request.transport is not None:
            # An answer has begun: a second one would land inside its body. Cut it instead.
            request.transport.abort()
            request[CLIENT_GONE] = True
            return web.Response(status=500)
        return failure(request, retcodes.UNKNOWN_ERROR, status=500)


# What every request passes through, outermost first; one line each on why it is there.
CHAIN: tuple[Middleware, ...] = (
    # Tells the connection guard a request head arrived (slowloris deadline, per-IP cap).
    connection_middleware,
    # Behind TRUSTED_PROXIES, request.remote becomes the agent's address for everything below.
    forwarded_middleware,
    # One access-log line and one metrics count per request, whatever answered it.
    access_log_middleware,
    # GatewayError (and anything unexpected) becomes the JSON envelope, never a traceback.
    error_middleware,
    # The node's request rate, draining at shutdown, and the deadline for request bodies.
    flow_control_middleware,
    # The admin API's bearer token, before any admin handler runs.
    admin_auth,
)
