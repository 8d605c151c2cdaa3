"""Who may download what: every access rule of the recordings, and nothing else decides it.

- The video right: an agent added with ``--no-video-download`` gets no video (108-004/104-002).
- An MCU conference: its participants see it; an inspector sees every conference of their VDN
  (``sees_conference``; the catalog store mirrors it in SQL, so that an absent and an invisible
  conference cost the same one statement).
- A registered file-server recording: its registered participants, beside the path rule below.
- A file-server path: its VDN and agent segments name the requester's VDN and work number (owner),
  or the requester is an inspector of the path's VDN; a path with no agent segment (an IVR
  message) is for inspectors only. Numbers in a path are read canonically (``drivepaths``):
  ``0101`` names nobody.
- Video or voice, whichever interface asks: a file-server file is video when its registration
  says so (fileMediaType 2), else when its extension is a video container's
  (``VIDEO_CONTAINERS``); anything else is voice. Video is under the video switches and the
  video right on every interface, ``recordfile`` included.
- ``recordfiledownloadEx`` by call id: an inspector names the agent (``workNo``), anyone else
  means themselves.

Pure decisions on records: no I/O. Callers answer a refusal with their interface's retcode, and
check rights before existence, so a foreign recording and an absent one answer alike.
"""

from __future__ import annotations

from collections.abc import Iterable

from ccgateway import retcodes
from ccgateway.errors import GatewayError
from ccgateway.recordings.drivepaths import DrivePath, DrivePathError, parse_drive_path
from ccgateway.stores.base import (
    VIDEO,
    AgentRecord,
    ConferenceRecord,
    ConferenceViewer,
    FileRecordingRecord,
    Role,
)

VIDEO_CONTAINERS = frozenset({".mp4", ".m4v", ".mov", ".3gp", ".mkv", ".webm", ".avi"})


def may_download_video(agent: AgentRecord) -> bool:
    return agent.may_download_video


def conference_viewer(agent: AgentRecord) -> ConferenceViewer:
    """The agent as the conference rule sees them: their work number, and the VDN they inspect
    (inspectors only). The catalog store takes it as its query's parameters."""
    return ConferenceViewer(agent.work_no, agent.vdn if agent.role is Role.INSPECTOR else None)


def sees_conference(viewer: ConferenceViewer, conference: ConferenceRecord) -> bool:
    """The conference rule: a participant sees their conference; an inspector sees every
    conference of their VDN.

    Mirrored in SQL by ``CatalogStore.get_visible_conference`` (``stores/sql.py``), which answers
    only a conference this rule lets the viewer see, in one statement whether it is absent or
    invisible: a change here is a change there (``tests/contract/test_sql_stores.py`` runs one
    table against both).
    """
    if viewer.work_no in conference.participants:
        return True
    return viewer.inspected_vdn is not None and viewer.inspected_vdn == conference.vdn


def may_see_conference(agent: AgentRecord, conference: ConferenceRecord) -> bool:
    """A participant sees their conference; an inspector sees every conference of their VDN."""
    return sees_conference(conference_viewer(agent), conference)


def may_fetch_path(agent: AgentRecord, path: DrivePath, *, video: bool) -> bool:
    """A file-server file, by its drive-letter path alone (before anyone looks whether it is
    there): video needs the video right; the path is the requester's own (same VDN, same work
    number), or the requester inspects the path's VDN."""
    if video and not may_download_video(agent):
        return False
    if path.vdn is None or path.vdn != agent.vdn:
        return False
    return path.agent_id == agent.work_no or agent.role is Role.INSPECTOR


def may_fetch_file(
    agent: AgentRecord,
    path: DrivePath,
    registrations: Iterable[FileRecordingRecord],
    *,
    video: bool,
) -> bool:
    """The path rule, or a registered participant of the file's recording: what is announced
    (``AgentMediaEvent_Record`` goes to the registration's participants) may be fetched."""
    if video and not may_download_video(agent):
        return False
    if may_fetch_path(agent, path, video=video):
        return True
    return any(agent.work_no in registration.participants for registration in registrations)


def may_fetch_registered(agent: AgentRecord, recording: FileRecordingRecord) -> bool:
    """A registered file-server recording, as a download of it would be judged: what it would
    refuse is treated as absent by a lookup (no existence oracle)."""
    try:
        path = parse_drive_path(recording.file_name)
    except DrivePathError:
        return False
    return may_fetch_file(agent, path, (recording,), video=recording.media == VIDEO)


def is_video_file(path: DrivePath, registered_media: int | None) -> bool:
    """Video or voice: the registration's media type if it has one, else the extension."""
    if registered_media is not None:
        return registered_media == VIDEO
    name = path.parts[-1]
    return "." in name and name[name.rfind(".") :].lower() in VIDEO_CONTAINERS


def inspected_agent(agent: AgentRecord, work_no: str) -> int:
    """Whose voice recording ``recordfiledownloadEx`` means: ``workNo`` for an inspector, else
    the requester themselves (000-002 for an inspector's malformed ``workNo``)."""
    if agent.role is not Role.INSPECTOR:
        return agent.work_no
    text = work_no.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 6):
        raise GatewayError(retcodes.BAD_INTERFACE_PARAMETER, "workNo")
    return int(text)
