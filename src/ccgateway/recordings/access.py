"""Who may download what: pure decisions on an agent and a recording's owners."""

from __future__ import annotations

from ccgateway.stores.base import AgentRecord, ConferenceRecord, Role


def may_download_video(agent: AgentRecord) -> bool:
    return agent.may_download_video


def may_see_conference(agent: AgentRecord, conference: ConferenceRecord) -> bool:
    """A participant sees their conference; an inspector sees every conference of their VDN."""
    if agent.work_no in conference.participants:
        return True
    return agent.role is Role.INSPECTOR and agent.vdn == conference.vdn
