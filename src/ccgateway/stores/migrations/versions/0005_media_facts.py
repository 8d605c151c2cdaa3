"""The probed facts of each media file (docs/recordings.md, "Probed media facts"): nullable
``media_files`` columns. Existing rows keep NULL in all of them, meaning "not probed yet"; the
migration never reads a file.

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("state", sa.String(16)),  # ready / damaged / missing
    ("reason", sa.Text()),
    ("container", sa.String(64)),
    ("content_type", sa.String(64)),
    ("duration_ms", sa.BigInteger()),
    ("width", sa.Integer()),
    ("height", sa.Integer()),
    ("video_codec", sa.String(32)),
    ("audio_codec", sa.String(32)),
    ("fast_start", sa.Boolean()),
)


def upgrade() -> None:
    for name, type_ in _COLUMNS:  # nullable: no table rewrite, on SQLite either
        op.add_column("media_files", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("media_files") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
