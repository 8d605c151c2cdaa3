"""Token buckets and download slots, on a clock the test moves."""

from __future__ import annotations

import pytest

from ccgateway import retcodes
from ccgateway.config import load_settings
from ccgateway.errors import GatewayError
from ccgateway.node.limits import DownloadSlots, FlowControl, RateLimiter


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    ticks = Ticks()
    limiter = RateLimiter(rate=2, burst=4, now=ticks)
    assert [limiter.take("a") for _ in range(4)] == [0.0] * 4
    assert limiter.take("a") == pytest.approx(0.5)  # one token comes back in half a second
    assert limiter.take("b") == 0.0  # keys are independent
    ticks.now += 0.5
    assert limiter.take("a") == 0.0
    ticks.now += 60  # a long pause refills only up to the burst
    assert [limiter.take("a") for _ in range(5)][-1] > 0


def test_slots_per_agent_and_in_total_are_released_once() -> None:
    slots = DownloadSlots(per_agent=2, total=3)
    first = slots.acquire(101)
    slots.acquire(101)
    with pytest.raises(GatewayError) as per_agent:
        slots.acquire(101)
    assert per_agent.value.retcode is retcodes.TOO_MANY_DOWNLOADS
    assert per_agent.value.http_status == 429 and per_agent.value.headers["Retry-After"] == "1"
    slots.acquire(102)
    with pytest.raises(GatewayError) as total:
        slots.acquire(103)
    assert total.value.retcode is retcodes.NODE_BUSY and total.value.http_status == 503
    first()
    first()  # releasing twice frees one slot, not two
    assert slots.in_use == 2
    slots.acquire(103)
    with pytest.raises(GatewayError):
        slots.acquire(104)


def test_flow_control_refuses_everything_while_draining() -> None:
    ticks = Ticks()
    flow = FlowControl(load_settings(environ={}, REQUEST_RATE="1"), now=ticks)
    flow.admit_request()
    flow.admit_request()  # the burst is twice the rate
    with pytest.raises(GatewayError) as busy:
        flow.admit_request()
    assert busy.value.retcode is retcodes.NODE_BUSY and busy.value.headers["Retry-After"] == "1"
    ticks.now += 10
    flow.draining = True
    with pytest.raises(GatewayError) as draining:
        flow.admit_request()
    assert draining.value.headers["Connection"] == "close"


def test_an_agent_rate_counts_per_client_address() -> None:
    ticks = Ticks()
    flow = FlowControl(load_settings(environ={}, REQUEST_RATE_PER_AGENT="1"), now=ticks)
    flow.admit_agent_request(101, "10.0.0.1")
    flow.admit_agent_request(101, "10.0.0.1")
    with pytest.raises(GatewayError) as limited:
        flow.admit_agent_request(101, "10.0.0.1")
    assert limited.value.retcode is retcodes.RATE_LIMITED and limited.value.http_status == 429
    flow.admit_agent_request(101, "10.0.0.2")  # someone else sending in 101's name is not 101
