"""Give each agent a session epoch: a new one ends the sessions granted under the old one.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "agents",
        sa.Column("session_epoch", sa.String(32), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("agents", "session_epoch")
