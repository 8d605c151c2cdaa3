"""``ccgateway agent download`` and ``ccgateway agent watch`` against a real gateway process."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ccgateway.cli.agent import agent, size_text
from tests.media import write_playable
from tests.system.agent_gateway import PASSWORD, AgentGateway, start_agent_gateway
from tests.system.relay import threaded_relay

MiB = 1024 * 1024
AGENT_CLI = "from ccgateway.cli.agent import agent; agent(prog_name='ccgateway agent')"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentGateway]:
    running = start_agent_gateway(tmp_path_factory.mktemp("cli-agent"))
    yield running
    running.stop()


def recording(gw: AgentGateway, tmp_path: Path, name: str, agent_id: int, size: int) -> Path:
    source = tmp_path / "sources" / f"{name}.mp4"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(os.urandom(size))
    gw.register(f"conf-{name}", f"rec-{name}", [agent_id], source)
    return source


def run(
    gw: AgentGateway,
    *args: str,
    server: str | None = None,
    password: str | None = PASSWORD,
    trust: tuple[str, ...] | None = None,
    stdin: str | None = None,
) -> Result:
    env = {"CCGW_AGENT_PASSWORD": password} if password is not None else {}
    runner = CliRunner(env=env)
    trusted = ("--ca", str(gw.ca)) if trust is None else trust
    command = [args[0], "--server", server or gw.url, *trusted, *args[1:]]
    return runner.invoke(agent, command, input=stdin, prog_name="ccgateway agent")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_shows_progress_and_resumes_after_cuts(gw: AgentGateway, tmp_path: Path) -> None:
    source = recording(gw, tmp_path, "bar", 101, 4 * MiB)
    cuts = sorted(random.Random(7).sample(range(100_000, 3 * MiB), 2))
    out = tmp_path / "hd.mp4"
    with threaded_relay(gw.port, cut_after=cuts, rate=3 * MiB) as relay:
        result = run(
            gw, "download", "--agent", "101", "--conference", "conf-bar", "-o", str(out),
            "--progress", server=relay.url,
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert relay.cuts == 2 and sha256(out) == sha256(source)
    assert result.stdout == f"saved {out} (4.0 MiB), sha-256 verified\n"
    assert "100% [========================]  4.0 MiB / 4.0 MiB" in result.stderr
    assert "MiB/s" in result.stderr and "ETA" in result.stderr
    assert PASSWORD not in result.output


def test_no_progress_bar_off_a_terminal_and_a_prompted_password(
    gw: AgentGateway, tmp_path: Path
) -> None:
    recording(gw, tmp_path, "quiet", 102, 100_000)
    result = run(
        gw, "download", "--agent", "102", "--conference", "conf-quiet", "-o", str(tmp_path),
        password=None, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "%" not in result.stderr and PASSWORD not in result.output
    assert "Password of agent 102" in result.stderr
    assert (tmp_path / "conf-quiet-rec-quiet-hd.mp4").exists()


def test_resume_continues_an_earlier_part(gw: AgentGateway, tmp_path: Path) -> None:
    source = recording(gw, tmp_path, "resume", 103, 300_000)
    out = tmp_path / "r.mp4"
    Path(f"{out}.part").write_bytes(source.read_bytes()[:100_000])
    Path(f"{out}.part.json").write_text(f'{{"etag": "\\"sha256-{sha256(source)}\\""}}')
    result = run(gw, "download", "--agent", "103", "--conference", "conf-resume", "-o", str(out),
                 "--resume")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "resumed at 97.7 KiB" in result.stdout and sha256(out) == sha256(source)


@pytest.mark.parametrize(
    ("args", "password", "line"),
    [
        (["--conference", "conf-x"], "wrong", "refused by the gateway: 100-004 wrong user name"),
        (["--conference", "conf-none"], PASSWORD, "refused by the gateway: 108-005 no such"),
        (["--conference", "bad id!"], PASSWORD, "refused by the gateway: 108-003 conferenceId"),
        (
            ["--voice-path", "Y:/1/0/20161025/999/x.V3"],
            PASSWORD,
            "refused by the gateway: 104-002 no",
        ),
    ],
)
def test_refusals_end_in_one_line_and_exit_1(
    gw: AgentGateway, tmp_path: Path, args: list[str], password: str, line: str
) -> None:
    result = run(gw, "download", "--agent", "104", *args, "-o", str(tmp_path), password=password)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {line}") and result.stderr.count("\n") == 1
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


def test_a_session_taken_over_mid_download_exits_1_with_000_003(
    gw: AgentGateway, tmp_path: Path
) -> None:
    recording(gw, tmp_path, "taken", 105, 2 * MiB)
    with threaded_relay(
        gw.port, cut_after=[300_000], on_cut=lambda _: gw.sign_in(105, force=True)
    ) as relay:
        result = run(gw, "download", "--agent", "105", "--conference", "conf-taken",
                     "-o", str(tmp_path), server=relay.url)  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == "Error: refused by the gateway: 000-003 no right to invite resource\n"


def test_already_signed_in_needs_force(gw: AgentGateway, tmp_path: Path) -> None:
    recording(gw, tmp_path, "force", 106, 10_000)
    gw.sign_in(106)
    args = ["download", "--agent", "106", "--conference", "conf-force", "-o", str(tmp_path)]
    result = run(gw, *args)
    assert result.exit_code == 1 and "100-002" in result.stderr and "--force" in result.stderr
    assert run(gw, *args, "--force").exit_code == 0


def test_tls_failures_exit_3_and_bad_options_exit_2(gw: AgentGateway, tmp_path: Path) -> None:
    args = ["download", "--agent", "107", "--conference", "c", "-o", str(tmp_path)]
    untrusted = run(gw, *args, trust=())
    assert untrusted.exit_code == 3
    assert "not trusted (self-signed certificate); trust the gateway with --ca" in untrusted.stderr
    pinned = run(gw, *args, trust=("--fingerprint", "00" * 32))
    assert pinned.exit_code == 3 and "pinned fingerprint" in pinned.stderr
    right = run(gw, *args, trust=("--fingerprint", gw.fingerprint))
    assert right.exit_code == 1 and "108-005" in right.stderr  # got past TLS
    assert run(gw, *args, trust=("--fingerprint", "AB:CD")).exit_code == 2
    both = run(gw, "download", "--agent", "107", "--conference", "c", "--video-path", "Y:/a")
    assert both.exit_code == 2 and "give one of" in both.stderr


def test_help_documents_the_exit_codes() -> None:
    for command in ("download", "watch"):
        result = CliRunner().invoke(agent, [command, "--help"], terminal_width=100)
        assert "Exit codes: 0 done; 1 refused by the gateway" in result.output
        assert "4 verification against Repr-Digest failed" in result.output


def test_watch_fetches_a_recording_registered_while_it_runs(
    gw: AgentGateway, tmp_path: Path
) -> None:
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    command = [
        sys.executable, "-c", AGENT_CLI, "watch", "--server", gw.url, "--ca", str(gw.ca),
        "--agent", "108", "--fetch", str(fetched),
    ]  # fmt: skip
    env = {**os.environ, "CCGW_AGENT_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1"}
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        watch = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, text=True)
    try:
        wait_for(lambda: "AgentState_Ready" in out.read_text(), err)
        source = write_playable(tmp_path / "new.mp4")  # whole: AgentMediaEvent_Record, fetched
        add = [sys.executable, "-m", "ccgateway", "recordings", "add", "conf-watch", "--record",
               "rec-watch", "--participants", "108", "--vdn", "1", "--hd", str(source)]  # fmt: skip
        data_env = {**os.environ, "CCGW_DATA_DIR": str(gw.serve.data_dir)}
        subprocess.run(add, check=True, env=data_env, capture_output=True, timeout=30)
        wait_for(lambda: "fetched" in out.read_text(), err)
        video = gw.drive / "1" / "0" / "20201202" / "108" / "1714442.mp4"  # a file-server one
        video.parent.mkdir(parents=True)
        video.write_bytes(os.urandom(300_000))
        file_recording = {"recordId": "fr-1", "fileName": "Y:/1/0/20201202/108/1714442.mp4",
                          "callId": "1606459553-9", "fileMediaType": 2}  # fmt: skip
        assert gw.admin("POST", "file-recordings", file_recording)["retcode"] == "0"
        wait_for(lambda: "1714442.mp4 (293.0 KiB)" in out.read_text(), err)
    finally:
        watch.send_signal(signal.SIGINT)
        code = watch.wait(15)
    assert code == 0, err.read_text()
    saved = fetched / "conf-watch-rec-watch-hd.mp4"
    assert saved.read_bytes() == source.read_bytes()
    lines = out.read_text().splitlines()
    assert any(" AgentMediaEvent_Record 108 " in line and "conf-watch" in line for line in lines)
    assert f"fetched {saved} ({size_text(source.stat().st_size)}), sha-256 verified" in lines
    assert (fetched / "1714442.mp4").read_bytes() == video.read_bytes()
    assert PASSWORD not in out.read_text() + err.read_text()
    gw.sign_in(108)  # signed out on Ctrl-C, so a plain sign-in works


def wait_for(condition: object, err: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out; stderr: {err.read_text()}")
