"""``/ccgateway/admin/v1``: our admin API for the recording side (register, list, remove, audit)
and for agents' sign-in (unlock).

Authenticated by ``Authorization: Bearer <ADMIN_TOKEN>`` (compared in constant time), never by an
agent GUID. With ``ADMIN_TOKEN`` empty the whole API answers 404. Answers use the same envelope as
the agent interfaces, with HTTP statuses: 401 bad token, 400 bad request, 404 nothing there.
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

from aiohttp import web

from ccgateway import retcodes
from ccgateway.agents.directory import AgentError, is_work_no
from ccgateway.audit.shapes import KINDS, OUTCOMES, event_json, line_json
from ccgateway.errors import GatewayError
from ccgateway.recordings.catalog import CatalogError, Registration
from ccgateway.recordings.shapes import conference_json, file_recording_json
from ccgateway.sources.base import SourceError
from ccgateway.stores.base import AuditQuery, FileType
from ccgateway.web.responses import ok
from ccgateway.web.state import INTERFACE, gateway

PREFIX = "/ccgateway/admin/v1"
MAX_VDN = 2**31 - 1
MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_AUDIT_LIMIT = 10_000
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only: int() also takes "1_0", " 1" and "٤"


@web.middleware
async def admin_auth(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.path.startswith(PREFIX + "/") and request.path != PREFIX:
        response: web.StreamResponse = await handler(request)
        return response
    token = gateway(request).settings.admin_token
    if not token:
        raise GatewayError(retcodes.BAD_INTERFACE_PARAMETER, "admin API off", http_status=404)
    given = request.headers.get("Authorization", "")  # undecodable bytes arrive as surrogates
    if not hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), f"Bearer {token}".encode()
    ):
        raise GatewayError(retcodes.NO_RIGHT, "admin token", http_status=401)
    response = await handler(request)
    return response


async def register_recording(request: web.Request) -> web.StreamResponse:
    request[INTERFACE] = "adminRegisterRecording"
    core = gateway(request)
    registration = parse_registration(await _body(request))
    try:
        recording = await core.catalog.register(registration, client=request.remote or "")
    except CatalogError as exc:
        raise GatewayError(retcodes.ADMIN_BAD_REQUEST, str(exc), http_status=400) from None
    except SourceError as exc:
        raise GatewayError(retcodes.ADMIN_SOURCE_FAILED, str(exc), http_status=400) from None
    await core.catalog.announce_pending(core.settings.video_events)
    conference = await core.catalog.get_conference(recording.conference_id)
    if conference is None:  # removed between registration and this read
        raise GatewayError(retcodes.ADMIN_NOT_FOUND, http_status=404)
    return ok(request, conference_json(conference))


async def register_file_recording(request: web.Request) -> web.StreamResponse:
    request[INTERFACE] = "adminRegisterFileRecording"
    core = gateway(request)
    body = await _body(request)
    texts = {name: body.get(name, "") for name in ("recordId", "fileName", "callId")}
    if not all(isinstance(value, str) for value in texts.values()):
        raise _bad_request("recordId, fileName and callId are strings")
    location = _number_text(body.get("locationId", "65535"), "locationId")
    media = _number_text(body.get("fileMediaType", 2), "fileMediaType")
    try:
        recording = await core.files.register(
            texts["recordId"],
            texts["fileName"],
            call_id=texts["callId"],
            location_id=location,
            media=int(media),
            participants=_participants(body.get("participants", []), required=False),
            client=request.remote or "",
        )
    except ValueError as exc:
        raise GatewayError(retcodes.ADMIN_BAD_REQUEST, str(exc), http_status=400) from None
    await core.files.announce_pending(core.settings.video_events)
    return ok(request, file_recording_json(recording))


async def list_conferences(request: web.Request) -> web.StreamResponse:
    request[INTERFACE] = "adminListConferences"
    conferences = await gateway(request).catalog.list_conferences()
    return ok(request, [conference_json(c) for c in conferences])


async def show_conference(request: web.Request) -> web.StreamResponse:
    request[INTERFACE] = "adminShowConference"
    conference = await gateway(request).catalog.get_conference(request.match_info["conference_id"])
    if conference is None:
        raise GatewayError(retcodes.ADMIN_NOT_FOUND, http_status=404)
    return ok(request, conference_json(conference))


async def remove_conference(request: web.Request) -> web.StreamResponse:
    request[INTERFACE] = "adminRemoveConference"
    conference_id = request.match_info["conference_id"]
    if not await gateway(request).catalog.remove_conference(
        conference_id, client=request.remote or ""
    ):
        raise GatewayError(retcodes.ADMIN_NOT_FOUND, http_status=404)
    return ok(request)


async def remove_recording(request: web.Request) -> web.StreamResponse:
    request[INTERFACE] = "adminRemoveRecording"
    record_id = request.match_info["record_id"]
    if not await gateway(request).catalog.remove_recording(record_id, client=request.remote or ""):
        raise GatewayError(retcodes.ADMIN_NOT_FOUND, http_status=404)
    return ok(request)


async def sign_agent_out(request: web.Request) -> web.StreamResponse:
    """Sign the agent out now, on every node (``SessionManager.sign_out_now``)."""
    request[INTERFACE] = "adminSignAgentOut"
    work_no = _query_int(request.match_info["work_no"], "work_no", 0, 999_999) or 0
    try:
        ended = await gateway(request).sessions.sign_out_now(work_no, client=request.remote or "")
    except AgentError:
        raise GatewayError(retcodes.ADMIN_NOT_FOUND, http_status=404) from None
    return ok(request, {"workNo": work_no, "sessionEnded": ended})


async def query_audit(request: web.Request) -> web.StreamResponse:
    """The trail: one line per transfer (start joined to end) and per other event, or the raw
    events with ``events=1``; newest first."""
    request[INTERFACE] = "adminAudit"
    query = request.query
    kind, outcome = query.get("kind"), query.get("outcome")
    if kind is not None and kind not in KINDS:
        raise _bad_request("kind: one of " + ", ".join(KINDS))
    if outcome is not None and outcome not in OUTCOMES:
        raise _bad_request("outcome: one of " + ", ".join(OUTCOMES))
    events = query.get("events", "0")
    if events not in ("0", "1"):
        raise _bad_request("events: 0 or 1")
    limit = _query_int(query.get("limit"), "limit", 1, 2**63 - 1)
    audit_query = AuditQuery(
        agent_id=_query_int(query.get("agent"), "agent", 0, 999_999),
        conference_id=query.get("conference"),
        kind=kind,
        outcome=outcome,
        since_ms=_query_int(query.get("since"), "since", 0, MAX_TIME_MS),
        limit=min(limit or 1000, MAX_AUDIT_LIMIT),
    )
    reader = gateway(request).audit_reader
    if events == "1":
        return ok(request, [event_json(body) for body in await reader.events(audit_query)])
    return ok(request, [line_json(line) for line in await reader.lines(audit_query)])


async def unlock_agent(request: web.Request) -> web.StreamResponse:
    """Lift a work number's sign-in lockout now (known or not: lockouts do not tell)."""
    request[INTERFACE] = "adminUnlockAgent"
    text = request.match_info["work_no"]
    if not _DIGITS.fullmatch(text) or not is_work_no(int(text)):
        raise _bad_request("work number: 101-999999")
    work_no = int(text)
    was_locked = await gateway(request).sessions.unlock(work_no, client=request.remote or "")
    return ok(request, {"workNo": work_no, "wasLocked": was_locked})


def _bad_request(why: str) -> GatewayError:
    return GatewayError(retcodes.ADMIN_BAD_REQUEST, why, http_status=400)


def _query_int(value: str | None, name: str, low: int, high: int) -> int | None:
    """A query parameter of ASCII digits within [low, high]; None when absent."""
    if value is None:
        return None
    if not _DIGITS.fullmatch(value) or not low <= int(value) <= high:
        raise _bad_request(f"{name}: an integer from {low} to {high}")
    return int(value)


def _number_text(value: Any, name: str) -> str:
    """A JSON integer or a string of ASCII digits, as the digits (locationId, fileMediaType)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**19:
        return str(value)
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return value
    raise _bad_request(f"{name}: digits")


def _participants(members: Any, *, required: bool) -> frozenset[int]:
    """A list of work numbers (JSON integers or digit strings), 101-999999."""
    if not isinstance(members, list) or (required and not members):
        raise _bad_request("participants: a list of work numbers")
    numbers = set()
    for member in members:
        text = _number_text(member, "participants") if not isinstance(member, bool) else ""
        if not text or not is_work_no(int(text)):
            raise _bad_request("participants: work numbers 101-999999")
        numbers.add(int(text))
    return frozenset(numbers)


def parse_registration(body: dict[str, Any]) -> Registration:
    files = body.get("files")
    if not isinstance(files, dict) or not files:
        raise _bad_request('files: an object like {"hd": "/path.mp4"}')
    by_type: dict[FileType, str] = {}
    for name, location in files.items():
        if name.upper() not in FileType.__members__ or not isinstance(location, str):
            raise _bad_request("files: keys hd, sd, aux with string locations")
        if not location.isprintable():  # NUL, control characters, lone surrogates
            raise _bad_request("files: a location of printable characters")
        by_type[FileType[name.upper()]] = location
    return Registration(
        conference_id=str(body.get("conferenceId", "")),
        record_id=str(body.get("recordId", "")),
        participants=_participants(body.get("participants"), required=False),
        files=by_type,
        vdn=None if body.get("vdn") is None else _bounded_int(body["vdn"], "vdn", 1, MAX_VDN),
        call_id=str(body.get("callId", "")),
        started_ms=_optional_time(body.get("startTime"), "startTime"),
        ended_ms=_optional_time(body.get("endTime"), "endTime"),
        location_id=str(body.get("locationId", "255")),
        caller=str(body.get("caller", "")),
        called=str(body.get("called", "")),
    )


def _bounded_int(value: Any, name: str, low: int, high: int) -> int:
    """A JSON integer or a string of ASCII digits within [low, high] (the store's columns)."""
    text = _number_text(value, name) if not isinstance(value, bool) else ""
    if not text or not low <= int(text) <= high:
        raise _bad_request(f"{name}: an integer from {low} to {high}")
    return int(text)


def _optional_time(value: Any, name: str) -> int | None:
    return None if value in (None, "") else _bounded_int(value, name, 0, MAX_TIME_MS)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except (web.HTTPRequestEntityTooLarge, ValueError, UnicodeDecodeError, RecursionError):
        raise GatewayError(retcodes.ADMIN_BAD_REQUEST, "body", http_status=400) from None
    if not isinstance(body, dict):
        raise GatewayError(retcodes.ADMIN_BAD_REQUEST, "body", http_status=400)
    return body
