"""``recordfile/{agentid}/...``: the recording download interfaces.

``videofiledownload`` checks, in this order (each failure answers its retcode and stops):
switches (108-001, 108-002), parameters (108-003 conferenceId, 108-004 fileType, 108-006 a
malformed recordId), the GUID (100-006, 000-003), the agent's video right (108-009), the
conference (108-005, also for a conference the agent may not see), the recording (108-006), the
file type (108-007), the source (108-008: missing, changed since registration, or failing).
"""

from __future__ import annotations

import logging

from aiohttp import web

from ccgateway import retcodes
from ccgateway.audit import Outcome
from ccgateway.catalog import is_id, parse_file_type
from ccgateway.errors import GatewayError
from ccgateway.sources import open_source
from ccgateway.sources.base import SourceError
from ccgateway.stores.base import FileType
from ccgateway.web.state import gateway
from ccgateway.web.transfer import Download, send_download
from ccgateway.wire.guid import request_guid

log = logging.getLogger("ccgateway.download")


async def video_file_download(request: web.Request, agent_id: int) -> web.StreamResponse:
    core = gateway(request)
    attempt = core.auditor.begin("downloadVideoFile", request.remote or "")
    attempt.agent_id = agent_id
    query = request.query
    attempt.conference_id = query.get("conferenceId", "")
    attempt.record_id = query.get("recordId", "")
    try:
        if not core.settings.video_download:
            raise GatewayError(retcodes.VIDEO_DOWNLOAD_OFF)
        if not core.settings.video_events:
            raise GatewayError(retcodes.VIDEO_EVENTS_OFF)
        conference_id = query.get("conferenceId", "").strip()
        if not is_id(conference_id):
            raise GatewayError(retcodes.BAD_CONFERENCE_ID)
        file_type = parse_file_type(query.get("fileType"))
        attempt.file_type = int(file_type)
        record_id = query.get("recordId", "").strip() or None
        if record_id is not None and not is_id(record_id):
            raise GatewayError(retcodes.NO_SUCH_RECORD)
        await core.sessions.authenticate(agent_id, request_guid(request.headers))
        agent = await core.agents.store.get(agent_id)
        if agent is None:
            raise GatewayError(retcodes.NOT_SIGNED_IN)
        selection = await core.catalog.select(agent, conference_id, record_id, file_type)
        attempt.record_id = selection.recording.record_id
        source = open_source(selection.media.source)
        media = selection.media
        try:
            stat = await source.stat()
        except SourceError as exc:
            raise GatewayError(retcodes.SOURCE_FAILED, str(exc)) from None
        if (stat.size, stat.mtime_ns) != (media.size, media.mtime_ns):
            raise GatewayError(retcodes.SOURCE_FAILED, f"{source.uri} changed since registration")
        filename = _filename(conference_id, selection.recording.record_id, file_type, media.source)
        download = Download(source, media, filename)
        return await send_download(request, download, attempt, sendfile=core.settings.sendfile)
    except GatewayError as exc:
        attempt.outcome = Outcome.REFUSED
        attempt.retcode = exc.retcode.code
        if exc.retcode is retcodes.SOURCE_FAILED:
            log.warning("refused with %s: %s", exc.retcode.code, exc.detail)
        raise
    except BaseException as exc:
        log.debug("download ended by %r", exc)
        raise
    finally:
        await core.auditor.finish(attempt)


def _filename(conference_id: str, record_id: str, file_type: FileType, location: str) -> str:
    suffix = location[location.rfind(".") :] if "." in location.rsplit("/", 1)[-1] else ""
    return f"{conference_id}-{record_id}-{file_type.name.lower()}{suffix}"
