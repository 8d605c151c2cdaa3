"""``videofiledownload`` of recordings on a remote source: nginx over HTTP, SeaweedFS over S3.

Recordings are registered with http:// and s3:// locations through ``Catalog.register`` and
downloaded through the real gateway. ``Tap`` sits between the gateway and the upstream where a
case must see the upstream connection (paused reads, closed on disconnect, cut mid-stream).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from multidict import CIMultiDict

from ccgateway import retcodes
from ccgateway.recordings.catalog import CatalogError, Registration
from ccgateway.recordings.discovery import FORMAT, discover, parse_listing
from ccgateway.sources.base import SourceMissing
from ccgateway.sources.http import HttpOptions
from ccgateway.stores.base import FileType
from tests.audit_trail import transfers as audit_rows
from tests.conftest import GatewayFactory, RunningGateway
from tests.contract.test_sources import Script, scripted_upstream
from tests.functional.conftest import CONF, REC0
from tests.system.upstreams import SECRET_KEY, Nginx, SeaweedFS, Tap

pytest_plugins = ["tests.system.upstreams"]

MiB = 1024 * 1024
SIZES = {FileType.HD: 3 * MiB + 17, FileType.SD: MiB + 5, FileType.AUX: 70_001}


@dataclass
class Remote:
    """An upstream of one kind, reached directly or through a ``Tap``."""

    kind: str
    nginx: Nginx | None
    s3: SeaweedFS | None
    prefix: str
    gw: RunningGateway | None = None

    def put(self, name: str, data: bytes, via: Tap | None = None) -> str:
        key = f"{self.prefix}/{name}"
        if self.nginx is not None:
            self.nginx.put(key, data)
            return via.url(key) if via else self.nginx.url(key)
        assert self.s3 is not None
        return self.s3.put(key, data)

    def replace(self, name: str, data: bytes) -> None:
        """A new version of the same size, as a recorder rewriting the file later."""
        key = f"{self.prefix}/{name}"
        if self.nginx is not None:
            self.nginx.put(key, data)
            later = time.time() + 10
            os.utime(self.nginx.www / key, (later, later))
        else:
            assert self.s3 is not None
            self.s3.put(key, data)

    def remove(self, name: str) -> None:
        key = f"{self.prefix}/{name}"
        if self.nginx is not None:
            (self.nginx.www / key).unlink()
        else:
            assert self.s3 is not None
            self.s3.delete(key)

    def tap(self) -> Tap:
        if self.nginx is not None:
            return Tap(self.nginx.port)
        assert self.s3 is not None
        return Tap(int(self.s3.endpoint.rsplit(":", 1)[1]))

    async def gateway(self, make_gateway: GatewayFactory) -> RunningGateway:
        """A gateway whose settings name this upstream's S3 endpoint and keys, if any."""
        settings: dict[str, str] = {}
        if self.s3 is not None:
            config = self.s3.config()
            settings = {
                "S3_ENDPOINT_URL": config.endpoint_url,
                "S3_REGION": config.region,
                "S3_ACCESS_KEY_ID": config.access_key_id,
                "S3_SECRET_ACCESS_KEY": config.secret_access_key,
            }
        self.gw = await make_gateway(**settings)
        return self.gw

    async def fresh_pools(self, via: Tap | None = None) -> None:
        """Close the gateway's pooled upstream connections; S3 goes through ``via`` when given."""
        if self.gw is None:
            return  # the gateway, once made, opens its sources from its settings
        sources = self.gw.gateway.sources
        await sources.aclose()
        if self.s3 is not None:
            endpoint = f"http://127.0.0.1:{via.port}" if via else self.s3.endpoint
            sources.configure(s3=self.s3.config(endpoint_url=endpoint))


@pytest.fixture(params=["http", "s3"])
async def remote(request: pytest.FixtureRequest) -> AsyncIterator[Remote]:
    prefix = uuid.uuid4().hex
    if request.param == "http":
        found = Remote("http", request.getfixturevalue("nginx"), None, prefix)
    else:
        found = Remote("s3", None, request.getfixturevalue("seaweedfs"), prefix)
    yield found


async def register(gw: RunningGateway, files: dict[FileType, str]) -> None:
    await gw.add_agent(101)
    await gw.gateway.catalog.register(Registration(CONF, REC0, frozenset({101}), files, vdn=1))


async def signed_in(gw: RunningGateway) -> str:
    guid, body = await gw.client.sign_in(101)
    assert guid is not None, body
    return guid


def url(gw: RunningGateway, file_type: FileType) -> str:
    return gw.client.base + (
        f"recordfile/101/videofiledownload?conferenceId={CONF}&recordId={REC0}"
        f"&fileType={int(file_type)}"
    )


async def get(
    gw: RunningGateway,
    guid: str,
    file_type: FileType,
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> tuple[int, CIMultiDict[str], bytes]:
    sent = {"Guid": guid, **(headers or {})}
    async with gw.client.http.request(method, url(gw, file_type), headers=sent) as response:
        return response.status, response.headers.copy(), await response.read()


def retcode(body: bytes) -> str:
    code: str = json.loads(body)["retcode"]
    return code


async def test_full_download_head_and_ranges(remote: Remote, make_gateway: GatewayFactory) -> None:
    gw = await remote.gateway(make_gateway)
    data = {t: os.urandom(size) for t, size in SIZES.items()}
    await register(gw, {t: remote.put(f"{t.name}.mp4", d) for t, d in data.items()})
    guid = await signed_in(gw)
    for file_type, expected in data.items():
        status, headers, body = await get(gw, guid, file_type)
        assert status == 200 and body == expected
        assert headers["ETag"] == f'"sha256-{hashlib.sha256(expected).hexdigest()}"'
        status, head, body = await get(gw, guid, file_type, "HEAD")
        assert status == 200 and body == b""
        for name in ("Content-Length", "ETag", "Last-Modified", "Accept-Ranges"):
            assert head[name] == headers[name]
    aux = data[FileType.AUX]
    for header, first, last in (
        ("bytes=0-99", 0, 100),
        ("bytes=1000-", 1000, len(aux)),
        ("bytes=-500", len(aux) - 500, len(aux)),
        ("bytes=10-10", 10, 11),
    ):
        status, headers, body = await get(gw, guid, FileType.AUX, headers={"Range": header})
        assert status == 206 and body == aux[first:last], header
        assert headers["Content-Range"] == f"bytes {first}-{last - 1}/{len(aux)}"
    status, headers, _ = await get(gw, guid, FileType.AUX, headers={"Range": "bytes=999999-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(aux)}"


async def test_upstream_changed_after_registration_is_refused_not_spliced(
    remote: Remote, make_gateway: GatewayFactory
) -> None:
    gw = await remote.gateway(make_gateway)
    first = os.urandom(SIZES[FileType.SD])
    await register(gw, {FileType.SD: remote.put("sd.mp4", first)})
    guid = await signed_in(gw)
    half = len(first) // 2
    status, headers, body = await get(
        gw, guid, FileType.SD, headers={"Range": f"bytes=0-{half - 1}"}
    )
    assert status == 206 and body == first[:half]
    remote.replace("sd.mp4", os.urandom(len(first)))  # same size, new bytes
    status, _, body = await get(
        gw, guid, FileType.SD, headers={"Range": f"bytes={half}-", "If-Range": headers["ETag"]}
    )
    assert retcode(body) == retcodes.SOURCE_FAILED.code
    rows = await audit_rows(gw, 2)
    assert rows[0].outcome == "refused" and rows[0].bytes_sent == 0
    remote.remove("sd.mp4")
    _, _, body = await get(gw, guid, FileType.SD)
    assert retcode(body) == retcodes.SOURCE_FAILED.code


async def test_upstream_dying_mid_stream_breaks_the_transfer_and_resume_completes(
    remote: Remote, make_gateway: GatewayFactory
) -> None:
    gw = await remote.gateway(make_gateway)
    data = os.urandom(64 * MiB)
    async with remote.tap() as tap:
        await remote.fresh_pools(via=tap)
        await register(gw, {FileType.HD: remote.put("big.mp4", data, via=tap)})
        guid = await signed_in(gw)
        received = bytearray()
        killed = False
        async with aiohttp.ClientSession(read_bufsize=65536) as http:
            response = await http.get(url(gw, FileType.HD), headers={"Guid": guid})
            assert response.status == 200 and response.content_length == len(data)
            etag = response.headers["ETag"]
            with pytest.raises(aiohttp.ClientPayloadError):
                while chunk := await response.content.read(65536):
                    received += chunk
                    if len(received) >= 2 * MiB and not killed:
                        if remote.nginx is not None:
                            remote.nginx.kill_workers()  # the real server dies
                        else:
                            tap.cut()  # the storage's connection dies
                        killed = True
            response.close()
        assert 2 * MiB <= len(received) < len(data)
        assert bytes(received) == data[: len(received)]
        (row,) = await audit_rows(gw, 1)
        assert row.outcome == "source_failed" and row.bytes_sent >= len(received)
        await remote.fresh_pools(via=tap)
        status, _, rest = await get(
            gw, guid, FileType.HD, headers={"Range": f"bytes={len(received)}-", "If-Range": etag}
        )
    assert status == 206
    assert hashlib.sha256(bytes(received) + rest).digest() == hashlib.sha256(data).digest()


async def test_a_slow_client_pauses_the_upstream_reads(
    remote: Remote, make_gateway: GatewayFactory
) -> None:
    gw = await remote.gateway(make_gateway)
    data = os.urandom(96 * MiB)
    async with remote.tap() as tap:
        await remote.fresh_pools(via=tap)
        await register(gw, {FileType.HD: remote.put("slow.mp4", data, via=tap)})
        guid = await signed_in(gw)
        registration = tap.down
        sha = hashlib.sha256()
        received = 0
        async with aiohttp.ClientSession(read_bufsize=65536) as http:
            async with http.get(url(gw, FileType.HD), headers={"Guid": guid}) as response:
                while received < 4 * MiB:
                    chunk = await response.content.read(65536)
                    sha.update(chunk)
                    received += len(chunk)
                await asyncio.sleep(1.0)  # the client stalls: the upstream must stall too
                pulled = tap.down - registration
                await asyncio.sleep(0.5)
                assert tap.down - registration == pulled, "upstream kept being read"
                assert pulled < received + 48 * MiB
                async for chunk in response.content.iter_chunked(MiB):
                    sha.update(chunk)
                    received += len(chunk)
    assert received == len(data) and sha.digest() == hashlib.sha256(data).digest()


async def test_a_client_going_away_closes_the_upstream_within_a_second(
    remote: Remote, make_gateway: GatewayFactory
) -> None:
    gw = await remote.gateway(make_gateway)
    data = os.urandom(64 * MiB)
    async with remote.tap() as tap:
        await remote.fresh_pools(via=tap)
        await register(gw, {FileType.HD: remote.put("gone.mp4", data, via=tap)})
        guid = await signed_in(gw)
        await remote.fresh_pools(via=tap)  # the registration's idle connections go
        assert await tap.all_closed_within(1.0)
        before = tap.down
        async with aiohttp.ClientSession(read_bufsize=65536) as http:
            response = await http.get(url(gw, FileType.HD), headers={"Guid": guid})
            received = 0
            while received < MiB:
                received += len(await response.content.read(65536))
            response.close()  # the client goes away mid-transfer
        gone = time.monotonic()
        assert await tap.all_closed_within(1.0, min_down=MiB), "upstream still open"
        closed = [link.closed_at for link in tap.links if link.down >= MiB]
        assert closed and all(t is not None and t - gone < 1.0 for t in closed)
        assert tap.down - before < len(data) // 2
        # Tap's relay task is still closing that link; leaving the Tap now would cancel it
        # inside its cleanup and leak its StreamWriters (a race in the helper, not the gateway)
        await asyncio.sleep(0.1)
    (row,) = await audit_rows(gw, 1)
    assert row.outcome == "aborted" and row.bytes_sent < len(data)


async def test_s3_failures_answer_108_008_and_log_the_cause_without_secrets(
    seaweedfs: SeaweedFS, make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    remote = Remote("s3", None, seaweedfs, uuid.uuid4().hex)
    gw = await remote.gateway(make_gateway)
    await register(
        gw,
        {
            FileType.HD: remote.put("hd.mp4", os.urandom(1000)),
            FileType.SD: remote.put("sd.mp4", os.urandom(1000)),
        },
    )
    guid = await signed_in(gw)
    remote.remove("hd.mp4")
    caplog.set_level(logging.WARNING, "ccgateway")
    _, _, body = await get(gw, guid, FileType.HD)
    assert retcode(body) == retcodes.SOURCE_FAILED.code
    assert "HeadObject failed: 404" in caplog.text or "NoSuchKey" in caplog.text
    await gw.gateway.sources.aclose()
    gw.gateway.sources.configure(s3=seaweedfs.config(secret_access_key="not-the-" + SECRET_KEY))
    _, _, body = await get(gw, guid, FileType.SD)
    assert retcode(body) == retcodes.SOURCE_FAILED.code
    assert "HeadObject failed: 403" in caplog.text
    assert SECRET_KEY not in caplog.text


# -- the zero-copy relay (plain-HTTP client, plain-HTTP upstream) -----------------------------


async def test_downloads_reuse_upstream_connections(
    remote: Remote, make_gateway: GatewayFactory
) -> None:
    gw = await remote.gateway(make_gateway)
    data = os.urandom(2 * MiB + 3)
    async with remote.tap() as tap:
        await remote.fresh_pools(via=tap)
        await register(gw, {FileType.HD: remote.put("pool.mp4", data, via=tap)})
        guid = await signed_in(gw)
        await remote.fresh_pools(via=tap)
        assert await tap.all_closed_within(1.0)
        before = len(tap.links)
        for first in (0, 1000, MiB):
            status, _, body = await get(gw, guid, FileType.HD, headers={"Range": f"bytes={first}-"})
            assert status == 206 and body == data[first:]
        assert len(tap.links) - before <= 2  # one for the HEADs, one for the GETs


async def test_retries_chunked_bodies_and_stalls_through_the_gateway(
    make_gateway: GatewayFactory,
) -> None:
    data = os.urandom(3 * MiB)
    script = Script(data, fail_first=[503, 502], chunked=True)
    server = await scripted_upstream(script)
    try:
        gw = await make_gateway()
        gw.gateway.sources.configure(http=HttpOptions(retries=2, read_timeout_s=0.3))
        await register(gw, {FileType.HD: str(server.make_url("/rec.mp4"))})
        guid = await signed_in(gw)
        status, _, body = await get(gw, guid, FileType.HD)  # retried, then a chunked 206
        assert status == 200 and body == data
        script.chunked, script.stall_body, script.sent_before_trouble = False, True, 100_000
        started = time.monotonic()
        async with aiohttp.ClientSession() as http:
            async with http.get(url(gw, FileType.HD), headers={"Guid": guid}) as response:
                assert response.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await response.read()
        assert time.monotonic() - started < 5
        rows = await audit_rows(gw, 2)
        assert rows[0].outcome == "source_failed" and rows[0].bytes_sent == 100_000
    finally:
        await server.close()


# -- discovery from the recording server's listing -------------------------------------------


async def test_recordings_discovered_from_the_listing_register_and_download(
    nginx: Nginx, make_gateway: GatewayFactory
) -> None:
    prefix = uuid.uuid4().hex
    hd, sd = os.urandom(200_000), os.urandom(100_000)
    nginx.put(f"{prefix}/r1 hd.mp4", hd)
    nginx.put(f"{prefix}/r2/sd.mp4", sd)
    listing = {
        "format": FORMAT,
        "recordings": [
            {"recordId": "r1", "files": {"hd": "r1 hd.mp4"}},
            {"recordId": "r2", "files": {"sd": nginx.url(f"{prefix}/r2/sd.mp4")}},
        ],
    }
    nginx.put(f"{prefix}/index.json", json.dumps(listing).encode())
    gw = await make_gateway()
    await gw.add_agent(101)
    base = nginx.url(f"{prefix}/")
    sources = gw.gateway.sources
    found = await discover(sources, base, CONF, frozenset({101}), vdn=1, call_id="1606459553-176")
    assert [r.record_id for r in found] == ["r1", "r2"]
    assert found[0].files == {FileType.HD: nginx.url(f"{prefix}/r1%20hd.mp4")}
    for registration in found:
        await gw.gateway.catalog.register(registration)
    guid = await signed_in(gw)
    sent = {"Guid": guid}
    query = f"recordfile/101/videofiledownload?conferenceId={CONF}&fileType=0"
    async with gw.client.http.get(gw.client.base + query, headers=sent) as response:
        assert response.status == 200 and await response.read() == hd
    query = f"recordfile/101/videofiledownload?conferenceId={CONF}&recordId=r2&fileType=1"
    async with gw.client.http.get(gw.client.base + query, headers=sent) as response:
        assert await response.read() == sd
    with pytest.raises(SourceMissing):
        await discover(sources, nginx.url(f"{prefix}/none/"), CONF, frozenset({101}))


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ({"recordings": []}, "format"),
        ({"format": FORMAT}, "recordings"),
        ({"format": FORMAT, "recordings": [{"recordId": "a b", "files": {"hd": "x"}}]}, "recordId"),
        ({"format": FORMAT, "recordings": [{"recordId": "a", "files": {}}]}, "files"),
        ({"format": FORMAT, "recordings": [{"recordId": "a", "files": {"4k": "x"}}]}, "4k"),
        ({"format": FORMAT, "recordings": [{"recordId": "a", "files": {"hd": "s3://b/k"}}]}, "hd"),
        (
            {
                "format": FORMAT,
                "recordings": [
                    {"recordId": "a", "files": {"hd": "x"}},
                    {"recordId": "a", "files": {"hd": "y"}},
                ],
            },
            "recordId",
        ),
    ],
)
def test_a_bad_listing_is_refused_with_the_reason(document: object, complaint: str) -> None:
    with pytest.raises(CatalogError, match=complaint):
        parse_listing(document, "http://mcu/rec/", CONF, frozenset({101}))


# -- issue 14, M2: names that need escaping -------------------------------------------------------


async def test_m2_upstream_names_with_a_space_or_non_ascii_are_relayed_whole(
    nginx: Nginx, make_gateway: GatewayFactory
) -> None:
    """The spliced GET percent-encodes its target as aiohttp does: the whole file, one answer,
    audited completed (it was cut after the head, or a 500 landed inside the 200's body)."""
    prefix = uuid.uuid4().hex
    hd, sd = os.urandom(300_000), os.urandom(200_000)
    files = {
        FileType.HD: nginx.put(f"{prefix}/a b.mp4", hd),
        FileType.SD: nginx.put(f"{prefix}/录像 1.mp4", sd),
    }
    gw = await make_gateway()
    await register(gw, files)
    guid = await signed_in(gw)
    for file_type, data in ((FileType.HD, hd), (FileType.SD, sd)):
        status, headers, body = await get(gw, guid, file_type)
        assert status == 200 and body == data, file_type
        assert int(headers["Content-Length"]) == len(data)
    rows = await audit_rows(gw, 2)
    assert [row.outcome for row in rows] == ["completed", "completed"]
