"""``ccgateway recordings`` and ``ccgateway audit`` on the embedded database."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccgateway.cli import cli
from tests.media import HEIGHT, SECONDS, WIDTH, write_playable


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    return CliRunner(env={"CCGW_DATA_DIR": str(tmp_path / "data")})


def test_add_list_show_remove(runner: CliRunner, tmp_path: Path) -> None:
    hd, sd = tmp_path / "hd.mp4", tmp_path / "sd.mp4"
    hd.write_bytes(os.urandom(3000))
    sd.write_bytes(os.urandom(1000))
    result = runner.invoke(
        cli,
        [
            "recordings",
            "add",
            "conf-1",
            "--record",
            "rec-1",
            "--participants",
            "101,102",
            "--vdn",
            "2",
            "--call-id",
            "9-9",
            "--hd",
            str(hd),
            "--sd",
            str(sd),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "registered rec-1 in conf-1 as recording 0 (hd, sd)" in result.output
    result = runner.invoke(
        cli,
        [
            "recordings",
            "add",
            "conf-1",
            "--record",
            "rec-2",
            "--participants",
            "101",
            "--aux",
            str(sd),
        ],
    )
    assert result.exit_code == 0, result.output
    listed = json.loads(runner.invoke(cli, ["recordings", "list", "--json"]).output)
    assert [
        (c["conferenceId"], [(r["recordId"], r["fileTypes"]) for r in c["recordings"]])
        for c in listed
    ] == [("conf-1", [("rec-1", [0, 1]), ("rec-2", [2])])]
    assert listed[0]["participants"] == [101, 102] and listed[0]["vdn"] == 2
    shown = json.loads(runner.invoke(cli, ["recordings", "show", "conf-1"]).output)
    hd_file = shown["recordings"][0]["files"][0]
    assert hd_file["sha256"] == hashlib.sha256(hd.read_bytes()).hexdigest()
    assert hd_file["size"] == 3000
    text = runner.invoke(cli, ["recordings", "list"]).output
    assert "conf-1" in text and "rec-2" in text
    assert (
        runner.invoke(cli, ["recordings", "remove", "conf-1", "--record", "rec-2"]).exit_code == 0
    )
    assert runner.invoke(cli, ["recordings", "remove", "conf-1"]).exit_code == 0
    assert json.loads(runner.invoke(cli, ["recordings", "list", "--json"]).output) == []
    result = runner.invoke(cli, ["recordings", "remove", "conf-1"])
    assert result.exit_code == 1 and "no such conference" in result.output


def test_refusals(runner: CliRunner, tmp_path: Path) -> None:
    hd = tmp_path / "hd.mp4"
    hd.write_bytes(b"x")
    cases = [
        (["recordings", "add", "c", "--record", "r", "--participants", "101"], 1),  # no file
        (
            [
                "recordings",
                "add",
                "../c",
                "--record",
                "r",
                "--participants",
                "101",
                "--hd",
                str(hd),
            ],
            1,
        ),
        (["recordings", "add", "c", "--record", "r", "--participants", "1x", "--hd", str(hd)], 2),
        (
            [
                "recordings",
                "add",
                "c",
                "--record",
                "r",
                "--participants",
                "101",
                "--hd",
                str(tmp_path / "absent"),
            ],
            2,
        ),
    ]
    for args, code in cases:
        result = runner.invoke(cli, args)
        assert result.exit_code == code, (args, result.output)
    assert runner.invoke(cli, ["recordings", "show", "nope"]).exit_code == 1


def test_audit_lists_nothing_then_filters(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["audit", "--json"])
    assert result.exit_code == 0 and json.loads(result.output) == []
    result = runner.invoke(cli, ["audit", "--since", "yesterday"])
    assert result.exit_code == 2


def test_l11_recordings_add_needs_the_vdn_of_a_new_conference(
    runner: CliRunner, tmp_path: Path
) -> None:
    """Issue 14, L11: ``--vdn`` defaulted to 1, so a forgotten one put the conference in VDN 1."""
    hd = tmp_path / "hd.mp4"
    hd.write_bytes(os.urandom(1000))
    add = ["recordings", "add", "conf-l11", "--participants", "101", "--hd", str(hd)]
    result = runner.invoke(cli, [*add, "--record", "r1"])
    assert result.exit_code == 1
    assert result.output == "Error: conference conf-l11 is new: its VDN is required (vdn)\n"
    assert json.loads(runner.invoke(cli, ["recordings", "list", "--json"]).output) == []
    assert runner.invoke(cli, [*add, "--record", "r1", "--vdn", "2"]).exit_code == 0
    assert runner.invoke(cli, [*add, "--record", "r2"]).exit_code == 0  # into it: may omit
    result = runner.invoke(cli, [*add, "--record", "r3", "--vdn", "3"])
    assert result.exit_code == 1
    assert result.output == "Error: conference conf-l11 is in VDN 2, not 3\n"
    (listed,) = json.loads(runner.invoke(cli, ["recordings", "list", "--json"]).output)
    assert listed["vdn"] == 2 and len(listed["recordings"]) == 2


def test_add_probes_each_file_and_show_gives_the_facts(runner: CliRunner, tmp_path: Path) -> None:
    hd = write_playable(tmp_path / "hd.mp4")
    sd = tmp_path / "sd.mp4"
    sd.write_bytes(os.urandom(1000))
    add = ["recordings", "add", "conf-p", "--record", "rec-p", "--participants", "101"]
    result = runner.invoke(cli, [*add, "--vdn", "1", "--hd", str(hd), "--sd", str(sd)])
    assert result.exit_code == 0, result.output  # registered, damaged file and all
    assert "registered rec-p in conf-p as recording 0 (hd, sd)" in result.output
    assert "  sd: damaged: not a media file FFmpeg can open" in result.output
    assert "hd:" not in result.output
    result = runner.invoke(cli, ["recordings", "show", "conf-p"])
    assert result.exit_code == 0, result.output
    hd_file, sd_file = json.loads(result.output)["recordings"][0]["files"]
    assert hd_file["state"] == "ready" and sd_file["state"] == "damaged"
    facts = hd_file["facts"]
    assert (facts["width"], facts["height"], facts["videoCodec"]) == (WIDTH, HEIGHT, "h264")
    assert facts["durationS"] == SECONDS and facts["fastStart"] is True
    assert sd_file["facts"]["reason"].startswith("not a media file FFmpeg can open")
