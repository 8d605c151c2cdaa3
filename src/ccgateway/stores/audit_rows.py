"""Reading ``audit_events`` back as stored, for verification and export (docs/audit.md).

The rows come out as plain tuples in the order of ``COLUMNS``, streamed in batches ordered by
(writer, seq), so a million of them never sit in memory at once. Nothing here interprets a row:
``audit/verify.py`` checks them against their ``body``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ccgateway.stores.schema import audit_events

# The order of a row's values: the key, the query columns, then the body.
COLUMNS: tuple[str, ...] = (
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

# One stored row, values in the order of COLUMNS.
AuditRow = tuple[str, int, int, str, str, int | None, str, str, str, int | None, str, str]


class SqlAuditRows:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def batches(self, size: int = 5000) -> AsyncIterator[list[AuditRow]]:
        """Every row, ordered by (writer, seq), ``size`` at a time (one read transaction)."""
        query = (
            sa.select(*(audit_events.c[name] for name in COLUMNS))
            .order_by(audit_events.c.writer, audit_events.c.seq)
            .execution_options(yield_per=size)
        )
        async with self._engine.connect() as connection:
            result = await connection.stream(query)
            async for partition in result.partitions(size):
                yield [tuple(row) for row in partition]
