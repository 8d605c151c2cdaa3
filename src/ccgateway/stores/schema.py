"""The SQL schema, one definition for SQLite and PostgreSQL, and opening an engine on it.

A change here needs a new revision in ``migrations/versions``; a test fails when the migrated
database and this metadata differ.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

log = logging.getLogger("ccgateway.stores.schema")

metadata = sa.MetaData()

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("work_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(64), nullable=False, default=""),
    sa.Column("vdn", sa.Integer, nullable=False, default=1),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("may_download_video", sa.Boolean, nullable=False, default=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("session_epoch", sa.String(32), nullable=False, server_default=""),
)

conferences = sa.Table(
    "conferences",
    metadata,
    sa.Column("conference_id", sa.String(64), primary_key=True),
    sa.Column("vdn", sa.Integer, nullable=False),
    sa.Column("call_id", sa.String(64), nullable=False, default=""),
    sa.Column("started_ms", sa.BigInteger, nullable=True),
    sa.Column("ended_ms", sa.BigInteger, nullable=True),
    sa.Column("location_id", sa.String(16), nullable=False, default="255"),
    sa.Column("caller", sa.String(64), nullable=False, default=""),
    sa.Column("called", sa.String(64), nullable=False, default=""),
)

participants = sa.Table(
    "conference_participants",
    metadata,
    sa.Column(
        "conference_id",
        sa.String(64),
        sa.ForeignKey("conferences.conference_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("work_no", sa.Integer, primary_key=True),
)

recordings = sa.Table(
    "recordings",
    metadata,
    sa.Column("record_id", sa.String(64), primary_key=True),
    sa.Column(
        "conference_id",
        sa.String(64),
        sa.ForeignKey("conferences.conference_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("announced_ms", sa.BigInteger, nullable=True, index=True),
    sa.UniqueConstraint("conference_id", "position"),
)

media_files = sa.Table(
    "media_files",
    metadata,
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
    # The probed facts (stores/facts.py, migration 0005): all NULL on a row not probed yet.
    sa.Column("state", sa.String(16), nullable=True),  # ready / damaged / missing
    sa.Column("reason", sa.Text, nullable=True),  # why damaged or missing
    sa.Column("container", sa.String(64), nullable=True),  # FFmpeg's demuxer name
    sa.Column("content_type", sa.String(64), nullable=True),  # the media type from the content
    sa.Column("duration_ms", sa.BigInteger, nullable=True),
    sa.Column("width", sa.Integer, nullable=True),
    sa.Column("height", sa.Integer, nullable=True),
    sa.Column("video_codec", sa.String(32), nullable=True),
    sa.Column("audio_codec", sa.String(32), nullable=True),
    sa.Column("fast_start", sa.Boolean, nullable=True),
)

# The audit trail's events (docs/audit.md): ``body`` is the canonical encoding and alone is
# authoritative; the other columns repeat some of its values for queries.
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("writer", sa.String(160), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time_ms", sa.BigInteger, nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(32), nullable=False),
    sa.Column("agent_id", sa.Integer, nullable=True, index=True),
    sa.Column("conference_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("record_id", sa.Text, nullable=False, server_default=""),
    sa.Column("outcome", sa.String(16), nullable=False, server_default=""),
    sa.Column("start_seq", sa.BigInteger, nullable=True),
    sa.Column("client", sa.String(64), nullable=False, server_default=""),
    sa.Column("body", sa.Text, nullable=False),
)


file_digests = sa.Table(
    "file_digests",
    metadata,
    sa.Column("path", sa.Text, primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mtime_ns", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
)

file_recordings = sa.Table(
    "file_recordings",
    metadata,
    sa.Column("record_id", sa.String(64), primary_key=True),
    sa.Column("file_name", sa.Text, nullable=False, index=True),
    sa.Column("call_id", sa.String(64), nullable=False, index=True),
    sa.Column("location_id", sa.String(16), nullable=False),
    sa.Column("media", sa.SmallInteger, nullable=False),
    sa.Column("agent_id", sa.Integer, nullable=True),
    sa.Column("participants", sa.Text, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("announced_ms", sa.BigInteger, nullable=True, index=True),
)


def async_url(url: str) -> str:
    """The configured URL with its asyncio driver (aiosqlite for sqlite, asyncpg for postgresql)."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


async def open_engine(url: str, *, search_path: str | None = None) -> AsyncEngine:
    """Open the database and migrate it to the newest schema.

    ``search_path`` (PostgreSQL only) puts the tables in that schema, e.g. one per test.
    """
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(async_url(url), connect_args={"timeout": 30})

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: object, _record: object) -> None:
            cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    else:
        connect_args = {"server_settings": {"search_path": search_path}} if search_path else {}
        engine = create_async_engine(
            async_url(url), pool_size=10, pool_pre_ping=True, connect_args=connect_args
        )
    async with engine.begin() as connection:
        await connection.run_sync(migrate_if_needed)
    return engine


HEAD_REVISION = "0005"  # the newest file in migrations/versions (a test checks)


def migrate_if_needed(connection: sa.Connection) -> str | None:
    """``migrate``, unless the database already is at ``HEAD_REVISION`` (the usual start)."""
    current = None
    if sa.inspect(connection).has_table("alembic_version"):
        current = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    if current == HEAD_REVISION:
        return HEAD_REVISION
    return migrate(connection)


def migrate(connection: sa.Connection) -> str | None:
    """Bring the schema to the newest revision (one tool, Alembic, for SQLite and PostgreSQL).

    Nodes starting together on PostgreSQL take turns through an advisory lock. Returns the
    revision the database is at afterwards; logs one line when that changed.
    """
    with _quiet_alembic():
        from alembic import command  # Alembic costs ~10 MB and 0.1 s: only load it to migrate
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext

        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(7243001)"))
        before = MigrationContext.configure(connection).get_current_revision()
        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        after = MigrationContext.configure(connection).get_current_revision()
    if after != before:
        log.info("database schema migrated from %s to %s", before or "empty", after)
    return after


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic narrates at INFO (plugins, context, every revision): a dozen lines before the
    banner of a first ``serve``. Hold it to WARNING, unless ccgateway itself logs at DEBUG."""
    alembic_log = logging.getLogger("alembic")
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    level = alembic_log.level
    alembic_log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        alembic_log.setLevel(level)
