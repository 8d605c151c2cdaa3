"""Who may download what: every access rule of the recordings, and nothing else decides it.

- The video right: an agent added with ``--no-video-download`` gets no video (108-004/104-002).
- An MCU conference: its participants see it; an inspector sees every conference of their VDN.
- A file-server path: its agent segment names the requester, or the requester is an inspector of
  the path's VDN; a path with no agent segment (an IVR message) is for inspectors only.
- ``recordfiledownloadEx`` by call id: an inspector names the agent (``workNo``), anyone else
  means themselves.

Pure decisions on records: no I/O. Callers answer a refusal with their interface's retcode, and
check rights before existence, so a foreign recording and an absent one answer alike.
"""

from __future__ import annotations

from ccgateway import retcodes
from ccgateway.errors import GatewayError
from ccgateway.recordings.drivepaths import DrivePath
from ccgateway.stores.base import AgentRecord, ConferenceRecord, Role


def may_download_video(agent: AgentRecord) -> bool:
    return agent.may_download_video


def may_see_conference(agent: AgentRecord, conference: ConferenceRecord) -> bool:
    """A participant sees their conference; an inspector sees every conference of their VDN."""
    if agent.work_no in conference.participants:
        return True
    return agent.role is Role.INSPECTOR and agent.vdn == conference.vdn


def may_fetch_path(agent: AgentRecord, path: DrivePath, *, video: bool) -> bool:
    """A file-server file, by its drive-letter path alone (before anyone looks whether it is
    there): video needs the video right; the path's agent is the requester, or the requester
    inspects the path's VDN."""
    if video and not may_download_video(agent):
        return False
    if path.agent_id is not None and path.agent_id == agent.work_no:
        return True
    return agent.role is Role.INSPECTOR and path.vdn is not None and path.vdn == agent.vdn


def inspected_agent(agent: AgentRecord, work_no: str) -> int:
    """Whose voice recording ``recordfiledownloadEx`` means: ``workNo`` for an inspector, else
    the requester themselves (000-002 for an inspector's malformed ``workNo``)."""
    if agent.role is not Role.INSPECTOR:
        return agent.work_no
    text = work_no.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 6):
        raise GatewayError(retcodes.BAD_INTERFACE_PARAMETER, "workNo")
    return int(text)
