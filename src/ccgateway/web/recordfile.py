"""``recordfile/{agentid}...``: the recording download interfaces.

Each handler checks its switches and parameters, then the GUID, then what the agent may have,
then the source; the first failure answers its retcode (docs/recordings.md lists the order). Every
attempt, refused or not, is audited; the bytes go out through ``transfer.send_download``.

- ``videofiledownload``: an MCU recording from the catalog (conferenceId, recordId, fileType).
- ``videofiledownloadEx``: a video file on the file server (recordId = drive-letter path).
- ``recordfile`` (no suffix): a voice file on the file server (recordId = drive-letter path).
- ``recordfiledownloadEx``: by callId (voice, from the registered file-server recordings) or
  hwFileName (a video path).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable

from aiohttp import web

from ccgateway import retcodes
from ccgateway.audit.trail import DownloadAttempt, Outcome
from ccgateway.errors import GatewayError
from ccgateway.gateway import Gateway
from ccgateway.recordings.catalog import is_id, parse_file_type
from ccgateway.recordings.fileserver import AUDIO, LocatedFile
from ccgateway.sources import open_source
from ccgateway.sources.base import SourceError, redact
from ccgateway.stores.base import AgentRecord, FileType, Role
from ccgateway.web.state import gateway, metrics
from ccgateway.web.transfer import Download, send_download
from ccgateway.wire.guid import request_guid

log = logging.getLogger("ccgateway.download")

Body = Callable[[Gateway, DownloadAttempt], Awaitable[web.StreamResponse]]


async def video_file_download(request: web.Request, agent_id: int) -> web.StreamResponse:
    async def body(core: Gateway, attempt: DownloadAttempt) -> web.StreamResponse:
        query = request.query
        _video_switches(core)
        conference_id = query.get("conferenceId", "").strip()
        if not is_id(conference_id):
            raise GatewayError(retcodes.BAD_CONFERENCE_ID)
        file_type = parse_file_type(query.get("fileType"))
        attempt.file_type = int(file_type)
        record_id = query.get("recordId", "").strip() or None
        if record_id is not None and not is_id(record_id):
            raise GatewayError(retcodes.NO_SUCH_RECORD)
        agent = await _signed_in_agent(request, core, agent_id)
        selection = await core.catalog.select(agent, conference_id, record_id, file_type)
        attempt.record_id = selection.recording.record_id
        media = selection.media
        source = open_source(media.source)
        try:
            stat = await source.stat()
        except SourceError as exc:
            raise GatewayError(retcodes.SOURCE_FAILED, str(exc)) from None
        if (stat.size, stat.mtime_ns) != (media.size, media.mtime_ns):
            raise GatewayError(
                retcodes.SOURCE_FAILED, f"{redact(source.uri)} changed since registration"
            )
        name = _catalog_filename(conference_id, attempt.record_id, file_type, media.source)
        download = Download(source, media.size, media.mtime_ns, media.sha256, name)
        return await send_download(
            request,
            download,
            attempt,
            sendfile=core.settings.sendfile,
            accel_redirect=core.settings.accel_redirect,
        )

    return await _audited(request, agent_id, "downloadVideoFile", body)


async def video_file_download_ex(request: web.Request, agent_id: int) -> web.StreamResponse:
    async def body(core: Gateway, attempt: DownloadAttempt) -> web.StreamResponse:
        _video_switches(core)
        raw = request.query.get("recordId", "")
        agent = await _signed_in_agent(request, core, agent_id)
        located = core.files.locate(agent, raw, request.query.get("locationId"), video=True)
        return await _send_file(request, core, attempt, located)

    return await _audited(request, agent_id, "downloadVideoFileEx", body)


async def record_file(request: web.Request, agent_id: int) -> web.StreamResponse:
    async def body(core: Gateway, attempt: DownloadAttempt) -> web.StreamResponse:
        if not core.settings.record_download:
            raise GatewayError(retcodes.RECORD_DOWNLOAD_OFF)
        kind = request.query.get("filetype", "").strip() or "1"
        if kind not in ("1", "2"):
            raise GatewayError(retcodes.BAD_INTERFACE_PARAMETER, "filetype")
        attempt.file_type = int(kind)
        raw = request.query.get("recordId", "")
        agent = await _signed_in_agent(request, core, agent_id)
        located = core.files.locate(agent, raw, request.query.get("locationId"), video=False)
        return await _send_file(request, core, attempt, located)

    return await _audited(request, agent_id, "downloadRecordFile", body)


async def record_file_download_ex(request: web.Request, agent_id: int) -> web.StreamResponse:
    async def body(core: Gateway, attempt: DownloadAttempt) -> web.StreamResponse:
        query = request.query
        if not core.settings.video_download:
            raise GatewayError(retcodes.VIDEO_DOWNLOAD_OFF)
        call_id = query.get("callId", "").strip()
        if not is_id(call_id):
            raise GatewayError(retcodes.BAD_INTERFACE_PARAMETER, "callId")
        attempt.conference_id = call_id
        hw_file_name = query.get("hwFileName", "").strip()
        agent = await _signed_in_agent(request, core, agent_id)
        if hw_file_name:
            attempt.record_id = hw_file_name
            located = core.files.locate(agent, hw_file_name, query.get("locationId"), video=True)
            return await _send_file(request, core, attempt, located)
        owner = _inspected_agent(agent, query.get("workNo", ""))
        found = [
            r for r in await core.files.store.find_by_call(call_id, AUDIO) if r.agent_id == owner
        ]
        if not found:
            raise GatewayError(retcodes.FILE_MISSING)
        recording = found[-1]
        attempt.record_id = recording.file_name
        location = query.get("locationId") or recording.location_id
        located = core.files.locate(agent, recording.file_name, location, video=False)
        return await _send_file(request, core, attempt, located)

    return await _audited(request, agent_id, "recordfiledownloadEx", body)


# -- shared steps -------------------------------------------------------------------------------


async def _audited(
    request: web.Request, agent_id: int, interface: str, body: Body
) -> web.StreamResponse:
    core = gateway(request)
    attempt = core.auditor.begin(interface, request.remote or "")
    attempt.agent_id = agent_id
    attempt.conference_id = request.query.get("conferenceId", "")
    attempt.record_id = request.query.get("recordId", "")
    counted = metrics(request)
    counted.download_started()
    try:
        return await body(core, attempt)
    except GatewayError as exc:
        attempt.outcome = Outcome.REFUSED
        attempt.retcode = exc.retcode.code
        if exc.retcode is retcodes.SOURCE_FAILED:
            log.warning("%s refused with %s: %s", interface, exc.retcode.code, exc.detail)
        raise
    finally:
        counted.download_finished(attempt)
        core.auditor.finish(attempt)


def _video_switches(core: Gateway) -> None:
    if not core.settings.video_download:
        raise GatewayError(retcodes.VIDEO_DOWNLOAD_OFF)
    if not core.settings.video_events:
        raise GatewayError(retcodes.VIDEO_EVENTS_OFF)


async def _signed_in_agent(request: web.Request, core: Gateway, agent_id: int) -> AgentRecord:
    await core.sessions.authenticate(agent_id, request_guid(request.headers))
    agent = await core.agents.get(agent_id)
    if agent is None:
        raise GatewayError(retcodes.NOT_SIGNED_IN)
    return agent


def _inspected_agent(agent: AgentRecord, work_no: str) -> int:
    """Whose voice recording recordfiledownloadEx means: workNo for an inspector, else oneself."""
    if agent.role is not Role.INSPECTOR:
        return agent.work_no
    text = work_no.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 6):
        raise GatewayError(retcodes.BAD_INTERFACE_PARAMETER, "workNo")
    return int(text)


async def _send_file(
    request: web.Request, core: Gateway, attempt: DownloadAttempt, located: LocatedFile
) -> web.StreamResponse:
    attempt.record_id = str(located.drive_path)
    try:
        digest = await core.files.digest(located.path)
    except SourceError:
        raise GatewayError(retcodes.FILE_MISSING) from None
    source = open_source(str(located.path))
    download = Download(source, digest.size, digest.mtime_ns, digest.sha256, located.path.name)
    return await send_download(
        request,
        download,
        attempt,
        sendfile=core.settings.sendfile,
        accel_redirect=core.settings.accel_redirect,
    )


def _catalog_filename(conference_id: str, record_id: str, file_type: FileType, src: str) -> str:
    path = urllib.parse.urlsplit(src).path if "://" in src else src
    suffix = path[path.rfind(".") :] if "." in path.rsplit("/", 1)[-1] else ""
    return f"{conference_id}-{record_id}-{file_type.name.lower()}{suffix}"
