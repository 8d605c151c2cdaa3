"""The query columns of an ``audit_events`` row, from its event: the one rule.

``body`` (the canonical encoding) alone is authoritative; the other columns repeat some of its
values for queries (docs/audit.md, "The database"). Shipping writes them with ``columns`` and
``ccgateway audit verify`` checks that a row's columns are exactly ``columns`` of its body.
"""

from __future__ import annotations

from typing import Any

from ccgateway.audit.events import END, AuditEvent, Value

# The query columns, in the order ``values`` gives them.
NAMES: tuple[str, ...] = (
    "time_ms",
    "kind",
    "name",
    "agent_id",
    "conference_id",
    "record_id",
    "outcome",
    "start_seq",
    "client",
)


def _text(value: Value | Any) -> str:
    return "" if value is None else str(value)


def values(event: AuditEvent) -> tuple[Any, ...]:
    """The query columns of ``event``'s row, in the order of ``NAMES``."""
    is_end = event.name == END
    start_seq = event.fields.get("startSeq") if is_end else None
    return (
        event.time_ms,
        event.kind.value,
        event.name,
        event.agent_id,
        _text(event.concerns.get("conference")),
        _text(event.concerns.get("record")),
        _text(event.fields.get("outcome")) if is_end else "",
        start_seq if isinstance(start_seq, int) and not isinstance(start_seq, bool) else None,
        event.client,
    )


def columns(event: AuditEvent) -> dict[str, Any]:
    """The whole row of ``event``: its key, its query columns and its body."""
    row = dict(zip(NAMES, values(event), strict=True))
    row.update(writer=event.writer, seq=event.seq, body=event.canonical().decode("ascii"))
    return row
