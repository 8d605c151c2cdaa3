"""``ccgateway serve`` as a subprocess: HTTPS by default, demo agents, the README's curl line."""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest

from ccgateway.cli.tls import fingerprint
from tests.system.conftest import ServeProcess, free_port, start_serve


def demo_credentials(stdout: str) -> dict[int, str]:
    return {int(m[1]): m[2] for m in re.finditer(r"^  (\d{3})  (\S+)  ", stdout, re.MULTILINE)}


async def test_demo_serves_https_with_a_generated_certificate(serve_demo: ServeProcess) -> None:
    out = serve_demo.stdout()
    cert = serve_demo.data_dir / "tls" / "cert.pem"
    assert f"SHA-256 fingerprint {fingerprint(cert)}" in out
    creds = demo_credentials(out)
    assert set(creds) == {101, 102, 103, 201}
    context = ssl.create_default_context(cafile=str(cert))
    base = f"https://localhost:{serve_demo.port}/agentgateway/resource"
    async with aiohttp.ClientSession() as http:
        async with http.put(
            f"{base}/onlineagent/103",
            json={"password": creds[103], "phonenum": "7103"},
            ssl=context,
        ) as response:
            body = await response.json(content_type=None)
            guid = response.headers["Set-GUID"].split("=", 1)[1]
        assert body["retcode"] == "0"
        async with http.get(f"{base}/agentevent/103", headers={"Guid": guid}, ssl=context) as r:
            event = await r.json(content_type=None)
        assert event["event"]["eventType"] == "AgentOther_InService"
    assert creds[103] not in serve_demo.stderr()
    assert guid not in serve_demo.stderr()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_printed_curl_line_signs_in(serve_demo: ServeProcess) -> None:
    line = next(s.strip() for s in serve_demo.stdout().splitlines() if "curl" in s and "PUT" in s)
    argv = shlex.split(line)
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=20, cwd=serve_demo.data_dir.parent
    )
    assert "Set-GUID: JSESSIONID=" in result.stdout, result.stderr
    assert '"retcode":"0"' in result.stdout


def test_demo_credentials_survive_a_restart(tmp_path: Path) -> None:
    first = start_serve(tmp_path, "--demo", env={"PYTHONUNBUFFERED": "1"})
    creds = demo_credentials(first.stdout())
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(10) == 0
    second = start_serve(tmp_path, "--demo", env={"PYTHONUNBUFFERED": "1"})
    try:
        assert demo_credentials(second.stdout()) == creds
    finally:
        second.process.terminate()
        second.process.wait(10)


def test_demo_starts_with_the_default_relative_data_dir(tmp_path: Path) -> None:
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("CCGW_")}
    port = free_port()
    env.update(CCGW_LISTEN_HOST="127.0.0.1", CCGW_LISTEN_PORT=str(port), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "ccgateway", "serve", "--demo", "--http"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(4)]
        assert any("Demo agents" in line for line in lines), lines
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert "Traceback" not in err
    assert (tmp_path / "ccgateway-data" / "demo-media").is_dir()


def test_plain_http_says_so_in_the_log(tmp_path: Path) -> None:
    running = start_serve(tmp_path, "--http")
    try:
        log = running.stderr()
        assert "serving plain HTTP (--http)" in log
        # A first start migrates the new database in one line of ours, not Alembic's dozen.
        assert "alembic" not in log and "Running upgrade" not in log
        assert log.count("database schema migrated") == 1
    finally:
        running.process.terminate()
        running.process.wait(10)


def test_bad_configuration_stops_start_up(tmp_path: Path) -> None:
    import os
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "ccgateway", "serve", "--http"],
        env={**os.environ, "CCGW_AUTHMODE": "7", "CCGW_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "AUTHMODE" in result.stderr and "1 or 2" in result.stderr


async def test_demo_recordings_are_playable_h264(serve_demo: ServeProcess, tmp_path: Path) -> None:
    import av

    creds = demo_credentials(serve_demo.stdout())
    cert = serve_demo.data_dir / "tls" / "cert.pem"
    context = ssl.create_default_context(cafile=str(cert))
    base = f"https://localhost:{serve_demo.port}/agentgateway/resource"
    conference = "7a008307-34ad-435b-bccd-222be5ac5385"
    async with aiohttp.ClientSession() as http:
        async with http.put(
            f"{base}/onlineagent/102/forcelogin",
            json={"password": creds[102], "phonenum": "7102"},
            ssl=context,
        ) as response:
            guid = response.headers["Set-GUID"].split("=", 1)[1]
        for file_type, (width, height) in enumerate(((1280, 720), (640, 360), (1024, 768))):
            url = f"{base}/recordfile/102/videofiledownload?conferenceId={conference}"
            async with http.get(
                f"{url}&fileType={file_type}", headers={"Guid": guid}, ssl=context
            ) as response:
                assert response.status == 200
                body = await response.read()
            path = tmp_path / f"{file_type}.mp4"
            path.write_bytes(body)
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                assert stream.codec_context.name == "h264"
                assert (stream.codec_context.width, stream.codec_context.height) == (width, height)
                assert sum(1 for _ in container.decode(stream)) >= 50
