"""Cluster benchmark: what nginx + two Redis-backed nodes cost against one embedded node.

The bars (from the issue "Scale-out: several gateway nodes behind nginx"):

- the p99 latency of an event poll that finds an event waiting, through nginx and two gateway
  nodes on Redis and PostgreSQL, at most twice that of one embedded node (memory sessions,
  SQLite): ``cluster_p99_vs_embedded < 2.0``;
- one client downloading a 1 GiB recording through the offload (gateway answers, nginx sends the
  file with X-Accel-Redirect) at least 95 % as fast as nginx serving the same file from a plain
  static location: ``offload_vs_nginx >= 0.95``.

How it runs, all on 127.0.0.1, in a temporary directory, a fresh PostgreSQL database
(``ccgw_bench_<random>``, dropped at the end) and Redis database 6 (flushed before and after: the
sessions' key prefix is not configurable yet):

1. ``scripts/ensure-nginx``; the same ``--agents`` long-polling agents plus ``--samplers`` sampler
   agents seeded into PostgreSQL and into the embedded node's SQLite (Argon2id).
2. Both systems at once: two nodes ``serve --http`` (NODE_NAME AgentGateway0/1, SESSIONS_URL on
   Redis, DATABASE_URL on PostgreSQL, ACCEL_REDIRECT=/_ccgw_files) behind nginx from
   ``deploy/nginx/ccgateway.conf`` (rendered by ``tests/system/cluster.py``), and one embedded
   node ``serve --http`` (SQLite, memory sessions). For this benchmark only, the rendered nginx
   config gets a plain HTTP listener and a static location ``/static/`` with the offload
   location's file settings (sendfile on, tcp_nopush off). The client uses the plain listener:
   TLS would add its own cost to both sides of each comparison.
3. Latency, on both systems side by side, so that whatever else runs on the machine weighs on
   both alike: on each side every long-polling agent signs in and polls in a loop (held 10 s when
   idle), the first polls spread evenly over one hold; once all hold a poll, sample rounds
   alternate between the sides (order flipped every round). A round registers one recording for
   the side's ``--samplers`` agents through the admin API (not timed: it queues one
   AgentMediaEvent_Record per sampler), then times, one sampler after the other with short
   pauses, the poll that finds its event waiting, from request start to the last body byte.
   The client's garbage collector is off while it samples. (Events of a forced sign-in would do
   too, but each costs an Argon2 hash that crowds the machine: a run would hold far fewer
   samples, and a p99 of a few hundred samples does not repeat.)
4. Download (long polls stopped): a 1 GiB file (``bench/download.py``'s generator) registered
   through the admin API. One ``curl`` at a time writing to /dev/null, alternating offload and
   static (order flipped each round), after a byte check and a warm-up of each; MiB/s is curl's
   ``speed_download``, the median of ``--rounds`` runs. The offload's time to first byte (the
   node's checks and audit write) is printed too.

Client, nginx, nodes and Redis share the machine's cores; the ratios of two sides measured in the
same run are what count, and the run prints how busy other processes kept the machine.
Informational lines first, then exactly two ``bar`` lines. Exit 0 when the run completed (a bar
may FAIL), 1 when the benchmark broke or saw request errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import aiohttp

from _common import children, cpu_s, free_port, gateway_env, stop, verdict, wait_listening
from ccgateway.cli import tls
from ccgateway.config import load_settings
from ccgateway.demo.media import write_demo_recording
from ccgateway.gateway import open_gateway
from ccgateway.recordings.announcements import RECORD_EVENT
from download import OtherLoad, make_file, warm
from sessions import (
    PASSWORD,
    SIGN_IN_EVENTS,
    Agent,
    Stats,
    percentile_ms,
    poll_forever,
    sign_in,
    timed_get,
)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.system import cluster as cl  # noqa: E402

RESOURCE = "/agentgateway/resource/"
FIRST_WORK_NO = 3000
REDIS_DB = 6
TOKEN = "bench-cluster-admin-token"
CONFERENCE = "bench-cluster-conference"
MIB = 1024 * 1024
POLL_TIMEOUT_S = 30.0
HOLD_S = 10.0  # how long the nodes hold an empty poll (AGENT_POLL_WAIT_* defaults)
BAR_P99_RATIO = 2.0
BAR_OFFLOAD_RATIO = 0.95


class BenchError(RuntimeError):
    """The benchmark itself broke."""


# -- latency --------------------------------------------------------------------------------------


@dataclass
class Side:
    """One system under measurement: its base URL, its agents, what was measured."""

    name: str
    base: str
    pollers: list[Agent]
    samplers: list[Agent]
    stats: Stats = field(default_factory=Stats)
    event_s: list[float] = field(default_factory=list)

    def p(self, q: int) -> float:
        return percentile_ms(self.event_s, q)

    @property
    def errors(self) -> int:
        return sum(self.stats.errors.values())


def make_side(name: str, base: str, work_nos: Sequence[int], pollers: int) -> Side:
    return Side(
        name, base, [Agent(w) for w in work_nos[:pollers]], [Agent(w) for w in work_nos[pollers:]]
    )


async def sample_round(
    client: aiohttp.ClientSession, side: Side, number: int, pause_s: float, media: Path
) -> None:
    """One recording registered for all the side's samplers (not timed), then, one sampler after
    the other, the poll that finds its event waiting (timed)."""
    registration = {
        "conferenceId": f"bench-sample-{side.name}-{number}",
        "recordId": f"bench-sample-{side.name}-{number}",
        "participants": [agent.work_no for agent in side.samplers],
        "files": {"hd": str(media)},
        "vdn": 1,
    }
    url = side.base.removesuffix(RESOURCE) + f"{cl.ADMIN}/recordings"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with client.post(url, json=registration, headers=headers) as response:
            await response.read()
            if response.status != 200:
                side.stats.error(f"registration HTTP {response.status}")
                return
    except (aiohttp.ClientError, TimeoutError) as exc:
        side.stats.error(f"registration {type(exc).__name__}")
        return
    for agent in side.samplers:
        await asyncio.sleep(pause_s)
        url = f"{side.base}agentevent/{agent.work_no}"
        try:
            elapsed, response, raw = await timed_get(client, url, {"Guid": agent.guid})
            body = json.loads(raw)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            side.stats.error(f"sample {type(exc).__name__}")
            continue
        agent.guid = response.headers.get("Set-GUID", "").partition("=")[2] or agent.guid
        event = body.get("event") if isinstance(body, dict) else None
        kind = event.get("eventType") if isinstance(event, dict) else None
        if response.status != 200 or kind != RECORD_EVENT:
            side.stats.error(f"sample HTTP {response.status} event {kind}")
        else:
            side.event_s.append(elapsed)


async def measure_latency(sides: Sequence[Side], samples: int, pause_s: float, media: Path) -> None:
    """Background long polls on every side; then sample rounds alternating between the sides."""
    timeout = aiohttp.ClientTimeout(total=POLL_TIMEOUT_S)
    tasks: list[asyncio.Task[None]] = []
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout)
        )
        samplers = [
            await stack.enter_async_context(aiohttp.ClientSession(timeout=timeout)) for _ in sides
        ]
        try:
            limit = asyncio.Semaphore(32)

            async def start(side: Side, agent: Agent) -> None:
                async with limit:
                    await sign_in(client, side.base, agent, side.stats)

            async def poll_later(side: Side, agent: Agent, delay_s: float) -> None:
                await asyncio.sleep(delay_s)
                await poll_forever(client, side.base, agent, side.stats)

            started = time.perf_counter()
            await asyncio.gather(
                *(start(side, a) for side in sides for a in [*side.pollers, *side.samplers])
            )
            agents = sum(len(side.pollers) + len(side.samplers) for side in sides)
            print(f"  signed in {agents} agents in {time.perf_counter() - started:.1f} s")
            # Each side's pollers begin spread evenly over one hold, as agents who signed in over
            # a shift are: both sides then carry the same steady re-poll rate (agents / hold).
            # Begun as fast as sign-in goes, the two nodes' agents re-polled in a 4.5 s wave
            # every 10 s and the embedded node's in an 8 s one: unequal loads.
            for side in sides:
                for number, agent in enumerate(side.pollers):
                    delay_s = HOLD_S * number / len(side.pollers)
                    tasks.append(asyncio.create_task(poll_later(side, agent, delay_s)))
            pollers = [a for side in sides for a in side.pollers]
            deadline = time.monotonic() + HOLD_S + 30
            while sum(a.holding for a in pollers) < len(pollers):
                if time.monotonic() > deadline:
                    raise BenchError(f"only {sum(a.holding for a in pollers)} agents hold a poll")
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            for side, sampler in zip(sides, samplers, strict=True):
                for agent in side.samplers:  # their sign-in events (and keep-alive connections)
                    for _ in SIGN_IN_EVENTS:
                        url = f"{side.base}agentevent/{agent.work_no}"
                        _, response, _ = await timed_get(sampler, url, {"Guid": agent.guid})
                        guid = response.headers.get("Set-GUID", "").partition("=")[2]
                        agent.guid = guid or agent.guid
            rounds = -(-samples // min(len(side.samplers) for side in sides))
            print(
                f"  all {len(pollers)} background agents hold a poll; sampling"
                f" {rounds} rounds per side, alternating",
                flush=True,
            )
            gc.collect()
            gc.freeze()
            gc.disable()
            try:
                pairs = list(zip(sides, samplers, strict=True))
                for number in range(rounds):
                    for side, sampler in pairs if number % 2 == 0 else pairs[::-1]:
                        await sample_round(sampler, side, number, pause_s, media)
            finally:
                gc.enable()
                gc.unfreeze()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    for side in sides:
        print(
            f"  {side.name:<9} {len(side.event_s)} samples, p50 {side.p(50):.2f} ms,"
            f" p99 {side.p(99):.2f} ms, max {max(side.event_s, default=0) * 1000:.2f} ms",
            flush=True,
        )
        for what, count in sorted(side.stats.errors.items()):
            print(f"    error: {count} x {what}")


# -- setup ----------------------------------------------------------------------------------------


async def seed(database_url: str, tmp: Path, embedded_dir: Path, work_nos: Sequence[int]) -> None:
    """The same agents into PostgreSQL and the embedded node's SQLite.

    The two databases are opened (and migrated) one after the other: Alembic's context is global
    to the process, so two migrations must not interleave.
    """
    cluster_env = gateway_env(tmp / "seed", 1, DATABASE_URL=database_url)
    async with (
        open_gateway(load_settings(environ=cluster_env)) as shared,
        open_gateway(load_settings(environ=gateway_env(embedded_dir, 1))) as embedded,
    ):
        for first in range(0, len(work_nos), 100):
            chunk = work_nos[first : first + 100]
            await asyncio.gather(
                *(shared.agents.add(w, PASSWORD) for w in chunk),
                *(embedded.agents.add(w, PASSWORD) for w in chunk),
            )


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def nginx_conf(
    tmp: Path, upstreams: Sequence[str], tls_port: int, plain_port: int, www: Path
) -> str:
    """The deploy template, plus this benchmark's plain listener and static location."""
    cert, key, _ = tls.ensure_self_signed(tmp / "tls")
    text = cl.render_nginx_conf(
        listen=f"127.0.0.1:{tls_port}",
        tls_cert=cert,
        tls_key=key,
        upstreams=upstreams,
        run_dir=tmp / "nginx",
    )
    listen = f"        listen 127.0.0.1:{tls_port} ssl;\n"
    static = (
        f"        location /static/ {{\n            alias {www}/;\n            sendfile on;\n"
        "            tcp_nopush off;\n            sendfile_max_chunk 2m;\n            etag off;\n"
        "        }\n\n"
    )
    if text.count(listen) != 1 or text.count("        location / {\n") != 1:
        raise BenchError("deploy/nginx/ccgateway.conf changed shape: update bench/cluster.py")
    text = text.replace(listen, listen + f"        listen 127.0.0.1:{plain_port};\n")
    return text.replace("        location / {\n", static + "        location / {\n")


# -- download -------------------------------------------------------------------------------------


def curl(
    url: str, headers: Sequence[str], out: str = "/dev/null", byte_range: str = ""
) -> tuple[float, float]:
    """One download with curl: (bytes per second, seconds to the first byte)."""
    argv = ["curl", "-q", "-sS", "--noproxy", "*", "-o", out, "--max-time", "120"]
    argv += ["-w", "%{http_code} %{size_download} %{speed_download} %{time_starttransfer}"]
    for header in headers:
        argv += ["-H", header]
    if byte_range:
        argv += ["-r", byte_range]
    done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=130)
    parts = done.stdout.split()
    if done.returncode != 0 or len(parts) != 4 or parts[0] not in ("200", "206"):
        raise BenchError(f"curl {url} failed: {done.stdout} {done.stderr.strip()}")
    return float(parts[2]), float(parts[3])


def compare_downloads(
    urls: dict[str, tuple[str, list[str]]], media: Path, rounds: int, tmp: Path
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """MiB/s and time to first byte of whole downloads, alternating, after a byte check."""
    size = media.stat().st_size
    check = tmp / "check.bin"
    with media.open("rb") as handle:
        handle.seek(size // 2)
        expected = handle.read(MIB)
    for name, (url, headers) in urls.items():
        curl(url, headers, str(check), f"{size // 2}-{size // 2 + MIB - 1}")
        if check.read_bytes() != expected:
            raise BenchError(f"{name} sent other bytes than the file")
        curl(url, headers)  # warm-up
    speeds: dict[str, list[float]] = {name: [] for name in urls}
    ttfb: dict[str, list[float]] = {name: [] for name in urls}
    names = list(urls)
    for number in range(rounds):
        for name in names if number % 2 == 0 else names[::-1]:
            url, headers = urls[name]
            speed, first = curl(url, headers)
            speeds[name].append(speed / MIB)
            ttfb[name].append(first)
    return speeds, ttfb


# -- the run --------------------------------------------------------------------------------------


def run(args: argparse.Namespace, tmp: Path, processes: list[subprocess.Popen[bytes]]) -> int:
    started = time.perf_counter()
    extra = args.samplers if args.direct else 0
    work_nos = list(range(FIRST_WORK_NO, FIRST_WORK_NO + args.agents + args.samplers + extra))
    nginx_binary = cl.ensure_nginx()
    print(
        f"cluster benchmark: {args.agents} long-polling agents + {args.samplers} samplers,"
        f" {args.samples} timed polls per side, {args.size_mib} MiB download;"
        f" loopback, {os.cpu_count()} CPU cores shared by everything",
        flush=True,
    )
    cl.flush_redis(REDIS_DB)
    database_url = cl.create_database(prefix="ccgw_bench_")
    try:
        return _run(args, tmp, processes, work_nos, nginx_binary, database_url, started)
    finally:
        stop(processes)
        cl.drop_database(database_url)
        cl.flush_redis(REDIS_DB)


def _run(
    args: argparse.Namespace,
    tmp: Path,
    processes: list[subprocess.Popen[bytes]],
    work_nos: list[int],
    nginx_binary: str,
    database_url: str,
    started: float,
) -> int:
    embedded_dir = tmp / "embedded"
    phase = time.perf_counter()
    asyncio.run(seed(database_url, tmp, embedded_dir, work_nos))
    print(
        f"seeded {len(work_nos)} agents into PostgreSQL and SQLite in"
        f" {time.perf_counter() - phase:.1f} s",
        flush=True,
    )

    # -- both systems up: two nodes behind nginx, one embedded node -------------------------------
    serve = [sys.executable, "-m", "ccgateway", "serve", "--http"]
    ports = [free_port(), free_port(), free_port()]  # node 0, node 1, embedded
    for i, port in enumerate(ports[:2]):
        env = gateway_env(
            tmp / f"node{i}",
            port,
            NODE_NAME=f"AgentGateway{i}",
            DATABASE_URL=database_url,
            SESSIONS_URL=cl.redis_url(REDIS_DB),
            GUID_DIGEST_KEY="bench-guid-digest-key-0123456789",
            ACCEL_REDIRECT=cl.ACCEL_PREFIX,
            ADMIN_TOKEN=TOKEN,
            AGENT_IDLE_TIMEOUT="86400000",
        )
        processes.append(spawn(serve, env, tmp / f"node{i}.log"))
    env = gateway_env(embedded_dir, ports[2], AGENT_IDLE_TIMEOUT="86400000", ADMIN_TOKEN=TOKEN)
    processes.append(spawn(serve, env, tmp / "embedded.log"))
    www = tmp / "www"
    www.mkdir()
    tls_port, plain_port = free_port(), free_port()
    conf = nginx_conf(tmp, [f"127.0.0.1:{p}" for p in ports[:2]], tls_port, plain_port, www)
    nginx_dir = tmp / "nginx"
    nginx_dir.mkdir(exist_ok=True)
    (nginx_dir / "nginx.conf").write_text(conf)
    argv = [nginx_binary, "-p", str(nginx_dir), "-c", str(nginx_dir / "nginx.conf")]
    argv += ["-e", str(nginx_dir / "error.log"), "-g", "daemon off;"]
    processes.append(spawn(argv, dict(os.environ), tmp / "nginx.out"))
    for process, port in zip(processes, [*ports, plain_port], strict=True):
        wait_listening(process, port, "nginx" if port == plain_port else "gateway")
    front = f"http://127.0.0.1:{plain_port}"
    embedded_base = f"http://127.0.0.1:{ports[2]}{RESOURCE}"
    print(
        f"up: nginx {front} -> nodes on ports {ports[:2]} (PostgreSQL, Redis db {REDIS_DB});"
        f" embedded node on port {ports[2]} (SQLite, memory sessions)",
        flush=True,
    )

    def our_cpu_s() -> float:
        return sum(cpu_s(pid) for p in processes for pid in [p.pid, *children(p.pid)])

    load = OtherLoad()
    ours_before = our_cpu_s()

    # -- latency, side by side ---------------------------------------------------------------
    print(
        f"poll latency: {args.agents} long-polling agents on each side,"
        " cluster through nginx's plain listener, embedded directly:",
        flush=True,
    )
    shared = work_nos[: args.agents + args.samplers]
    cluster = make_side("cluster", front + RESOURCE, shared, args.agents)
    embedded = make_side("embedded", embedded_base, shared, args.agents)
    sides = [cluster, embedded]
    if args.direct:  # node 0 without nginx, its own samplers: what the nginx hop costs
        node_base = f"http://127.0.0.1:{ports[0]}{RESOURCE}"
        sides.append(make_side("node0", node_base, work_nos[len(shared) :], 0))
    sample_media = www / "sample.mp4"  # playable: random bytes would be announced as failed
    write_demo_recording(sample_media, width=320, height=180, seconds=1.0, label="bench")
    asyncio.run(measure_latency(sides, args.samples, args.pause_ms / 1000, sample_media))

    # -- download ---------------------------------------------------------------------------------
    media = www / "recording.mp4"
    phase = time.perf_counter()
    make_file(media, args.size_mib * MIB)
    warm(media)
    agent = work_nos[-1]
    registered = cl.call(
        front,
        "POST",
        f"{cl.ADMIN}/recordings",
        headers={"Authorization": f"Bearer {TOKEN}"},
        body={
            "conferenceId": CONFERENCE,
            "recordId": "bench-cluster-record",
            "participants": [agent],
            "files": {"hd": str(media)},
            "vdn": 1,
        },
        timeout_s=120,
    )
    if registered.status != 200:
        raise BenchError(f"registration failed: {registered.status} {registered.body[:200]!r}")
    answer = cl.call(
        front,
        "PUT",
        f"{RESOURCE}onlineagent/{agent}/forcelogin",
        body={"password": PASSWORD, "phonenum": f"7{agent}"},
    )
    guid = answer.header("Set-GUID").partition("=")[2]
    if not guid:
        raise BenchError(f"forcelogin failed: {answer.body[:200]!r}")
    print(
        f"download: made, cached and registered a {args.size_mib} MiB file in"
        f" {time.perf_counter() - phase:.1f} s; one curl at a time, {args.rounds} runs each,"
        " nginx's plain listener:",
        flush=True,
    )
    download = (
        f"{RESOURCE}recordfile/{agent}/videofiledownload?conferenceId={CONFERENCE}&fileType=0"
    )
    urls = {
        "offload": (front + download, [f"Guid: {guid}"]),
        "nginx-static": (f"{front}/static/{media.name}", []),
    }
    speeds, ttfb = compare_downloads(urls, media, args.rounds, tmp)
    for name, values in speeds.items():
        runs = " ".join(f"{v:.0f}" for v in values)
        print(
            f"  {name:<13} median {statistics.median(values):6.0f} MiB/s (runs {runs});"
            f" time to first byte median {statistics.median(ttfb[name]) * 1000:.1f} ms"
        )
    audit = cl.query(
        database_url,
        "SELECT split_part(writer, '@', 1), count(*) FROM audit_events"
        " WHERE outcome = 'offloaded' GROUP BY 1",
    )
    print(f"  offloaded downloads by node (audit): {dict(sorted(audit))}")
    others, steal = load.percent(our_cpu_s() - ours_before)
    nginx_errors = (nginx_dir / "error.log").read_text(errors="replace").splitlines()

    # -- summary ----------------------------------------------------------------------------------
    p99_ratio = cluster.p(99) / embedded.p(99)
    offload = statistics.median(speeds["offload"])
    static = statistics.median(speeds["nginx-static"])
    offload_ratio = offload / static
    errors = sum(side.errors for side in sides)
    print()
    for q in (50, 99):
        line = " ".join(f"{side.name} {side.p(q):.2f}" for side in sides)
        print(f"poll_event_p{q}_ms {line}")
    print(f"download_mib_s offload {offload:.0f} nginx_static {static:.0f}")
    print(f"errors {errors}")
    print(f"nginx_error_log_lines {len(nginx_errors)}")
    for line in nginx_errors[:5]:
        print(f"  {line}")
    print(
        f"other_load_pct {others:.0f} (CPU used by other processes, Redis included, during the"
        f" measurements, % of all {os.cpu_count()} cores; steal {steal:.0f}%)"
    )
    if others > 10:
        print("  WARNING: the machine was busy with other work: the ratios are less reliable")
    print(f"run_s {time.perf_counter() - started:.1f}")
    if errors:
        print("INVALID RUN: request errors (listed above)", file=sys.stderr)
    ok = p99_ratio < BAR_P99_RATIO
    print(f"bar cluster_p99_vs_embedded {p99_ratio:.3f} <{BAR_P99_RATIO:g} {verdict(ok)}")
    ok = offload_ratio >= BAR_OFFLOAD_RATIO
    print(f"bar offload_vs_nginx {offload_ratio:.3f} >={BAR_OFFLOAD_RATIO:g} {verdict(ok)}")
    return 1 if errors else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=200, help="background long-polling agents")
    parser.add_argument("--samplers", type=int, default=10, help="agents whose polls are timed")
    parser.add_argument("--samples", type=int, default=2000, help="timed polls per side")
    parser.add_argument("--pause-ms", type=int, default=10, help="pause between timed requests")
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the download")
    parser.add_argument("--rounds", type=int, default=31, help="downloads per side")
    parser.add_argument("--timeout", type=int, default=290, help="hard limit of the run, s")
    parser.add_argument(
        "--direct",
        action="store_true",
        help="also time polls sent to node 0 directly (no nginx), with their own samplers",
    )
    args = parser.parse_args(argv)
    if min(args.agents, args.samplers, args.size_mib, args.rounds) < 1 or args.samples < 2:
        parser.error("counts must be >= 1 (--samples >= 2)")
    return args


def _time_out(signum: int, frame: FrameType | None) -> None:
    raise BenchError("the run exceeded --timeout")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("curl") is None:
        print("error: curl is needed", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="ccgw-bench-cluster-"))
    processes: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGALRM, _time_out)
    signal.alarm(args.timeout)
    try:
        return run(args, tmp, processes)
    except (BenchError, cl.Unavailable, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        with contextlib.suppress(Exception):
            stop(processes)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
