"""Load benchmark: long polls, downloads and slow clients at once against one gateway process.

The bars (issue 8): with, for ``--seconds`` (60) on one ``ccgateway serve --http`` process
(embedded SQLite, memory sessions) over loopback,

- 500 signed-in agents long-polling events continuously while recordings are registered and
  announced to them (``AgentMediaEvent_Record``),
- 50 downloads looping over a 128 MiB recording (50 distinct agents, one download each at a time),
- 200 slow connections: 150 slowloris clients sending a partial request head one byte every 2 s,
  and 50 clients that send a whole download request and then never read,

no legitimate request fails (``load_errors`` 0: any transport error, HTTP status other than 200, or
retcode other than "0" of a sign-in, poll, download or admin registration) and the gateway's peak
VmRSS, sampled every 0.2 s from its start to the end of the window, stays under 300 MB (10^6 B).

How it runs, all on loopback, in a temporary directory removed at the end:

1. DATA_DIR seeded in-process: 525 agents (Argon2id), a 128 MiB file (``bench/download.py``'s
   generator: a random block repeated, each copy stamped; fsynced, then read into the page cache)
   registered as the HD recording of one conference whose participants are the 50 downloading
   agents and the 25 agents the non-reading slow clients use; a 64 KiB file for event recordings.
2. The gateway as ``python -m ccgateway serve --http``: LOG_LEVEL=WARNING, ADMIN_TOKEN set, polls
   held 10 s (defaults), AUTHMODE=2, and the flow-control keys, each only if this checkout's
   ``ccgateway.config.KEYS`` has it (unknown keys would be ignored, but a missing key means the
   protection is not there, which the run prints): MAX_DOWNLOADS_PER_AGENT=1 (the load's peak),
   MAX_DOWNLOADS=200, REQUEST_RATE_PER_AGENT=20, REQUEST_RATE=2000, MAX_CONNECTIONS_PER_IP=128,
   HEADER_TIMEOUT_S=5, CLIENT_STALL_TIMEOUT_S=10, KEEPALIVE_TIMEOUT_S=15.
3. Two client processes, so that the download client's reading (the heaviest client work) does
   not delay the poll client's event loop: this process (450 polling agents, the event producer,
   the 200 slow connections, the RSS sampler) and a child ``load.py --role downloads`` (the 50
   downloading agents, each long-polling too and downloading in a loop). Sign-ins (Argon2-bound)
   come first, a few at a time, and are not part of the window; each agent starts its poll loop
   as soon as it is signed in. The per-address connection cap is met by spreading the legitimate
   clients over source addresses 127.0.0.2-127.0.0.15 (at most ~50 connections each) and by
   setting MAX_CONNECTIONS_PER_IP=128 above that; the slow clients come from 127.0.1.1-127.0.1.4
   (50 each, under the cap too: the header and stall deadlines must reap them, not the cap).
4. The window: the producer registers recordings through the admin API, in bursts of three for
   five random polling agents every 0.1 s; an agent takes 50-250 ms to "handle" each event before
   polling again, so later events of a burst wait in its queue. A poll "found an event waiting"
   when the event's ``eventGenTime`` is earlier (by the gateway's clock, the same machine's) than
   the millisecond the poll was sent. Latency is request start to last body byte; polls in flight
   when the window closes are not counted. Downloads check status, type, length and first bytes;
   MiB/s is bytes received in the window / window seconds. Slow clients reconnect at once when
   dropped; a drop is the gateway closing or resetting the connection (the non-readers watch
   their socket's TCP state, so they never read a byte).

Client and gateway share the machine's cores; the run prints CPU use per process, how late the
poll client's own event loop woke from 10 ms sleeps (its share of the latencies), how busy other
processes kept the machine, and, when the gateway has METRICS_TOKEN, its own counts of refused
requests and download outcomes from /metrics. Informational lines first, then exactly two
``bar`` lines. Exit 0 when the run completed (a bar may FAIL), 1 when the benchmark itself broke.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import aiohttp

from _common import cpu_s, free_port, gateway_env, stop, verdict, vm_rss_kib, wait_listening
from ccgateway.config import KEYS, load_settings
from ccgateway.demo.media import write_demo_recording
from ccgateway.gateway import open_gateway
from ccgateway.recordings.catalog import Registration
from ccgateway.stores.base import FileType
from download import OtherLoad, make_file, warm

RESOURCE = "/agentgateway/resource/"
ADMIN = "/ccgateway/admin/v1/"
PASSWORD = "Bench-pass-1"
ADMIN_TOKEN = "bench-load-admin-token-0123456789"
METRICS_TOKEN = "bench-load-metrics-token-0123456789"
CONFERENCE = "bench-load-conference"
RECORD = "bench-load-record"
FIRST_WORK_NO = 1000
MIB = 1024 * 1024
MB = 1_000_000
HEAD_CHECK = 64  # first bytes of each download compared with the file
SIGN_IN_EVENTS = ("AgentOther_InService", "AgentState_Ready")
RECORD_EVENT = "AgentMediaEvent_Record"
RSS_EVERY_S = 0.2
BAR_ERRORS = 0
BAR_RSS_MB = 300.0

# Legitimate clients: this process's pollers, the download process, the event producer.
POLL_ADDRESSES = [f"127.0.0.{i}" for i in range(2, 12)]
DOWNLOAD_ADDRESSES = [f"127.0.0.{i}" for i in range(12, 16)]
PRODUCER_ADDRESS = "127.0.0.1"
SLOW_ADDRESSES = [f"127.0.1.{i}" for i in range(1, 5)]

# Gateway settings, applied only when the key exists in this checkout (see the docstring).
FLOW_SETTINGS = {
    "MAX_DOWNLOADS_PER_AGENT": "1",
    "MAX_DOWNLOADS": "200",
    "REQUEST_RATE_PER_AGENT": "20",
    "REQUEST_RATE": "2000",
    "MAX_CONNECTIONS_PER_IP": "128",
    "HEADER_TIMEOUT_S": "5",
    "CLIENT_STALL_TIMEOUT_S": "10",
    "KEEPALIVE_TIMEOUT_S": "15",
}
CLIENT_KEEPALIVE_S = 10.0  # under KEEPALIVE_TIMEOUT_S: the client drops idle connections first
THINK_S = (0.05, 0.25)  # an agent handles an event this long before polling again
BURST = 3  # recordings registered back to back for one group of agents
GROUP = 5  # agents per registration
PRODUCE_EVERY_S = 0.1
DRIBBLE_EVERY_S = 2.0
TCP_ESTABLISHED = 1


class BenchError(RuntimeError):
    """The benchmark itself broke."""


# -- shared by both client processes ------------------------------------------------------------


@dataclass
class Agent:
    work_no: int
    guid: str = ""


@dataclass
class Polls:
    """What the poll loops saw; only polls sent while ``measuring`` count in the lists."""

    measuring: bool = False
    all_s: list[float] = field(default_factory=list)
    waiting_s: list[float] = field(default_factory=list)  # the event was queued before the poll
    woken_s: list[float] = field(default_factory=list)  # an event arrived while the poll held
    null_s: list[float] = field(default_factory=list)  # the hold ran out
    events: Counter[str] = field(default_factory=Counter)
    delivery_ms: list[float] = field(default_factory=list)  # eventGenTime to answer received
    record_events: int = 0  # AgentMediaEvent_Record received, in or after the window
    errors: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "all_s": self.all_s,
            "waiting_s": self.waiting_s,
            "woken_s": self.woken_s,
            "null_s": self.null_s,
            "events": dict(self.events),
            "delivery_ms": self.delivery_ms,
            "record_events": self.record_events,
            "errors": dict(self.errors),
        }

    def merge(self, data: dict[str, Any]) -> None:
        self.all_s += data["all_s"]
        self.waiting_s += data["waiting_s"]
        self.woken_s += data["woken_s"]
        self.null_s += data["null_s"]
        self.events.update(data["events"])
        self.delivery_ms += data["delivery_ms"]
        self.record_events += data["record_events"]
        self.errors.update(data["errors"])


def client_session(address: str) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=0, local_addr=(address, 0), keepalive_timeout=CLIENT_KEEPALIVE_S
    )
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


def adopt_guid(agent: Agent, response: aiohttp.ClientResponse) -> None:
    name, _, guid = response.headers.get("Set-GUID", "").partition("=")
    if name == "JSESSIONID" and guid:
        agent.guid = guid


def retcode_of(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return "(not JSON)"
    return str(body.get("retcode")) if isinstance(body, dict) else "(not an object)"


async def sign_in(
    session: aiohttp.ClientSession, base: str, agent: Agent, errors: Counter[str]
) -> bool:
    body = {"password": PASSWORD, "phonenum": f"7{agent.work_no}"}
    try:
        async with session.put(f"{base}onlineagent/{agent.work_no}", json=body) as response:
            raw = await response.read()
            adopt_guid(agent, response)
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        errors[f"sign-in {type(exc).__name__}"] += 1
        return False
    if status != 200 or retcode_of(raw) != "0" or not agent.guid:
        errors[f"sign-in HTTP {status} retcode {retcode_of(raw)}"] += 1
        return False
    return True


async def poll_loop(
    session: aiohttp.ClientSession, base: str, agent: Agent, polls: Polls, rng: random.Random
) -> None:
    """Long-poll like an agent desktop: poll, adopt Set-GUID, handle the event, poll again."""
    url = f"{base}agentevent/{agent.work_no}"
    while True:
        sent_ms = time.time_ns() // 1_000_000
        started = time.perf_counter()
        measured = polls.measuring
        try:
            async with session.get(url, headers={"Guid": agent.guid}) as response:
                raw = await response.read()
                status = response.status
                adopt_guid(agent, response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            polls.errors[f"poll {type(exc).__name__}"] += 1
            await asyncio.sleep(1)
            continue
        elapsed = time.perf_counter() - started
        received_ms = time.time_ns() / 1_000_000
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        if status != 200 or not isinstance(body, dict) or body.get("retcode") != "0":
            polls.errors[f"poll HTTP {status} retcode {retcode_of(raw)}"] += 1
            await asyncio.sleep(1)
            continue
        event = body.get("event")
        if event is None:
            if measured:
                polls.null_s.append(elapsed)
                polls.all_s.append(elapsed)
            continue
        kind = event.get("eventType") if isinstance(event, dict) else None
        generated = event.get("eventGenTime") if isinstance(event, dict) else None
        if kind not in (*SIGN_IN_EVENTS, RECORD_EVENT) or not isinstance(generated, int):
            polls.errors[f"poll unexpected event {kind} at {generated}"] += 1
            continue
        if kind == RECORD_EVENT:
            polls.record_events += 1
        if measured:
            polls.all_s.append(elapsed)
            polls.events[str(kind)] += 1
            polls.delivery_ms.append(received_ms - generated)
            (polls.waiting_s if generated < sent_ms else polls.woken_s).append(elapsed)
        await asyncio.sleep(rng.uniform(*THINK_S))


def percentile_ms(values: Sequence[float], q: int) -> float:
    if len(values) < 2:
        return math.nan if not values else values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


async def cancel_all(tasks: Sequence[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- the download client process ----------------------------------------------------------------


@dataclass
class Downloads:
    bytes: int = 0
    completed: int = 0
    started: int = 0
    errors: Counter[str] = field(default_factory=Counter)


async def download_loop(
    session: aiohttp.ClientSession,
    base: str,
    agent: Agent,
    size: int,
    head: bytes,
    downloads: Downloads,
) -> None:
    url = f"{base}recordfile/{agent.work_no}/videofiledownload"
    params = {"conferenceId": CONFERENCE, "fileType": "0"}
    while True:
        try:
            async with session.get(url, params=params, headers={"Guid": agent.guid}) as response:
                downloads.started += 1
                if response.status != 200 or response.content_type == "application/json":
                    raw = await response.read()
                    downloads.errors[
                        f"download HTTP {response.status} retcode {retcode_of(raw)}"
                    ] += 1
                    await asyncio.sleep(1)
                    continue
                got, first = 0, b""
                while chunk := await response.content.readany():
                    if got < len(head):
                        first += chunk[: len(head) - got]
                    got += len(chunk)
                    downloads.bytes += len(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            downloads.errors[f"download {type(exc).__name__}"] += 1
            await asyncio.sleep(1)
            continue
        if got != size or first != head:
            downloads.errors[f"download got {got} bytes, head ok {first == head}"] += 1
        else:
            downloads.completed += 1


async def read_line(stream: IO[str] | IO[bytes], timeout_s: float) -> str:
    """The next line of a blocking stream, read in a thread, within ``timeout_s``."""
    loop = asyncio.get_running_loop()
    line: str | bytes = await asyncio.wait_for(
        loop.run_in_executor(None, stream.readline), timeout_s
    )
    return line.decode() if isinstance(line, bytes) else line


async def download_role(config: dict[str, Any]) -> None:
    """The child process: sign in, poll, wait for GO, download in a loop for the window."""
    base = config["base"]
    agents = [Agent(w) for w in config["agents"]]
    size, head = int(config["size"]), bytes.fromhex(config["head"])
    polls, downloads = Polls(), Downloads()
    rng = random.Random(config["seed"])
    sessions = [client_session(a) for a in config["addresses"]]
    tasks: list[asyncio.Task[None]] = []
    try:
        limit = asyncio.Semaphore(config["sign_in_concurrency"])

        async def start(number: int, agent: Agent) -> None:
            session = sessions[number % len(sessions)]
            async with limit:
                if not await sign_in(session, base, agent, polls.errors):
                    return
            tasks.append(asyncio.create_task(poll_loop(session, base, agent, polls, rng)))

        await asyncio.gather(*(start(n, a) for n, a in enumerate(agents)))
        print("READY", len(tasks), flush=True)
        go = await read_line(sys.stdin, config["ready_timeout_s"])
        if not go.startswith("GO"):
            raise BenchError(f"the main process said {go!r} instead of GO")
        seconds = float(go.split()[1])
        gc.collect()
        gc.freeze()
        cpu_before, started = own_cpu(), time.perf_counter()
        polls.measuring = True
        loaders = [
            asyncio.create_task(
                download_loop(sessions[n % len(sessions)], base, a, size, head, downloads)
            )
            for n, a in enumerate(agents)
        ]
        await asyncio.sleep(seconds)
        polls.measuring = False
        window_s = time.perf_counter() - started
        transferred = downloads.bytes
        await cancel_all(loaders)
        cpu = own_cpu() - cpu_before
    finally:
        await cancel_all(tasks)
        for session in sessions:
            await session.close()
    result = {
        "polls": polls.to_json(),
        "bytes": transferred,
        "completed": downloads.completed,
        "started": downloads.started,
        "errors": dict(downloads.errors),
        "window_s": window_s,
        "cpu_s": cpu,
    }
    print("RESULT", json.dumps(result), flush=True)


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


# -- slow clients -------------------------------------------------------------------------------


@dataclass
class Slow:
    attempts: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    connect_failed: Counter[str] = field(default_factory=Counter)
    lifetimes: dict[str, list[float]] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)  # what the non-readers were sent
    open_now: Counter[str] = field(default_factory=Counter)

    def lived(self, kind: str, seconds: float) -> None:
        self.dropped[kind] += 1
        self.lifetimes.setdefault(kind, []).append(seconds)


async def connect(address: str, port: int, rcvbuf: int | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((address, 0))
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 10)
    except BaseException:
        sock.close()
        raise
    return sock


async def slowloris(address: str, port: int, work_no: int, slow: Slow, rng: random.Random) -> None:
    """Send a request head one byte every DRIBBLE_EVERY_S; reconnect when the gateway drops us."""
    kind = "partial_head"
    head = (
        f"GET {RESOURCE}agentevent/{work_no} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Guid: {'0' * 36}\r\nUser-Agent: {'x' * 200}\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    await asyncio.sleep(rng.uniform(0, DRIBBLE_EVERY_S))
    while True:
        slow.attempts[kind] += 1
        try:
            sock = await connect(address, port, None)
        except (OSError, TimeoutError):
            slow.connect_failed[kind] += 1
            await asyncio.sleep(1)
            continue
        opened = time.monotonic()
        slow.open_now[kind] += 1
        receive = asyncio.ensure_future(loop.sock_recv(sock, 4096))
        try:
            for index in range(len(head)):
                await loop.sock_sendall(sock, head[index : index + 1])
                done, _ = await asyncio.wait({receive}, timeout=DRIBBLE_EVERY_S)
                if done:
                    break
            await receive  # b"" (closed) or an answer, or ConnectionResetError
        except OSError:
            pass
        finally:
            receive.cancel()
            slow.open_now[kind] -= 1
            sock.close()
        slow.lived(kind, time.monotonic() - opened)


def tcp_state(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return info[0]


def peek(sock: socket.socket) -> bytes:
    try:
        return sock.recv(512, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return b""


def classify(answer: bytes) -> str:
    """What a non-reader was sent first: the status line, and the retcode of a JSON answer."""
    if not answer:
        return "nothing"
    status = answer.split(b"\r\n", 1)[0].decode("latin-1")
    _, _, body = answer.partition(b"\r\n\r\n")
    if b"application/json" in answer and b'"retcode"' in body:
        return f"{status} retcode {retcode_of(body)}"
    return status


async def non_reader(address: str, port: int, agent: Agent, slow: Slow, rng: random.Random) -> None:
    """Send a whole download request, then never read; watch TCP state to see the drop."""
    kind = "never_reads"
    path = f"{RESOURCE}recordfile/{agent.work_no}/videofiledownload"
    await asyncio.sleep(rng.uniform(0, 2))
    loop = asyncio.get_running_loop()
    while True:
        request = (
            f"GET {path}?conferenceId={CONFERENCE}&fileType=0 HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nGuid: {agent.guid}\r\n\r\n"
        ).encode()
        slow.attempts[kind] += 1
        try:
            sock = await connect(address, port, 4096)
        except (OSError, TimeoutError):
            slow.connect_failed[kind] += 1
            await asyncio.sleep(1)
            continue
        opened = time.monotonic()
        slow.open_now[kind] += 1
        answer = b""
        try:
            await loop.sock_sendall(sock, request)
            while tcp_state(sock) == TCP_ESTABLISHED:
                await asyncio.sleep(0.25)
                answer = answer or peek(sock)
        except OSError:
            pass
        finally:
            slow.answers[classify(answer or peek(sock))] += 1
            slow.open_now[kind] -= 1
            sock.close()
        slow.lived(kind, time.monotonic() - opened)


# -- the main process ---------------------------------------------------------------------------


class RssSampler:
    """The maximum VmRSS of a process, read every RSS_EVERY_S in a thread; ``mark`` splits."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.max_kib = 0
        self.window_max_kib = 0
        self.in_window = False
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            try:
                rss = vm_rss_kib(self.pid)
            except (OSError, RuntimeError):
                return
            self.samples += 1
            self.max_kib = max(self.max_kib, rss)
            if self.in_window:
                self.window_max_kib = max(self.window_max_kib, rss)
            if self._stop.wait(RSS_EVERY_S):
                return


def vm_hwm_kib(pid: int) -> int:
    """A process's peak VmRSS (VmHWM), in KiB; 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def seed(
    data_dir: Path, port: int, work_nos: Sequence[int], media: Path, viewers: Sequence[int]
) -> None:
    settings = load_settings(environ=gateway_env(data_dir, port))
    async with open_gateway(settings) as gateway:
        for first in range(0, len(work_nos), 100):
            chunk = work_nos[first : first + 100]
            await asyncio.gather(*(gateway.agents.add(w, PASSWORD) for w in chunk))
        await gateway.catalog.register(
            Registration(
                conference_id=CONFERENCE,
                record_id=RECORD,
                participants=frozenset(viewers),
                files={FileType.HD: str(media)},
                vdn=1,
            )
        )


@dataclass
class Producer:
    registrations: int = 0
    events: int = 0
    latency_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


async def produce(
    session: aiohttp.ClientSession,
    url: str,
    work_nos: Sequence[int],
    small: Path,
    producer: Producer,
    rng: random.Random,
) -> None:
    """Register BURST recordings for GROUP random agents every PRODUCE_EVERY_S."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    number = 0
    next_at = time.monotonic()
    while True:
        group = rng.sample(list(work_nos), GROUP)
        for _ in range(BURST):
            number += 1
            body = {
                "conferenceId": f"bench-load-event-{number}",
                "recordId": f"bench-load-event-{number}-r",
                "participants": group,
                "files": {"hd": str(small)},
            }
            started = time.perf_counter()
            try:
                async with session.post(url, json=body, headers=headers) as response:
                    raw = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                producer.errors[f"register {type(exc).__name__}"] += 1
                continue
            producer.latency_s.append(time.perf_counter() - started)
            if status != 200 or retcode_of(raw) != "0":
                producer.errors[f"register HTTP {status} retcode {retcode_of(raw)}"] += 1
                continue
            producer.registrations += 1
            producer.events += len(group)
        next_at += PRODUCE_EVERY_S
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def loop_lag(lags: list[float], polls: Polls) -> None:
    """How late this process's event loop wakes from a 10 ms sleep: the client's own delay."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        if polls.measuring:
            lags.append(time.perf_counter() - started - 0.01)


async def scrape_metrics(session: aiohttp.ClientSession, url: str) -> list[str]:
    """The gateway's own counts (when it has /metrics): requests refused, downloads by outcome."""
    try:
        async with session.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) as r:
            text = await r.text()
            if r.status != 200:
                return [f"(/metrics answered HTTP {r.status})"]
    except (aiohttp.ClientError, TimeoutError) as exc:
        return [f"(/metrics failed: {type(exc).__name__})"]
    wanted = []
    for line in text.splitlines():
        if line.startswith("ccgateway_downloads_finished_total"):
            wanted.append(line)
        elif line.startswith("ccgateway_requests_total") and 'retcode="0"' not in line:
            wanted.append(line)
    return wanted


def flow_settings() -> tuple[dict[str, str], list[str]]:
    known = {key.name for key in KEYS}
    present = {k: v for k, v in FLOW_SETTINGS.items() if k in known}
    return present, [k for k in FLOW_SETTINGS if k not in known]


def spawn_gateway(
    env: dict[str, str], log: Path, processes: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "ccgateway", "serve", "--http"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    processes.append(process)
    return process


def spawn_downloader(
    config: dict[str, Any], log: Path, processes: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--role", "downloads"]
    with log.open("wb") as err:
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=dict(os.environ)
        )
    processes.append(process)
    assert process.stdin is not None
    process.stdin.write((json.dumps(config) + "\n").encode())
    process.stdin.flush()
    return process


async def child_line(process: subprocess.Popen[bytes], prefix: str, timeout_s: float) -> str:
    """The child's next stdout line, which must start with ``prefix``."""
    assert process.stdout is not None
    line = await read_line(process.stdout, timeout_s)
    if not line.startswith(prefix):
        raise BenchError(
            f"the download process answered {line[:200]!r} instead of {prefix}"
            f" (exit {process.poll()})"
        )
    return line.removeprefix(prefix).strip()


def describe(values: Sequence[float]) -> str:
    if not values:
        return "n 0"
    return (
        f"n {len(values)} p50_ms {percentile_ms(values, 50):.2f} p99_ms"
        f" {percentile_ms(values, 99):.2f} max_ms {max(values) * 1000:.2f}"
    )


async def run(args: argparse.Namespace, tmp: Path, processes: list[subprocess.Popen[bytes]]) -> int:
    run_started = time.perf_counter()
    rng = random.Random(args.seed)
    size = args.size_mib * MIB
    poller_nos = list(range(FIRST_WORK_NO, FIRST_WORK_NO + args.agents))
    downloader_nos = poller_nos[: args.downloads]
    local_nos = poller_nos[args.downloads :]
    stall_nos = list(range(FIRST_WORK_NO + args.agents, FIRST_WORK_NO + args.agents + 25))
    port = free_port()
    data_dir = tmp / "data"
    data_dir.mkdir()
    present, missing = flow_settings()
    print(
        f"load benchmark: {args.agents} polling agents ({args.downloads} of them downloading in a"
        f" second client process), {args.slowloris} slowloris + {args.non_readers} non-reading"
        f" connections, {args.seconds:g} s window, loopback, {os.cpu_count()} CPU cores shared",
        flush=True,
    )
    print(f"  gateway flow-control settings: {present or 'none'}")
    if missing:
        print(f"  WARNING: this checkout has no {', '.join(missing)}: not set")

    phase = time.perf_counter()
    media = data_dir / "recording.mp4"
    make_file(media, size)
    warm(media)
    with media.open("rb") as handle:
        head = handle.read(HEAD_CHECK)
    small = data_dir / "event.mp4"
    # playable: random bytes would be probed as damaged and announced as failed
    write_demo_recording(small, width=320, height=180, seconds=1.0, label="bench")
    print(f"made the {args.size_mib} MiB file in {time.perf_counter() - phase:.1f} s", flush=True)
    phase = time.perf_counter()
    all_nos = poller_nos + stall_nos
    async with asyncio.timeout(args.phase_timeout):
        await seed(data_dir, port, all_nos, media, downloader_nos + stall_nos)
    print(f"seeded {len(all_nos)} agents in {time.perf_counter() - phase:.1f} s", flush=True)

    log_path = tmp / "gateway.log"
    env = gateway_env(data_dir, port, ADMIN_TOKEN=ADMIN_TOKEN, **present)
    has_metrics = "METRICS_TOKEN" in {key.name for key in KEYS}
    if has_metrics:
        env["CCGW_METRICS_TOKEN"] = METRICS_TOKEN
    gateway = spawn_gateway(env, log_path, processes)
    try:
        wait_listening(gateway, port, "gateway")
    except RuntimeError:
        print(*log_path.read_text(errors="replace").splitlines()[-20:], sep="\n", file=sys.stderr)
        raise
    sampler = RssSampler(gateway.pid)
    sampler.start()
    base = f"http://127.0.0.1:{port}{RESOURCE}"
    rss_idle = vm_rss_kib(gateway.pid)
    print(f"gateway pid {gateway.pid} on port {port}, VmRSS {rss_idle / 1024:.1f} MiB", flush=True)

    child = spawn_downloader(
        {
            "base": base,
            "agents": downloader_nos,
            "size": size,
            "head": head.hex(),
            "addresses": DOWNLOAD_ADDRESSES,
            "seed": args.seed + 1,
            "sign_in_concurrency": 2,
            "ready_timeout_s": args.phase_timeout * 2,
        },
        tmp / "downloads.log",
        processes,
    )

    polls = Polls()
    slow = Slow()
    producer = Producer()
    sessions = [client_session(a) for a in POLL_ADDRESSES]
    admin_session = client_session(PRODUCER_ADDRESS)
    agents = [Agent(w) for w in local_nos]
    stall_agents = [Agent(w) for w in stall_nos]
    stall_polls = Polls()  # the non-readers' agents poll to stay signed in; not counted
    tasks: list[asyncio.Task[None]] = []
    window_tasks: list[asyncio.Task[None]] = []
    try:
        phase = time.perf_counter()
        limit = asyncio.Semaphore(args.sign_in_concurrency)

        async def start(number: int, agent: Agent, target: Polls) -> None:
            session = sessions[number % len(sessions)]
            async with limit:
                if not await sign_in(session, base, agent, target.errors):
                    return
            tasks.append(asyncio.create_task(poll_loop(session, base, agent, target, rng)))

        print(
            f"signing in {len(agents) + len(stall_agents)} agents here ({args.sign_in_concurrency}"
            f" at a time) and {len(downloader_nos)} in the download process",
            flush=True,
        )
        async with asyncio.timeout(args.phase_timeout):
            await asyncio.gather(
                *(start(n, a, polls) for n, a in enumerate(agents)),
                *(start(n, a, stall_polls) for n, a in enumerate(stall_agents)),
            )
        ready = await child_line(child, "READY", args.phase_timeout)
        signed_in = len(tasks) + int(ready)
        print(
            f"  {signed_in} agents signed in and polling in {time.perf_counter() - phase:.1f} s",
            flush=True,
        )
        if signed_in < len(all_nos):
            raise BenchError(f"only {signed_in} of {len(all_nos)} agents signed in")
        await asyncio.sleep(1)  # the sign-in events drained

        print(f"window: {args.seconds:g} s", flush=True)
        gc.collect()
        gc.freeze()
        load = OtherLoad()
        cpu_before = {
            "gateway": cpu_s(gateway.pid),
            "client": own_cpu(),
            "child": cpu_s(child.pid),
        }
        sampler.in_window = True
        assert child.stdin is not None
        child.stdin.write(f"GO {args.seconds}\n".encode())
        child.stdin.flush()
        started = time.perf_counter()
        polls.measuring = True
        window_tasks.append(
            asyncio.create_task(
                produce(
                    admin_session,
                    f"http://127.0.0.1:{port}{ADMIN}recordings",
                    poller_nos,
                    small,
                    producer,
                    rng,
                )
            )
        )
        slow_addresses = [SLOW_ADDRESSES[n % len(SLOW_ADDRESSES)] for n in range(1000)]
        for n in range(args.slowloris):
            work_no = poller_nos[n % len(poller_nos)]
            window_tasks.append(
                asyncio.create_task(slowloris(slow_addresses[n], port, work_no, slow, rng))
            )
        for n in range(args.non_readers):
            agent = stall_agents[n % len(stall_agents)]
            address = slow_addresses[args.slowloris + n]
            window_tasks.append(asyncio.create_task(non_reader(address, port, agent, slow, rng)))
        lags: list[float] = []
        window_tasks.append(asyncio.create_task(loop_lag(lags, polls)))
        await asyncio.sleep(args.seconds)
        polls.measuring = False
        window_s = time.perf_counter() - started
        sampler.in_window = False
        open_at_end = Counter(slow.open_now)
        # Both children are still unreaped (a zombie's /proc stat keeps its CPU times).
        child_cpu = cpu_s(child.pid) - cpu_before["child"]
        gateway_cpu = cpu_s(gateway.pid) - cpu_before["gateway"]
        client_cpu = own_cpu() - cpu_before["client"]
        others, steal = load.percent(gateway_cpu + child_cpu)
        await cancel_all(window_tasks)
        result = json.loads(await child_line(child, "RESULT", 60))
        metric_lines = (
            await scrape_metrics(admin_session, f"http://127.0.0.1:{port}/metrics")
            if has_metrics
            else ["(this checkout has no METRICS_TOKEN)"]
        )
    finally:
        await cancel_all(window_tasks)
        await cancel_all(tasks)
        for session in (*sessions, admin_session):
            await session.close()
        sampler.close()
        hwm = vm_hwm_kib(gateway.pid)
        gateway_alive = gateway.poll() is None
        # Here, not only in main(): a thread blocked reading the child's stdout must see EOF
        # before asyncio.run() waits for its executor's threads.
        stop([child])
        stopping = time.perf_counter()
        stop([gateway])
        gateway_stop_s = time.perf_counter() - stopping
    polls.merge(result["polls"])

    # -- summary --------------------------------------------------------------------------------
    log_lines = [
        line
        for line in log_path.read_text(errors="replace").splitlines()
        if "serving plain HTTP" not in line
    ]
    tracebacks = sum(line.startswith("Traceback") for line in log_lines)
    child_log = (tmp / "downloads.log").read_text(errors="replace").splitlines()
    download_errors: Counter[str] = Counter(result["errors"])
    errors: Counter[str] = Counter()
    errors.update(polls.errors)
    errors.update(download_errors)
    errors.update(producer.errors)
    error_count = sum(errors.values())
    mib_s = result["bytes"] / MIB / result["window_s"]
    peak_mb = sampler.max_kib * 1024 / MB
    print()
    print(f"cpu_cores {os.cpu_count()} (gateway, 2 client processes on the same machine)")
    print(
        f"cpu_pct_of_one_core gateway {100 * gateway_cpu / window_s:.0f} poll_client"
        f" {100 * client_cpu / window_s:.0f} download_client"
        f" {100 * result['cpu_s'] / result['window_s']:.0f}"
    )
    print(f"window_s {window_s:.1f}")
    print(f"poll_client_loop_lag (10 ms sleeps) {describe(lags)}")
    print(
        f"agents_polling {signed_in - len(stall_agents)}"
        f" (plus {len(stall_agents)} for the non-readers)"
    )
    print(
        f"registrations {producer.registrations} ({producer.registrations / window_s:.1f}/s),"
        f" record_events_published {producer.events}, received {polls.record_events} (the rest"
        " queued or in flight when the window closed)"
    )
    print(f"registration_latency {describe(producer.latency_s)} (admin API, one at a time)")
    print(f"polls_all {describe(polls.all_s)}")
    print(f"polls_event_waiting {describe(polls.waiting_s)}")
    print(f"polls_woken_by_event {describe(polls.woken_s)}")
    print(f"polls_null {describe(polls.null_s)}")
    print(
        "event_delivery_ms (eventGenTime to the poll's answer, incl. the agents' think time)"
        f" p50 {statistics.median(polls.delivery_ms or [math.nan]):.1f}"
        f" p99 {percentile_ms(polls.delivery_ms, 99) / 1000:.1f}"
    )
    print(
        f"downloads completed {result['completed']} started {result['started']}"
        f" aggregate_mib_s {mib_s:.0f} ({result['bytes'] / MIB:.0f} MiB in the window)"
    )
    for kind in ("partial_head", "never_reads"):
        lives = slow.lifetimes.get(kind, [])
        life = (
            f"lifetime_s p50 {statistics.median(lives):.1f} max {max(lives):.1f}" if lives else ""
        )
        print(
            f"slow_{kind} attempts {slow.attempts[kind]} dropped_by_gateway {slow.dropped[kind]}"
            f" connect_failed {slow.connect_failed[kind]} open_at_end {open_at_end[kind]} {life}"
        )
    print(f"slow_dropped_total {sum(slow.dropped.values())}")
    print("non_reader_answers " + ", ".join(f"{n} x {a}" for a, n in slow.answers.most_common()))
    stall_errors = sum(stall_polls.errors.values())
    print(f"stall_agents_poll_errors {stall_errors} (not counted)")
    print(
        f"rss_mib idle {rss_idle / 1024:.1f} peak_window {sampler.window_max_kib / 1024:.1f}"
        f" peak_run {sampler.max_kib / 1024:.1f} hwm {hwm / 1024:.1f} ({sampler.samples} samples)"
    )
    print(
        f"gateway_alive_at_end {gateway_alive}; after SIGTERM it exited with {gateway.returncode}"
        f" in {gateway_stop_s:.1f} s (SIGKILL after 10 s)"
    )
    print("gateway_metrics (whole run: refusals and download outcomes)")
    for line in metric_lines:
        print(f"  {line}")
    print(f"gateway_log_lines {len(log_lines)} tracebacks {tracebacks}")
    for line in log_lines[: args.log_lines]:
        print(f"  {line}")
    print(f"download_process_stderr_lines {len(child_log)}")
    for line in child_log[:10]:
        print(f"  {line}")
    print(f"errors {error_count}")
    for what, count in errors.most_common():
        print(f"  {count} x {what}")
    print(
        f"other_load_pct {others:.0f} (CPU other processes used during the window, % of all"
        f" {os.cpu_count()} cores; steal {steal:.0f}%)"
    )
    if others > 10:
        print("  WARNING: the machine was busy with other work: latencies and MiB/s are unreliable")
    print(f"run_s {time.perf_counter() - run_started:.1f}")
    print(f"bar load_errors {error_count} {BAR_ERRORS} {verdict(error_count == BAR_ERRORS)}")
    print(f"bar load_peak_rss_mb {peak_mb:.1f} <{BAR_RSS_MB:g} {verdict(peak_mb < BAR_RSS_MB)}")
    return 0


# -- entry point --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60, help="length of the window")
    parser.add_argument("--agents", type=int, default=500, help="long-polling agents")
    parser.add_argument("--downloads", type=int, default=50, help="of them, downloading too")
    parser.add_argument("--slowloris", type=int, default=150, help="partial-head connections")
    parser.add_argument("--non-readers", type=int, default=50, help="never-reading downloads")
    parser.add_argument("--size-mib", type=int, default=128, help="size of the recording")
    parser.add_argument("--sign-in-concurrency", type=int, default=6)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--log-lines", type=int, default=15, help="gateway log lines shown")
    parser.add_argument("--phase-timeout", type=float, default=180, help="per setup phase, s")
    parser.add_argument("--timeout", type=int, default=0, help="hard limit, s (0: auto)")
    parser.add_argument(
        "--role", choices=("main", "downloads"), default="main", help=argparse.SUPPRESS
    )
    parser.add_argument("--tmp-dir", default=None, help="where the temporary directory goes")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.agents < 1 or not 1 <= args.downloads <= args.agents:
        parser.error("--seconds > 0, --agents >= 1, 1 <= --downloads <= --agents")
    if args.size_mib < 1 or args.slowloris < 0 or args.non_readers < 0:
        parser.error("--size-mib >= 1, --slowloris and --non-readers >= 0")
    if args.slowloris + args.non_readers > 1000:
        parser.error("at most 1000 slow connections")
    if FIRST_WORK_NO + args.agents + 25 > 999_999:
        parser.error("too many agents")
    if not args.timeout:
        args.timeout = int(4 * args.phase_timeout + args.seconds + 120)
    return args


async def bounded(
    args: argparse.Namespace, tmp: Path, processes: list[subprocess.Popen[bytes]]
) -> int:
    """``run`` within ``--timeout``; SIGTERM cancels it like the timeout (its cleanup runs)."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await asyncio.wait_for(run(args, tmp, processes), args.timeout)
    except TimeoutError:
        raise BenchError(f"the run exceeded --timeout {args.timeout} s") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "downloads":
        config = json.loads(sys.stdin.readline())
        asyncio.run(download_role(config))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="ccgw-bench-load-", dir=args.tmp_dir))
    processes: list[subprocess.Popen[bytes]] = []

    def last_resort(signum: int, frame: FrameType | None) -> None:
        """The asyncio timeout did not end the run (a blocking call hung): kill and leave."""
        print("error: the run did not stop within --timeout + 60 s", file=sys.stderr, flush=True)
        for process in processes:
            with contextlib.suppress(OSError):
                process.kill()
        shutil.rmtree(tmp, ignore_errors=True)
        os._exit(1)

    signal.signal(signal.SIGALRM, last_resort)
    signal.alarm(args.timeout + 60)
    try:
        return asyncio.run(bounded(args, tmp, processes))
    except (BenchError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        print("error: stopped by SIGTERM", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        stop(processes)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
