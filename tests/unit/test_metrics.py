"""GatewayMetrics: one registry per gateway, and what a finished download attempt adds."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ccgateway.audit.events import Outcome
from ccgateway.audit.trail import DownloadAttempt
from ccgateway.web.metrics import GatewayMetrics


def values(metrics: GatewayMetrics, signed_in: int = 0) -> dict[tuple[str, str], float]:
    text = metrics.exposition(signed_in).decode()
    return {
        (s.name, ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def attempt(outcome: Outcome, sent: int, first_byte_after: float | None) -> DownloadAttempt:
    result = DownloadAttempt("downloadRecordFile", "127.0.0.1", 0, started=100.0)
    result.outcome = outcome
    result.bytes_sent = sent
    if first_byte_after is not None:
        result.first_byte_at = 100.0 + first_byte_after
    return result


def test_each_gateway_has_its_own_registry() -> None:
    one, two = GatewayMetrics(), GatewayMetrics()
    one.count_request("login", "0", "200")
    assert values(one)[("ccgateway_requests_total", "interface=login,retcode=0,status=200")] == 1
    assert ("ccgateway_requests_total", "interface=login,retcode=0,status=200") not in values(two)
    assert values(two, signed_in=7)[("ccgateway_signed_in_agents", "")] == 7


def test_finished_attempts_count_outcome_bytes_and_first_byte() -> None:
    metrics = GatewayMetrics()
    for finished in (
        attempt(Outcome.COMPLETED, 1000, 0.2),
        attempt(Outcome.SOURCE_FAILED, 300, 3.0),
        attempt(Outcome.REFUSED, 0, None),
        attempt(Outcome.OFFLOADED, 5000, None),
    ):
        metrics.download_started()
        assert values(metrics)[("ccgateway_downloads_in_flight", "")] == 1
        metrics.download_finished(finished)
    seen = values(metrics)
    labels = "interface=downloadRecordFile"
    assert seen[("ccgateway_downloads_in_flight", "")] == 0
    for outcome in ("completed", "source_failed", "refused", "offloaded"):
        assert seen[("ccgateway_downloads_finished_total", f"{labels},outcome={outcome}")] == 1
    assert seen[("ccgateway_download_bytes_sent_total", labels)] == 1300  # not nginx's 5000
    assert seen[("ccgateway_download_first_byte_seconds_count", labels)] == 2
    assert seen[("ccgateway_download_first_byte_seconds_sum", labels)] == pytest.approx(3.2)
    assert seen[("ccgateway_download_first_byte_seconds_bucket", f"{labels},le=0.25")] == 1
    assert seen[("ccgateway_download_first_byte_seconds_bucket", f"{labels},le=5.0")] == 2
