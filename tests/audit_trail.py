"""Reading the audit trail back in tests: the events in ``audit_events``, and the transfers (a
``start`` joined to its ``end``) they make."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ccgateway.audit.events import END, START, AuditEvent, parse
from ccgateway.stores.schema import audit_events, open_engine
from tests.conftest import RunningGateway


@dataclass(frozen=True)
class Transfer:
    """A transfer as a reader of the trail sees it: its ``start`` and its ``end``."""

    start: AuditEvent
    end: AuditEvent

    @property
    def kind(self) -> str:
        return self.start.kind.value

    @property
    def interface(self) -> str:
        return str(self.start.fields["interface"])

    @property
    def decision(self) -> str:
        return str(self.start.fields["decision"])

    @property
    def range(self) -> str:
        return str(self.start.fields["range"])

    @property
    def agent_id(self) -> int | None:
        return self.start.agent_id

    @property
    def client(self) -> str:
        return self.start.client

    def concern(self, key: str) -> Any:
        return self.start.concerns.get(key)

    @property
    def outcome(self) -> str:
        return str(self.end.fields["outcome"])

    @property
    def status(self) -> int:
        status = self.end.fields["status"]
        assert isinstance(status, int), f"a {self.outcome} transfer says no status"
        return status

    @property
    def retcode(self) -> str:
        retcode = self.end.fields["retcode"]
        assert isinstance(retcode, str), f"a {self.outcome} transfer says no retcode"
        return retcode

    @property
    def bytes(self) -> int | None:
        """The bytes sent (None: unknown, as for ``offloaded`` and ``interrupted``)."""
        sent: int | None = self.end.fields["bytes"]
        return sent

    @property
    def bytes_sent(self) -> int:
        sent = self.bytes
        assert sent is not None, f"a {self.outcome} transfer says no byte count"
        return sent

    @property
    def ranges(self) -> list[list[int]] | None:
        ranges: list[list[int]] | None = self.end.fields["ranges"]
        return ranges


async def stored_events(database_url: str) -> list[AuditEvent]:
    """Every event in ``audit_events``, by writer and seq."""
    engine = await open_engine(database_url)
    try:
        async with engine.connect() as connection:
            query = sa.select(audit_events.c.body).order_by(
                audit_events.c.writer, audit_events.c.seq
            )
            bodies = (await connection.execute(query)).scalars().all()
    finally:
        await engine.dispose()
    return [parse(str(body).encode("ascii")) for body in bodies]


def pair(events: list[AuditEvent]) -> tuple[list[Transfer], list[AuditEvent]]:
    """The transfers the events make, and the ``start`` events without an ``end``."""
    starts = {(e.writer, e.seq): e for e in events if e.name == START}
    transfers = []
    for end in (e for e in events if e.name == END):
        key = (str(end.fields.get("startWriter", end.writer)), int(end.fields["startSeq"]))
        transfers.append(Transfer(starts.pop(key), end))
    return transfers, list(starts.values())


async def transfers(gw: RunningGateway, expected: int) -> list[Transfer]:
    """The gateway's transfers once ``expected`` of them are in the database (written and
    shipped in the background), newest end first."""
    found: list[Transfer] = []
    for _ in range(100):
        await gw.gateway.auditor.drain()
        found, _ = pair(await stored_events(gw.gateway.settings.database_url))
        if len(found) >= expected:
            return sorted(found, key=lambda t: (t.end.time_ms, t.end.seq), reverse=True)
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {expected} transfers, have {len(found)}")
