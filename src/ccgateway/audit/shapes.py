"""The JSON shapes of the trail that the admin API answers and the CLI prints (``--json``).

``event_json``: one raw event, its canonical document as is (docs/audit.md). ``line_json``: one
line of the listing: the event, and for a transfer's ``start`` its ``outcome`` and ``end`` (the
end event, or ``null`` with the outcome ``open`` while none was written).
"""

from __future__ import annotations

from typing import Any

from ccgateway.audit.events import START, TRANSFER_KINDS, Kind, Outcome, parse
from ccgateway.stores.base import OPEN, AuditLine

KINDS = tuple(kind.value for kind in Kind)  # what a reading may select
OUTCOMES = (*(outcome.value for outcome in Outcome), OPEN)  # OPEN: a transfer with no end yet


def event_json(body: str) -> dict[str, Any]:
    return parse(body.encode("ascii")).document()


def line_json(line: AuditLine) -> dict[str, Any]:
    event = parse(line.body.encode("ascii"))
    shown = event.document()
    del shown["prev"], shown["v"]
    if event.kind in TRANSFER_KINDS and event.name == START:
        end = None if line.end is None else parse(line.end.encode("ascii"))
        shown["outcome"] = OPEN if end is None else end.fields.get("outcome")
        shown["end"] = None if end is None else _end_json(end.document())
    return shown


def _end_json(document: dict[str, Any]) -> dict[str, Any]:
    return {key: document[key] for key in ("writer", "seq", "time", "fields")}
