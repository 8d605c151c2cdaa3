"""``onlineagent/{agentid}``: sign-in, force sign-in, sign-out, force sign-out, updateGuid."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from aiohttp import web

from ccgateway import retcodes
from ccgateway.errors import GatewayError
from ccgateway.sessions.manager import SignIn
from ccgateway.stores.base import AgentRecord, SessionRecord
from ccgateway.web.responses import ok
from ccgateway.web.state import gateway
from ccgateway.wire.fields import FieldReader
from ccgateway.wire.guid import request_guid

AGENT_TYPES = (4, 11)  # 4 PC+phone, 11 PC+phone video
SIGN_IN_STATUSES = (3, 4, 5)  # busy, idle, wrap-up


async def login(request: web.Request, agent_id: int) -> web.StreamResponse:
    return await _sign_in(request, agent_id, force=False)


async def force_login(request: web.Request, agent_id: int) -> web.StreamResponse:
    return await _sign_in(request, agent_id, force=True)


async def logout(request: web.Request, agent_id: int) -> web.StreamResponse:
    guid = request_guid(request.headers)
    await gateway(request).sessions.sign_out(agent_id, guid, client=request.remote or "")
    return ok(request)


async def force_logout(request: web.Request, agent_id: int) -> web.StreamResponse:
    guid = request_guid(request.headers)
    await gateway(request).sessions.sign_out(agent_id, guid, client=request.remote or "")
    return ok(request)


async def update_guid(request: web.Request, agent_id: int) -> web.StreamResponse:
    session = await gateway(request).sessions.replace_guid(agent_id, request_guid(request.headers))
    return ok(request, {"guid": session.guid}, guid=session.guid)


async def _sign_in(request: web.Request, agent_id: int, *, force: bool) -> web.StreamResponse:
    core = gateway(request)
    client = request.remote or ""  # behind TRUSTED_PROXIES, the agent's own (web/forwarded.py)
    core.flow.admit_sign_in(client)  # per address, whatever agent it names
    sign_in = parse_sign_in(await _json_object(request))
    session, agent = await core.sessions.sign_in(agent_id, sign_in, force=force, client=client)
    return ok(
        request,
        _sign_in_result(session, agent, core.settings.server_name),
        message="",
        guid=session.guid,
    )


def parse_sign_in(body: dict[str, Any]) -> SignIn:
    fields = FieldReader(body, retcodes.SIGN_IN_PARAMETER_INVALID)
    password = fields.text("password", max_length=32, required=True)
    phone = fields.text("phonenum", max_length=24, required=True)
    if not phone.strip():
        raise GatewayError(retcodes.SIGN_IN_PARAMETER_INVALID, "phonenum: empty")
    status = fields.integer("status", default=4)
    if status not in SIGN_IN_STATUSES:
        raise GatewayError(retcodes.SIGN_IN_PARAMETER_INVALID, "status")
    agent_type = fields.integer("agenttype", default=4)
    if agent_type not in AGENT_TYPES:
        raise GatewayError(retcodes.WRONG_AGENT_TYPE)
    ip = fields.text("ip", max_length=15, default="127.0.0.1")
    try:
        ipaddress.IPv4Address(ip)
    except ValueError:
        raise GatewayError(retcodes.INVALID_IP) from None
    callback = fields.text("callBackUri", max_length=200)
    token = fields.text("serviceToken", max_length=50)
    if callback and token:
        raise GatewayError(retcodes.SIGN_IN_PARAMETER_INVALID, "push mode is not supported")
    attributes = {
        "agenttype": agent_type,
        "ip": ip,
        "entryIp": fields.text("entryIp", max_length=45),
        "vcPhoneNumber": fields.text("vcPhoneNumber", max_length=24),
        "autoanswer": fields.boolean("autoanswer", default=True),
        "autoenteridle": fields.boolean("autoenteridle", default=True),
        "releasephone": fields.boolean("releasephone", default=True),
        "phonelinkage": fields.boolean("phonelinkage", default=False),
        "checkInWebm": fields.boolean("checkInWebm", default=True),
        "checkInMailm": fields.boolean("checkInMailm", default=False),
        "listenStatus": fields.boolean("listenStatus", default=False),
    }
    return SignIn(password=password, phone_number=phone, status=status, attributes=attributes)


def _sign_in_result(session: SessionRecord, agent: AgentRecord, server_name: str) -> dict[str, Any]:
    flags = "T" + "TF"[not session.attributes.get("checkInWebm", True)]
    flags += "TF"[not session.attributes.get("checkInMailm", False)]
    return {
        "vdnid": agent.vdn,
        "workno": str(agent.work_no),
        "mediatype": flags,
        "loginTime": str(session.signed_in_ms),
        "isForceChange": "false",
        "serverName": server_name,
        "timeRemaining": "",
    }


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise GatewayError(retcodes.BAD_INTERFACE_PARAMETER, "body too large") from None
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise GatewayError(retcodes.BAD_INTERFACE_PARAMETER, "body is not JSON") from None
    if not isinstance(body, dict):
        raise GatewayError(retcodes.BAD_INTERFACE_PARAMETER, "body is not a JSON object")
    return body
