"""JSON envelope responses, with the retcode remembered for the access log."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ccgateway import retcodes
from ccgateway.retcodes import Retcode
from ccgateway.wire.envelope import JSON_CONTENT_TYPE, encode, envelope
from ccgateway.wire.guid import SET_GUID, set_guid_value

RETCODE = web.RequestKey("retcode", str)


def json_body(
    request: web.Request,
    retcode: str,
    body: dict[str, Any],
    *,
    status: int = 200,
    guid: str | None = None,
) -> web.Response:
    request[RETCODE] = retcode
    response = web.Response(body=encode(body), status=status)
    response.headers["Content-Type"] = JSON_CONTENT_TYPE
    response.headers["Cache-Control"] = "no-store"
    if guid is not None:
        response.headers[SET_GUID] = set_guid_value(guid)
    return response


def ok(
    request: web.Request, result: Any = "", *, message: str = "success", guid: str | None = None
) -> web.Response:
    return json_body(request, "0", envelope(retcodes.SUCCESS, result, message=message), guid=guid)


def failure(request: web.Request, retcode: Retcode, *, status: int = 200) -> web.Response:
    return json_body(request, retcode.code, envelope(retcode), status=status)
