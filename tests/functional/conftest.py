"""Fixtures for download tests: a gateway with agents and registered recordings of random bytes."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from ccgateway.recordings.catalog import Registration
from ccgateway.stores.base import FileType, Role
from tests.conftest import GatewayFactory, RunningGateway

CONF = "7a008307-34ad-435b-bccd-222be5ac5385"
REC0 = "0a08082d-df1e-4c06-9a97-c7c6f7a4724e"
REC1 = "5c1d2f4e-9b7a-4c36-8e21-3f0a6b9d7e12"
OTHER_CONF = "c3f6a0de-5e8b-4a71-9d2c-7b41e0f9a8d3"


@dataclass
class Recordings:
    gw: RunningGateway
    files: dict[tuple[str, FileType], Path]

    def data(self, record_id: str, file_type: FileType) -> bytes:
        return self.files[(record_id, file_type)].read_bytes()

    def sha256(self, record_id: str, file_type: FileType) -> str:
        return hashlib.sha256(self.data(record_id, file_type)).hexdigest()

    async def guid(self, agent_id: int) -> str:
        guid, body = await self.gw.client.sign_in(agent_id)
        assert guid is not None, body
        return guid

    def url(self, agent_id: int, **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"recordfile/{agent_id}/videofiledownload?{params}"


def write_random(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


async def register_demo(gw: RunningGateway, media: Path) -> dict[tuple[str, FileType], Path]:
    media.mkdir(parents=True, exist_ok=True)
    files: dict[tuple[str, FileType], Path] = {}
    sizes = {FileType.HD: 3 * 1024 * 1024 + 17, FileType.SD: 1024 * 1024 + 5, FileType.AUX: 70_001}
    for record_id, types in (
        (REC0, (FileType.HD, FileType.SD, FileType.AUX)),
        (REC1, (FileType.HD,)),
    ):
        for file_type in types:
            name = f"{record_id[:8]}-{file_type.name.lower()}.mp4"
            files[(record_id, file_type)] = write_random(media / name, sizes[file_type])
        await gw.gateway.catalog.register(
            Registration(
                conference_id=CONF,
                record_id=record_id,
                participants=frozenset({101, 102}),
                files={t: str(files[(record_id, t)]) for t in types},
                vdn=1,
                call_id="1606459553-176",
            )
        )
    other = write_random(media / "other-hd.mp4", 1000)
    await gw.gateway.catalog.register(
        Registration(OTHER_CONF, "rec-other", frozenset({103}), {FileType.HD: str(other)}, vdn=2)
    )
    return files


async def add_download_agents(gw: RunningGateway) -> None:
    await gw.add_agent(101, name="Alice")
    await gw.add_agent(102, name="Bob")
    await gw.add_agent(103, name="Carol", vdn=2)
    await gw.add_agent(104, name="Stranger")
    await gw.add_agent(105, name="No right", may_download_video=False)
    await gw.add_agent(201, name="Inspector VDN 1", role=Role.INSPECTOR, vdn=1)
    await gw.add_agent(202, name="Inspector VDN 2", role=Role.INSPECTOR, vdn=2)


@pytest.fixture(params=["sendfile", "copy"])
async def rec(
    request: pytest.FixtureRequest, make_gateway: GatewayFactory, tmp_path: Path
) -> Recordings:
    """Recordings served over sendfile and over 1 MiB copies (SENDFILE=OFF)."""
    gw = await make_gateway(SENDFILE="ON" if request.param == "sendfile" else "OFF")
    await add_download_agents(gw)
    return Recordings(gw, await register_demo(gw, tmp_path / "media"))
