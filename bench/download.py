"""Download benchmark: ccgateway against nginx serving the same file, over loopback.

The bars (from the issue): serving the same 1 GiB file as nginx (``sendfile on``, without
``tcp_nopush``, its faster loopback setting),

- one client over plain HTTP: the gateway's MiB/s at least nginx's (ratio >= 1.0);
- 32 concurrent clients over plain HTTP: aggregate ratio >= 0.9, and the gateway's RSS grows by
  less than 50 MB (10^6 bytes) during them;
- one client over TLS terminated by each server: ratio >= 0.85;
- the median time to first byte of a download from the gateway under 5 ms.

How it runs, all on 127.0.0.1, in a temporary directory removed at the end:

1. ``scripts/ensure-nginx`` (installs Debian's nginx-light if nginx is missing).
2. A file of ``--size-mib`` MiB (a 16 MiB random block repeated, each copy stamped with its
   index), fsynced so no writeback runs during the measurements, then read once into the page
   cache. A self-signed certificate (``ccgateway.cli.tls.ensure_self_signed``) for both servers.
3. DATA_DIR seeded in-process: one agent, and the file registered as the HD rendition of a
   conference with that agent as participant (hashes the file once).
4. nginx with a generated config: ``worker_processes 1`` (one worker serves both servers: the
   gateway is one process on one event loop, so nginx gets one worker too; with 2 cores a second
   worker would also compete with the client), ``sendfile on; tcp_nopush off``, a plain and a TLS
   server on free ports, TLS 1.2/1.3 explicitly (1.22's default lacks 1.3), otherwise defaults.
5. The gateway as ``python -m ccgateway serve --http`` (then ``serve`` with the same certificate):
   LOG_LEVEL=WARNING, AGENT_IDLE_TIMEOUT=86400000 (the run never polls events, so the agent must
   not be signed out for idleness; AUTHMODE stays 2, which rotates GUIDs only on polls), signed in
   with ``PUT onlineagent/{id}``; downloads carry ``Guid: <guid>``.
6. Clients are ``curl`` processes writing to /dev/null; MiB/s is curl's ``speed_download``. Each
   server's first bytes are compared with the file before anything is timed, and a warm-up
   download precedes each phase. Single-client runs alternate nginx and gateway (order flipped
   every round) and report medians. The concurrent phase starts ``--clients`` curls at once, each
   fetching a ``--concurrent-mib`` Range at its own offset; aggregate = bytes / wall time from
   the first spawn to the last exit. VmRSS of the gateway is sampled every 10 ms during its
   concurrent rounds; growth = max during - value just before the first round. TTFB is curl's
   ``time_starttransfer`` of ``Range: bytes=0-0`` requests (connect included, loopback).

Informational lines first, then exactly one ``bar`` line per bar. Exit 0 when the run completed
(bars may FAIL), 1 when the benchmark itself broke.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import grp
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from _common import (
    children,
    cpu_s,
    free_port,
    gateway_env,
    machine_cpu_s,
    own_cpu_s,
    stop,
    verdict,
    vm_rss_kib,
)
from _common import wait_listening as wait_port
from ccgateway.cli import tls
from ccgateway.config import load_settings
from ccgateway.gateway import open_gateway
from ccgateway.recordings.catalog import Registration
from ccgateway.stores.base import FileType

REPO = Path(__file__).resolve().parent.parent
ENSURE_NGINX = REPO / "scripts" / "ensure-nginx"
RESOURCE = "/agentgateway/resource/"
AGENT = 101
PASSWORD = "Bench-pass-1"
CONFERENCE = "bench-conference-1"
RECORD = "bench-record-1"
MIB = 1024 * 1024
MB = 1_000_000
BLOCK = 16 * MIB
WRITE_OUT = "%{http_code} %{size_download} %{speed_download} %{time_starttransfer}\\n"
RSS_EVERY_S = 0.01

BAR_SINGLE = 1.0
BAR_CONCURRENT = 0.9
BAR_RSS_MB = 50.0
BAR_TLS = 0.85
BAR_TTFB_MS = 5.0


class BenchError(RuntimeError):
    """The benchmark itself broke (a server misbehaved, a tool failed, time ran out)."""


# -- servers and curl ---------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    url: str
    pids: list[int]
    curl_args: tuple[str, ...] = ()

    def cpu(self) -> float:
        return sum(cpu_s(pid) for pid in self.pids)


@dataclass(frozen=True)
class Fetch:
    status: int
    size: int
    speed: float  # bytes per second, curl's speed_download
    ttfb_s: float


Range = tuple[int, int]  # first byte, length


def curl_argv(server: Server, byte_range: Range | None, max_time_s: float, out: str) -> list[str]:
    argv = ["curl", "-q", "-sS", "--noproxy", "*", "-o", out, "--max-time", f"{max_time_s:g}"]
    argv += ["-w", WRITE_OUT, *server.curl_args]
    if byte_range is not None:
        start, length = byte_range
        argv += ["-r", f"{start}-{start + length - 1}"]
    argv.append(server.url)
    return argv


def parse_fetch(server: Server, rc: int, stdout: str, stderr: str, expected: int) -> Fetch:
    parts = stdout.split()
    if rc != 0 or len(parts) != 4:
        raise BenchError(f"curl from {server.name} failed (exit {rc}): {stderr.strip()}")
    fetch = Fetch(int(parts[0]), int(parts[1]), float(parts[2]), float(parts[3]))
    if fetch.status not in (200, 206) or fetch.size != expected:
        raise BenchError(
            f"{server.name} answered HTTP {fetch.status} with {fetch.size} bytes,"
            f" expected {expected}"
        )
    return fetch


def fetch(
    server: Server, total: int, byte_range: Range | None = None, out: str = "/dev/null"
) -> Fetch:
    expected = total if byte_range is None else byte_range[1]
    max_time = 30 + expected / (20 * MIB)  # far beyond any plausible speed
    argv = curl_argv(server, byte_range, max_time, out)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=max_time + 10)
    return parse_fetch(server, done.returncode, done.stdout, done.stderr, expected)


class RssSampler:
    """The maximum VmRSS of a process, read every 10 ms in a thread while active."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.max_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self.max_kib = vm_rss_kib(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.max_kib = max(self.max_kib, vm_rss_kib(self.pid))

    def _run(self) -> None:
        while not self._stop.wait(RSS_EVERY_S):
            self.max_kib = max(self.max_kib, vm_rss_kib(self.pid))


@dataclass
class Concurrent:
    wall_s: float
    bytes: int
    client_speeds: list[float]
    server_cpu_s: float
    rss_max_kib: int = 0

    @property
    def aggregate(self) -> float:
        return self.bytes / self.wall_s


def concurrent(
    server: Server,
    ranges: Sequence[Range],
    processes: list[subprocess.Popen[bytes]],
    rss_pid: int | None = None,
) -> Concurrent:
    """All ``ranges`` fetched at once, one curl process each."""
    max_time = 60 + sum(length for _, length in ranges) / (20 * MIB)
    sampler = RssSampler(rss_pid) if rss_pid is not None else None
    with sampler if sampler is not None else contextlib.nullcontext():
        cpu_before = server.cpu()
        started = time.perf_counter()
        batch = []
        for byte_range in ranges:
            argv = curl_argv(server, byte_range, max_time, "/dev/null")
            batch.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            processes.append(batch[-1])
        outputs = [process.communicate(timeout=max_time + 10) for process in batch]
        wall = time.perf_counter() - started
        server_cpu = server.cpu() - cpu_before
    fetches = [
        parse_fetch(server, p.returncode, out.decode(), err.decode(), length)
        for p, (out, err), (_, length) in zip(batch, outputs, ranges, strict=True)
    ]
    speeds = [f.speed for f in fetches]
    result = Concurrent(wall, sum(f.size for f in fetches), speeds, server_cpu)
    if sampler is not None:
        result.rss_max_kib = sampler.max_kib
    return result


class OtherLoad:
    """How much of the machine processes other than this benchmark's used since ``start``."""

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        self._machine, self._steal = machine_cpu_s()
        self._own = own_cpu_s()
        self._started = time.perf_counter()

    def percent(self, running_cpu_s: float = 0.0) -> tuple[float, float]:
        """(others' busy %, steal %) of all cores; ``running_cpu_s``: our unreaped children."""
        machine, steal = machine_cpu_s()
        capacity = (time.perf_counter() - self._started) * (os.cpu_count() or 1)
        others = machine - self._machine - (own_cpu_s() - self._own) - running_cpu_s
        return max(0.0, 100 * others / capacity), 100 * (steal - self._steal) / capacity


# -- setup --------------------------------------------------------------------------------------


def ensure_nginx() -> str:
    done = subprocess.run(["bash", str(ENSURE_NGINX)], capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"scripts/ensure-nginx failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def make_file(path: Path, size: int) -> None:
    """``size`` bytes: a random block repeated, each copy stamped with its index; fsynced."""
    block = bytearray(os.urandom(min(BLOCK, size)))
    with path.open("wb") as handle:
        written, index = 0, 0
        while written < size:
            block[:8] = index.to_bytes(8, "big")
            piece = memoryview(block)[: size - written]
            handle.write(piece)
            written += len(piece)
            index += 1
        handle.flush()
        os.fsync(handle.fileno())


def warm(path: Path) -> None:
    with path.open("rb", buffering=0) as handle:
        while handle.read(BLOCK):
            pass


async def seed(data_dir: Path, media: Path) -> None:
    settings = load_settings(environ=gateway_env(data_dir, 1))
    async with open_gateway(settings) as gateway:
        await gateway.agents.add(AGENT, PASSWORD, name="Bench agent")
        await gateway.catalog.register(
            Registration(
                conference_id=CONFERENCE,
                record_id=RECORD,
                participants=frozenset({AGENT}),
                files={FileType.HD: str(media)},
                vdn=1,
            )
        )


NGINX_CONF = """\
{user}worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush off;
    types {{ }}
    default_type application/octet-stream;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{plain_port};
        root {www};
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {www};
    }}
}}
"""


def start_nginx(
    binary: str,
    directory: Path,
    www: Path,
    cert: Path,
    key: Path,
    processes: list[subprocess.Popen[bytes]],
) -> tuple[int, int, subprocess.Popen[bytes]]:
    directory.mkdir()
    plain_port, tls_port = free_port(), free_port()
    user = ""
    if os.geteuid() == 0:  # the workers would drop to nobody, who cannot read the temp dir
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"
    conf = directory / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            user=user,
            dir=directory,
            www=www,
            cert=cert,
            key=key,
            plain_port=plain_port,
            tls_port=tls_port,
        )
    )
    error_log = directory / "error.log"
    argv = [binary, "-p", str(directory), "-c", str(conf), "-e", str(error_log)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    processes.append(process)
    try:
        wait_port(process, plain_port, "nginx")
        wait_port(process, tls_port, "nginx")
    except RuntimeError:
        print(error_log.read_text(errors="replace") if error_log.exists() else "", file=sys.stderr)
        raise
    return plain_port, tls_port, process


def nginx_workers(master: int) -> list[int]:
    deadline = time.monotonic() + 5
    while not (workers := children(master)):
        if time.monotonic() > deadline:
            raise BenchError("nginx started no worker")
        time.sleep(0.05)
    return workers


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    port: int
    guid: str
    log: Path


def start_gateway(
    data_dir: Path,
    tmp: Path,
    cert: Path | None,
    key: Path | None,
    extra_env: dict[str, str],
    processes: list[subprocess.Popen[bytes]],
) -> Gateway:
    port = free_port()
    env = gateway_env(data_dir, port, AGENT_IDLE_TIMEOUT="86400000")
    argv = [sys.executable, "-m", "ccgateway", "serve"]
    if cert is None or key is None:
        argv.append("--http")
    else:
        env.update(CCGW_TLS_CERT=str(cert), CCGW_TLS_KEY=str(key))
    env.update(extra_env)
    log = tmp / f"gateway-{'plain' if cert is None else 'tls'}.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    processes.append(process)
    try:
        wait_port(process, port, "gateway")
    except RuntimeError:
        print(*log.read_text(errors="replace").splitlines()[-20:], sep="\n", file=sys.stderr)
        raise
    context = None if cert is None else ssl.create_default_context(cafile=str(cert))
    return Gateway(process, port, sign_in(port, context), log)


def sign_in(port: int, context: ssl.SSLContext | None) -> str:
    if context is None:
        connection: http.client.HTTPConnection = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=30
        )
    else:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
    body = json.dumps({"password": PASSWORD, "phonenum": f"7{AGENT}"})
    try:
        connection.request(
            "PUT",
            f"{RESOURCE}onlineagent/{AGENT}",
            body,
            {"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        answer = response.read()
        header = response.getheader("Set-GUID") or ""
    finally:
        connection.close()
    name, _, guid = header.partition("=")
    if response.status != 200 or name != "JSESSIONID" or not guid:
        raise BenchError(f"sign-in failed: HTTP {response.status} {answer[:200]!r}")
    return guid


def gateway_server(name: str, scheme: str, gateway: Gateway, cert: Path | None) -> Server:
    url = (
        f"{scheme}://127.0.0.1:{gateway.port}{RESOURCE}recordfile/{AGENT}/videofiledownload"
        f"?conferenceId={CONFERENCE}&fileType={int(FileType.HD)}"
    )
    args: tuple[str, ...] = ("-H", f"Guid: {gateway.guid}")
    if cert is not None:
        args += ("--cacert", str(cert))
    return Server(name, url, [gateway.process.pid], args)


def tls_parameters(port: int, cert: Path) -> str:
    context = ssl.create_default_context(cafile=str(cert))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped,
    ):
        cipher = wrapped.cipher()
        return f"{wrapped.version()} {cipher[0] if cipher else '?'}"


def check_bytes(server: Server, media: Path, size: int, tmp: Path) -> None:
    """The server sends the file's bytes (a range in the middle, and the last byte)."""
    out = tmp / "check.bin"
    for start, length in ((size // 2, min(MIB, size - size // 2)), (size - 1, 1)):
        fetch(server, size, (start, length), str(out))
        with media.open("rb") as handle:
            handle.seek(start)
            if out.read_bytes() != handle.read(length):
                raise BenchError(f"{server.name} sent other bytes than the file at {start}")
    out.unlink()


# -- phases -------------------------------------------------------------------------------------


def mib_s(bytes_per_s: float) -> float:
    return bytes_per_s / MIB


def alternate(
    servers: Sequence[Server], rounds: int, run: Callable[[Server], float]
) -> dict[str, list[float]]:
    """``run`` on each server per round, the order flipped every round; values by server name."""
    values: dict[str, list[float]] = {s.name: [] for s in servers}
    for number in range(rounds):
        for server in servers if number % 2 == 0 else list(reversed(servers)):
            values[server.name].append(run(server))
    return values


@dataclass
class SingleResult:
    speeds: dict[str, list[float]]
    cpu_per_gib: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.speeds[name])


def single_client(servers: Sequence[Server], size: int, rounds: int) -> SingleResult:
    result = SingleResult({})
    cpu: dict[str, list[float]] = {s.name: [] for s in servers}

    def one(server: Server) -> float:
        before = server.cpu()
        speed = fetch(server, size).speed
        cpu[server.name].append((server.cpu() - before) / (size / (1024 * MIB)))
        return speed

    result.speeds = alternate(servers, rounds, one)
    result.cpu_per_gib = cpu
    for server in servers:
        runs = " ".join(f"{mib_s(v):.0f}" for v in result.speeds[server.name])
        print(
            f"  {server.name:<14} median {mib_s(result.median(server.name)):7.0f} MiB/s"
            f"  (runs {runs}; server CPU {statistics.median(cpu[server.name]):.2f} s/GiB)",
            flush=True,
        )
    return result


def spread_ranges(size: int, clients: int, length: int) -> list[Range]:
    """``clients`` ranges of ``length`` bytes at offsets spread evenly over the file."""
    length = min(length, size)
    last = size - length
    return [((last * i // max(1, clients - 1)) // 4096 * 4096, length) for i in range(clients)]


# -- the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace, tmp: Path, processes: list[subprocess.Popen[bytes]]) -> int:
    started = time.perf_counter()
    size = args.size_mib * MIB
    extra_env = dict(item.split("=", 1) for item in args.gateway_env)
    nginx_binary = ensure_nginx()
    nginx_version = subprocess.run(
        [nginx_binary, "-v"], capture_output=True, text=True
    ).stderr.strip()
    curl_version = subprocess.run(["curl", "--version"], capture_output=True, text=True)
    print(
        f"download benchmark: {args.size_mib} MiB file, loopback, {os.cpu_count()} CPU cores"
        " shared by curl, nginx and the gateway",
        flush=True,
    )
    print(
        f"  {nginx_version.removeprefix('nginx version: ')} ({nginx_binary}): worker_processes 1"
        " (one process, like the gateway), sendfile on, tcp_nopush off"
    )
    print(f"  {curl_version.stdout.split(chr(10))[0]}")
    print(f"  python {sys.version.split()[0]}, gateway env extra: {extra_env or 'none'}")
    load = OtherLoad()
    time.sleep(1)
    others, steal = load.percent()
    print(f"  other processes kept {others:.0f}% of the machine busy in the second before the run")

    www = tmp / "www"
    www.mkdir()
    media = www / "recording.mp4"
    phase = time.perf_counter()
    make_file(media, size)
    warm(media)
    print(f"made, fsynced and cached the file in {time.perf_counter() - phase:.1f} s", flush=True)
    cert, key, _ = tls.ensure_self_signed(tmp / "tls")
    data_dir = tmp / "data"
    phase = time.perf_counter()
    asyncio.run(seed(data_dir, media))
    print(f"seeded agent {AGENT} and registered the file in {time.perf_counter() - phase:.1f} s")

    load.start()
    plain_port, tls_port, nginx = start_nginx(
        nginx_binary, tmp / "nginx", www, cert, key, processes
    )
    workers = nginx_workers(nginx.pid)
    nginx_plain = Server("nginx", f"http://127.0.0.1:{plain_port}/{media.name}", workers)
    nginx_tls = Server(
        "nginx-tls", f"https://127.0.0.1:{tls_port}/{media.name}", workers, ("--cacert", str(cert))
    )

    # -- plain HTTP ---------------------------------------------------------------------------
    gateway = start_gateway(data_dir, tmp, None, None, extra_env, processes)
    gw_plain = gateway_server("gateway", "http", gateway, None)
    plain = [nginx_plain, gw_plain]
    for server in plain:
        check_bytes(server, media, size, tmp)
        fetch(server, size, (0, min(size, 256 * MIB)))  # warm-up
    print(f"plain HTTP, one client, full file, {args.repeats} runs each:", flush=True)
    single = single_client(plain, size, args.repeats)

    print(f"time to first byte, Range bytes=0-0, {args.ttfb_samples} requests each:", flush=True)
    for server in plain:
        for _ in range(3):
            fetch(server, size, (0, 1))

    def first_byte(server: Server) -> float:
        time.sleep(0.01)
        return fetch(server, size, (0, 1)).ttfb_s

    ttfb = alternate(plain, args.ttfb_samples, first_byte)
    for server in plain:
        values = sorted(ttfb[server.name])
        print(
            f"  {server.name:<14} median {statistics.median(values) * 1000:6.2f} ms"
            f"  (min {values[0] * 1000:.2f}, p90 {values[int(len(values) * 0.9)] * 1000:.2f},"
            f" max {values[-1] * 1000:.2f})"
        )

    ranges = spread_ranges(size, args.clients, args.concurrent_mib * MIB)
    per_client = ranges[0][1]
    print(
        f"plain HTTP, {args.clients} clients at once, each a {per_client / MIB:.0f} MiB range"
        f" ({args.clients * per_client / MIB:.0f} MiB per round), {args.rounds} rounds each:",
        flush=True,
    )
    time.sleep(0.5)
    rss_before = vm_rss_kib(gateway.process.pid)
    rounds: dict[str, list[Concurrent]] = {s.name: [] for s in plain}

    def crowd(server: Server) -> float:
        rss_pid = gateway.process.pid if server is gw_plain else None
        result = concurrent(server, ranges, processes, rss_pid)
        rounds[server.name].append(result)
        return result.aggregate

    aggregates = alternate(plain, args.rounds, crowd)
    rss_after = vm_rss_kib(gateway.process.pid)
    rss_max = max(r.rss_max_kib for r in rounds[gw_plain.name])
    for server in plain:
        speeds = [s for r in rounds[server.name] for s in r.client_speeds]
        walls = " ".join(f"{r.wall_s:.2f}" for r in rounds[server.name])
        busy = statistics.median(100 * r.server_cpu_s / r.wall_s for r in rounds[server.name])
        each = aggregates[server.name]
        print(
            f"  {server.name:<14} aggregate median {mib_s(statistics.median(each)):7.0f}"
            f" MiB/s  (rounds {' '.join(f'{mib_s(a):.0f}' for a in each)};"
            f" wall s {walls}; per client min/median/max {mib_s(min(speeds)):.0f}/"
            f"{mib_s(statistics.median(speeds)):.0f}/{mib_s(max(speeds)):.0f};"
            f" server CPU {busy:.0f}% of a core)",
            flush=True,
        )
    rss_growth_mb = (rss_max - rss_before) * 1024 / MB
    print(
        f"  gateway VmRSS before {rss_before / 1024:.1f} MiB, max during"
        f" {rss_max / 1024:.1f} MiB, after {rss_after / 1024:.1f} MiB:"
        f" growth {rss_growth_mb:.1f} MB ({(rss_max - rss_before) / 1024:.1f} MiB)"
    )
    stop([gateway.process])
    log_lines = gateway.log.read_text(errors="replace").splitlines()
    noise = [line for line in log_lines if "serving plain HTTP" not in line]

    # -- TLS ------------------------------------------------------------------------------------
    gateway = start_gateway(data_dir, tmp, cert, key, extra_env, processes)
    gw_tls = gateway_server("gateway-tls", "https", gateway, cert)
    secure = [nginx_tls, gw_tls]
    print(
        f"TLS parameters: nginx {tls_parameters(tls_port, cert)},"
        f" gateway {tls_parameters(gateway.port, cert)}"
    )
    for server in secure:
        check_bytes(server, media, size, tmp)
        fetch(server, size, (0, min(size, 128 * MIB)))  # warm-up
    print(f"TLS, one client, full file, {args.tls_repeats} runs each:", flush=True)
    single_tls = single_client(secure, size, args.tls_repeats)

    tls_ranges = spread_ranges(size, args.clients, args.tls_concurrent_mib * MIB)
    print(
        f"TLS, {args.clients} clients at once, each a {tls_ranges[0][1] / MIB:.0f} MiB range,"
        " one round each (informational):",
        flush=True,
    )
    time.sleep(0.5)
    tls_rss_before = vm_rss_kib(gateway.process.pid)
    for server in secure:
        rss_pid = gateway.process.pid if server is gw_tls else None
        result = concurrent(server, tls_ranges, processes, rss_pid)
        extra = ""
        if rss_pid is not None:
            growth = (result.rss_max_kib - tls_rss_before) * 1024 / MB
            extra = f"; gateway VmRSS growth {growth:.1f} MB"
        print(
            f"  {server.name:<14} aggregate {mib_s(result.aggregate):7.0f} MiB/s"
            f"  (wall {result.wall_s:.2f} s; server CPU"
            f" {100 * result.server_cpu_s / result.wall_s:.0f}% of a core{extra})",
            flush=True,
        )
    stop([gateway.process])
    log_lines = gateway.log.read_text(errors="replace").splitlines()
    noise += [line for line in log_lines if "TLS certificate" not in line]
    nginx_errors = (tmp / "nginx" / "error.log").read_text(errors="replace").splitlines()
    others, steal = load.percent(cpu_s(nginx.pid) + nginx_plain.cpu())

    # -- summary --------------------------------------------------------------------------------
    single_ratio = single.median("gateway") / single.median("nginx")
    concurrent_ratio = statistics.median(aggregates["gateway"]) / statistics.median(
        aggregates["nginx"]
    )
    tls_ratio = single_tls.median("gateway-tls") / single_tls.median("nginx-tls")
    ttfb_ms = statistics.median(ttfb["gateway"]) * 1000
    print()
    print(
        f"single_mib_s nginx {mib_s(single.median('nginx')):.0f}"
        f" gateway {mib_s(single.median('gateway')):.0f} ratio {single_ratio:.3f}"
    )
    print(
        f"concurrent{args.clients}_mib_s nginx {mib_s(statistics.median(aggregates['nginx'])):.0f}"
        f" gateway {mib_s(statistics.median(aggregates['gateway'])):.0f}"
        f" ratio {concurrent_ratio:.3f}"
    )
    print(
        f"tls_mib_s nginx {mib_s(single_tls.median('nginx-tls')):.0f}"
        f" gateway {mib_s(single_tls.median('gateway-tls')):.0f} ratio {tls_ratio:.3f}"
    )
    print(
        f"ttfb_median_ms nginx {statistics.median(ttfb['nginx']) * 1000:.2f} gateway {ttfb_ms:.2f}"
    )
    print(f"gateway_log_lines {len(noise)}")
    for line in noise[:10]:
        print(f"  {line}")
    print(f"nginx_error_log_lines {len(nginx_errors)}")
    for line in nginx_errors[:10]:
        print(f"  {line}")
    print(
        f"other_load_pct {others:.0f} (CPU other processes used during the measurements, % of"
        f" all {os.cpu_count()} cores; steal {steal:.0f}%)"
    )
    if others > 10:
        print("  WARNING: the machine was busy with other work: the ratios are unreliable")
    print(f"run_s {time.perf_counter() - started:.1f}")
    print(f"bar single_vs_nginx {single_ratio:.3f} >=1.0 {verdict(single_ratio >= BAR_SINGLE)}")
    print(
        f"bar concurrent{args.clients}_vs_nginx {concurrent_ratio:.3f} >=0.9"
        f" {verdict(concurrent_ratio >= BAR_CONCURRENT)}"
    )
    print(f"bar rss_growth_mb {rss_growth_mb:.1f} <50 {verdict(rss_growth_mb < BAR_RSS_MB)}")
    print(f"bar tls_vs_nginx {tls_ratio:.3f} >=0.85 {verdict(tls_ratio >= BAR_TLS)}")
    print(f"bar ttfb_median_ms {ttfb_ms:.2f} <5 {verdict(ttfb_ms < BAR_TTFB_MS)}")
    return 0


# -- entry point --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the file")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument(
        "--concurrent-mib", type=int, default=256, help="bytes each concurrent client fetches"
    )
    parser.add_argument("--rounds", type=int, default=3, help="concurrent rounds per server")
    parser.add_argument("--repeats", type=int, default=5, help="plain single-client runs")
    parser.add_argument("--tls-repeats", type=int, default=5, help="TLS single-client runs")
    parser.add_argument(
        "--tls-concurrent-mib", type=int, default=64, help="bytes per client in the TLS crowd"
    )
    parser.add_argument("--ttfb-samples", type=int, default=50)
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the gateway, e.g. CCGW_SENDFILE=OFF (repeatable)",
    )
    parser.add_argument("--tmp-dir", default=None, help="where the temporary directory goes")
    parser.add_argument("--timeout", type=int, default=540, help="hard limit of the run, s")
    args = parser.parse_args(argv)
    if args.size_mib < 1 or args.clients < 1 or args.concurrent_mib < 1:
        parser.error("--size-mib, --clients and --concurrent-mib must be >= 1")
    if min(args.rounds, args.repeats, args.tls_repeats, args.ttfb_samples) < 1:
        parser.error("--rounds, --repeats, --tls-repeats and --ttfb-samples must be >= 1")
    if any("=" not in item for item in args.gateway_env):
        parser.error("--gateway-env takes NAME=VALUE")
    return args


def _time_out(signum: int, frame: FrameType | None) -> None:
    raise BenchError("the run exceeded --timeout")


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise BenchError(f"stopped by signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("curl") is None:
        print("error: curl is needed", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="ccgw-bench-download-", dir=args.tmp_dir))
    processes: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGALRM, _time_out)
    signal.signal(signal.SIGTERM, _terminated)  # clean up as on Ctrl-C
    signal.alarm(args.timeout)
    try:
        return run(args, tmp, processes)
    except (BenchError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        stop(processes)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
