"""The zero-copy relay's parts: ``splice.pump`` and the raw HTTP/1.1 client it reads from.

Real sockets on loopback; the relay through the gateway is covered end to end in
``tests/functional/test_remote_sources.py`` (every plain-HTTP download there is spliced).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ccgateway.sources.base import SourceChanged, SourceMissing
from ccgateway.sources.rawhttp import RawHttpError, RawHttpPool
from ccgateway.sources.s3 import S3Pool, S3Source
from ccgateway.sources.splice import SUPPORTED, UpstreamFailed, pump
from tests.system.upstreams import Nginx, SeaweedFS, Tap

pytest_plugins = ["tests.system.upstreams"]
pytestmark = pytest.mark.skipif(not SUPPORTED, reason="splice is Linux-only")


def pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


async def drain(sock: socket.socket, want: int) -> bytes:
    loop = asyncio.get_running_loop()
    got = bytearray()
    while len(got) < want:
        chunk = await loop.sock_recv(sock, want - len(got))
        if not chunk:
            break
        got += chunk
    return bytes(got)


async def test_pump_moves_exactly_count_bytes_and_leaves_the_rest() -> None:
    data = os.urandom(5 * 1024 * 1024 + 3)
    up_far, up = pair()
    down, down_far = pair()
    loop = asyncio.get_running_loop()
    sent: list[int] = []
    try:
        feeding = asyncio.ensure_future(loop.sock_sendall(up_far, data + b"NEXT"))
        reading = asyncio.ensure_future(drain(down_far, len(data)))
        await pump(up, down, len(data), read_timeout_s=5, progress=sent.append)
        assert await reading == data and sum(sent) == len(data)
        await feeding
        assert await drain(up, 4) == b"NEXT"  # the next response stays for its reader
    finally:
        for sock in (up_far, up, down, down_far):
            sock.close()


async def test_pump_fails_on_an_early_end_and_on_silence() -> None:
    up_far, up = pair()
    down, down_far = pair()
    try:
        up_far.send(b"x" * 1000)
        up_far.shutdown(socket.SHUT_WR)
        with pytest.raises(UpstreamFailed) as early:
            await pump(up, down, 5000, read_timeout_s=5, progress=lambda n: None)
        assert early.value.received == 1000 and "closed" in early.value.why
    finally:
        for sock in (up_far, up, down, down_far):
            sock.close()
    up_far, up = pair()
    down, down_far = pair()
    try:
        up_far.send(b"y" * 10)
        started = time.monotonic()
        with pytest.raises(UpstreamFailed, match=r"no data for 0.2 s") as silent:
            await pump(up, down, 5000, read_timeout_s=0.2, progress=lambda n: None)
        assert silent.value.received == 10 and time.monotonic() - started < 2
    finally:
        for sock in (up_far, up, down, down_far):
            sock.close()


async def test_pump_waits_for_a_slow_reader_and_stops_reading_upstream() -> None:
    up_far, up = pair()
    down, down_far = pair()
    loop = asyncio.get_running_loop()
    total = 64 * 1024 * 1024
    try:
        feeding = asyncio.ensure_future(loop.sock_sendall(up_far, bytes(total)))
        relaying = asyncio.ensure_future(
            pump(up, down, total, read_timeout_s=0.3, progress=lambda n: None)
        )
        await asyncio.sleep(1.0)  # nobody reads down_far: no timeout, the feeder is held back
        assert not relaying.done() and not feeding.done()
        assert len(await drain(down_far, total)) == total
        await relaying
        await feeding
    finally:
        for sock in (up_far, up, down, down_far):
            sock.close()


async def test_a_client_gone_ends_the_pump_with_a_connection_error() -> None:
    up_far, up = pair()
    down, down_far = pair()
    loop = asyncio.get_running_loop()
    try:
        feeding = asyncio.ensure_future(loop.sock_sendall(up_far, bytes(8 * 1024 * 1024)))
        down_far.close()
        with pytest.raises(ConnectionError):
            await pump(up, down, 8 * 1024 * 1024, read_timeout_s=5, progress=lambda n: None)
        feeding.cancel()
    finally:
        for sock in (up_far, up, down):
            sock.close()


async def test_raw_client_keeps_connections_alive_and_replaces_closed_ones(nginx: Nginx) -> None:
    nginx.put("raw/a.bin", b"0123456789")
    pool = RawHttpPool()
    try:
        async with Tap(nginx.port) as tap:
            for _ in range(3):
                response = await pool.request(
                    "GET", tap.url("raw/a.bin"), {}, connect_timeout_s=2, read_timeout_s=5
                )
                assert response.status == 200 and response.delimited
                body = response.leftover + await drain(response.sock, 10 - len(response.leftover))
                assert body == b"0123456789"
                response.release()
            assert len(tap.links) == 1
            tap.cut()  # the server drops the idle connection: the next request opens a new one
            await asyncio.sleep(0.1)
            response = await pool.request(
                "GET", tap.url("raw/a.bin"), {}, connect_timeout_s=2, read_timeout_s=5
            )
            assert response.status == 200
            response.close()
            assert len(tap.links) == 2
    finally:
        pool.close()


async def test_raw_client_errors_name_the_cause() -> None:
    pool = RawHttpPool()
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(RawHttpError, match="cannot connect"):
        await pool.request(
            "GET", f"http://127.0.0.1:{port}/a", {}, connect_timeout_s=1, read_timeout_s=1
        )

    async def silent(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.Response()

    server = TestServer(web.Application(), host="127.0.0.1")
    server.app.router.add_get("/slow", silent)
    await server.start_server()
    try:
        with pytest.raises(RawHttpError, match="no answer within 0.2 s"):
            await pool.request(
                "GET", str(server.make_url("/slow")), {}, connect_timeout_s=1, read_timeout_s=0.2
            )
    finally:
        await server.close()
        pool.close()


async def test_s3_signed_get_maps_errors_like_get_object(seaweedfs: SeaweedFS) -> None:
    pool = S3Pool(seaweedfs.config())
    try:
        data = os.urandom(100_000)
        source = S3Source(seaweedfs.put("splice/a.bin", data), pool)
        await source.stat()
        body = await source.open_body(10, 1000)
        assert body is not None
        got = body.response.leftover + await drain(
            body.response.sock, 1000 - len(body.response.leftover)
        )
        assert got == data[10:1010]
        body.response.release()
        seaweedfs.put("splice/a.bin", os.urandom(100_000))
        with pytest.raises(SourceChanged, match="GetObject failed"):
            await source.open_body(0, 10)
        seaweedfs.delete("splice/a.bin")
        with pytest.raises(SourceMissing, match=r"GetObject failed: NoSuchKey \(HTTP 404\)"):
            await source.open_body(0, 10)
    finally:
        await pool.aclose()


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        near = socket.create_connection(server.getsockname())
        far, _ = server.accept()
    for sock in (near, far):
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return near, far


async def test_bytes_reach_the_client_while_upstream_pauses() -> None:
    """Blocks sent with SPLICE_F_MORE are pushed out when the relay waits for upstream."""
    up_far, up = tcp_pair()
    down, down_far = tcp_pair()
    try:
        up_far.send(b"z" * 1000)
        relaying = asyncio.ensure_future(
            pump(up, down, 5000, read_timeout_s=5, progress=lambda n: None)
        )
        async with asyncio.timeout(1.0):
            assert await drain(down_far, 1000) == b"z" * 1000
        up_far.send(b"z" * 4000)
        await relaying
        assert len(await drain(down_far, 4000)) == 4000
    finally:
        for sock in (up_far, up, down, down_far):
            sock.close()


async def test_l13_the_host_header_leaves_out_http_s_default_port() -> None:
    """Issue 14, L13: an S3 URL signed for ``host`` (botocore drops a default port) was sent with
    ``Host: host:80``, which the signature does not cover."""
    heads: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    try:
        server = await asyncio.start_server(answer, "127.0.0.1", 80)
    except OSError as exc:
        pytest.skip(f"port 80 is not ours to bind here: {exc}")
    pool = RawHttpPool()
    try:
        async with server:
            for url in ("http://127.0.0.1:80/b/k?X-Amz-Signature=ab%2F", "http://127.0.0.1/b/k"):
                response = await pool.request("GET", url, {}, connect_timeout_s=2, read_timeout_s=5)
                assert response.status == 200
                response.close()
    finally:
        pool.close()
    assert [head.split(b"\r\n")[1] for head in heads] == [b"Host: 127.0.0.1"] * 2
    assert heads[0].startswith(b"GET /b/k?X-Amz-Signature=ab%2F HTTP/1.1\r\n")
