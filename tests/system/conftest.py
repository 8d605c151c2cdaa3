"""Fixtures that run ``ccgateway`` as a real subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServeProcess:
    process: subprocess.Popen[str]
    port: int
    data_dir: Path
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text()


def start_serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> ServeProcess:
    port = free_port()
    data_dir = tmp_path / "data"
    full_env = {
        **os.environ,
        "CCGW_LISTEN_HOST": "127.0.0.1",
        "CCGW_LISTEN_PORT": str(port),
        "CCGW_DATA_DIR": str(data_dir),
        **(env or {}),
    }
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("w") as out_file, err.open("w") as err_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "ccgateway", "serve", *args],
            stdout=out_file,
            stderr=err_file,
            env=full_env,
            text=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {err.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        raise AssertionError("serve did not start listening")
    time.sleep(0.1)  # let stdout be flushed
    return ServeProcess(process, port, data_dir, out, err)


@pytest.fixture(scope="module")
def serve_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One demo gateway for a test module (generating the demo videos takes seconds)."""
    running = start_serve(tmp_path_factory.mktemp("demo"), "--demo", env={"PYTHONUNBUFFERED": "1"})
    yield running
    running.process.terminate()
    running.process.wait(10)
