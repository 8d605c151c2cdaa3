from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ccgateway.agents.directory import AgentDirectory, AgentError
from ccgateway.stores.base import Role
from ccgateway.stores.schema import open_engine
from ccgateway.stores.sql import SqlAgentStore


@pytest.fixture
async def directory(tmp_path: Path) -> AsyncIterator[AgentDirectory]:
    engine = await open_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield AgentDirectory(SqlAgentStore(engine))
    await engine.dispose()


async def test_add_authenticate_and_passwords_are_hashed(directory: AgentDirectory) -> None:
    agent = await directory.add(101, "pw-101", name="Alice", vdn=3, role=Role.INSPECTOR)
    assert agent.password_hash.startswith("$argon2id$")
    assert "pw-101" not in agent.password_hash
    found = await directory.authenticate(101, "pw-101")
    assert found is not None and found.vdn == 3 and found.role is Role.INSPECTOR
    assert found.may_download_video
    assert await directory.authenticate(101, "pw-102") is None
    assert await directory.authenticate(999, "pw-101") is None


async def test_empty_password_is_allowed(directory: AgentDirectory) -> None:
    await directory.add(101, "")
    assert await directory.authenticate(101, "") is not None
    assert await directory.authenticate(101, "x") is None


async def test_rules(directory: AgentDirectory) -> None:
    await directory.add(101, "pw")
    with pytest.raises(AgentError, match="already exists"):
        await directory.add(101, "pw")
    for work_no in (100, 1_000_000):
        with pytest.raises(AgentError, match="outside 101-999999"):
            await directory.add(work_no, "pw")
    with pytest.raises(AgentError, match="longer than 32"):
        await directory.add(102, "x" * 33)
    with pytest.raises(AgentError, match="vdn"):
        await directory.add(103, "pw", vdn=0)


async def test_passwd_and_remove(directory: AgentDirectory) -> None:
    await directory.add(101, "old")
    await directory.set_password(101, "new")
    assert await directory.authenticate(101, "old") is None
    assert await directory.authenticate(101, "new") is not None
    await directory.remove(101)
    assert await directory.store.get(101) is None
    with pytest.raises(AgentError, match="no agent"):
        await directory.remove(101)
    with pytest.raises(AgentError, match="no agent"):
        await directory.set_password(101, "x")
