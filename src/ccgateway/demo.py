"""Demo data for a newcomer: a few agents with generated passwords, kept in DATA_DIR."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ccgateway.agents import AgentDirectory
from ccgateway.stores.base import Role


@dataclass(frozen=True)
class DemoAgent:
    work_no: int
    name: str
    vdn: int
    role: Role
    password: str


_DEMO_AGENTS = (
    (101, "Alice (agent)", 1, Role.AGENT),
    (102, "Bob (agent)", 1, Role.AGENT),
    (103, "Carol (agent, VDN 2)", 2, Role.AGENT),
    (201, "Ines (inspector)", 1, Role.INSPECTOR),
)


def _credentials(data_dir: Path) -> dict[str, str]:
    path = data_dir / "demo-credentials.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    passwords = {str(work_no): secrets.token_urlsafe(9) for work_no, *_ in _DEMO_AGENTS}
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(passwords, handle)
    return passwords


async def seed_demo_agents(directory: AgentDirectory, data_dir: Path) -> list[DemoAgent]:
    """Create the demo agents that are missing; their passwords persist across restarts."""
    passwords = _credentials(data_dir)
    agents = []
    for work_no, name, vdn, role in _DEMO_AGENTS:
        password = passwords[str(work_no)]
        if await directory.store.get(work_no) is None:
            await directory.add(work_no, password, name=name, vdn=vdn, role=role)
        else:
            await directory.set_password(work_no, password)
        agents.append(DemoAgent(work_no, name, vdn, role, password))
    return agents
