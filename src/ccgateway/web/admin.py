"""``/ccgateway/admin/v1``: our admin API for the recording side (register, list, remove, audit).

Authenticated by ``Authorization: Bearer <ADMIN_TOKEN>`` (compared in constant time), never by an
agent GUID. With ``ADMIN_TOKEN`` empty the whole API answers 404. Answers use the same envelope as
the agent interfaces, with HTTP statuses: 401 bad token, 400 bad request, 404 nothing there.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from aiohttp import web

from ccgateway import retcodes
from ccgateway.catalog import CatalogError, Registration
from ccgateway.errors import GatewayError
from ccgateway.sources.base import SourceError
from ccgateway.stores.base import AuditRecord, ConferenceRecord, FileType
from ccgateway.web.middlewares import INTERFACE
from ccgateway.web.responses import ok
from ccgateway.web.state import gateway

PREFIX = "/ccgateway/admin/v1"


@web.middleware
async def admin_auth(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.path.startswith(PREFIX + "/") and request.path != PREFIX:
        response: web.StreamResponse = await handler(request)
        return response
    token = gateway(request).settings.admin_token
    if not token:
        raise GatewayError(retcodes.BAD_INTERFACE_PARAMETER, "admin API off", http_status=404)
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise GatewayError(retcodes.NO_RIGHT, "admin token", http_status=401)
    response = await handler(request)
    return response


async def register_recording(request: web.Request) -> web.StreamResponse:
    request[INTERFACE] = "adminRegisterRecording"
    core = gateway(request)
    registration = parse_registration(await _body(request))
    try:
        recording = await core.catalog.register(registration)
    except CatalogError as exc:
        raise GatewayError(retcodes.ADMIN_BAD_REQUEST, str(exc), http_status=400) from None
    except SourceError as exc:
        raise GatewayError(retcodes.ADMIN_SOURCE_FAILED, str(exc), http_status=400) from None
    await core.catalog.announce_pending(core.settings.video_events)
    conference = await core.catalog.store.get_conference(recording.conference_id)
    if conference is None:  # removed between registration and this read
        raise GatewayError(retcodes.ADMIN_NOT_FOUND, http_status=404)
    return ok(request, conference_json(conference))


async def register_file_recording(request: web.Request) -> web.StreamResponse:
    request[INTERFACE] = "adminRegisterFileRecording"
    core = gateway(request)
    body = await _body(request)
    members = body.get("participants", [])
    try:
        recording = await core.files.register(
            str(body.get("recordId", "")),
            str(body.get("fileName", "")),
            call_id=str(body.get("callId", "")),
            location_id=str(body.get("locationId", "65535")),
            media=int(body.get("fileMediaType", 2)),
            participants=frozenset(int(m) for m in members),
        )
    except (TypeError, ValueError) as exc:
        raise GatewayError(retcodes.ADMIN_BAD_REQUEST, str(exc), http_status=400) from None
    await core.files.announce_pending(core.settings.video_events)
    return ok(
        request,
        {
            "recordId": recording.record_id,
            "fileName": recording.file_name,
            "callId": recording.call_id,
            "locationId": recording.location_id,
            "fileMediaType": recording.media,
            "participants": sorted(recording.participants),
        },
    )


async def list_conferences(request: web.Request) -> web.StreamResponse:
    request[INTERFACE] = "adminListConferences"
    conferences = await gateway(request).catalog.store.list_conferences()
    return ok(request, [conference_json(c) for c in conferences])


async def show_conference(request: web.Request) -> web.StreamResponse:
    request[INTERFACE] = "adminShowConference"
    conference = await gateway(request).catalog.store.get_conference(
        request.match_info["conference_id"]
    )
    if conference is None:
        raise GatewayError(retcodes.ADMIN_NOT_FOUND, http_status=404)
    return ok(request, conference_json(conference))


async def remove_conference(request: web.Request) -> web.StreamResponse:
    request[INTERFACE] = "adminRemoveConference"
    store = gateway(request).catalog.store
    if not await store.remove_conference(request.match_info["conference_id"]):
        raise GatewayError(retcodes.ADMIN_NOT_FOUND, http_status=404)
    return ok(request)


async def remove_recording(request: web.Request) -> web.StreamResponse:
    request[INTERFACE] = "adminRemoveRecording"
    store = gateway(request).catalog.store
    if not await store.remove_recording(request.match_info["record_id"]):
        raise GatewayError(retcodes.ADMIN_NOT_FOUND, http_status=404)
    return ok(request)


async def query_audit(request: web.Request) -> web.StreamResponse:
    request[INTERFACE] = "adminAudit"
    query = request.query
    try:
        records = await gateway(request).auditor.store.query(
            agent_id=int(query["agent"]) if "agent" in query else None,
            conference_id=query.get("conference"),
            outcome=query.get("outcome"),
            since_ms=int(query["since"]) if "since" in query else None,
            limit=min(int(query.get("limit", "1000")), 10_000),
        )
    except ValueError:
        raise GatewayError(
            retcodes.ADMIN_BAD_REQUEST, "agent/since/limit", http_status=400
        ) from None
    return ok(request, [audit_json(r) for r in records])


def add_admin_routes(app: web.Application) -> None:
    app.router.add_post(PREFIX + "/recordings", register_recording)
    app.router.add_delete(PREFIX + "/recordings/{record_id}", remove_recording)
    app.router.add_post(PREFIX + "/file-recordings", register_file_recording)
    app.router.add_get(PREFIX + "/conferences", list_conferences)
    app.router.add_get(PREFIX + "/conferences/{conference_id}", show_conference)
    app.router.add_delete(PREFIX + "/conferences/{conference_id}", remove_conference)
    app.router.add_get(PREFIX + "/audit", query_audit)


def parse_registration(body: dict[str, Any]) -> Registration:
    def bad(why: str) -> GatewayError:
        return GatewayError(retcodes.ADMIN_BAD_REQUEST, why, http_status=400)

    files = body.get("files")
    if not isinstance(files, dict) or not files:
        raise bad('files: an object like {"hd": "/path.mp4"}')
    by_type: dict[FileType, str] = {}
    for name, location in files.items():
        if name.upper() not in FileType.__members__ or not isinstance(location, str):
            raise bad("files: keys hd, sd, aux with string locations")
        by_type[FileType[name.upper()]] = location
    members = body.get("participants")
    if not isinstance(members, list) or not all(
        isinstance(m, int | str) and str(m).isdigit() for m in members
    ):
        raise bad("participants: a list of work numbers")
    try:
        return Registration(
            conference_id=str(body.get("conferenceId", "")),
            record_id=str(body.get("recordId", "")),
            participants=frozenset(int(m) for m in members),
            files=by_type,
            vdn=int(body.get("vdn", 1)),
            call_id=str(body.get("callId", "")),
            started_ms=_optional_int(body.get("startTime")),
            ended_ms=_optional_int(body.get("endTime")),
            location_id=str(body.get("locationId", "255")),
            caller=str(body.get("caller", "")),
            called=str(body.get("called", "")),
        )
    except (TypeError, ValueError):
        raise bad("vdn, startTime and endTime are integers") from None


def _optional_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def conference_json(conference: ConferenceRecord) -> dict[str, Any]:
    return {
        "conferenceId": conference.conference_id,
        "vdn": conference.vdn,
        "callId": conference.call_id,
        "startTime": conference.started_ms,
        "endTime": conference.ended_ms,
        "locationId": conference.location_id,
        "participants": sorted(conference.participants),
        "recordings": [
            {
                "recordId": r.record_id,
                "created": r.created_ms,
                "fileTypes": [int(f.file_type) for f in r.files],
                "files": [
                    {
                        "fileType": int(f.file_type),
                        "name": f.file_type.name.lower(),
                        "source": f.source,
                        "size": f.size,
                        "mediaType": f.media_type,
                        "sha256": f.sha256,
                    }
                    for f in r.files
                ],
            }
            for r in conference.recordings
        ],
    }


def audit_json(record: AuditRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "time": record.time_ms,
        "node": record.node,
        "interface": record.interface,
        "agentId": record.agent_id,
        "conferenceId": record.conference_id,
        "recordId": record.record_id,
        "fileType": record.file_type,
        "range": record.range,
        "status": record.status,
        "bytesSent": record.bytes_sent,
        "outcome": record.outcome,
        "retcode": record.retcode,
        "client": record.client,
        "durationMs": record.duration_ms,
    }


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except (web.HTTPRequestEntityTooLarge, ValueError, UnicodeDecodeError):
        raise GatewayError(retcodes.ADMIN_BAD_REQUEST, "body", http_status=400) from None
    if not isinstance(body, dict):
        raise GatewayError(retcodes.ADMIN_BAD_REQUEST, "body", http_status=400)
    return body
