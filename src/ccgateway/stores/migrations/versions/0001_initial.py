"""The first schema: agents, conferences, recordings, files, audit, file-server recordings.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("work_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("vdn", sa.Integer, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("may_download_video", sa.Boolean, nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
    )
    op.create_table(
        "conferences",
        sa.Column("conference_id", sa.String(64), primary_key=True),
        sa.Column("vdn", sa.Integer, nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("started_ms", sa.BigInteger, nullable=True),
        sa.Column("ended_ms", sa.BigInteger, nullable=True),
        sa.Column("location_id", sa.String(16), nullable=False),
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("called", sa.String(64), nullable=False),
    )
    op.create_table(
        "conference_participants",
        sa.Column(
            "conference_id",
            sa.String(64),
            sa.ForeignKey("conferences.conference_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("work_no", sa.Integer, primary_key=True),
    )
    op.create_table(
        "recordings",
        sa.Column("record_id", sa.String(64), primary_key=True),
        sa.Column(
            "conference_id",
            sa.String(64),
            sa.ForeignKey("conferences.conference_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("announced_ms", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("conference_id", "position"),
    )
    op.create_index("ix_recordings_conference_id", "recordings", ["conference_id"])
    op.create_index("ix_recordings_announced_ms", "recordings", ["announced_ms"])
    op.create_table(
        "media_files",
        sa.Column(
            "record_id",
            sa.String(64),
            sa.ForeignKey("recordings.record_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("file_type", sa.SmallInteger, primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("media_type", sa.String(64), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", BIGINT_PK, primary_key=True),
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
    op.create_table(
        "file_digests",
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
    )
    op.create_table(
        "file_recordings",
        sa.Column("record_id", sa.String(64), primary_key=True),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("location_id", sa.String(16), nullable=False),
        sa.Column("media", sa.SmallInteger, nullable=False),
        sa.Column("agent_id", sa.Integer, nullable=True),
        sa.Column("participants", sa.Text, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("announced_ms", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_file_recordings_call_id", "file_recordings", ["call_id"])
    op.create_index("ix_file_recordings_announced_ms", "file_recordings", ["announced_ms"])


def downgrade() -> None:
    for table in (
        "file_recordings",
        "file_digests",
        "audit",
        "media_files",
        "recordings",
        "conference_participants",
        "conferences",
        "agents",
    ):
        op.drop_table(table)
