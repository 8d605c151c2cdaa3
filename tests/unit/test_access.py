from __future__ import annotations

import pytest

from ccgateway.recordings.access import may_download_video, may_see_conference
from ccgateway.stores.base import AgentRecord, ConferenceRecord, Role


def agent(work_no: int, vdn: int = 1, role: Role = Role.AGENT, right: bool = True) -> AgentRecord:
    return AgentRecord(work_no, "", vdn, role, right, "")


CONF = ConferenceRecord("c1", 1, "", None, None, frozenset({101, 102}))


@pytest.mark.parametrize(
    ("who", "sees"),
    [
        (agent(101), True),
        (agent(102, vdn=9), True),  # a participant, whatever their VDN
        (agent(103), False),  # same VDN, not a participant, not an inspector
        (agent(201, role=Role.INSPECTOR), True),
        (agent(202, vdn=2, role=Role.INSPECTOR), False),
    ],
)
def test_may_see_conference(who: AgentRecord, sees: bool) -> None:
    assert may_see_conference(who, CONF) is sees


def test_download_right() -> None:
    assert may_download_video(agent(101))
    assert not may_download_video(agent(101, right=False))
