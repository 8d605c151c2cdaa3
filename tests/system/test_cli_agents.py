"""``ccgateway agents add|list|passwd|remove``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccgateway.cli import cli


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    return CliRunner(env={"CCGW_DATA_DIR": str(tmp_path / "data")})


def test_add_list_passwd_remove(runner: CliRunner) -> None:
    result = runner.invoke(
        cli,
        [
            "agents",
            "add",
            "101",
            "--password",
            "pw",
            "--name",
            "Alice",
            "--vdn",
            "2",
            "--role",
            "inspector",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["agents", "add", "102", "--password", "pw", "--no-video-download"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["agents", "list", "--json"])
    assert json.loads(result.output) == [
        {"workNo": 101, "name": "Alice", "vdn": 2, "role": "inspector", "videoDownload": True},
        {"workNo": 102, "name": "", "vdn": 1, "role": "agent", "videoDownload": False},
    ]
    result = runner.invoke(cli, ["agents", "list"])
    assert "Alice" in result.output and "inspector" in result.output
    result = runner.invoke(cli, ["agents", "passwd", "101"], input="new-pw\nnew-pw\n")
    assert result.exit_code == 0 and "new-pw" not in result.output
    result = runner.invoke(cli, ["agents", "remove", "102"])
    assert result.exit_code == 0
    result = runner.invoke(cli, ["agents", "list", "--json"])
    assert [a["workNo"] for a in json.loads(result.output)] == [101]


def test_refusals_exit_1_with_one_line(runner: CliRunner) -> None:
    runner.invoke(cli, ["agents", "add", "101", "--password", "pw"])
    for args in (
        ["agents", "add", "101", "--password", "pw"],
        ["agents", "add", "99", "--password", "pw"],
        ["agents", "remove", "555"],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 1, args
        assert result.output.startswith("Error: "), result.output


def test_bad_configuration_exits_2(tmp_path: Path) -> None:
    runner = CliRunner(env={"CCGW_DATA_DIR": str(tmp_path), "CCGW_GUIDTIMEOUT": "10"})
    result = runner.invoke(cli, ["agents", "list"])
    assert result.exit_code == 2
    assert "GUIDTIMEOUT" in result.output
