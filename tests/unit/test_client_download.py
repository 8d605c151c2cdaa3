"""The download loop against a small in-process fake gateway that misbehaves on purpose.

The real gateway (tests/system/test_client.py) never answers 503, forgets Repr-Digest or lies
about it; this fake does, so every branch of ``ccgateway.client._download`` is exercised.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ccgateway.client import (
    AgentClient,
    RetryPolicy,
    SignedOutError,
    TransportError,
    VerificationError,
    VideoFile,
)
from ccgateway.wire.digest import repr_digest
from ccgateway.wire.envelope import encode
from ccgateway.wire.ranges import Validators, decide, strong_etag

BODY = os.urandom(200_000)
SHA = hashlib.sha256(BODY).hexdigest()
FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02)


@dataclass
class Fake:
    """What the fake gateway does next; each list is consumed one answer at a time."""

    failures: list[int] = field(default_factory=list)  # HTTP statuses to answer first
    stale_guid_once: bool = False
    digest: str | None = repr_digest(SHA)
    poll_retcodes: list[str] = field(default_factory=list)
    guids: list[str] = field(default_factory=list)  # Guid header of each download request
    ranges: list[str] = field(default_factory=list)


def envelope(retcode: str, guid: str | None = None, **extra: object) -> web.Response:
    body = encode({"retcode": retcode, "message": f"m{retcode}", "result": "", **extra})
    response = web.Response(body=body, content_type="application/json")
    if guid is not None:
        response.headers["Set-GUID"] = f"JSESSIONID={guid}"
    return response


def fake_app(fake: Fake) -> web.Application:
    async def login(request: web.Request) -> web.Response:
        return envelope("0", "g-1")

    async def poll(request: web.Request) -> web.Response:
        if fake.poll_retcodes:
            return envelope(fake.poll_retcodes.pop(0))
        return envelope("0", request.headers.get("Guid"), event=None)

    async def logout(request: web.Request) -> web.Response:
        return envelope("0")

    async def download(request: web.Request) -> web.StreamResponse:
        fake.guids.append(request.headers.get("Guid", ""))
        fake.ranges.append(request.headers.get("Range", ""))
        if fake.failures:
            return web.Response(status=fake.failures.pop(0))
        if fake.stale_guid_once:
            fake.stale_guid_once = False
            return envelope("000-003", "g-2")  # a 2xx carrying the new GUID
        validators = Validators(strong_etag(SHA), 1_700_000_000, len(BODY))
        decision = decide("GET", request.headers, validators)
        headers = decision.headers()
        if fake.digest is not None:
            headers["Repr-Digest"] = fake.digest
        body = BODY[decision.offset :][: decision.content_length or 0]
        return web.Response(status=decision.status, headers=headers, body=body)

    app = web.Application()
    app.router.add_put("/agentgateway/resource/onlineagent/101", login)
    app.router.add_get("/agentgateway/resource/agentevent/101", poll)
    app.router.add_delete("/agentgateway/resource/onlineagent/101/logout", logout)
    app.router.add_get("/agentgateway/resource/recordfile/101/videofiledownload", download)
    return app


@pytest.fixture
def fake() -> Fake:
    return Fake()


@pytest.fixture
async def agent(fake: Fake) -> AsyncIterator[AgentClient]:
    server = TestServer(fake_app(fake), host="127.0.0.1")
    await server.start_server()
    try:
        url = f"http://127.0.0.1:{server.port}"
        async with AgentClient(url, 101, "pw", retry=FAST, poll_pause=0.01) as client:
            yield client
    finally:
        await server.close()


async def test_a_5xx_is_retried(agent: AgentClient, fake: Fake, tmp_path: Path) -> None:
    fake.failures = [503, 502]
    result = await agent.download(VideoFile("c"), tmp_path / "f")
    assert result.requests == 3 and (tmp_path / "f").read_bytes() == BODY


async def test_retries_end_in_a_transport_error(
    agent: AgentClient, fake: Fake, tmp_path: Path
) -> None:
    fake.failures = [503] * 10
    with pytest.raises(TransportError, match="HTTP 503"):
        await agent.download(VideoFile("c"), tmp_path / "f")
    assert len(fake.guids) == FAST.attempts + 1
    assert list(tmp_path.iterdir()) == []


async def test_a_refusal_with_a_new_guid_is_retried_at_once(
    agent: AgentClient, fake: Fake, tmp_path: Path
) -> None:
    fake.stale_guid_once = True
    result = await agent.download(VideoFile("c"), tmp_path / "f")
    assert fake.guids == ["g-1", "g-2"] and result.sha256 == SHA


async def test_no_repr_digest_is_refused_unless_allowed(
    agent: AgentClient, fake: Fake, tmp_path: Path
) -> None:
    fake.digest = None
    with pytest.raises(VerificationError, match="no Repr-Digest"):
        await agent.download(VideoFile("c"), tmp_path / "f")
    assert list(tmp_path.iterdir()) == []
    result = await agent.download(VideoFile("c"), tmp_path / "f", require_digest=False)
    assert result.sha256 == SHA


async def test_a_wrong_digest_deletes_the_part(
    agent: AgentClient, fake: Fake, tmp_path: Path
) -> None:
    fake.digest = repr_digest("ab" * 32)
    with pytest.raises(VerificationError, match=SHA):
        await agent.download(VideoFile("c"), tmp_path / "f")
    assert list(tmp_path.iterdir()) == []


async def test_a_complete_part_is_finished_by_a_416(
    agent: AgentClient, fake: Fake, tmp_path: Path
) -> None:
    (tmp_path / "f.part").write_bytes(BODY)
    (tmp_path / "f.part.json").write_text(f'{{"etag": "\\"sha256-{SHA}\\""}}')
    result = await agent.download(VideoFile("c"), tmp_path / "f", resume=True)
    assert fake.ranges == [f"bytes={len(BODY)}-"]
    assert result.resumed_from == len(BODY) and (tmp_path / "f").read_bytes() == BODY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


async def test_a_part_without_its_etag_is_not_resumed(
    agent: AgentClient, fake: Fake, tmp_path: Path
) -> None:
    (tmp_path / "f.part").write_bytes(b"junk")
    result = await agent.download(VideoFile("c"), tmp_path / "f", resume=True)
    assert fake.ranges == [""] and result.resumed_from == 0 and result.sha256 == SHA


async def test_the_poll_ends_the_events_on_100_006(agent: AgentClient, fake: Fake) -> None:
    fake.poll_retcodes = ["100-006"]
    with pytest.raises(SignedOutError, match="100-006"):
        async for _ in agent.events():
            pass
    assert not agent.signed_in
