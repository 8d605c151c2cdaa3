"""``recordfile/{agentid}...``: the recording download interfaces, as HTTP.

Each handler only names the request's parameters; ``recordings.downloads`` decides (switches,
parameters, GUID, rights, lookup, source, in the documented order) and audits, and
``transfer.send_download`` sends the bytes.
"""

from __future__ import annotations

from aiohttp import web

from ccgateway.recordings.downloads import DownloadRequest, Interface, ReadyDownload
from ccgateway.web.state import gateway, metrics
from ccgateway.web.transfer import send_download
from ccgateway.wire.guid import request_guid


async def video_file_download(request: web.Request, agent_id: int) -> web.StreamResponse:
    """``videofiledownload``: an MCU recording by conferenceId, recordId and fileType."""
    return await _serve(request, Interface.VIDEO, agent_id, file_type=request.query.get("fileType"))


async def video_file_download_ex(request: web.Request, agent_id: int) -> web.StreamResponse:
    """``videofiledownloadEx``: a video file on the file server, by drive-letter recordId."""
    return await _serve(request, Interface.VIDEO_EX, agent_id)


async def record_file(request: web.Request, agent_id: int) -> web.StreamResponse:
    """``recordfile``: a voice file on the file server, by drive-letter recordId."""
    return await _serve(
        request, Interface.RECORD, agent_id, file_type=request.query.get("filetype")
    )


async def record_file_download_ex(request: web.Request, agent_id: int) -> web.StreamResponse:
    """``recordfiledownloadEx``: a call's voice recording by callId, or a video by hwFileName."""
    query = request.query
    return await _serve(
        request,
        Interface.RECORD_EX,
        agent_id,
        call_id=query.get("callId", ""),
        hw_file_name=query.get("hwFileName", ""),
        work_no=query.get("workNo", ""),
    )


async def _serve(
    request: web.Request,
    interface: Interface,
    agent_id: int,
    *,
    file_type: str | None = None,
    call_id: str = "",
    hw_file_name: str = "",
    work_no: str = "",
) -> web.StreamResponse:
    query = request.query
    wanted = DownloadRequest(
        interface=interface,
        agent_id=agent_id,
        guid=request_guid(request.headers),
        client=request.remote or "",
        head=request.method == "HEAD",
        conference_id=query.get("conferenceId", ""),
        record_id=query.get("recordId", ""),
        file_type=file_type,
        location_id=query.get("locationId"),
        call_id=call_id,
        hw_file_name=hw_file_name,
        work_no=work_no,
        range=request.headers.get("Range", ""),
    )

    async def send(ready: ReadyDownload) -> web.StreamResponse:
        return await send_download(request, ready)

    return await gateway(request).downloads.serve(wanted, send, metrics(request))
