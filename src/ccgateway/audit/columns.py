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


# The columns' sizes in ``audit_events`` (stores/schema.py): a longer value is cut in its column
# (the body, which is authoritative, keeps it whole), so no event can stop shipping.
_LIMITS = {"kind": 16, "name": 32, "conference_id": 64, "outcome": 16, "client": 64}
_INT32 = 2**31


def _text(value: Value | Any, column: str | None = None) -> str:
    """``value`` as its text column takes it: valid UTF-8, no NUL, at most the column's size."""
    text = "" if value is None else str(value)
    clean = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return clean if column is None else clean[: _LIMITS[column]]


def values(event: AuditEvent) -> tuple[Any, ...]:
    """The query columns of ``event``'s row, in the order of ``NAMES``. ``record_id`` is the
    record, or else the file-server path; an agent id outside a 32-bit integer is NULL."""
    is_end = event.name == END
    concerns, fields = event.concerns, event.fields
    start_seq = fields.get("startSeq") if is_end else None
    agent = event.agent_id
    return (
        event.time_ms,
        _text(event.kind.value, "kind"),
        _text(event.name, "name"),
        agent if agent is not None and -_INT32 <= agent < _INT32 else None,
        _text(concerns.get("conference") or "", "conference_id"),
        _text(concerns.get("record") or concerns.get("path") or ""),
        _text(fields.get("outcome") or "", "outcome") if is_end else "",
        start_seq if isinstance(start_seq, int) and not isinstance(start_seq, bool) else None,
        _text(event.client, "client"),
    )


def columns(event: AuditEvent) -> dict[str, Any]:
    """The whole row of ``event``: its key, its query columns and its body."""
    row = dict(zip(NAMES, values(event), strict=True))
    row.update(writer=event.writer, seq=event.seq, body=event.canonical().decode("ascii"))
    return row
