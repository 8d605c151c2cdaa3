"""Sessions benchmark: thousands of agents long-polling one gateway process, over loopback.

The bar (from the issue): 2,000 agents signed in and long-polling concurrently against one
gateway process; the gateway's RSS stays under 150 MiB and the p99 latency of an event poll
that finds an event waiting stays under 20 ms.

How it runs, all on 127.0.0.1, in well under three minutes:

1. Seed ``--agents`` long-polling agents plus ``--samplers`` sampler agents into a temporary
   DATA_DIR through ``AgentDirectory.add`` (Argon2id, two hashes at a time: the slow part).
2. Start ``python -m ccgateway serve --http`` on it (LOG_LEVEL=WARNING, other settings default:
   AUTHMODE=2, polls held 100 x 100 ms) and a trivial aiohttp "hello" app as a baseline.
3. Sign every agent in, a bounded number at a time. Each long-polling agent starts its poll loop
   as soon as it is signed in (poll, adopt ``Set-GUID``, poll again at once), so the loops are
   spread over the sign-in window rather than all timing out in the same instant. The first
   two polls drain AgentOther_InService and AgentState_Ready; after them each poll is held.
4. Once every long-polling agent holds a poll, the sampler agents take turns: ``forcelogin``
   (not timed: Argon2-bound), then the two polls that find InService and Ready waiting are timed
   from request start to the last body byte. A pause between requests keeps the sampler from
   queueing behind itself. Each gateway round is followed by two timed requests to the hello app
   through the same kind of client connection: the floor of what this client and loopback cost.
   The gateway's VmRSS is read from /proc meanwhile; the RSS bar is its maximum, in MiB.

Client and servers share the machine (client, gateway and hello app are three processes), so the
latencies include client-side scheduling; the baseline shows how much. The client's garbage
collector is off while it measures; the gateway runs as shipped. Errors (HTTP failures, retcodes
other than "0", unexpected events) make the run invalid: they are listed, and the exit code is 1.
A bar that fails is printed as FAIL with exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from _common import free_port, gateway_env, stop, verdict
from ccgateway.config import load_settings
from ccgateway.gateway import open_gateway

RSS_BAR_MIB = 150.0
P99_BAR_MS = 20.0
FIRST_WORK_NO = 1000
PASSWORD = "Bench-pass-1"  # one password for all: hashes still differ by salt
RESOURCE = "/agentgateway/resource/"
SIGN_IN_EVENTS = ("AgentOther_InService", "AgentState_Ready")
POLL_TIMEOUT_S = 30.0  # client side; the gateway holds a poll 10 s by default
RSS_EVERY_S = 0.1

HELLO_APP = """
import sys
from aiohttp import web

BODY = b'{"message":"","retcode":"0","event":null}'


async def hello(request):
    return web.Response(body=BODY, content_type="application/json")


app = web.Application()
app.router.add_get("/hello", hello)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


# -- bookkeeping --------------------------------------------------------------------------------


@dataclass
class Agent:
    work_no: int
    guid: str = ""
    events: list[str] = field(default_factory=list)
    polling: bool = False  # a poll request of this agent is in flight

    @property
    def holding(self) -> bool:
        """In flight after the sign-in events were drained: the gateway holds this poll."""
        return self.polling and len(self.events) >= len(SIGN_IN_EVENTS)


@dataclass
class Stats:
    errors: Counter[str] = field(default_factory=Counter)
    null_polls: int = 0
    hold_s: list[float] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors[what] += 1


@dataclass
class Memory:
    rss_kib: list[int] = field(default_factory=list)
    hwm_kib: int = 0


# -- processes ----------------------------------------------------------------------------------


def spawn(argv: list[str], env: dict[str, str], log_path: Path | None) -> subprocess.Popen[bytes]:
    """Start a server process, its output to ``log_path`` (discarded when None)."""
    if log_path is None:
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    with log_path.open("wb") as log_file:
        return subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT)


async def wait_listening(process: subprocess.Popen[bytes], port: int, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"{what} did not listen on port {port} within 30 s")


def proc_status_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by a process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def watch_memory(pid: int, memory: Memory) -> None:
    while True:
        rss, hwm = proc_status_kib(pid)
        memory.rss_kib.append(rss)
        memory.hwm_kib = max(memory.hwm_kib, hwm)
        await asyncio.sleep(RSS_EVERY_S)


# -- seeding ------------------------------------------------------------------------------------


async def seed(data_dir: Path, port: int, work_nos: Sequence[int]) -> None:
    settings = load_settings(environ=gateway_env(data_dir, port))
    started = time.perf_counter()
    batch = 250
    async with open_gateway(settings) as gateway:
        for first in range(0, len(work_nos), batch):
            chunk = work_nos[first : first + batch]
            await asyncio.gather(*(gateway.agents.add(w, PASSWORD) for w in chunk))
            done = first + len(chunk)
            elapsed = time.perf_counter() - started
            print(f"  seeded {done}/{len(work_nos)} agents ({elapsed:.1f} s)", flush=True)


# -- client -------------------------------------------------------------------------------------


def adopt_guid(agent: Agent, response: aiohttp.ClientResponse) -> None:
    value = response.headers.get("Set-GUID")
    if value is not None:
        name, _, guid = value.partition("=")
        if name == "JSESSIONID" and guid:
            agent.guid = guid


def sign_in_body(work_no: int) -> dict[str, str]:
    return {"password": PASSWORD, "phonenum": f"7{work_no}"}


async def sign_in(
    client: aiohttp.ClientSession, base: str, agent: Agent, stats: Stats, *, force: bool = False
) -> bool:
    path = f"onlineagent/{agent.work_no}" + ("/forcelogin" if force else "")
    what = "forcelogin" if force else "sign-in"
    try:
        async with client.put(base + path, json=sign_in_body(agent.work_no)) as response:
            body: Any = await response.json(content_type=None)
            if response.status != 200:
                stats.error(f"{what} HTTP {response.status}")
                return False
            if not isinstance(body, dict) or body.get("retcode") != "0":
                stats.error(f"{what} retcode {_retcode(body)}")
                return False
            old = agent.guid
            adopt_guid(agent, response)
            if not agent.guid or agent.guid == old:
                stats.error(f"{what} without a new Set-GUID")
                return False
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        stats.error(f"{what} {type(exc).__name__}")
        return False
    agent.events.clear()
    return True


def _retcode(body: Any) -> str:
    return str(body.get("retcode")) if isinstance(body, dict) else "(not a JSON object)"


async def poll_forever(
    client: aiohttp.ClientSession, base: str, agent: Agent, stats: Stats
) -> None:
    """Long-poll like a client: poll, adopt Set-GUID, poll again at once."""
    url = f"{base}agentevent/{agent.work_no}"
    while True:
        started = time.perf_counter()
        agent.polling = True
        try:
            async with client.get(url, headers={"Guid": agent.guid}) as response:
                body: Any = await response.json(content_type=None)
                status = response.status
                adopt_guid(agent, response)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            stats.error(f"poll {type(exc).__name__}")
            await asyncio.sleep(1)
            continue
        finally:
            agent.polling = False
        if status != 200 or not isinstance(body, dict) or body.get("retcode") != "0":
            stats.error(f"poll HTTP {status} retcode {_retcode(body)}")
            await asyncio.sleep(1)
            continue
        event = body.get("event")
        if event is None:
            stats.null_polls += 1
            stats.hold_s.append(time.perf_counter() - started)
            continue
        seen = len(agent.events)
        event_type = event.get("eventType") if isinstance(event, dict) else None
        expected = SIGN_IN_EVENTS[seen] if seen < len(SIGN_IN_EVENTS) else None
        if event_type != expected:
            stats.error(f"poll unexpected event {event_type}")
        agent.events.append(str(event_type))


async def timed_get(
    client: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[float, aiohttp.ClientResponse, bytes]:
    started = time.perf_counter()
    async with client.get(url, headers=headers) as response:
        raw = await response.read()
    return time.perf_counter() - started, response, raw


async def sample(
    gateway_client: aiohttp.ClientSession,
    hello_client: aiohttp.ClientSession,
    base: str,
    hello_url: str,
    samplers: Sequence[Agent],
    rounds: int,
    pause_s: float,
    stats: Stats,
    long_pollers: Sequence[Agent],
) -> tuple[list[float], list[float], list[int]]:
    """Time the polls that find an event waiting, and the hello baseline, interleaved."""
    event_s: list[float] = []
    hello_s: list[float] = []
    held: list[int] = []
    for number in range(rounds):
        agent = samplers[number % len(samplers)]
        if not await sign_in(gateway_client, base, agent, stats, force=True):
            continue
        await asyncio.sleep(pause_s)
        for expected in SIGN_IN_EVENTS:
            held.append(sum(a.holding for a in long_pollers))
            url = f"{base}agentevent/{agent.work_no}"
            try:
                elapsed, response, raw = await timed_get(gateway_client, url, {"Guid": agent.guid})
                body: Any = json.loads(raw)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                stats.error(f"sample poll {type(exc).__name__}")
                continue
            adopt_guid(agent, response)
            event = body.get("event") if isinstance(body, dict) else None
            event_type = event.get("eventType") if isinstance(event, dict) else None
            if response.status != 200 or _retcode(body) != "0" or event_type != expected:
                stats.error(f"sample poll HTTP {response.status} {_retcode(body)} {event_type}")
            else:
                event_s.append(elapsed)
            await asyncio.sleep(pause_s)
        for _ in SIGN_IN_EVENTS:
            try:
                elapsed, response, _raw = await timed_get(hello_client, hello_url, {})
            except (aiohttp.ClientError, TimeoutError) as exc:
                stats.error(f"hello {type(exc).__name__}")
                continue
            if response.status == 200:
                hello_s.append(elapsed)
            else:
                stats.error(f"hello HTTP {response.status}")
            await asyncio.sleep(pause_s)
    return event_s, hello_s, held


# -- the run ------------------------------------------------------------------------------------


def percentile_ms(values: Sequence[float], q: int) -> float:
    if len(values) < 2:
        return math.nan if not values else values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


async def run(args: argparse.Namespace, tmp: Path, processes: list[subprocess.Popen[bytes]]) -> int:
    total = args.agents + args.samplers
    work_nos = list(range(FIRST_WORK_NO, FIRST_WORK_NO + total))
    long_pollers = [Agent(w) for w in work_nos[: args.agents]]
    samplers = [Agent(w) for w in work_nos[args.agents :]]
    port = args.port or free_port()
    hello_port = free_port()
    data_dir = tmp / "data"
    stats = Stats()
    run_started = time.perf_counter()
    print(
        f"sessions benchmark: {args.agents} long-polling agents + {args.samplers} sampler agents,"
        f" loopback, {os.cpu_count()} CPU cores shared by client, gateway and hello app",
        flush=True,
    )

    print(f"seeding {total} agents (Argon2id, 2 at a time)", flush=True)
    await seed(data_dir, port, work_nos)

    log_path = tmp / "gateway.log"
    gateway = spawn(
        [sys.executable, "-m", "ccgateway", "serve", "--http"],
        gateway_env(data_dir, port),
        log_path,
    )
    processes.append(gateway)
    hello = spawn([sys.executable, "-c", HELLO_APP, str(hello_port)], dict(os.environ), None)
    processes.append(hello)
    try:
        await wait_listening(gateway, port, "gateway")
    except RuntimeError:
        tail = log_path.read_text(errors="replace").splitlines()[-20:]
        print("gateway output:", *tail, sep="\n  ", file=sys.stderr)
        raise
    await wait_listening(hello, hello_port, "hello app")
    await asyncio.sleep(0.5)
    rss_idle, _ = proc_status_kib(gateway.pid)
    base = f"http://127.0.0.1:{port}{RESOURCE}"
    hello_url = f"http://127.0.0.1:{hello_port}/hello"
    print(f"gateway pid {gateway.pid} on port {port}, hello app on port {hello_port}", flush=True)

    memory = Memory()
    timeout = aiohttp.ClientTimeout(total=POLL_TIMEOUT_S)
    pollers: list[asyncio.Task[None]] = []
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as client,
        aiohttp.ClientSession(timeout=timeout) as gateway_client,
        aiohttp.ClientSession(timeout=timeout) as hello_client,
    ):
        try:
            print(f"signing in {total} agents, {args.sign_in_concurrency} at a time", flush=True)
            started = time.perf_counter()
            limit = asyncio.Semaphore(args.sign_in_concurrency)

            async def sign_in_and_poll(agent: Agent, poll: bool) -> None:
                async with limit:
                    if not await sign_in(client, base, agent, stats):
                        return
                if poll:
                    pollers.append(asyncio.create_task(poll_forever(client, base, agent, stats)))

            await asyncio.gather(
                *(sign_in_and_poll(a, True) for a in long_pollers),
                *(sign_in_and_poll(a, False) for a in samplers),
            )
            signed_in_s = time.perf_counter() - started
            print(
                f"  signed in {total - sum(stats.errors.values())}/{total} in {signed_in_s:.1f} s"
                f" ({total / signed_in_s:.0f}/s)",
                flush=True,
            )

            deadline = time.monotonic() + 30
            while sum(a.holding for a in long_pollers) < args.agents:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"only {sum(a.holding for a in long_pollers)} of {args.agents} agents"
                        " hold a poll after 30 s"
                    )
                await asyncio.sleep(0.05)
            await asyncio.sleep(1)
            rss_before, _ = proc_status_kib(gateway.pid)
            print(
                f"all {args.agents} agents hold a long poll; gateway VmRSS"
                f" {rss_before / 1024:.1f} MiB",
                flush=True,
            )

            rounds = math.ceil(args.samples / len(SIGN_IN_EVENTS))
            print(f"measuring: {rounds} forcelogin rounds, {args.pause_ms} ms pauses", flush=True)
            for warm in (gateway_client, hello_client):  # open the keep-alive connections
                url = hello_url if warm is hello_client else f"{base}agentevent/1"
                async with warm.get(url) as response:
                    await response.read()
            # The client's own garbage collector would pause the sampler for tens of ms with
            # thousands of connections alive: freeze what exists and collect nothing meanwhile.
            gc.collect()
            gc.freeze()
            gc.disable()
            watcher = asyncio.create_task(watch_memory(gateway.pid, memory))
            cpu_before, measure_started = proc_cpu_s(gateway.pid), time.perf_counter()
            null_before = stats.null_polls
            try:
                event_s, hello_s, held = await sample(
                    gateway_client,
                    hello_client,
                    base,
                    hello_url,
                    samplers,
                    rounds,
                    args.pause_ms / 1000,
                    stats,
                    long_pollers,
                )
            finally:
                gc.enable()
                gc.unfreeze()
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            measured_s = time.perf_counter() - measure_started
            cpu_s = proc_cpu_s(gateway.pid) - cpu_before
            null_during = stats.null_polls - null_before
        finally:
            for task in pollers:
                task.cancel()
            await asyncio.gather(*pollers, return_exceptions=True)

    if gateway.poll() is not None:
        raise RuntimeError(f"the gateway exited with {gateway.returncode} during the run")
    log_lines = [
        line
        for line in log_path.read_text(errors="replace").splitlines()
        if "serving plain HTTP" not in line
    ]

    rss_mib = max(memory.rss_kib) / 1024
    p50, p99 = percentile_ms(event_s, 50), percentile_ms(event_s, 99)
    errors = sum(stats.errors.values())
    print()
    print(f"cpu_cores {os.cpu_count()} (client, gateway and hello app on the same machine)")
    print("client_gc off during measurement (the gateway's is on, as shipped)")
    print(f"agents {args.agents}")
    print(f"sampler_agents {len(samplers)}")
    print(f"held_polls {statistics.median(held):.0f} (median at sample time; min {min(held)})")
    print(f"measure_s {measured_s:.1f}")
    print(f"background_null_polls {null_during} ({null_during / measured_s:.0f}/s)")
    if stats.hold_s:
        print(f"poll_hold_s p50 {statistics.median(stats.hold_s):.2f} max {max(stats.hold_s):.2f}")
    print(f"gateway_cpu_pct {100 * cpu_s / measured_s:.0f} (of one core, incl. forcelogin hashing)")
    print(f"rss_idle_mib {rss_idle / 1024:.1f} (VmRSS after start, nobody signed in)")
    print(f"rss_mib before {rss_before / 1024:.1f} max {rss_mib:.1f} (VmRSS during measurement)")
    print(f"rss_hwm_mib {memory.hwm_kib / 1024:.1f} (VmHWM: peak since start, incl. sign-in)")
    print(f"samples {len(event_s)}")
    print(f"p50_ms {p50:.2f}")
    print(f"p99_ms {p99:.2f}")
    print(f"max_ms {max(event_s) * 1000:.2f}")
    print(
        f"baseline_hello p50_ms {percentile_ms(hello_s, 50):.2f} p99_ms"
        f" {percentile_ms(hello_s, 99):.2f} (trivial aiohttp handler, same client, {len(hello_s)}"
        " samples)"
    )
    print(f"errors {errors}")
    for what, count in sorted(stats.errors.items()):
        print(f"  {count} x {what}")
    print(f"gateway_log_lines {len(log_lines)}")
    for line in log_lines[:10]:
        print(f"  {line}")
    print(f"run_s {time.perf_counter() - run_started:.1f}")
    if errors or len(event_s) < args.samples // 2:
        print("INVALID RUN: errors or too few samples", file=sys.stderr)
    print(f"bar sessions_rss_mb {rss_mib:.1f} <{RSS_BAR_MIB:g} {verdict(rss_mib < RSS_BAR_MIB)}")
    print(f"bar poll_event_p99_ms {p99:.2f} <{P99_BAR_MS:g} {verdict(p99 < P99_BAR_MS)}")
    return 1 if errors else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=2000, help="long-polling agents")
    parser.add_argument("--samplers", type=int, default=20, help="extra agents that are sampled")
    parser.add_argument("--samples", type=int, default=400, help="timed polls (two per round)")
    parser.add_argument("--port", type=int, default=0, help="gateway port (default: a free one)")
    parser.add_argument("--pause-ms", type=int, default=10, help="pause between timed requests")
    parser.add_argument("--sign-in-concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=180, help="hard limit of the run, s")
    args = parser.parse_args(argv)
    if args.agents < 1 or args.samplers < 1 or args.samples < 2:
        parser.error("--agents and --samplers must be >= 1, --samples >= 2")
    if FIRST_WORK_NO + args.agents + args.samplers > 999_999:
        parser.error("too many agents for the work number range")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="ccgw-bench-sessions-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        return asyncio.run(asyncio.wait_for(run(args, tmp, processes), args.timeout))
    except TimeoutError:
        print(f"error: the run exceeded --timeout {args.timeout:g} s", file=sys.stderr)
        return 1
    finally:
        stop(processes)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
