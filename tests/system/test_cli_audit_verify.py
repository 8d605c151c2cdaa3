"""``ccgateway audit verify|export|public-key``: exit codes, and an export that a third party
checks with the real ``openssl`` and the shell lines of docs/audit.md."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from ccgateway.cli import cli
from ccgateway.stores.schema import open_engine
from tests.audit_chains import T0, chain, execute, store

W = "AgentGateway0@1764990000000"
V = "AgentGateway1@1764990000500"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is required under CI")
        pytest.skip("no openssl binary")
    return found


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """DATA_DIR with a database of two intact chains (W: 10 events, V: 4)."""
    directory = tmp_path / "data"

    async def fill() -> None:
        engine = await open_engine(f"sqlite:///{directory / 'ccgateway.db'}")
        await store(engine, chain(W, 10))
        await store(engine, chain(V, 4))
        await engine.dispose()

    asyncio.run(fill())
    return directory


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "audit-key.pem"
    subprocess.run([_openssl(), "genpkey", "-algorithm", "ed25519", "-out", path], check=True)
    return path


def runner(data: Path, key: Path | None = None) -> CliRunner:
    env = {"CCGW_DATA_DIR": str(data)}
    if key is not None:
        env["CCGW_AUDIT_SIGNING_KEY"] = str(key)
    return CliRunner(env=env)


def tamper(data: Path, statement: str, **params: object) -> None:
    async def run() -> None:
        engine = await open_engine(f"sqlite:///{data / 'ccgateway.db'}")
        await execute(engine, statement, **params)
        await engine.dispose()

    asyncio.run(run())


def test_verify_exits_0_with_one_line_per_intact_chain(data: Path) -> None:
    result = runner(data).invoke(cli, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{W}  intact  10 events  head 10 ")
    assert lines[1].startswith(f"{V}  intact  4 events  head 4 ")
    result = runner(data).invoke(cli, ["audit", "verify", "--json"])
    report = json.loads(result.output)
    assert report["intact"] is True
    assert [(c["writer"], c["head"]["seq"]) for c in report["chains"]] == [(W, 10), (V, 4)]


def test_verify_exits_1_naming_the_first_bad_event(data: Path) -> None:
    tamper(data, "DELETE FROM audit_events WHERE writer = :w AND seq = 3", w=W)
    result = runner(data).invoke(cli, ["audit", "verify"])
    assert result.exit_code == 1
    assert f"{W}  BROKEN at seq 3: removed" in result.output
    assert f"{V}  intact" in result.output
    result = runner(data).invoke(cli, ["audit", "verify", "--json"])
    assert result.exit_code == 1
    broken = {c["writer"]: c["broken"] for c in json.loads(result.output)["chains"]}
    assert broken[W]["seq"] == 3 and broken[W]["problem"] == "removed"
    assert broken[V] is None


def test_verify_bad_usage_exits_2(data: Path, tmp_path: Path) -> None:
    result = runner(data).invoke(cli, ["audit", "verify", "--journal", str(tmp_path / "none")])
    assert result.exit_code == 2
    (tmp_path / "heads.json").write_text("{}")
    result = runner(data).invoke(cli, ["audit", "verify", "--heads", str(tmp_path / "heads.json")])
    assert result.exit_code == 2 and "heads.json" in result.output


def _check_script() -> str:
    """The third party's check, as docs/audit.md gives it."""
    found = re.search(r"<!-- export-check -->\n```sh\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert found, "docs/audit.md has no export-check block"
    return found[1]


def _third_party_check(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", _check_script()], cwd=directory, capture_output=True, text=True
    )


def test_an_export_verifies_with_openssl_and_fails_after_one_byte_changes(
    data: Path, key: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    result = runner(data, key).invoke(cli, ["audit", "export", "--output", str(out)])
    assert result.exit_code == 0, result.output
    public = runner(data, key).invoke(cli, ["audit", "public-key"])
    assert public.exit_code == 0 and public.output.startswith("-----BEGIN PUBLIC KEY-----")
    (out / "audit-public.pem").write_text(public.output)
    statement = json.loads((out / "heads.json").read_bytes())
    assert {(c["writer"], c["headSeq"], c["exported"]) for c in statement["chains"]} == {
        (W, 10, 10),
        (V, 4, 4),
    }
    assert len((out / "events.jsonl").read_bytes().splitlines()) == statement["events"] == 14

    checked = _third_party_check(out)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    for name in ("heads.json", "events.jsonl"):
        original = (out / name).read_bytes()
        changed = bytearray(original)
        changed[len(changed) // 2] ^= 0x01
        (out / name).write_bytes(bytes(changed))
        assert _third_party_check(out).returncode != 0, name
        (out / name).write_bytes(original)
    assert _third_party_check(out).returncode == 0


def test_export_since_starts_each_chain_at_its_first_event_after_it(
    data: Path, key: Path, tmp_path: Path
) -> None:
    # W's and V's events are 1 s apart from T0 + 1 s: from T0 + 7 s on, W's seqs 7..10.
    since = datetime.datetime.fromtimestamp((T0 + 7000) / 1000, datetime.UTC).isoformat()
    out = tmp_path / "export"
    result = runner(data, key).invoke(
        cli, ["audit", "export", "--since", since, "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    statement = json.loads((out / "heads.json").read_bytes())
    chains = {
        c["writer"]: (c["firstSeq"], c["exported"], c["headSeq"]) for c in statement["chains"]
    }
    assert chains == {W: (7, 4, 10), V: (None, 0, 4)}


def test_export_refusals(data: Path, key: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = runner(data).invoke(cli, ["audit", "export", "--output", str(out)])
    assert result.exit_code == 2 and "AUDIT_SIGNING_KEY" in result.output
    assert runner(data).invoke(cli, ["audit", "public-key"]).exit_code == 2

    assert runner(data, key).invoke(cli, ["audit", "export", "--output", str(out)]).exit_code == 0
    again = runner(data, key).invoke(cli, ["audit", "export", "--output", str(out)])
    assert again.exit_code == 1 and "already holds an export" in again.output

    tamper(data, "UPDATE audit_events SET agent_id = 7 WHERE writer = :w AND seq = 2", w=V)
    broken = tmp_path / "broken"
    result = runner(data, key).invoke(cli, ["audit", "export", "--output", str(broken)])
    assert result.exit_code == 1 and V in result.output
    assert not (broken / "heads.json").exists() and not (broken / "events.jsonl").exists()
    result = runner(data, key).invoke(
        cli, ["audit", "export", "--include-broken", "--output", str(broken)]
    )
    assert result.exit_code == 0
    statement = json.loads((broken / "heads.json").read_bytes())
    assert {c["writer"]: c["broken"] and c["broken"]["problem"] for c in statement["chains"]} == {
        W: None,
        V: "changed",
    }


def test_verify_against_an_export_catches_truncation(data: Path, key: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    assert runner(data, key).invoke(cli, ["audit", "export", "--output", str(out)]).exit_code == 0
    tamper(data, "DELETE FROM audit_events WHERE writer = :w AND seq >= 9", w=W)
    assert runner(data).invoke(cli, ["audit", "verify"]).exit_code == 0
    result = runner(data).invoke(cli, ["audit", "verify", "--heads", str(out / "heads.json")])
    assert result.exit_code == 1
    assert f"{W}  BROKEN at seq 9: truncated" in result.output
