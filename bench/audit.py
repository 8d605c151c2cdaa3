"""Audit benchmark (issue 15): the journal, a database outage, verification and shipping.

The bars (from the issue), each with its baseline measured in the same run:

1. ``event_append_p50_us``: what an event costs the request path, in-process, over ``--appends``
   (100,000) events: the calls a download makes per event (``Auditor.authorize`` writes its
   ``start``, ``Auditor.finish`` its ``end``), each timed alone, on a node's ``Auditor``
   (``Auditor.for_node``) whose journal group-commits in its thread and whose shipper ships to
   SQLite on the event loop, as in ``ccgateway serve`` (the loop is yielded to after every
   download, as between requests). Baseline: a bare ``os.write`` of the same bytes (each event's
   line, read back from the database) to a file. Bar: p50 <= 20 us; p99 and ratio printed.
2. ``events_lost_db_outage``: ``--rate`` (50) downloads/s against ``python -m ccgateway serve
   --http`` whose database is a PostgreSQL of the benchmark's own (initdb/pg_ctl from
   ``/usr/lib/postgresql/*/bin`` run as ``postgres`` with ``runuser``, on a free port in a
   temporary directory: never the shared one). Baseline phase: ``--baseline-s`` with the database
   up; then it is stopped for ``--outage-s`` (30) and started again, downloads continuing
   throughout and ``--after-s`` beyond. Each download asks for its own one-byte ``Range``
   (``bytes=i-i``), which its ``start`` event records, so each is found in ``audit_events`` once
   the journal has drained (on its own, the gateway still running): a download made (answered,
   whatever the answer) counts its ``start`` and its ``end`` (same writer, ``startSeq``). Bar: 0
   events lost, over the outage and the baseline phase (both printed).
3. ``verify_1m_s``: ``ccgateway audit verify`` (a subprocess, default ``--jobs``) over
   ``--verify-events`` (1,000,000) events of ``--verify-writers`` (10) writers in a SQLite
   database, generated with ``audit/events.py`` in a process pool and inserted with
   ``executemany``. Baseline: ``sha256sum`` of the same bodies written to a file, one per line.
   Bar: < 30 s; ratio printed. When it misses, where the time goes (reading the rows, parsing,
   hashing, columns) is measured and printed.
4. ``ship_events_per_s``: ``--ship-events`` (100,000) events of one writer in a journal
   (``audit/journal.py``, 8 MiB segments), shipped into PostgreSQL by ``Shipper.ship_once`` (the
   node's path: read the committed lines, parse, 1,000-row ``INSERT … ON CONFLICT DO NOTHING``,
   note ``shipped``) into an empty ``audit_events``. Baseline: asyncpg ``copy_records_to_table``
   of the same rows into the same, emptied, table. Uses the shared PostgreSQL
   (``--postgres``, a database of its own created and dropped). Bar: >= 10,000 events/s; ratio.

With ``--ttfb-before DIR`` (a checkout of the commit before the audit change, with its own
``.venv``), ``bench/download.py`` runs there and here back to back on a small file and both
download TTFB medians are printed (information, no bar).

Informational lines first, then exactly one ``bar`` line per bar. Exit 0 when the run completed
(bars may FAIL), 1 when the benchmark itself broke (the run is invalid). ``--quick``: smaller
counts and shorter phases, for a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import asyncpg

from _common import children, cpu_s, free_port, gateway_env, stop, verdict
from _common import wait_listening as wait_port
from ccgateway.audit.columns import values
from ccgateway.audit.events import END, START, AuditEvent, Kind, Outcome, parse
from ccgateway.audit.journal import Journal, WriterDir
from ccgateway.audit.shipper import BATCH, Shipper, row_of
from ccgateway.audit.trail import AUTHORIZED, Auditor
from ccgateway.audit.verify import examine
from ccgateway.config import load_settings
from ccgateway.gateway import open_gateway
from ccgateway.node.clock import SystemClock
from ccgateway.recordings.catalog import Registration
from ccgateway.stores.audit_rows import COLUMNS, AuditRow, SqlAuditRows
from ccgateway.stores.base import AuditEventRow, FileType
from ccgateway.stores.schema import open_engine
from ccgateway.stores.sql import SqlAuditEventStore

BAR_APPEND_P50_US = 20.0
BAR_LOST = 0
BAR_VERIFY_S = 30.0
BAR_SHIP_PER_S = 10_000.0

REPO = Path(__file__).resolve().parent.parent
RESOURCE = "/agentgateway/resource/"
AGENT = 101
PASSWORD = "Bench-pass-1"
CONFERENCE = "bench-conference-1"
RECORD = "bench-record-1"
SHARED_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
METRICS_TOKEN = "bench-metrics-token"


class BenchError(RuntimeError):
    """The benchmark itself broke (a server misbehaved, a tool failed, time ran out)."""


def percentile(values_: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values_`` by the nearest rank."""
    ordered = sorted(values_)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# -- events of a realistic shape ----------------------------------------------------------------


def chain(writer: str, count: int, first_ms: int) -> Iterator[tuple[AuditEvent, bytes]]:
    """``count`` events of one writer, chained: downloads as ``start``/``end`` pairs, with a
    session event now and then, shaped as the gateway writes them."""
    prev = "0" * 64
    start_seq = 0
    fields: dict[str, Any]
    for seq in range(1, count + 1):
        agent = 1000 + seq % 500
        concerns: dict[str, str | int | bool | None] = {
            "conference": f"conf-{seq // 7:08d}",
            "fileType": 0,
            "record": f"rec-{seq // 7:08d}-0",
        }
        if seq % 50 == 0:
            kind, name, fields, concerns = Kind.SESSION, "sign_in", {}, {}
        elif start_seq == 0:
            kind, name = Kind.DOWNLOAD, START
            fields = {
                "interface": "downloadVideoFile",
                "range": "bytes=0-",
                "decision": AUTHORIZED,
            }
            start_seq = seq
        else:
            kind, name = Kind.DOWNLOAD, END
            fields = {
                "bytes": 10_485_760 + seq,
                "durationMs": 200 + seq % 300,
                "outcome": Outcome.COMPLETED.value,
                "ranges": [[0, 10_485_759 + seq]],
                "retcode": "0",
                "startSeq": start_seq,
                "status": 206,
            }
            start_seq = 0
        event = AuditEvent(
            writer=writer,
            seq=seq,
            time_ms=first_ms + seq * 3,
            kind=kind,
            name=name,
            agent_id=agent,
            client=f"10.0.{seq % 200}.{seq % 250}",
            prev=prev,
            concerns=concerns,
            fields=fields,
        )
        body = event.canonical()
        prev = hashlib.sha256(body).hexdigest()
        yield event, body


def chain_rows(task: tuple[str, int, int]) -> list[tuple[Any, ...]]:
    """One writer's chain as ``audit_events`` rows, in the order of ``COLUMNS`` (a pool
    worker's task)."""
    writer, count, first_ms = task
    return [
        (writer, e.seq, *values(e), body.decode("ascii"))
        for e, body in chain(writer, count, first_ms)
    ]


# -- 1. what an event costs the request path ----------------------------------------------------


@dataclass
class AppendResult:
    per_event_ns: list[int]
    start_ns: list[int]
    end_ns: list[int]
    baseline_ns: list[int]
    timer_ns: int
    shipped_after_s: float
    events: int
    mean_bytes: float


async def measure_appends(tmp: Path, appends: int) -> AppendResult:
    downloads = appends // 2
    database = tmp / "append.db"
    engine = await open_engine(f"sqlite:///{database}")
    auditor = Auditor.for_node(tmp / "journal", "bench", SystemClock(), SqlAuditEventStore(engine))
    auditor.run(recover=False)
    clock = time.perf_counter_ns
    start_ns: list[int] = []
    end_ns: list[int] = []
    try:
        timer = []
        for _ in range(10_000):
            t0 = clock()
            t1 = clock()
            timer.append(t1 - t0)
        for number in range(downloads):
            attempt = auditor.begin("downloadVideoFile", "127.0.0.1", range="bytes=0-")
            attempt.agent_id = 1000 + number % 500
            attempt.conference_id = f"conf-{number:08d}"
            attempt.record_id = f"rec-{number:08d}-0"
            attempt.file_type = 0
            t0 = clock()
            auditor.authorize(attempt)
            t1 = clock()
            attempt.outcome = Outcome.COMPLETED
            attempt.status = 206
            attempt.bytes_sent = 10_485_760
            attempt.ranges = [[0, 10_485_759]]
            t2 = clock()
            auditor.finish(attempt)
            t3 = clock()
            start_ns.append(t1 - t0)
            end_ns.append(t3 - t2)
            await asyncio.sleep(0)  # between requests: the loop runs the shipper
        drain_started = time.perf_counter()
        if not await auditor.drain(120):
            raise BenchError("the appended events were not shipped within 120 s")
        shipped_after_s = time.perf_counter() - drain_started
    finally:
        await auditor.aclose()
        await engine.dispose()
    with contextlib.closing(sqlite3.connect(database)) as connection:
        bodies = [
            str(row[0]).encode("ascii") + b"\n"
            for row in connection.execute(
                "SELECT body FROM audit_events WHERE writer = ? ORDER BY seq", (auditor.writer,)
            )
        ]
    if len(bodies) != 2 * downloads:
        raise BenchError(f"{len(bodies)} events in the database, {2 * downloads} appended")
    baseline: list[int] = []
    fd = os.open(tmp / "bare.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for line in bodies:
            t0 = clock()
            os.write(fd, line)
            t1 = clock()
            baseline.append(t1 - t0)
    finally:
        os.close(fd)
    return AppendResult(
        per_event_ns=start_ns + end_ns,
        start_ns=start_ns,
        end_ns=end_ns,
        baseline_ns=baseline,
        timer_ns=int(statistics.median(timer)),
        shipped_after_s=shipped_after_s,
        events=len(bodies),
        mean_bytes=sum(map(len, bodies)) / len(bodies),
    )


def report_appends(result: AppendResult) -> tuple[float, float]:
    us = [n / 1000 for n in result.per_event_ns]
    base = [n / 1000 for n in result.baseline_ns]
    p50, p99 = percentile(us, 0.5), percentile(us, 0.99)
    b50, b99 = percentile(base, 0.5), percentile(base, 0.99)
    ratio = p50 / b50
    print(
        f"append_events {result.events} ({result.events // 2} downloads: authorize + finish),"
        f" {result.mean_bytes:.0f} bytes an event on average; timer floor"
        f" {result.timer_ns} ns (included in every figure)"
    )
    print(
        f"append_us p50 {p50:.2f} p90 {percentile(us, 0.9):.2f} p99 {p99:.2f}"
        f" p99.9 {percentile(us, 0.999):.2f} max {max(us):.0f}"
    )
    for name, part in (("start", result.start_ns), ("end", result.end_ns)):
        values_us = [n / 1000 for n in part]
        print(
            f"  {name:<5} (Auditor.{'authorize' if name == 'start' else 'finish'}) p50"
            f" {percentile(values_us, 0.5):.2f} p99 {percentile(values_us, 0.99):.2f}"
        )
    print(
        f"baseline_os_write_us p50 {b50:.2f} p99 {b99:.2f} max {max(base):.0f}"
        f" (one os.write of the same line, O_APPEND, no fsync)"
    )
    print(f"append_ratio_p50 {ratio:.2f} (append / os.write)")
    print(f"  the shipper then needed {result.shipped_after_s:.1f} s to ship what remained")
    return p50, ratio


# -- 2. a database outage ------------------------------------------------------------------------


class OwnPostgres:
    """A PostgreSQL instance of the benchmark's own, in a temporary directory, run as postgres
    (as ``tests/system/test_audit_durability.py`` does)."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found or shutil.which("runuser") is None or os.geteuid() != 0:
            raise BenchError("the outage bar needs root, runuser and /usr/lib/postgresql/*/bin")
        self.bin = Path(found[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="ccgw-bench-pg-", dir="/tmp"))
        shutil.chown(self.dir, "postgres")
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.running = False
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise BenchError(f"{tool}: {result.stderr[-500:]}")

    def start(self) -> float:
        """Start it and wait until it accepts connections; how long that took, s."""
        started = time.perf_counter()
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        data = str(self.dir / "data")
        self._run("pg_ctl", "-D", data, "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        self.running = True
        return time.perf_counter() - started

    def stop(self) -> float:
        """Stop it (fast: connections are cut); how long that took, s."""
        started = time.perf_counter()
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
        self.running = False
        return time.perf_counter() - started

    def remove(self) -> None:
        if self.running:
            with contextlib.suppress(BenchError, subprocess.SubprocessError):
                self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Download:
    index: int
    phase: str
    sent_at: float
    status: int | None = None  # None: no answer
    retcode: str = ""
    latency_s: float = 0.0
    error: str = ""
    reached: bool = True  # False: the connection was refused (the gateway never saw it)


@dataclass
class OutageResult:
    downloads: list[Download] = field(default_factory=list)
    phase_s: dict[str, float] = field(default_factory=dict)
    stop_s: float = 0.0
    start_s: float = 0.0
    drained_s: float | None = None
    restarted_at: float = 0.0  # perf_counter when the restart began
    after_s: float = 0.0  # from then to the last download's answer
    metrics_seen: bool = False
    journal_peak_bytes: float = 0.0
    oldest_peak_s: float = 0.0
    starts: dict[int, tuple[str, int]] = field(default_factory=dict)  # range index: writer, seq
    duplicates: int = 0
    ends: set[tuple[str, int]] = field(default_factory=set)  # (writer, startSeq)
    gateway_log: list[str] = field(default_factory=list)


async def seed_gateway(data_dir: Path, database_url: str, media: Path) -> None:
    settings = load_settings(environ=gateway_env(data_dir, 1, DATABASE_URL=database_url))
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


async def sign_in(http: aiohttp.ClientSession, base: str) -> str:
    body = {"password": PASSWORD, "phonenum": f"7{AGENT}"}
    async with http.put(f"{base}onlineagent/{AGENT}", json=body) as response:
        answer: Any = await response.json(content_type=None)
        guid = response.headers.get("Set-GUID", "").partition("=")[2]
    if response.status != 200 or answer.get("retcode") != "0" or not guid:
        raise BenchError(f"sign-in answered HTTP {response.status}: {answer}")
    return guid


async def metric(http: aiohttp.ClientSession, port: int, names: Sequence[str]) -> list[float]:
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    async with http.get(f"http://127.0.0.1:{port}/metrics", headers=headers) as response:
        text = await response.text()
    found = []
    for name in names:
        match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
        found.append(float(match.group(1)) if match else float("nan"))
    return found


async def stored_transfers(url: str, result: OutageResult) -> None:
    """The download starts (by their Range index) and ends now in ``audit_events``."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT writer, seq, name, start_seq, body FROM audit_events WHERE kind = 'download'"
        )
    finally:
        await connection.close()
    starts: dict[int, tuple[str, int]] = {}
    duplicates = 0
    ends: set[tuple[str, int]] = set()
    for row in rows:
        if row["name"] == END:
            ends.add((row["writer"], row["start_seq"]))
            continue
        match = re.fullmatch(r"bytes=(\d+)-\1", str(json.loads(row["body"])["fields"]["range"]))
        if match is None:
            continue
        index = int(match.group(1))
        duplicates += index in starts
        starts[index] = (row["writer"], row["seq"])
    result.starts, result.duplicates, result.ends = starts, duplicates, ends


def lost(result: OutageResult, downloads: Sequence[Download]) -> int:
    """Events missing from the database: a start, an end, per download made."""
    missing = 0
    for download in downloads:
        start = result.starts.get(download.index)
        if start is None:
            missing += 2  # without its start, its end cannot be told apart either
        elif start not in result.ends:
            missing += 1
    return missing


async def one_download(
    http: aiohttp.ClientSession, base: str, guid: str, download: Download
) -> None:
    url = f"{base}recordfile/{AGENT}/videofiledownload?conferenceId={CONFERENCE}&fileType=0"
    headers = {"Guid": guid, "Range": f"bytes={download.index}-{download.index}"}
    started = time.perf_counter()
    try:
        async with http.get(url, headers=headers) as response:
            raw = await response.read()
            download.status = response.status
            if response.status not in (200, 206):
                with contextlib.suppress(ValueError, AttributeError):
                    download.retcode = str(json.loads(raw).get("retcode"))
    except aiohttp.ClientConnectorError as exc:
        download.reached = False
        download.error = type(exc).__name__
    except (aiohttp.ClientError, TimeoutError) as exc:
        download.error = type(exc).__name__
    download.latency_s = time.perf_counter() - started


def spawn_gateway(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "ccgateway", "serve", "--http"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


async def measure_outage(
    args: argparse.Namespace, tmp: Path, processes: list[subprocess.Popen[bytes]]
) -> OutageResult:
    result = OutageResult()
    postgres = OwnPostgres()
    try:
        postgres.start()
        media = tmp / "outage.mp4"
        with media.open("wb") as handle:
            handle.write(os.urandom(1024 * 1024))
        data_dir = tmp / "outage-data"
        await seed_gateway(data_dir, postgres.url, media)
        port = free_port()
        env = gateway_env(
            data_dir,
            port,
            DATABASE_URL=postgres.url,
            AGENT_IDLE_TIMEOUT="86400000",
            METRICS_TOKEN=METRICS_TOKEN,
        )
        log = tmp / "outage-gateway.log"
        gateway = spawn_gateway(env, log)
        processes.append(gateway)
        await asyncio.to_thread(wait_port, gateway, port, "gateway")
        base = f"http://127.0.0.1:{port}{RESOURCE}"
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
        ) as http:
            guid = await sign_in(http, base)
            await outage_load(args, http, base, guid, port, postgres, result)
            if gateway.poll() is not None:
                raise BenchError(f"the gateway exited with {gateway.returncode} during the run")
            # The journal drains on its own: the gateway keeps running while we look.
            made = [d for d in result.downloads if d.reached]
            restarted = time.perf_counter()
            result.after_s = restarted - result.restarted_at
            deadline = restarted + args.drain_s
            while True:
                await stored_transfers(postgres.url, result)
                if lost(result, made) == 0:
                    result.drained_s = time.perf_counter() - restarted
                    break
                if time.perf_counter() > deadline:
                    break
                await asyncio.sleep(0.5)
        stop([gateway])
        result.gateway_log = log.read_text(errors="replace").splitlines()
    finally:
        postgres.remove()
    return result


async def outage_load(
    args: argparse.Namespace,
    http: aiohttp.ClientSession,
    base: str,
    guid: str,
    port: int,
    postgres: OwnPostgres,
    result: OutageResult,
) -> None:
    """Downloads at ``args.rate``/s, open loop, through the phases: baseline (database up),
    outage (stopped), after (started again)."""
    tasks: list[asyncio.Task[None]] = []
    period = 1 / args.rate
    index = 0
    loop_started = time.perf_counter()

    async def run_phase(name: str, seconds: float) -> None:
        nonlocal index
        started = time.perf_counter()
        next_at = started
        while time.perf_counter() - started < seconds:
            download = Download(index, name, time.perf_counter())
            index += 1
            result.downloads.append(download)
            tasks.append(asyncio.create_task(one_download(http, base, guid, download)))
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        result.phase_s[name] = time.perf_counter() - started

    async def watch_journal() -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                size, age = await metric(
                    http,
                    port,
                    (
                        "ccgateway_audit_journal_bytes",
                        "ccgateway_audit_oldest_unshipped_seconds",
                    ),
                )
                if size == size and age == age:  # not NaN: the metrics were found
                    result.journal_peak_bytes = max(result.journal_peak_bytes, size)
                    result.oldest_peak_s = max(result.oldest_peak_s, age)
                    result.metrics_seen = True
            await asyncio.sleep(1)

    watcher = asyncio.create_task(watch_journal())
    try:
        print(f"  baseline: {args.baseline_s:g} s at {args.rate:g}/s, database up", flush=True)
        await run_phase("baseline", args.baseline_s)
        print(f"  stopping the database for {args.outage_s:g} s", flush=True)
        stopping = asyncio.create_task(asyncio.to_thread(postgres.stop))
        await run_phase("outage", args.outage_s)
        result.stop_s = await stopping
        print("  starting the database again", flush=True)
        starting = asyncio.create_task(asyncio.to_thread(postgres.start))
        await run_phase("after", args.after_s)
        result.start_s = await starting
        result.restarted_at = time.perf_counter() - result.phase_s["after"]
        await asyncio.gather(*tasks)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        for task in tasks:
            task.cancel()
    print(f"  {index} downloads in {time.perf_counter() - loop_started:.1f} s", flush=True)


def report_outage(result: OutageResult) -> tuple[int, int]:
    """Print the phases; (events lost in the outage run, in the baseline)."""
    by_phase: dict[str, list[Download]] = {}
    for download in result.downloads:
        by_phase.setdefault(download.phase, []).append(download)
    lost_by_phase = {}
    for phase, downloads in by_phase.items():
        made = [d for d in downloads if d.reached]
        answers = Counter(
            f"{d.status}" + (f"/{d.retcode}" if d.retcode else "")
            if d.status is not None
            else d.error
            for d in made
        )
        lost_by_phase[phase] = lost(result, made)
        latencies = [d.latency_s * 1000 for d in made if d.status is not None]
        seconds = result.phase_s.get(phase, 0.0)
        print(
            f"outage_phase {phase}: {len(made)} downloads in {seconds:.1f} s"
            f" ({len(made) / seconds if seconds else 0:.1f}/s), answers"
            f" {dict(sorted(answers.items()))}, latency ms p50"
            f" {percentile(latencies, 0.5) if latencies else float('nan'):.1f} p99"
            f" {percentile(latencies, 0.99) if latencies else float('nan'):.1f};"
            f" events lost {lost_by_phase[phase]} of {2 * len(made)}"
        )
        unreached = len(downloads) - len(made)
        if unreached:
            print(f"  {unreached} connections refused (never reached the gateway; not counted)")
    journal = (
        f"journal peak {result.journal_peak_bytes / 1024:.0f} KiB, oldest unshipped event peak"
        f" {result.oldest_peak_s:.1f} s (/metrics, every 1 s)"
        if result.metrics_seen
        else "the journal metrics could not be read"
    )
    print(
        f"outage_database pg_ctl stop took {result.stop_s:.1f} s, start {result.start_s:.1f} s;"
        f" {journal}"
    )
    drained = "never" if result.drained_s is None else f"{result.drained_s:.1f} s"
    print(
        f"outage_drained {drained} after the last download answered, which was"
        f" {result.after_s:.1f} s after the database was started again (every event in the db)"
    )
    print(f"outage_duplicate_starts {result.duplicates}")
    messages: Counter[str] = Counter()
    for line in result.gateway_log:
        found = re.match(r"\S+ \S+ (ERROR|WARNING|CRITICAL) (.*)", line)
        if found is not None and "serving plain HTTP" not in line:
            messages[re.sub(r"\d+", "N", f"{found.group(1)} {found.group(2)}")[:150]] += 1
    print(
        f"gateway_log {len(result.gateway_log)} lines, {sum(messages.values())} warnings and"
        " errors (with their tracebacks: the database was down):"
    )
    for message, count in messages.most_common(8):
        print(f"  {count} x {message}")
    outage_run = lost_by_phase.get("outage", 0) + lost_by_phase.get("after", 0)
    print(
        f"events_lost baseline {lost_by_phase.get('baseline', 0)} (database up)"
        f" outage {outage_run} (stopped, then started again)"
    )
    return outage_run + lost_by_phase.get("baseline", 0), lost_by_phase.get("baseline", 0)


# -- 3. verify over a million events -------------------------------------------------------------


@dataclass
class VerifyResult:
    events: int
    writers: int
    generate_s: float
    insert_s: float
    verify_s: float
    cpu: dict[str, tuple[int, float]]
    sha256sum_s: float
    output: list[str]
    database: Path
    bodies: Path


def generate(tmp: Path, events: int, writers: int) -> VerifyResult:
    database = tmp / "verify.db"
    bodies = tmp / "bodies.jsonl"
    asyncio.run(_migrate(f"sqlite:///{database}"))
    per_writer = events // writers
    first_ms = time.time_ns() // 1_000_000 - 86_400_000
    tasks = [
        (f"bench{number:02d}@{first_ms}", per_writer + (number < events % writers), first_ms)
        for number in range(writers)
    ]
    placeholders = ", ".join("?" * len(COLUMNS))
    insert = f"INSERT INTO audit_events ({', '.join(COLUMNS)}) VALUES ({placeholders})"  # noqa: S608 (constants)
    generate_s = insert_s = 0.0
    started = time.perf_counter()
    context = multiprocessing.get_context("forkserver")
    with (
        context.Pool(len(os.sched_getaffinity(0))) as pool,
        contextlib.closing(sqlite3.connect(database)) as connection,
        bodies.open("wb") as out,
    ):
        connection.execute("PRAGMA synchronous=OFF")
        for rows in pool.imap(chain_rows, tasks):
            generated = time.perf_counter()
            generate_s += generated - started
            connection.executemany(insert, rows)
            connection.commit()
            out.write(b"".join(row[11].encode("ascii") + b"\n" for row in rows))
            started = time.perf_counter()
            insert_s += started - generated
        out.flush()
        os.fsync(out.fileno())
    return VerifyResult(events, writers, generate_s, insert_s, 0, {}, 0, [], database, bodies)


async def _migrate(url: str) -> None:
    engine = await open_engine(url)
    await engine.dispose()


def run_verify(tmp: Path, result: VerifyResult, jobs: int | None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCGW_")}
    env.update(
        CCGW_DATA_DIR=str(tmp / "verify-data"),
        CCGW_DATABASE_URL=f"sqlite:///{result.database}",
        CCGW_LOG_LEVEL="WARNING",
    )
    argv = [sys.executable, "-m", "ccgateway", "audit", "verify"]
    if jobs is not None:
        argv += ["--jobs", str(jobs)]
    warm(result.database)
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with ProcessTreeCpu(process.pid) as tree:
        stdout, stderr = process.communicate(timeout=600)
    result.verify_s = time.perf_counter() - started
    result.cpu = tree.by_role()
    result.output = stdout.splitlines()
    if process.returncode != 0:
        raise BenchError(f"audit verify exited with {process.returncode}: {stderr[-1000:]}")
    intact = [line for line in result.output if "  intact  " in line]
    counted = sum(int(line.split("  intact  ")[1].split()[0]) for line in intact)
    if len(intact) != result.writers or counted != result.events:
        raise BenchError(f"audit verify did not find the chains intact: {result.output[:5]}")
    warm(result.bodies)
    started = time.perf_counter()
    done = subprocess.run(
        ["sha256sum", str(result.bodies)], capture_output=True, text=True, timeout=600
    )
    result.sha256sum_s = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"sha256sum failed: {done.stderr}")


class ProcessTreeCpu:
    """The CPU seconds of a process and of its descendants (pool workers), read from /proc every
    0.2 s in a thread while active: the last value seen of each."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: dict[int, tuple[str, float]] = {}  # pid: (role, cpu s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcessTreeCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample(self.pid, "main")

    def _sample(self, pid: int, role: str) -> None:
        try:
            self.seen[pid] = (role, cpu_s(pid))
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        for child in children(pid):
            if b"forkserver" in command or role == "forkserver":
                kind = "worker"
            elif b"forkserver" in _cmdline(child):
                kind = "forkserver"
            else:
                kind = "other"
            self._sample(child, kind)

    def by_role(self) -> dict[str, tuple[int, float]]:
        """Per role (main, forkserver, worker, other): (processes, CPU seconds)."""
        roles: dict[str, tuple[int, float]] = {}
        for role, seconds in self.seen.values():
            count, total = roles.get(role, (0, 0.0))
            roles[role] = (count + 1, total + seconds)
        return roles


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def warm(path: Path) -> None:
    """Read a file (and a SQLite database's WAL) once, so both sides start from the cache."""
    for each in (path, path.with_name(path.name + "-wal")):
        if each.exists():
            with each.open("rb", buffering=0) as handle:
                while handle.read(16 * 1024 * 1024):
                    pass


def report_verify(result: VerifyResult) -> float:
    size = result.bodies.stat().st_size
    ratio = result.verify_s / result.sha256sum_s
    print(
        f"verify_events {result.events} in {result.writers} chains ({size / 1024**2:.0f} MiB of"
        f" bodies); generated in {result.generate_s:.1f} s, inserted in {result.insert_s:.1f} s"
    )
    print(f"verify_s {result.verify_s:.1f} (ccgateway audit verify, a subprocess, default --jobs)")
    cpu = ", ".join(
        f"{role} {seconds:.1f} s ({count} process{'es' if count > 1 else ''})"
        for role, (count, seconds) in sorted(result.cpu.items())
    )
    total = sum(seconds for _, seconds in result.cpu.values())
    print(
        f"verify_cpu_s {total:.1f} = {cpu}; {100 * total / result.verify_s:.0f}% of one core over"
        f" the run, of {len(os.sched_getaffinity(0))} (from /proc every 0.2 s)"
    )
    print(f"baseline_sha256sum_s {result.sha256sum_s:.2f}")
    print(f"verify_ratio {ratio:.0f} (verify / sha256sum)")
    return ratio


async def profile_verify(result: VerifyResult, sample: int) -> None:
    """Where verify's time goes: reading every row, and parsing, hashing, columns per row."""
    engine = await open_engine(f"sqlite:///{result.database}")
    kept: list[AuditRow] = []
    rows = 0
    started = time.perf_counter()
    try:
        async for batch in SqlAuditRows(engine).batches():
            rows += len(batch)
            if len(kept) < sample:
                kept.extend(batch[: sample - len(kept)])
    finally:
        await engine.dispose()
    read_s = time.perf_counter() - started
    scale = rows / len(kept)
    bodies = [row[11].encode("ascii") for row in kept]

    def timed(what: str, work: Any) -> float:
        started = time.perf_counter()
        work()
        spent = (time.perf_counter() - started) * scale
        print(f"  {what:<44} {spent:6.1f} s for {rows} ({1e6 * spent / rows:.1f} us a row)")
        return spent

    print(f"verify_profile (one process; {len(kept)} rows timed, scaled to {rows}):")
    print(
        f"  {'reading the rows (SqlAuditRows.batches)':<44} {read_s:6.1f} s for {rows}"
        f" ({1e6 * read_s / rows:.1f} us a row)"
    )
    timed("str -> bytes (encode)", lambda: [row[11].encode("ascii") for row in kept])
    timed("SHA-256 (hashlib, hexdigest)", lambda: [hashlib.sha256(b).hexdigest() for b in bodies])
    timed("json.loads alone", lambda: [json.loads(b) for b in bodies])
    events = [parse(b) for b in bodies]
    timed("events.parse (loads + re-encode + compare)", lambda: [parse(b) for b in bodies])
    timed("columns.values", lambda: [values(e) for e in events])
    timed("examine (all of the above, as a worker runs it)", lambda: examine(kept))


# -- 4. shipping into PostgreSQL ---------------------------------------------------------------


@dataclass
class ShipResult:
    events: int
    segments: int
    ship_s: float
    insert_s: float
    copy_s: float


class TimedStore(SqlAuditEventStore):
    """The real store, adding up the time its inserts take."""

    spent_s = 0.0

    async def insert(self, rows: Sequence[AuditEventRow]) -> None:
        started = time.perf_counter()
        await super().insert(rows)
        self.spent_s += time.perf_counter() - started


async def measure_shipping(tmp: Path, postgres: str, events: int) -> ShipResult:
    name = f"ccgw_bench_audit_{os.getpid()}"
    admin = await asyncpg.connect(postgres)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            return await _ship(tmp, postgres.rsplit("/", 1)[0] + f"/{name}", events)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _ship(tmp: Path, url: str, count: int) -> ShipResult:
    writer = f"bench@{time.time_ns() // 1_000_000}"
    generated = list(chain(writer, count, time.time_ns() // 1_000_000))
    journal = Journal(tmp / "ship-journal", writer)
    for event, body in generated:
        journal.append(event, body)
    if not journal.flush(120):
        raise BenchError("the journal did not commit the events within 120 s")
    journal.close()
    directory = WriterDir(journal.dir.path)
    segments = len(directory.segments())
    records = [
        tuple(getattr(row_of(event, body), column) for column in COLUMNS)
        for event, body in generated
    ]
    del generated
    engine = await open_engine(url)
    try:
        store = TimedStore(engine)
        shipper = Shipper(store)
        shipper.add(directory)
        shipped = 0
        started = time.perf_counter()
        while shipped < count:
            done = await shipper.ship_once()
            if not done:
                raise BenchError(f"the shipper stopped after {shipped} of {count} events")
            shipped += done
        ship_s = time.perf_counter() - started
        connection = await asyncpg.connect(url)
        try:
            if await connection.fetchval("SELECT count(*) FROM audit_events") != count:
                raise BenchError("the shipper did not insert every event")
            await connection.execute("TRUNCATE audit_events")
            await connection.execute("VACUUM ANALYZE audit_events")
            started = time.perf_counter()
            await connection.copy_records_to_table(
                "audit_events", records=records, columns=list(COLUMNS)
            )
            copy_s = time.perf_counter() - started
            if await connection.fetchval("SELECT count(*) FROM audit_events") != count:
                raise BenchError("COPY did not insert every row")
        finally:
            await connection.close()
    finally:
        await engine.dispose()
    return ShipResult(count, segments, ship_s, store.spent_s, copy_s)


def report_shipping(result: ShipResult) -> tuple[float, float]:
    rate = result.events / result.ship_s
    copy_rate = result.events / result.copy_s
    print(
        f"ship_events {result.events} from {result.segments} journal segments, batches of"
        f" {BATCH}: {result.ship_s:.2f} s, of which INSERTs {result.insert_s:.2f} s"
        f" ({result.events / result.insert_s:.0f} events/s insert alone)"
    )
    print(f"ship_events_per_s {rate:.0f}")
    print(
        f"baseline_copy_events_per_s {copy_rate:.0f} (one COPY of the same rows,"
        f" {result.copy_s:.2f} s)"
    )
    print(f"ship_ratio {rate / copy_rate:.2f} (shipper / COPY)")
    return rate, rate / copy_rate


# -- 5. download TTFB before and after -----------------------------------------------------------

DOWNLOAD_SMALL = [
    "--size-mib",
    "64",
    "--repeats",
    "1",
    "--tls-repeats",
    "1",
    "--rounds",
    "1",
    "--clients",
    "2",
    "--concurrent-mib",
    "8",
    "--tls-concurrent-mib",
    "8",
    "--ttfb-samples",
    "100",
]


def ttfb(checkout: Path) -> tuple[float, float]:
    """One small ``bench/download.py`` run in ``checkout``: its (nginx, gateway) TTFB medians."""
    python = checkout / ".venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), str(checkout / "bench" / "download.py"), *DOWNLOAD_SMALL],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=checkout,
    )
    found = re.search(r"^ttfb_median_ms nginx ([0-9.]+) gateway ([0-9.]+)$", done.stdout, re.M)
    if done.returncode != 0 or found is None:
        raise BenchError(f"bench/download.py in {checkout} failed: {done.stderr[-500:]}")
    return float(found.group(1)), float(found.group(2))


def compare_ttfb(before: Path, rounds: int) -> None:
    print(
        f"5. download TTFB: bench/download.py (64 MiB file, 100 Range bytes=0-0 requests) in"
        f" {before} (before) and here (after), alternately, {rounds} run(s) each:",
        flush=True,
    )
    gateway: dict[str, list[float]] = {"before": [], "after": []}
    for number in range(rounds):
        pair = (("before", before), ("after", REPO))
        for name, checkout in pair if number % 2 == 0 else tuple(reversed(pair)):
            nginx_ms, gateway_ms = ttfb(checkout)
            gateway[name].append(gateway_ms)
            print(f"  {name:<6} gateway {gateway_ms:.2f} ms (nginx {nginx_ms:.2f} ms)", flush=True)
    print(
        f"ttfb_median_ms before {statistics.median(gateway['before']):.2f}"
        f" after {statistics.median(gateway['after']):.2f} (median of the runs' medians)"
    )


# -- the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace, tmp: Path, processes: list[subprocess.Popen[bytes]]) -> int:
    started = time.perf_counter()
    load = os.getloadavg()
    print(
        f"audit benchmark{' (--quick)' if args.quick else ''}: {os.cpu_count()} CPU cores, load"
        f" average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, python {sys.version.split()[0]}",
        flush=True,
    )
    bars: list[str] = []

    if "append" in args.only:
        print(
            f"1. {args.appends} events appended in-process (journal + shipper running)", flush=True
        )
        appends = asyncio.run(measure_appends(tmp, args.appends))
        p50, _ = report_appends(appends)
        bars.append(
            f"bar event_append_p50_us {p50:.2f} <={BAR_APPEND_P50_US:g}"
            f" {verdict(p50 <= BAR_APPEND_P50_US)}"
        )

    if "outage" in args.only:
        print(
            f"2. {args.rate:g} downloads/s, the database stopped {args.outage_s:g} s and started",
            flush=True,
        )
        outage = asyncio.run(measure_outage(args, tmp, processes))
        lost_total, _ = report_outage(outage)
        bars.append(
            f"bar events_lost_db_outage {lost_total} <={BAR_LOST} {verdict(lost_total <= BAR_LOST)}"
        )

    if "verify" in args.only:
        print(
            f"3. audit verify over {args.verify_events} events of {args.verify_writers} writers",
            flush=True,
        )
        generated = generate(tmp, args.verify_events, args.verify_writers)
        run_verify(tmp, generated, args.jobs)
        report_verify(generated)
        if generated.verify_s >= BAR_VERIFY_S or args.profile_verify:
            asyncio.run(profile_verify(generated, min(100_000, args.verify_events)))
        bars.append(
            f"bar verify_1m_s {generated.verify_s:.1f} <{BAR_VERIFY_S:g}"
            f" {verdict(generated.verify_s < BAR_VERIFY_S)}"
        )
        generated.database.unlink()
        generated.bodies.unlink()

    if "ship" in args.only:
        print(f"4. shipping {args.ship_events} events into PostgreSQL", flush=True)
        shipping = asyncio.run(measure_shipping(tmp, args.postgres, args.ship_events))
        rate, _ = report_shipping(shipping)
        bars.append(
            f"bar ship_events_per_s {rate:.0f} >={BAR_SHIP_PER_S:.0f}"
            f" {verdict(rate >= BAR_SHIP_PER_S)}"
        )

    if "ttfb" in args.only and args.ttfb_before is not None:
        compare_ttfb(Path(args.ttfb_before), args.ttfb_rounds)

    load = os.getloadavg()
    print(f"load_average_after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"run_s {time.perf_counter() - started:.1f}")
    for line in bars:
        print(line)
    return 0


PARTS = ("append", "outage", "verify", "ship", "ttfb")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller counts, shorter phases")
    parser.add_argument("--appends", type=int, help="events appended (default 100,000)")
    parser.add_argument("--rate", type=float, default=50, help="downloads a second")
    parser.add_argument("--baseline-s", type=float, help="database up (default 15)")
    parser.add_argument("--outage-s", type=float, help="database stopped (default 30)")
    parser.add_argument("--after-s", type=float, help="downloads after the restart (default 5)")
    parser.add_argument("--drain-s", type=float, default=120, help="how long the drain may take")
    parser.add_argument("--verify-events", type=int, help="events verified (default 1,000,000)")
    parser.add_argument("--verify-writers", type=int, default=10, help="their writers (chains)")
    parser.add_argument("--jobs", type=int, default=None, help="audit verify --jobs")
    parser.add_argument("--profile-verify", action="store_true", help="profile verify anyway")
    parser.add_argument("--ship-events", type=int, help="events shipped (default 100,000)")
    parser.add_argument("--postgres", default=SHARED_POSTGRES, help="for shipping (not stopped)")
    parser.add_argument(
        "--only", action="append", choices=PARTS, help="run only this part (repeatable)"
    )
    parser.add_argument(
        "--ttfb-before",
        metavar="DIR",
        help="a checkout of the commit before the change, with its .venv: compare download TTFB",
    )
    parser.add_argument("--ttfb-rounds", type=int, default=3, help="before/after pairs")
    parser.add_argument("--tmp-dir", default=None, help="where the temporary directory goes")
    parser.add_argument("--timeout", type=int, default=900, help="hard limit of the run, s")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "appends": 10_000 if quick else 100_000,
        "baseline_s": 3.0 if quick else 15.0,
        "outage_s": 5.0 if quick else 30.0,
        "after_s": 2.0 if quick else 5.0,
        "verify_events": 50_000 if quick else 1_000_000,
        "ship_events": 10_000 if quick else 100_000,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.only = args.only or list(PARTS)
    if args.appends < 2 or args.verify_events < args.verify_writers or args.ship_events < 1:
        parser.error("--appends >= 2, --verify-events >= --verify-writers, --ship-events >= 1")
    if args.rate <= 0 or min(args.baseline_s, args.outage_s, args.after_s) <= 0:
        parser.error("--rate and the phases must be > 0")
    return args


def _time_out(signum: int, frame: FrameType | None) -> None:
    raise BenchError("the run exceeded --timeout")


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise BenchError(f"stopped by signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="ccgw-bench-audit-", dir=args.tmp_dir))
    processes: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGALRM, _time_out)
    signal.signal(signal.SIGTERM, _terminated)  # clean up as on Ctrl-C
    signal.alarm(args.timeout)
    try:
        return run(args, tmp, processes)
    except (
        BenchError,
        RuntimeError,
        OSError,
        subprocess.SubprocessError,
        asyncpg.PostgresError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        stop(processes)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
