"""An in-memory ``Recorder`` for tests: it appends ``AuditEvent``s chained as the journal does
(one writer, ``seq`` from 1, ``prev`` the previous event's digest), and can store them in the
``audit_events`` table so the readers (``ccgateway audit``, the admin API) see them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ccgateway.audit.columns import columns
from ccgateway.audit.events import END, GENESIS, START, AuditEvent, Kind, Outcome, Value
from ccgateway.stores.schema import audit_events


class MemoryRecorder:
    def __init__(self, writer: str = "test@1", *, time_ms: int = 1_700_000_000_000) -> None:
        self.writer = writer
        self.events: list[AuditEvent] = []
        self.time_ms = time_ms  # each event one millisecond after the previous
        self.writable = True

    def record(
        self,
        kind: Kind,
        name: str,
        *,
        agent_id: int | None = None,
        client: str = "",
        concerns: Mapping[str, Value] | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        return self._append(kind, name, agent_id, client, concerns or {}, fields or {})

    def start(
        self,
        kind: Kind,
        *,
        agent_id: int | None,
        client: str,
        concerns: Mapping[str, Value],
        fields: Mapping[str, Any],
    ) -> MemoryTransfer:
        event = self._append(kind, START, agent_id, client, concerns, fields)
        return MemoryTransfer(self, event)

    def _append(
        self,
        kind: Kind,
        name: str,
        agent_id: int | None,
        client: str,
        concerns: Mapping[str, Value],
        fields: Mapping[str, Any],
    ) -> AuditEvent:
        self.time_ms += 1
        event = AuditEvent(
            writer=self.writer,
            seq=len(self.events) + 1,
            time_ms=self.time_ms,
            kind=kind,
            name=name,
            agent_id=agent_id,
            client=client,
            prev=self.events[-1].digest() if self.events else GENESIS,
            concerns=dict(concerns),
            fields=dict(fields),
        )
        self.events.append(event)
        return event

    def named(self, kind: Kind, name: str) -> list[AuditEvent]:
        return [e for e in self.events if e.kind is kind and e.name == name]

    def names(self, *kinds: Kind) -> list[str]:
        return [e.name for e in self.events if e.kind in kinds]


@dataclass
class MemoryTransfer:
    recorder: MemoryRecorder
    started: AuditEvent
    ended: AuditEvent | None = None

    @property
    def seq(self) -> int:
        return self.started.seq

    def end(self, outcome: Outcome, fields: Mapping[str, Any]) -> AuditEvent:
        if self.ended is None:
            s = self.started
            full = {**fields, "outcome": outcome.value, "startSeq": s.seq}
            self.ended = self.recorder._append(s.kind, END, s.agent_id, s.client, s.concerns, full)
        return self.ended


def assert_chained(events: list[AuditEvent]) -> None:
    """Each writer's events numbered from 1 without gaps, each ``prev`` its predecessor's."""
    last: dict[str, AuditEvent] = {}
    for event in events:
        before = last.get(event.writer)
        assert event.seq == (before.seq + 1 if before else 1), event
        assert event.prev == (before.digest() if before else GENESIS), event
        last[event.writer] = event


def row_of(event: AuditEvent) -> dict[str, Any]:
    """The ``audit_events`` row of ``event``, as shipping writes it (``columns.columns``)."""
    return columns(event)


async def store(engine: AsyncEngine, events: Iterable[AuditEvent]) -> None:
    rows = [row_of(event) for event in events]
    if rows:
        async with engine.begin() as connection:
            await connection.execute(audit_events.insert(), rows)


CONFERENCE, OTHER_CONFERENCE = "conf-1", "conf-2"


@dataclass
class Scenario:
    """A trail of three writers (``gw_0@1`` whose run was killed, its next run ``gw_0@2``, and
    ``gwx0@1``, whose name ``gw_0@1`` matches with an unescaped LIKE ``_``)."""

    first: MemoryRecorder
    second: MemoryRecorder
    other: MemoryRecorder

    @property
    def events(self) -> list[AuditEvent]:
        return sorted(
            [*self.first.events, *self.second.events, *self.other.events],
            key=lambda e: (e.time_ms, e.writer, e.seq),
        )


def scenario() -> Scenario:
    first = MemoryRecorder("gw_0@1", time_ms=1_700_000_000_000)
    second = MemoryRecorder("gw_0@2", time_ms=1_700_000_100_000)
    other = MemoryRecorder("gwx0@1", time_ms=1_700_000_050_000)
    one: dict[str, Value] = {"conference": CONFERENCE, "record": "r0", "fileType": 0}
    first.record(Kind.SESSION, "sign_in", agent_id=101, client="10.0.0.1")  # 1
    done = first.start(Kind.DOWNLOAD, agent_id=101, client="10.0.0.1", concerns=one, fields=_get())
    far: dict[str, Value] = {"conference": OTHER_CONFERENCE, "record": "r9", "fileType": 0}
    first.start(Kind.DOWNLOAD, agent_id=102, client="10.0.0.2", concerns=far, fields=_get())  # 3
    done.end(Outcome.COMPLETED, _sent(200, 1000))  # 4
    head = first.start(Kind.HEAD, agent_id=101, client="10.0.0.1", concerns=one, fields=_get())
    head.end(Outcome.COMPLETED, _sent(200, 0))  # 5, 6
    first.start(Kind.DOWNLOAD, agent_id=101, client="10.0.0.1", concerns=one, fields=_get())  # 7
    refused = first.start(Kind.DOWNLOAD, agent_id=102, client="10.0.0.2", concerns=one, fields={})
    refused.end(Outcome.REFUSED, {"status": 200, "retcode": "104-002", "bytes": 0})  # 8, 9
    for _ in range(6):
        other.record(Kind.SESSION, "sign_in", agent_id=103)
    other.start(Kind.DOWNLOAD, agent_id=103, client="", concerns=one, fields=_get())  # 7: open
    second.record(  # the next run closes the killed run's open transfer 7
        Kind.DOWNLOAD,
        END,
        agent_id=101,
        client="10.0.0.1",
        concerns=one,
        fields={"startSeq": 7, "startWriter": first.writer, "outcome": "interrupted"},
    )
    second.start(Kind.DOWNLOAD, agent_id=101, client="10.0.0.1", concerns=one, fields=_get())
    return Scenario(first, second, other)


def _get() -> dict[str, Any]:
    return {"interface": "downloadRecordFile", "range": "", "decision": "accepted"}


def _sent(status: int, size: int) -> dict[str, Any]:
    return {"status": status, "retcode": "0", "bytes": size, "ranges": None, "durationMs": 5}
