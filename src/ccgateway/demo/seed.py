"""Demo data for a newcomer: agents with generated passwords and playable video recordings."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ccgateway.agents.directory import AgentDirectory
from ccgateway.recordings.catalog import Catalog, Registration
from ccgateway.stores.base import FileType, Role


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
    existing = {agent.work_no for agent in await directory.list()}
    for work_no, name, vdn, role in _DEMO_AGENTS:
        password = passwords[str(work_no)]
        if work_no not in existing:
            await directory.add(work_no, password, name=name, vdn=vdn, role=role)
        else:
            await directory.set_password(work_no, password)
        agents.append(DemoAgent(work_no, name, vdn, role, password))
    return agents


@dataclass(frozen=True)
class DemoConference:
    conference_id: str
    record_ids: tuple[str, ...]
    participants: frozenset[int]
    vdn: int


# The first ids are the CC-Gateway documentation's own example values.
DEMO_CONFERENCES = (
    DemoConference(
        "7a008307-34ad-435b-bccd-222be5ac5385",
        ("0a08082d-df1e-4c06-9a97-c7c6f7a4724e", "5c1d2f4e-9b7a-4c36-8e21-3f0a6b9d7e12"),
        frozenset({101, 102}),
        1,
    ),
    DemoConference(
        "c3f6a0de-5e8b-4a71-9d2c-7b41e0f9a8d3",
        ("e9b4c2a1-7d3f-4e86-b5a0-1c2d3e4f5a6b",),
        frozenset({103}),
        2,
    ),
)


async def seed_demo_recordings(catalog: Catalog, data_dir: Path) -> list[DemoConference]:
    """Generate playable H.264 demo recordings (first start only) and register them."""
    from ccgateway.demo.media import write_demo_set  # PyAV loads FFmpeg: only for --demo

    media_dir = (data_dir / "demo-media").resolve()  # registered locations are absolute
    for conference in DEMO_CONFERENCES:
        if await catalog.get_conference(conference.conference_id) is not None:
            continue
        for number, record_id in enumerate(conference.record_ids):
            label = f"{conference.conference_id[:8]}-{number}"
            files = await asyncio.to_thread(write_demo_set, media_dir, label)
            await catalog.register(
                Registration(
                    conference_id=conference.conference_id,
                    record_id=record_id,
                    participants=conference.participants,
                    files={FileType[name.upper()]: str(path) for name, path in files.items()},
                    vdn=conference.vdn,
                    call_id=f"1606459553-{176 + number}",
                )
            )
    return list(DEMO_CONFERENCES)
