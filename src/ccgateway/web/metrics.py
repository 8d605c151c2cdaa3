"""The gateway's metrics, in Prometheus form: requests, signed-in agents, sign-in lockouts,
downloads and the audit journal.

Each gateway has its own ``CollectorRegistry`` (never prometheus_client's global one), so many
gateways can live in one process, as they do in the tests. Every label takes its values from a
small fixed set: an interface's documented log name, a retcode, an HTTP status, an outcome; never a
path, an agent id, a conference id or anything else a client chooses.

docs/deployment.md ("Metrics") lists the metrics as a scraper sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ccgateway.audit.events import Kind, Outcome
from ccgateway.audit.trail import DownloadAttempt

# Seconds from the start of a download request to its response head going out: catalog lookups,
# authorization, the source's first answer (a remote source may take seconds).
FIRST_BYTE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class ConnectionCounts:
    """What the connection guard has seen (counted where it happens, read at scrape time)."""

    open: int
    refused: int  # over MAX_CONNECTIONS_PER_IP
    head_timeouts: int  # no complete request head within HEADER_TIMEOUT_S


class _ConnectionCollector(Collector):
    def __init__(self, read: Callable[[], ConnectionCounts]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        counts = self._read()
        yield GaugeMetricFamily(
            "ccgateway_connections_open", "client connections open on this node", counts.open
        )
        dropped = CounterMetricFamily(
            "ccgateway_connections_dropped",
            "connections the node closed before a request: 'per_ip_cap' (MAX_CONNECTIONS_PER_IP)"
            " or 'head_timeout' (no whole request head within HEADER_TIMEOUT_S)",
            labels=["reason"],
        )
        dropped.add_metric(["per_ip_cap"], counts.refused)
        dropped.add_metric(["head_timeout"], counts.head_timeouts)
        yield dropped


class _LockoutCollector(Collector):
    def __init__(self, read: Callable[[], int]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "ccgateway_signin_lockouts",
            "work numbers this node locked after SIGNIN_LOCKOUT_ATTEMPTS failed sign-ins",
            self._read(),
        )


class _AuditCollector(Collector):
    def __init__(self, read: Callable[[], tuple[int, float]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        size, age = self._read()
        yield GaugeMetricFamily(
            "ccgateway_audit_journal_bytes",
            "bytes of audit events in the local journal (DATA_DIR/audit), shipped or not",
            size,
        )
        yield GaugeMetricFamily(
            "ccgateway_audit_oldest_unshipped_seconds",
            "age of the oldest audit event not yet in the database (0: none waits)",
            age,
        )


class GatewayMetrics:
    """The metric objects of one gateway, and their text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ccgateway_requests",
            "HTTP requests answered, by interface (documented log name, '-' for an unknown URL), "
            "retcode ('-' without an envelope) and HTTP status ('aborted': the client went away)",
            ["interface", "retcode", "status"],
            registry=self.registry,
        )
        self.signed_in_agents = Gauge(
            "ccgateway_signed_in_agents",
            "agents signed in (with shared sessions: on every node together)",
            registry=self.registry,
        )
        self.downloads_in_flight = Gauge(
            "ccgateway_downloads_in_flight",
            "download requests being handled by this node",
            registry=self.registry,
        )
        self.downloads_finished = Counter(
            "ccgateway_downloads_finished",
            "download attempts ended, by interface and audit outcome ('head': a HEAD answered)",
            ["interface", "outcome"],
            registry=self.registry,
        )
        self.bytes_sent = Counter(
            "ccgateway_download_bytes_sent",
            "recording bytes this node handed to the network (not those offloaded to nginx)",
            ["interface"],
            registry=self.registry,
        )
        self.first_byte = Histogram(
            "ccgateway_download_first_byte_seconds",
            "seconds from a download request to its response head (downloads that got that far)",
            ["interface"],
            buckets=FIRST_BYTE_BUCKETS,
            registry=self.registry,
        )

    def watch_connections(self, read: Callable[[], ConnectionCounts]) -> None:
        """Report the connection guard's counts, read with ``read`` at every scrape."""
        self.registry.register(_ConnectionCollector(read))

    def watch_lockouts(self, read: Callable[[], int]) -> None:
        """Report the lockouts this node started, read with ``read`` at every scrape."""
        self.registry.register(_LockoutCollector(read))

    def watch_audit(self, read: Callable[[], tuple[int, float]]) -> None:
        """Report the audit journal's size and the age of its oldest unshipped event."""
        self.registry.register(_AuditCollector(read))

    def count_request(self, interface: str, retcode: str, status: str) -> None:
        self.requests.labels(interface, retcode, status).inc()

    def download_started(self) -> None:
        self.downloads_in_flight.inc()

    def download_finished(self, attempt: DownloadAttempt) -> None:
        """The attempt has ended, whatever its outcome: its bytes, its outcome, its first byte."""
        self.downloads_in_flight.dec()
        outcome = (attempt.outcome or Outcome.ERROR).value
        if attempt.kind is Kind.HEAD and attempt.outcome is Outcome.COMPLETED:
            outcome = "head"
        self.downloads_finished.labels(attempt.interface, outcome).inc()
        if attempt.outcome is not Outcome.OFFLOADED:
            self.bytes_sent.labels(attempt.interface).inc(attempt.bytes_sent)
        if attempt.first_byte_at is not None:
            self.first_byte.labels(attempt.interface).observe(
                max(0.0, attempt.first_byte_at - attempt.started)
            )

    def exposition(self, signed_in_agents: int) -> bytes:
        """The text exposition format, with the values only known at scrape time filled in."""
        self.signed_in_agents.set(signed_in_agents)
        return generate_latest(self.registry)
