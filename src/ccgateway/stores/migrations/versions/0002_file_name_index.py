"""Index file-server recordings by their drive-letter path (a download looks up its media type).

Revision ID: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_file_recordings_file_name", "file_recordings", ["file_name"])


def downgrade() -> None:
    op.drop_index("ix_file_recordings_file_name", "file_recordings")
