"""The SQL stores: one SQLAlchemy Core implementation for SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ccgateway.stores.base import AgentRecord, Role

metadata = sa.MetaData()

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("work_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(64), nullable=False, default=""),
    sa.Column("vdn", sa.Integer, nullable=False, default=1),
    sa.Column("role", sa.String(16), nullable=False, default=Role.AGENT.value),
    sa.Column("may_download_video", sa.Boolean, nullable=False, default=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
)


def async_url(url: str) -> str:
    """The configured URL with its asyncio driver (aiosqlite for sqlite, asyncpg for postgresql)."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


async def open_engine(url: str) -> AsyncEngine:
    """Open the database, creating the schema when it is missing."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(async_url(url), connect_args={"timeout": 30})

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: object, _record: object) -> None:
            cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
    else:
        engine = create_async_engine(async_url(url), pool_size=10)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    return engine


def _agent(row: sa.Row[tuple[int, str, int, str, bool, str]]) -> AgentRecord:
    return AgentRecord(
        work_no=row.work_no,
        name=row.name,
        vdn=row.vdn,
        role=Role(row.role),
        may_download_video=bool(row.may_download_video),
        password_hash=row.password_hash,
    )


class SqlAgentStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, work_no: int) -> AgentRecord | None:
        async with self._engine.connect() as connection:
            result = await connection.execute(sa.select(agents).where(agents.c.work_no == work_no))
            row = result.first()
        return _agent(row) if row is not None else None

    async def add(self, agent: AgentRecord) -> bool:
        try:
            async with self._engine.begin() as connection:
                await connection.execute(
                    agents.insert().values(
                        work_no=agent.work_no,
                        name=agent.name,
                        vdn=agent.vdn,
                        role=agent.role.value,
                        may_download_video=agent.may_download_video,
                        password_hash=agent.password_hash,
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True

    async def set_password_hash(self, work_no: int, password_hash: str) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                agents.update()
                .where(agents.c.work_no == work_no)
                .values(password_hash=password_hash)
            )
        return result.rowcount == 1

    async def remove(self, work_no: int) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(agents.delete().where(agents.c.work_no == work_no))
        return result.rowcount == 1

    async def list(self) -> list[AgentRecord]:
        async with self._engine.connect() as connection:
            result = await connection.execute(sa.select(agents).order_by(agents.c.work_no))
            return [_agent(row) for row in result]
