"""The audit trail as events (docs/audit.md): the ``audit_events`` table.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

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


def downgrade() -> None:
    op.drop_table("audit_events")
