"""What the rest of the gateway sees of the audit trail: a ``Recorder`` that appends events.

Appending never waits for a disk or a database (the journal group-commits in the background,
docs/audit.md), so a recorder's methods are plain calls, cheap enough for the request path. A
transfer (a download, a HEAD, a play) is ``start`` then, exactly once, ``Transfer.end``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ccgateway.audit.events import AuditEvent, Kind, Outcome, Value


class Transfer(Protocol):
    """A transfer whose ``start`` event was appended; ``end`` appends its ``end`` event."""

    @property
    def seq(self) -> int: ...

    def end(self, outcome: Outcome, fields: Mapping[str, Any]) -> AuditEvent:
        """Append the ``end`` event (``fields``: ``status``, ``retcode``, ``bytes``, ``ranges``,
        ``durationMs``; ``outcome`` and ``startSeq`` are added). Only the first call appends."""
        ...


class Recorder(Protocol):
    def record(
        self,
        kind: Kind,
        name: str,
        *,
        agent_id: int | None = None,
        client: str = "",
        concerns: Mapping[str, Value] | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """Append one event of a kind that is no transfer (session, admin, security)."""
        ...

    def start(
        self,
        kind: Kind,
        *,
        agent_id: int | None,
        client: str,
        concerns: Mapping[str, Value],
        fields: Mapping[str, Any],
    ) -> Transfer:
        """Append a transfer's ``start`` event (``fields``: ``interface``, ``range``,
        ``decision``)."""
        ...

    @property
    def writable(self) -> bool:
        """False while the journal cannot be written (a full disk): new downloads and links are
        then refused with 503 ``000-009``; running transfers finish and lose nothing."""
        ...
