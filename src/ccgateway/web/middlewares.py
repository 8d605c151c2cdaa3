"""Cross-cutting request handling: GatewayError → envelope, and one access-log line per request.

The access line carries the interface's documented log name, the agent id, the retcode, the HTTP
status and the duration. It never carries a header, a body, a GUID or a password.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from ccgateway import retcodes
from ccgateway.errors import GatewayError
from ccgateway.web.responses import RETCODE, failure
from ccgateway.web.state import metrics

INTERFACE = web.RequestKey("interface", str)
AGENT_ID = web.RequestKey("agent_id", int)
CLIENT_GONE = web.RequestKey("client_gone", bool)

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
        return failure(request, retcodes.UNKNOWN_ERROR, status=500)
