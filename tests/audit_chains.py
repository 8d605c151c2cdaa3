"""Test data for the audit trail: writers' hash chains of events, as rows or journal lines."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ccgateway.audit.columns import columns
from ccgateway.audit.events import END, GENESIS, START, AuditEvent, Kind, Outcome

T0 = 1_764_990_000_000  # epoch ms of a chain's first event


def chain(writer: str, count: int, *, start_ms: int = T0, step_ms: int = 1000) -> list[AuditEvent]:
    """``count`` events of one writer: downloads (start, end), each linked to the one before."""
    events: list[AuditEvent] = []
    prev = GENESIS
    for seq in range(1, count + 1):
        is_end = seq % 2 == 0
        fields: dict[str, Any] = (
            {
                "startSeq": seq - 1,
                "outcome": Outcome.COMPLETED.value,
                "status": 200,
                "retcode": "0",
                "bytes": 1000 * seq,
                "ranges": "",
                "durationMs": 12,
            }
            if is_end
            else {"interface": "videofiledownload", "range": "", "decision": "allowed"}
        )
        event = forged(
            writer,
            seq,
            prev,
            time_ms=start_ms + seq * step_ms,
            name=END if is_end else START,
            fields=fields,
            agent_id=100 + seq % 3,
        )
        events.append(event)
        prev = event.digest()
    return events


def forged(
    writer: str,
    seq: int,
    prev: str,
    *,
    time_ms: int = T0,
    name: str = START,
    fields: dict[str, Any] | None = None,
    agent_id: int | None = 101,
) -> AuditEvent:
    return AuditEvent(
        writer=writer,
        seq=seq,
        time_ms=time_ms,
        kind=Kind.DOWNLOAD,
        name=name,
        agent_id=agent_id,
        client="192.0.2.7",
        prev=prev,
        concerns={"conference": "1234567890123456", "record": "2", "fileType": 0},
        fields=fields if fields is not None else {"interface": "videofiledownload"},
    )


async def store(engine: AsyncEngine, events: Iterable[AuditEvent]) -> None:
    """Insert the events' rows as shipping does: the body and the columns taken from it."""
    rows = [columns(event) for event in events]
    if rows:
        async with engine.begin() as connection:
            await connection.execute(sa.text(_INSERT), rows)


_INSERT = (
    "INSERT INTO audit_events (writer, seq, time_ms, kind, name, agent_id, conference_id,"
    " record_id, outcome, start_seq, client, body) VALUES (:writer, :seq, :time_ms, :kind, :name,"
    " :agent_id, :conference_id, :record_id, :outcome, :start_seq, :client, :body)"
)


async def execute(engine: AsyncEngine, statement: str, **params: Any) -> None:
    async with engine.begin() as connection:
        await connection.execute(sa.text(statement), params)


def journal(directory: Path, name: str, events: Iterable[AuditEvent], tail: bytes = b"") -> Path:
    """A journal file of ``events`` (one canonical line each), then ``tail`` (a partial line)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(b"".join(event.canonical() + b"\n" for event in events) + tail)
    return path
