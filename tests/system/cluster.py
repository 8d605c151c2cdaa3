"""Helpers for running a scale-out cluster on loopback: two or more gateway nodes on PostgreSQL and
Redis, with nginx (from ``deploy/nginx/ccgateway.conf``) in front.

Used by ``tests/system/test_cluster.py`` and ``bench/cluster.py``. Nothing here imports pytest: a
missing service raises ``Unavailable`` and the caller decides whether that skips or fails.
"""

from __future__ import annotations

import asyncio
import grp
import http.client
import json
import os
import pwd
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "deploy" / "nginx" / "ccgateway.conf"
ENSURE_NGINX = REPO / "scripts" / "ensure-nginx"
ACCEL_PREFIX = "/_ccgw_files"
RESOURCE = "/agentgateway/resource/"
ADMIN = "/ccgateway/admin/v1"
PLACEHOLDERS = (
    "USER",
    "RUN_DIR",
    "LOG_DIR",
    "LISTEN",
    "TLS_CERT",
    "TLS_KEY",
    "UPSTREAM_SERVERS",
)


class Unavailable(RuntimeError):
    """A service the cluster needs (PostgreSQL, Redis, nginx) is not there."""


# -- nginx ----------------------------------------------------------------------------------------


def worker_user() -> str:
    """``user group`` for nginx's ``user`` directive: whoever runs this (root's workers would
    otherwise drop to nobody, who cannot read a test's temporary files)."""
    return f"{pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"


def render_nginx_conf(
    *,
    listen: str,
    tls_cert: Path,
    tls_key: Path,
    upstreams: Sequence[str],
    run_dir: Path,
    log_dir: Path | None = None,
    user: str | None = None,
    template: str | None = None,
) -> str:
    """Fill the placeholders of ``deploy/nginx/ccgateway.conf``; ``upstreams`` are HOST:PORT."""
    text = TEMPLATE.read_text() if template is None else template
    servers = "\n        ".join(f"server {u} max_fails=1 fail_timeout=10s;" for u in upstreams)
    values = {
        "USER": user or worker_user(),
        "RUN_DIR": str(run_dir),
        "LOG_DIR": str(log_dir or run_dir),
        "LISTEN": listen,
        "TLS_CERT": str(tls_cert),
        "TLS_KEY": str(tls_key),
        "UPSTREAM_SERVERS": servers,
    }
    for name in PLACEHOLDERS:
        text = text.replace(f"@@{name}@@", values[name])
    if "@@" in text.replace("@@NAME@@", ""):
        raise ValueError("deploy/nginx/ccgateway.conf has a placeholder the renderer does not know")
    return text


def ensure_nginx() -> str:
    """The nginx binary, installed by ``scripts/ensure-nginx`` if missing."""
    done = subprocess.run(["bash", str(ENSURE_NGINX)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not done.stdout.strip():
        raise Unavailable(f"scripts/ensure-nginx failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]


def start_nginx(binary: str, run_dir: Path, conf_text: str, ports: Sequence[int]) -> Process:
    run_dir.mkdir(parents=True, exist_ok=True)
    conf = run_dir / "nginx.conf"
    conf.write_text(conf_text)
    log = run_dir / "nginx.out"
    argv = [binary, "-p", str(run_dir), "-c", str(conf), "-e", str(run_dir / "error.log")]
    argv += ["-g", "daemon off;"]
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    process = Process("nginx", popen, log)
    for port in ports:
        process.wait_listening(port)
    return process


# -- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def wait_listening(self, port: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode}: {self.tail()}"
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            return
        raise RuntimeError(
            f"{self.name} did not listen on {port} in {timeout_s:g} s: {self.tail()}"
        )

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()


def stop_all(processes: Sequence[Process]) -> None:
    for process in processes:
        if process.popen.poll() is None:
            process.popen.terminate()
    for process in processes:
        process.stop()


def gateway_env(**settings: str) -> dict[str, str]:
    """The inherited environment without CCGW_* variables, plus ``settings`` (keys unprefixed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCGW_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({f"CCGW_{key}": value for key, value in settings.items()})
    return env


def ccgateway(env: Mapping[str, str], *args: str, timeout_s: float = 60) -> str:
    """Run one ``ccgateway`` CLI command; its stdout, or RuntimeError with its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "ccgateway", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ccgateway {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Node:
    name: str
    port: int
    process: Process

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_node(name: str, run_dir: Path, env: Mapping[str, str], port: int = 0) -> Node:
    """``ccgateway serve --http`` as node ``name`` on 127.0.0.1 (listening when this returns)."""
    port = port or free_port()
    data_dir = run_dir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    full_env = {
        **env,
        "CCGW_NODE_NAME": name,
        "CCGW_LISTEN_HOST": "127.0.0.1",
        "CCGW_LISTEN_PORT": str(port),
        "CCGW_DATA_DIR": str(data_dir),
    }
    log = run_dir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "ccgateway", "serve", "--http"],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Node(name, port, Process(name, popen, log))


# -- PostgreSQL and Redis -------------------------------------------------------------------------

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def _pg_base(admin_url: str) -> str:
    return admin_url.rsplit("/", 1)[0]


async def _execute(url: str, statement: str) -> list[tuple[Any, ...]]:
    """One statement, outside a transaction (CREATE DATABASE needs that); the rows it returns."""
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import create_async_engine

    from ccgateway.stores.schema import async_url

    engine = create_async_engine(
        async_url(url), isolation_level="AUTOCOMMIT", connect_args={"timeout": 5}
    )
    try:
        async with engine.connect() as connection:
            result = await connection.execute(sa.text(statement))
            return [tuple(row) for row in result] if result.returns_rows else []
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        raise Unavailable(f"PostgreSQL at {url}: {exc}") from None
    finally:
        await engine.dispose()


def create_database(admin_url: str = PG_ADMIN_URL, prefix: str = "ccgw_test_") -> str:
    """A fresh, empty database; its URL (same server and user as ``admin_url``)."""
    name = prefix + secrets.token_hex(6)
    asyncio.run(_execute(admin_url, f'CREATE DATABASE "{name}"'))
    return f"{_pg_base(admin_url)}/{name}"


def drop_database(url: str, admin_url: str = PG_ADMIN_URL) -> None:
    name = url.rsplit("/", 1)[1]
    asyncio.run(_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def query(url: str, statement: str) -> list[tuple[Any, ...]]:
    return asyncio.run(_execute(url, statement))


def flush_redis(db: int) -> None:
    """FLUSHDB on one Redis database (the sessions' key prefix is not configurable yet)."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=5)
    try:
        client.flushdb()
    except redis.exceptions.RedisError as exc:
        raise Unavailable(f"Redis at {REDIS_HOST}:{REDIS_PORT}: {exc}") from None
    finally:
        client.close()


def redis_url(db: int) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


# -- HTTP -----------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    _json: Any = field(default=None, repr=False)

    def json(self) -> Any:
        if self._json is None:
            self._json = json.loads(self.body)
        return self._json

    def header(self, name: str) -> str:
        return self.headers.get(name) or ""

    def all(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []


def call(
    base: str,
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    context: ssl.SSLContext | None = None,
    timeout_s: float = 30,
) -> Answer:
    """One request on a fresh connection to ``base`` (http:// or https://)."""
    scheme, _, host_port = base.partition("://")
    host, _, port = host_port.partition(":")
    connection: http.client.HTTPConnection
    if scheme == "https":
        connection = http.client.HTTPSConnection(
            host, int(port), timeout=timeout_s, context=context
        )
    else:
        connection = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    payload = None if body is None else json.dumps(body).encode()
    sent = dict(headers or {})
    if payload is not None:
        sent.setdefault("Content-Type", "application/json")
    try:
        connection.request(method, path, payload, sent)
        response = connection.getresponse()
        data = response.read()
        return Answer(response.status, response.headers, data)
    finally:
        connection.close()
