"""One suite for every MediaSource backend: a local file, nginx over HTTP, SeaweedFS over S3.

The remote cases run against real servers on loopback (``tests.system.upstreams``); a few
HTTP-only cases (retries, timeouts) use a tiny aiohttp upstream whose misbehaviour is scripted.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ccgateway.sources import Sources, digest
from ccgateway.sources.base import (
    MediaSource,
    SourceChanged,
    SourceError,
    SourceMissing,
    reading,
    redact,
    remote_mtime_ns,
)
from ccgateway.sources.http import HttpOptions, HttpPool, HttpSource
from ccgateway.sources.local import LocalSource
from ccgateway.sources.s3 import S3Config, S3Pool, S3Source, parse_s3_location
from tests.system.upstreams import SECRET_KEY, Nginx, SeaweedFS, Tap, free_port

pytest_plugins = ["tests.system.upstreams"]

SIZE = 3 * 1024 * 1024 + 17


@dataclass
class Upstream:
    kind: str
    put: Callable[[str, bytes], str]  # (name, data) -> location
    replace: Callable[[str, bytes], None]  # a new version, told apart by mtime or ETag
    remove: Callable[[str], None]
    sources: Sources


@pytest.fixture
async def sources() -> AsyncIterator[Sources]:
    opened = Sources()
    yield opened
    await opened.aclose()


@pytest.fixture(params=["local", "http", "s3"])
def upstream(request: pytest.FixtureRequest, tmp_path: Path, sources: Sources) -> Upstream:
    prefix = uuid.uuid4().hex
    if request.param == "local":

        def put_local(name: str, data: bytes) -> str:
            (tmp_path / name).write_bytes(data)
            return str(tmp_path / name)

        def replace_local(name: str, data: bytes) -> None:
            put_local(name, data)
            later = time.time() + 10
            os.utime(tmp_path / name, (later, later))

        return Upstream(
            "local", put_local, replace_local, lambda n: (tmp_path / n).unlink(), sources
        )
    if request.param == "http":
        nginx: Nginx = request.getfixturevalue("nginx")

        def replace_http(name: str, data: bytes) -> None:
            nginx.put(f"{prefix}/{name}", data)
            later = time.time() + 10  # nginx's ETag is mtime-size: a rewrite has a later mtime
            os.utime(nginx.www / prefix / name, (later, later))

        return Upstream(
            "http",
            lambda name, data: nginx.put(f"{prefix}/{name}", data),
            replace_http,
            lambda name: (nginx.www / prefix / name).unlink(),
            sources,
        )
    s3: SeaweedFS = request.getfixturevalue("seaweedfs")
    sources.configure(s3=s3.config())
    return Upstream(
        "s3",
        lambda name, data: s3.put(f"{prefix}/{name}", data),
        lambda name, data: None if s3.put(f"{prefix}/{name}", data) else None,
        lambda name: s3.delete(f"{prefix}/{name}"),
        sources,
    )


async def read_all(source: MediaSource, start: int, length: int) -> bytes:
    return b"".join([chunk async for chunk in source.read(start, length)])


async def test_stat_read_and_digest(upstream: Upstream) -> None:
    data = os.urandom(SIZE)
    source = upstream.sources.open(upstream.put("a.mp4", data))
    stat = await source.stat()
    assert stat.size == SIZE
    assert await read_all(source, 0, SIZE) == data
    size, mtime_ns, sha256 = await digest(upstream.sources.open(source.uri))
    assert (size, mtime_ns, sha256) == (SIZE, stat.mtime_ns, hashlib.sha256(data).hexdigest())
    assert await upstream.sources.open(source.uri).stat() == stat
    assert (source.local_path is not None) == (upstream.kind == "local")


@pytest.mark.parametrize(
    ("start", "length"), [(0, 1), (10, 100), (SIZE - 1, 1), (1000, SIZE - 1000), (5, 0)]
)
async def test_ranges(upstream: Upstream, start: int, length: int) -> None:
    data = os.urandom(SIZE)
    source = upstream.sources.open(upstream.put("r.mp4", data))
    await source.stat()
    assert await read_all(source, start, length) == data[start : start + length]


async def test_missing_is_source_missing(upstream: Upstream) -> None:
    location = upstream.put("gone.mp4", b"x" * 10)
    upstream.remove("gone.mp4")
    with pytest.raises(SourceMissing):
        await upstream.sources.open(location).stat()


async def test_a_new_version_changes_the_stat_even_in_the_same_second(upstream: Upstream) -> None:
    """What registration stored (size, mtime_ns) no longer matches: downloads are refused."""
    first = os.urandom(4096)
    location = upstream.put("v.mp4", first)
    registered = await upstream.sources.open(location).stat()
    upstream.replace("v.mp4", bytes(reversed(first)))
    now = await upstream.sources.open(location).stat()
    assert (now.size, now.mtime_ns) != (registered.size, registered.mtime_ns)


async def test_a_change_between_stat_and_read_is_refused_not_spliced(upstream: Upstream) -> None:
    if upstream.kind == "local":
        pytest.skip("a local file is checked by stat() before each transfer only")
    first = os.urandom(SIZE)
    source = upstream.sources.open(upstream.put("c.mp4", first))
    await source.stat()
    upstream.replace("c.mp4", os.urandom(SIZE))
    with pytest.raises(SourceChanged):
        await read_all(source, 1000, 5000)


async def test_beyond_the_end_is_an_error(upstream: Upstream) -> None:
    source = upstream.sources.open(upstream.put("s.mp4", b"0123456789"))
    await source.stat()
    if upstream.kind == "local":
        with pytest.raises(SourceError):
            await read_all(source, 5, 10)
    else:
        with pytest.raises(SourceError, match="beyond"):
            await read_all(source, 5, 10)


# -- HTTP: streaming, cancellation, timeouts, retries --------------------------------------------


async def test_closing_a_read_early_closes_the_upstream_connection(
    nginx: Nginx, sources: Sources
) -> None:
    nginx.put("early/big.bin", os.urandom(32 * 1024 * 1024))
    async with Tap(nginx.port) as tap:
        source = sources.open(tap.url("early/big.bin"))
        await source.stat()
        async with reading(source, 0, 32 * 1024 * 1024) as chunks:
            async for _ in chunks:
                break
        assert await tap.all_closed_within(1.0)
        assert tap.down < 16 * 1024 * 1024


async def test_pool_reuses_connections(nginx: Nginx, sources: Sources) -> None:
    url = nginx.put("pool/a.bin", os.urandom(100_000))
    async with Tap(nginx.port) as tap:
        for _ in range(3):
            await digest(sources.open(url.replace(str(nginx.port), str(tap.port))))
        assert len(tap.links) == 1


async def test_connect_failure_names_the_cause_without_the_query(sources: Sources) -> None:
    sources.configure(http=HttpOptions(connect_timeout_s=1, retries=1))
    source = sources.open("http://user:pw@127.0.0.1:9/a.mp4?signature=SECRET")
    with pytest.raises(SourceError) as caught:
        await source.stat()
    message = str(caught.value)
    assert "http://127.0.0.1:9/a.mp4" in message
    assert "SECRET" not in message and "pw" not in message


@dataclass
class Script:
    """A scripted upstream: statuses to answer first, and whether to cut or stall the body."""

    data: bytes
    fail_first: list[int]
    cut_body: bool = False
    stall_body: bool = False
    chunked: bool = False
    sent_before_trouble: int = 1000  # bytes of the body before a cut or a stall
    gets: int = 0


async def scripted_upstream(script: Script) -> TestServer:
    async def handle(request: web.Request) -> web.StreamResponse:
        headers = {"ETag": '"v1"', "Last-Modified": "Mon, 24 Nov 2025 10:00:00 GMT"}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(script.data))})
        script.gets += 1
        if script.fail_first:
            return web.Response(status=script.fail_first.pop(0))
        first, last = (int(x) for x in request.headers["Range"][6:].split("-"))
        assert request.headers["If-Match"] == '"v1"'
        response = web.StreamResponse(status=206, headers=headers)
        response.headers["Content-Range"] = f"bytes {first}-{last}/{len(script.data)}"
        if script.chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = last - first + 1
        await response.prepare(request)
        before = min(first + script.sent_before_trouble, last + 1)  # a short range: all of it
        await response.write(script.data[first:before])
        if script.stall_body:
            await asyncio.sleep(30)
        if script.cut_body:
            assert request.transport is not None
            request.transport.abort()
            return response
        for offset in range(before, last + 1, 65536):
            await response.write(script.data[offset : min(offset + 65536, last + 1)])
        return response

    server = TestServer(web.Application(), host="127.0.0.1")
    server.app.router.add_route("*", "/{name}", handle)
    await server.start_server()
    return server


async def test_retries_before_the_first_byte_only() -> None:
    data = os.urandom(50_000)
    script = Script(data, fail_first=[503, 502])
    server = await scripted_upstream(script)
    pool = HttpPool(HttpOptions(retries=2))
    try:
        source = HttpSource(str(server.make_url("/f.bin")), pool)
        await source.stat()
        assert await read_all(source, 0, len(data)) == data
        assert script.gets == 3
        script.cut_body, script.gets = True, 0
        with pytest.raises(SourceError, match="after 1000 bytes"):
            await read_all(source, 0, len(data))
        assert script.gets == 1
    finally:
        await pool.aclose()
        await server.close()


async def test_a_stalled_body_times_out() -> None:
    data = os.urandom(50_000)
    server = await scripted_upstream(Script(data, fail_first=[], stall_body=True))
    pool = HttpPool(HttpOptions(read_timeout_s=0.3))
    try:
        source = HttpSource(str(server.make_url("/f.bin")), pool)
        await source.stat()
        started = time.monotonic()
        with pytest.raises(SourceError, match="after 1000 bytes"):
            await read_all(source, 0, len(data))
        assert time.monotonic() - started < 5
    finally:
        await pool.aclose()
        await server.close()


# -- S3: errors mapped at the edge, never a credential ----------------------------------------


async def test_s3_bad_credentials_and_missing_bucket(seaweedfs: SeaweedFS) -> None:
    location = seaweedfs.put("errors/a.bin", b"abc")
    pool = S3Pool(seaweedfs.config(secret_access_key="wrong-" + SECRET_KEY))
    try:
        with pytest.raises(SourceError) as caught:
            await S3Source(location, pool).stat()
        assert not isinstance(caught.value, SourceMissing)
        assert SECRET_KEY not in str(caught.value) and "HeadObject" in str(caught.value)
        assert SECRET_KEY not in repr(pool.config)
    finally:
        await pool.aclose()
    good = S3Pool(seaweedfs.config())
    try:
        with pytest.raises(SourceMissing):
            await S3Source("s3://no-such-bucket/a.bin", good).stat()
    finally:
        await good.aclose()


async def test_s3_endpoint_down_is_a_source_error() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    pool = S3Pool(S3Config(endpoint, "us-east-1", "k", "s", connect_timeout_s=0.5, retries=0))
    try:
        started = time.monotonic()
        with pytest.raises(SourceError, match="HeadObject failed"):
            await S3Source("s3://b/k", pool).stat()
        assert time.monotonic() - started < 10
    finally:
        await pool.aclose()


# -- locations -----------------------------------------------------------------------------------


def test_open_source_picks_the_backend_by_scheme() -> None:
    assert isinstance(Sources().open("/srv/a.mp4"), LocalSource)
    assert isinstance(Sources().open("file:///srv/a.mp4"), LocalSource)
    assert isinstance(Sources().open("http://mcu:8080/rec/a.mp4"), HttpSource)
    assert isinstance(Sources().open("HTTPS://mcu/rec/a.mp4"), HttpSource)
    assert isinstance(Sources().open("s3://bucket/dir/a.mp4"), S3Source)
    with pytest.raises(SourceError):
        Sources().open("relative/a.mp4")
    with pytest.raises(SourceError):
        Sources().open("s3://bucket-only")


def test_redact_and_s3_locations() -> None:
    assert redact("https://u:p@h:8443/a b.mp4?X-Amz-Signature=s#f") == "https://h:8443/a b.mp4"
    assert redact("http://[::1]:80/x") == "http://[::1]:80/x"
    assert redact("/srv/a.mp4") == "/srv/a.mp4"
    assert parse_s3_location("s3://b/dir/k.mp4") == ("b", "dir/k.mp4")
    assert remote_mtime_ns(10, None) == 10 * 10**9
    assert remote_mtime_ns(10, '"a"') != remote_mtime_ns(10, '"b"')
    assert remote_mtime_ns(10, '"a"') // 10**9 == 10
