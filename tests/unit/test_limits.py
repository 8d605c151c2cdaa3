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


def test_an_agent_rate_is_spent_only_by_accepted_requests() -> None:
    """L4: checking spends nothing; only charges (accepted requests) use the budget up."""
    ticks = Ticks()
    flow = FlowControl(load_settings(environ={}, REQUEST_RATE_PER_AGENT="1"), now=ticks)
    for _ in range(100):  # requests in 101's name that were not accepted
        flow.agents.check(101)
    flow.agents.charge(101)
    flow.agents.check(101)
    flow.agents.charge(101)
    with pytest.raises(GatewayError) as limited:
        flow.agents.check(101)
    assert limited.value.retcode is retcodes.RATE_LIMITED and limited.value.http_status == 429
    assert limited.value.headers["Retry-After"] == "1"
    flow.agents.check(102)  # another agent's budget is its own
    ticks.now += 1.0
    flow.agents.check(101)


def test_sign_ins_are_counted_per_client_address_whatever_the_agent() -> None:
    """M6: SIGNIN_BURST_PER_IP sign-ins, then SIGNIN_RATE_PER_IP a second, per address."""
    ticks = Ticks()
    settings = load_settings(environ={}, SIGNIN_RATE_PER_IP="2", SIGNIN_BURST_PER_IP="3")
    flow = FlowControl(settings, now=ticks)
    for _ in range(3):
        flow.admit_sign_in("10.0.0.1")
    with pytest.raises(GatewayError) as limited:
        flow.admit_sign_in("10.0.0.1")
    assert limited.value.retcode is retcodes.RATE_LIMITED and limited.value.http_status == 429
    assert limited.value.headers["Retry-After"] == "1"
    flow.admit_sign_in("10.0.0.2")
    ticks.now += 0.5
    flow.admit_sign_in("10.0.0.1")
