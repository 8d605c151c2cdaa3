"""Small helpers shared by the benchmarks: ports, the gateway's environment, processes, /proc."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def gateway_env(data_dir: Path, port: int, **settings: str) -> dict[str, str]:
    """The inherited environment without any CCGW_* setting, plus the benchmark's own.

    ``settings`` are more gateway keys, given without the prefix (``SENDFILE="OFF"``). Flow
    control is lifted (one client address, one agent, many requests) unless ``settings`` set it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCGW_")}
    env.update(
        CCGW_DATA_DIR=str(data_dir),
        CCGW_LISTEN_HOST="127.0.0.1",
        CCGW_LISTEN_PORT=str(port),
        CCGW_LOG_LEVEL="WARNING",
        CCGW_REQUEST_RATE_PER_AGENT="100000",
        CCGW_REQUEST_RATE="1000000",
        CCGW_MAX_DOWNLOADS_PER_AGENT="1000",
        CCGW_MAX_DOWNLOADS="100000",
        CCGW_MAX_CONNECTIONS_PER_IP="0",
        PYTHONUNBUFFERED="1",
    )
    env.update({f"CCGW_{key}": value for key, value in settings.items()})
    return env


def wait_listening(
    process: subprocess.Popen[bytes], port: int, what: str, timeout_s: float = 30
) -> None:
    """Return once ``port`` on 127.0.0.1 accepts connections; raise if ``process`` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
            continue
        return
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout_s:g} s")


def vm_rss_kib(pid: int) -> int:
    """A process's resident set size (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by a process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_s() -> tuple[float, float]:
    """CPU seconds since boot, all cores: (user + nice + system, steal), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, steal = (int(fields[i]) for i in (0, 1, 2, 7))
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system) / tick, steal / tick


def own_cpu_s() -> float:
    """CPU seconds of this process and of its children that were waited for."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def children(pid: int) -> list[int]:
    """The ids of a process's direct children."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Terminate the processes still running (SIGKILL after 10 s) and reap them all."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"
