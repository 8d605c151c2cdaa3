"""Flow control for one node: request rates (token buckets) and download slots.

Limits are per node: behind a load balancer each node enforces its own. An agent's request rate
(``AgentBudget``) is spent only by requests whose GUID (or, at sign-in, password) was accepted, so
nobody can use up another agent's budget by sending requests in its name; ``SessionManager``, where
GUIDs and passwords are accepted, checks it before and spends it after. Sign-ins are also counted
per client address, whatever the agent id (``admit_sign_in``): a flood of sign-ins naming many
agents from one address is cut off before it reaches password hashing. Exceeding a limit raises
``GatewayError`` with its retcode, HTTP status and a ``Retry-After`` header; the web layer only
passes it on.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from ccgateway import retcodes
from ccgateway.config import Settings
from ccgateway.errors import GatewayError

Monotonic = Callable[[], float]

# Buckets kept at most; the least recently used go first (a full bucket is forgotten anyway).
MAX_TRACKED = 100_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per key: ``rate`` tokens a second, holding at most ``burst``."""

    def __init__(self, rate: float, burst: float, now: Monotonic = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._now = now
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()

    def take(self, key: Hashable) -> float:
        """Spend one token of ``key``: 0.0 when allowed, else the seconds until one is there."""
        bucket = self._refilled(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def wait(self, key: Hashable) -> float:
        """The seconds until ``key`` has a token (0.0: it has one now); spends nothing, and
        remembers no key it did not know."""
        if key not in self._buckets:
            return 0.0
        bucket = self._refilled(key)
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self.rate

    def spend(self, key: Hashable) -> None:
        """Spend one token of ``key`` even when it has none: requests admitted together by
        ``wait`` run the bucket into debt (at most ``burst``), which the next ones wait out."""
        bucket = self._refilled(key)
        bucket.tokens = max(bucket.tokens - 1.0, -self.burst)

    def _refilled(self, key: Hashable) -> _Bucket:
        now = self._now()
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        self._buckets[key] = bucket
        if len(self._buckets) > MAX_TRACKED:
            self._buckets.popitem(last=False)
        return bucket


class AgentBudget:
    """An agent's request rate (REQUEST_RATE_PER_AGENT), spent only by accepted requests.

    ``check`` before a request's GUID or password is checked refuses it (000-007, HTTP 429) while
    the agent's accepted requests have used the budget up; ``charge`` after it was accepted spends
    one request. A request that is not accepted spends nothing, whoever sends it from wherever.
    """

    def __init__(self, rate: float, burst: float, now: Monotonic = time.monotonic) -> None:
        self._rate = RateLimiter(rate, burst, now)

    def check(self, agent_id: int) -> None:
        wait = self._rate.wait(agent_id)
        if wait:
            raise _refusal(retcodes.RATE_LIMITED, 429, wait)

    def charge(self, agent_id: int) -> None:
        self._rate.spend(agent_id)


class DownloadSlots:
    """Counts downloads in progress, per agent and in all."""

    def __init__(self, per_agent: int, total: int) -> None:
        self.per_agent = per_agent
        self.total = total
        self._by_agent: dict[int, int] = {}
        self._in_use = 0

    @property
    def in_use(self) -> int:
        return self._in_use

    def acquire(self, agent_id: int) -> Callable[[], None]:
        """Take one slot for ``agent_id`` or refuse at once; returns the slot's release."""
        if self._by_agent.get(agent_id, 0) >= self.per_agent:
            raise _refusal(retcodes.TOO_MANY_DOWNLOADS, 429, 1.0)
        if self._in_use >= self.total:
            raise _refusal(retcodes.NODE_BUSY, 503, 1.0)
        self._by_agent[agent_id] = self._by_agent.get(agent_id, 0) + 1
        self._in_use += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._in_use -= 1
            left = self._by_agent[agent_id] - 1
            if left:
                self._by_agent[agent_id] = left
            else:
                del self._by_agent[agent_id]

        return release


class FlowControl:
    """The node's limits, built from the settings."""

    def __init__(self, settings: Settings, now: Monotonic = time.monotonic) -> None:
        self.node_rate = RateLimiter(settings.request_rate, 2.0 * settings.request_rate, now)
        self.agents = AgentBudget(
            settings.request_rate_per_agent, 2.0 * settings.request_rate_per_agent, now
        )
        self.sign_in_rate = RateLimiter(
            settings.signin_rate_per_ip, settings.signin_burst_per_ip, now
        )
        self.downloads = DownloadSlots(settings.max_downloads_per_agent, settings.max_downloads)
        self.draining = False

    def admit_request(self) -> None:
        """One request arrives at the node: refused while shutting down or over REQUEST_RATE."""
        if self.draining:
            raise _refusal(retcodes.NODE_BUSY, 503, 1.0, close=True)
        wait = self.node_rate.take(None)
        if wait:
            raise _refusal(retcodes.NODE_BUSY, 503, wait)

    def admit_sign_in(self, client: str) -> None:
        """A sign-in (or force sign-in) from address ``client``, whatever agent it names: refused
        over SIGNIN_RATE_PER_IP (bursts of SIGNIN_BURST_PER_IP)."""
        wait = self.sign_in_rate.take(client)
        if wait:
            raise _refusal(retcodes.RATE_LIMITED, 429, wait)


def node_busy(wait_s: float) -> GatewayError:
    """The refusal of a node too busy to take the request now: 000-009, HTTP 503, Retry-After."""
    return _refusal(retcodes.NODE_BUSY, 503, wait_s)


def _refusal(
    retcode: retcodes.Retcode, status: int, wait_s: float, *, close: bool = False
) -> GatewayError:
    headers = {"Retry-After": str(max(1, math.ceil(wait_s)))}
    if close:
        headers["Connection"] = "close"
    return GatewayError(retcode, f"retry after {wait_s:.2f} s", http_status=status, headers=headers)
