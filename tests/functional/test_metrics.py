"""``GET /metrics``: off without METRICS_TOKEN, bearer-protected with it, counting what happened."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from ccgateway import retcodes
from ccgateway.recordings.catalog import Registration
from ccgateway.stores.base import FileType
from tests.audit_trail import transfers as audit_rows
from tests.conftest import GatewayFactory, RunningGateway
from tests.functional.conftest import CONF, REC0, REC1

TOKEN = "metrics-token-0123456789"
SMALL = 100_000
BIG = 64 * 1024 * 1024

Labels = tuple[tuple[str, str], ...]


def metrics_url(gw: RunningGateway) -> str:
    return str(URL(gw.client.base).with_path("/metrics"))


async def scrape(
    gw: RunningGateway, authorization: str | None = f"Bearer {TOKEN}", method: str = "GET"
) -> tuple[aiohttp.ClientResponse, str]:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with gw.client.http.request(method, metrics_url(gw), headers=headers) as response:
        return response, await response.text()


def samples(text: str) -> dict[str, dict[Labels, float]]:
    """Sample name → {sorted labels → value}, read with prometheus_client's own parser."""
    found: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            found.setdefault(sample.name, {})[labels] = sample.value
    return found


def requests_by_label(text: str) -> dict[tuple[str, str, str], float]:
    return {
        (dict(labels)["interface"], dict(labels)["retcode"], dict(labels)["status"]): value
        for labels, value in samples(text).get("ccgateway_requests_total", {}).items()
    }


async def test_metrics_are_off_without_a_token(gw: RunningGateway) -> None:
    for authorization in (None, f"Bearer {TOKEN}"):
        response, text = await scrape(gw, authorization)
        assert response.status == 404
        assert response.content_type == "application/json"
        assert '"retcode":"000-002"' in text.replace(" ", "")


async def test_a_missing_or_wrong_token_answers_401_and_is_never_logged(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = await make_gateway(METRICS_TOKEN=TOKEN)
    for authorization in (None, "Bearer wrong-token-0123456789", TOKEN, f"Basic {TOKEN}"):
        response, text = await scrape(gw, authorization)
        assert response.status == 401, authorization
        assert '"retcode":"000-003"' in text.replace(" ", "")
    response, _ = await scrape(gw, method="POST")
    assert response.status == 405 and response.headers["Allow"] == "GET, HEAD"
    response, text = await scrape(gw)
    assert response.status == 200
    assert response.content_type == "text/plain" and "version=" in response.headers["Content-Type"]
    assert samples(text)["ccgateway_signed_in_agents"] == {(): 0.0}
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(gw.gateway.settings)


@pytest.mark.parametrize("sendfile", ["ON", "OFF"])
async def test_a_known_sequence_shows_in_the_metrics(
    make_gateway: GatewayFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture, sendfile: str
) -> None:
    caplog.set_level(logging.INFO)
    gw = await make_gateway(METRICS_TOKEN=TOKEN, SENDFILE=sendfile)
    await gw.add_agent(101)
    await gw.add_agent(102)
    small = tmp_path / "small.mp4"
    small.write_bytes(os.urandom(SMALL))
    big = tmp_path / "big.mp4"
    with big.open("wb") as handle:
        handle.truncate(BIG)
    for record_id, path in ((REC0, small), (REC1, big)):
        await gw.gateway.catalog.register(
            Registration(CONF, record_id, frozenset({101, 102}), {FileType.HD: str(path)}, vdn=1)
        )
    client = gw.client

    guid, _ = await client.sign_in(101)
    assert guid is not None
    other, _ = await client.sign_in(102)
    assert other is not None
    response, body = await client.poll(101, guid)
    assert response.status == 200 and body["retcode"] == "0"

    download = client.base + f"recordfile/101/videofiledownload?conferenceId={CONF}&fileType=0"
    async with client.http.get(download + f"&recordId={REC0}", headers={"Guid": guid}) as got:
        assert got.status == 200 and len(await got.read()) == SMALL

    received = 0
    async with aiohttp.ClientSession(read_bufsize=65536) as http:
        got = await http.get(download + f"&recordId={REC1}", headers={"Guid": guid})
        while received < 1024 * 1024:
            received += len(await got.content.read(65536))
        got.close()  # the client goes away mid-transfer

    refused = client.base + "recordfile/101/videofiledownload?conferenceId=nope&fileType=0"
    async with client.http.get(refused, headers={"Guid": guid}) as got:
        assert (await got.json(content_type=None))["retcode"] == retcodes.NO_SUCH_CONFERENCE.code

    response, _ = await client.call("GET", "no/such/interface")
    assert response.status == 404
    async with client.http.get(str(URL(client.base).with_path("/elsewhere"))) as got:
        assert got.status == 404
    response, _ = await client.call("POST", "agentevent/101", guid=guid)
    assert response.status == 405
    for authorization in (None, "Bearer wrong-token-0123456789"):
        response, _ = await scrape(gw, authorization)
        assert response.status == 401

    # The aborted download ends on the server a moment after the client left.
    scrapes = 0
    for _ in range(200):
        response, text = await scrape(gw)
        assert response.status == 200
        scrapes += 1
        if samples(text)["ccgateway_downloads_in_flight"] == {(): 0.0}:
            break
        await asyncio.sleep(0.02)
    rows = await audit_rows(gw, 3)
    (aborted,) = [r for r in rows if r.outcome == "aborted"]
    assert received <= aborted.bytes_sent < BIG

    response, text = await scrape(gw)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    found = samples(text)
    assert requests_by_label(text) == {
        ("login", "0", "200"): 2,
        ("getAgentEvent", "0", "200"): 1,
        ("downloadVideoFile", "-", "200"): 1,
        ("downloadVideoFile", "-", "aborted"): 1,
        ("downloadVideoFile", retcodes.NO_SUCH_CONFERENCE.code, "200"): 1,
        ("-", "000-002", "404"): 2,
        ("-", "000-002", "405"): 1,
        ("metrics", "000-003", "401"): 2,
        ("metrics", "-", "200"): scrapes,
    }
    assert found["ccgateway_signed_in_agents"] == {(): 2.0}
    assert found["ccgateway_downloads_in_flight"] == {(): 0.0}
    interface = (("interface", "downloadVideoFile"),)
    assert found["ccgateway_downloads_finished_total"] == {
        (*interface, ("outcome", "completed")): 1,
        (*interface, ("outcome", "aborted")): 1,
        (*interface, ("outcome", "refused")): 1,
    }
    assert found["ccgateway_download_bytes_sent_total"] == {interface: SMALL + aborted.bytes_sent}
    # Time to first byte: the two downloads that sent a response head, not the refused one.
    assert found["ccgateway_download_first_byte_seconds_count"] == {interface: 2}
    assert 0 < found["ccgateway_download_first_byte_seconds_sum"][interface] < 10
    buckets = found["ccgateway_download_first_byte_seconds_bucket"]
    assert buckets[(*interface, ("le", "+Inf"))] == 2
    # The audit journal: its bytes (the node's six events, shipped but kept in the segment being
    # written) and, all shipped, no event waiting.
    assert found["ccgateway_audit_journal_bytes"][()] > 0
    assert found["ccgateway_audit_oldest_unshipped_seconds"] == {(): 0.0}
    # The client going away is no fault of the gateway's: no error, and "aborted" in the log.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    access = [r.getMessage() for r in caplog.records if r.name == "ccgateway.access"]
    assert sum("status=aborted" in line for line in access) == 1
