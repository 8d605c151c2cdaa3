"""``ccgateway db``: the database schema."""

from __future__ import annotations

import asyncio

import click

from ccgateway.cli.options import config_option, settings_from
from ccgateway.stores.schema import migrate, open_engine


@click.group()
def db() -> None:
    """Database schema migrations (SQLite and PostgreSQL alike)."""


@db.command("upgrade")
@config_option
def upgrade(config_path: str | None) -> None:
    """Apply every pending migration to DATABASE_URL (serve also does this at start)."""
    settings = settings_from(config_path)

    async def run() -> str | None:
        engine = await open_engine(settings.database_url)
        try:
            async with engine.begin() as connection:
                return await connection.run_sync(migrate)
        finally:
            await engine.dispose()

    try:
        revision = asyncio.run(run())
    except OSError as exc:
        raise click.ClickException(f"cannot reach the database: {exc}") from None
    click.echo(f"database at revision {revision}")
