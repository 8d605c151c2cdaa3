"""The audit trail as events (docs/audit.md): the ``audit_events`` table, and the rows of the
old ``audit`` table imported once, as the events of one legacy writer.

The legacy writer is ``legacy@<epoch ms of the migration>``: its chain starts at the migration.
Each old row, in the order of its id, becomes a transfer: a ``start`` and its ``end``, of kind
``head`` when its outcome was ``head`` (then ``completed``), else ``download``, carrying its
fields (``fields.node`` the node that wrote it, ``fields.legacyId`` its id). The old table is
left as it was (read and written by nothing once the journal writes the trail).

Revision ID: 0004
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from alembic import op

from ccgateway.audit.columns import columns
from ccgateway.audit.events import END, GENESIS, START, AuditEvent, Kind, Outcome, Value

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("writer", sa.String(160), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("time_ms", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("agent_id", sa.Integer, nullable=True),
        sa.Column("conference_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("record_id", sa.Text, nullable=False, server_default=""),
        sa.Column("outcome", sa.String(16), nullable=False, server_default=""),
        sa.Column("start_seq", sa.BigInteger, nullable=True),
        sa.Column("client", sa.String(64), nullable=False, server_default=""),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_events_time_ms", "audit_events", ["time_ms"])
    op.create_index("ix_audit_events_agent_id", "audit_events", ["agent_id"])
    import_legacy(op.get_bind(), int(time.time() * 1000))
    if sa.inspect(op.get_bind()).has_table("audit"):  # imported: the events replace it
        op.drop_table("audit")


_BATCH = 1000


def import_legacy(connection: sa.Connection, now_ms: int) -> int:
    """Import the old ``audit`` rows as the events of the writer ``legacy@<now_ms>``; how many
    rows it imported."""
    if not sa.inspect(connection).has_table("audit"):
        return 0
    old = sa.table("audit", *(sa.column(name) for name in _OLD_COLUMNS))
    new = sa.table("audit_events", *(sa.column(name) for name in _NEW_COLUMNS))
    writer, prev, seq, imported, last_id = f"legacy@{now_ms}", GENESIS, 0, 0, None
    while True:  # by pages of ids, so a large old table is never in memory at once
        page = sa.select(old).order_by(old.c.id).limit(_BATCH)
        if last_id is not None:
            page = page.where(old.c.id > last_id)
        rows = [dict(row) for row in connection.execute(page).mappings()]
        if not rows:
            return imported
        batch = []
        for row in rows:
            for event in _transfer(writer, seq, prev, row):
                batch.append(columns(event))
                seq, prev = event.seq, event.digest()
        connection.execute(new.insert(), batch)
        imported, last_id = imported + len(rows), rows[-1]["id"]


_OLD_COLUMNS = (
    "id",
    "time_ms",
    "node",
    "interface",
    "agent_id",
    "conference_id",
    "record_id",
    "file_type",
    "range",
    "status",
    "bytes_sent",
    "outcome",
    "retcode",
    "client",
    "duration_ms",
)
_NEW_COLUMNS = (
    "writer",
    "seq",
    "time_ms",
    "kind",
    "name",
    "agent_id",
    "conference_id",
    "record_id",
    "outcome",
    "start_seq",
    "client",
    "body",
)


def _transfer(writer: str, seq: int, prev: str, row: Mapping[str, Any]) -> Iterator[AuditEvent]:
    """The ``start`` and ``end`` of one old row, chained after ``seq`` (whose digest is
    ``prev``)."""
    head = row["outcome"] == "head"
    kind = Kind.HEAD if head else Kind.DOWNLOAD
    outcome = Outcome.COMPLETED if head else Outcome(row["outcome"])
    concerns: dict[str, Value] = {}
    if row["conference_id"]:
        concerns["conference"] = row["conference_id"]
    if row["record_id"]:
        concerns["record"] = row["record_id"]
    if row["file_type"] is not None:
        concerns["fileType"] = int(row["file_type"])
    start = AuditEvent(
        writer=writer,
        seq=seq + 1,
        time_ms=int(row["time_ms"]),
        kind=kind,
        name=START,
        agent_id=row["agent_id"],
        client=row["client"],
        prev=prev,
        concerns=concerns,
        fields={
            "interface": row["interface"],
            "range": row["range"],
            "decision": None,  # the old rows did not keep it
            "node": row["node"],
            "legacyId": int(row["id"]),
        },
    )
    yield start
    yield AuditEvent(
        writer=writer,
        seq=seq + 2,
        time_ms=int(row["time_ms"]) + int(row["duration_ms"]),
        kind=kind,
        name=END,
        agent_id=row["agent_id"],
        client=row["client"],
        prev=start.digest(),
        concerns=concerns,
        fields={
            "startSeq": start.seq,
            "outcome": outcome.value,
            "status": int(row["status"]),
            "retcode": row["retcode"],
            "bytes": None if outcome is Outcome.OFFLOADED else int(row["bytes_sent"]),
            "ranges": None,  # the old rows did not keep them
            "durationMs": int(row["duration_ms"]),
        },
    )


def downgrade() -> None:
    """Back to 0003: the events are dropped and the old ``audit`` table comes back empty."""
    op.drop_table("audit_events")
    op.create_table(
        "audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("time_ms", sa.BigInteger, nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("interface", sa.String(32), nullable=False),
        sa.Column("agent_id", sa.Integer, nullable=True),
        sa.Column("conference_id", sa.String(64), nullable=False),
        sa.Column("record_id", sa.Text, nullable=False),
        sa.Column("file_type", sa.SmallInteger, nullable=True),
        sa.Column("range", sa.String(128), nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("bytes_sent", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("retcode", sa.String(8), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
    )
    op.create_index("ix_audit_time_ms", "audit", ["time_ms"])
    op.create_index("ix_audit_agent_id", "audit", ["agent_id"])
