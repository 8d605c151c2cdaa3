"""Migration 0005 adds the probed facts' columns to ``media_files``: a file registered before it
reads back as not probed yet (no facts), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ccgateway.stores.base import FileType
from ccgateway.stores.schema import migrate, open_engine
from ccgateway.stores.sql import SqlCatalogStore
from tests.contract.test_audit_reading import _at_revision
from tests.contract.test_audit_reading import database as database  # the fixture, both databases
from tests.contract.test_sql_stores import _postgres_admin, media

OLD_ROWS: dict[str, list[dict[str, object]]] = {
    "conferences": [
        {
            "conference_id": "c-old",
            "vdn": 1,
            "call_id": "",
            "started_ms": None,
            "ended_ms": None,
            "location_id": "255",
            "caller": "",
            "called": "",
        }
    ],
    "conference_participants": [{"conference_id": "c-old", "work_no": 101}],
    "recordings": [
        {
            "record_id": "r-old",
            "conference_id": "c-old",
            "position": 0,
            "created_ms": 100,
            "announced_ms": 200,
        }
    ],
    "media_files": [
        {
            "record_id": "r-old",
            "file_type": 0,
            "source": "/m/r-old",
            "size": 5 * 2**30,
            "media_type": "video/mp4",
            "mtime_ns": 1_700_000_000_123_456_789,
            "sha256": "ab" * 32,
        }
    ],
}


async def test_files_registered_before_0005_read_back_not_probed(
    database: tuple[str, str | None],
) -> None:
    url, schema = database
    admin = None
    if schema is not None:
        admin = await _postgres_admin()
        async with admin.begin() as connection:
            await connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        old = await _at_revision(url, schema, "0004")
        async with old.begin() as connection:
            for table, rows in OLD_ROWS.items():
                columns: list[sa.ColumnClause[Any]] = [sa.column(name) for name in rows[0]]
                await connection.execute(sa.table(table, *columns).insert(), rows)
            await connection.run_sync(migrate)  # to 0005
        await old.dispose()
        engine = await open_engine(url, search_path=schema)
        try:
            found = await SqlCatalogStore(engine).get_conference("c-old")
        finally:
            await engine.dispose()
        assert found is not None
        (file,) = found.recordings[0].files
        assert file == media("r-old", FileType.HD)  # the same row, and facts None
        assert file.facts is None
    finally:
        if admin is not None:
            async with admin.begin() as connection:
                await connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            await admin.dispose()
