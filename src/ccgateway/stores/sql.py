"""The SQL stores: one SQLAlchemy Core implementation for SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ccgateway.stores.base import (
    OPEN,
    AgentRecord,
    AuditEventRow,
    AuditLine,
    AuditQuery,
    ConferenceRecord,
    ConferenceViewer,
    FileRecordingRecord,
    FileType,
    MediaFileRecord,
    RecordingRecord,
    Role,
)
from ccgateway.stores.facts import facts_columns, facts_of_row
from ccgateway.stores.schema import (
    agents,
    audit_events,
    conferences,
    file_digests,
    file_recordings,
    media_files,
    participants,
    recordings,
)


def _agent(row: sa.Row[tuple[int, str, int, str, bool, str, str]]) -> AgentRecord:
    return AgentRecord(
        work_no=row.work_no,
        name=row.name,
        vdn=row.vdn,
        role=Role(row.role),
        may_download_video=bool(row.may_download_video),
        password_hash=row.password_hash,
        session_epoch=row.session_epoch,
    )


_POSITION_ATTEMPTS = 8


class _PositionTaken(Exception):
    """A concurrent registration took the position this one counted."""


def _insert(connection: AsyncConnection, table: sa.Table) -> Any:
    """The dialect's INSERT, which knows ``ON CONFLICT`` (SQLite and PostgreSQL alike)."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


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
                        session_epoch=agent.session_epoch,
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True

    async def set_password_hash(
        self, work_no: int, password_hash: str, *, session_epoch: str | None = None
    ) -> bool:
        values = {"password_hash": password_hash}
        if session_epoch is not None:
            values["session_epoch"] = session_epoch
        return await self._update(work_no, values)

    async def set_session_epoch(self, work_no: int, session_epoch: str) -> bool:
        return await self._update(work_no, {"session_epoch": session_epoch})

    async def _update(self, work_no: int, values: dict[str, str]) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                agents.update().where(agents.c.work_no == work_no).values(**values)
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


class SqlCatalogStore:
    """Conferences, their participants, their recordings in order, and each recording's files."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get_conference(self, conference_id: str) -> ConferenceRecord | None:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(conferences).where(conferences.c.conference_id == conference_id)
                )
            ).first()
            if row is None:
                return None
            return await self._conference(connection, row)

    async def get_visible_conference(
        self, conference_id: str, viewer: ConferenceViewer
    ) -> ConferenceRecord | None:
        # Mirrors recordings/access.py sees_conference (keep the two in step): a participant
        # sees the conference, an inspector every conference of their VDN. The viewer is bound
        # as parameters, so an absent and an invisible conference run this one same statement.
        is_participant = (
            sa.exists()
            .where(participants.c.conference_id == conferences.c.conference_id)
            .where(participants.c.work_no == sa.bindparam("viewer_work_no", viewer.work_no))
        )
        inspects_vdn = conferences.c.vdn == sa.bindparam(
            "viewer_inspected_vdn", viewer.inspected_vdn, type_=sa.Integer
        )  # NULL for an agent who is no inspector: never true
        query = (
            sa.select(conferences)
            .where(conferences.c.conference_id == conference_id)
            .where(sa.or_(is_participant, inspects_vdn))
        )
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
            if row is None:
                return None
            return await self._conference(connection, row)

    async def list_conferences(self) -> list[ConferenceRecord]:
        async with self._engine.connect() as connection:
            rows = (
                await connection.execute(
                    sa.select(conferences).order_by(conferences.c.conference_id)
                )
            ).all()
            return [await self._conference(connection, row) for row in rows]

    async def add_recording(
        self, conference: ConferenceRecord, recording: RecordingRecord
    ) -> RecordingRecord:
        for _ in range(_POSITION_ATTEMPTS):
            try:
                return await self._add_recording(conference, recording)
            except _PositionTaken:
                continue  # another registration took the next position first: count again
        raise ValueError(f"conference {conference.conference_id} is busy: try again")

    async def _add_recording(
        self, conference: ConferenceRecord, recording: RecordingRecord
    ) -> RecordingRecord:
        async with self._engine.begin() as connection:
            await self._upsert_conference(connection, conference)
            last = (
                await connection.execute(
                    sa.select(sa.func.max(recordings.c.position)).where(
                        recordings.c.conference_id == conference.conference_id
                    )
                )
            ).scalar()
            position = 0 if last is None else int(last) + 1
            try:
                await connection.execute(
                    recordings.insert().values(
                        record_id=recording.record_id,
                        conference_id=conference.conference_id,
                        position=position,
                        created_ms=recording.created_ms,
                        announced_ms=recording.announced_ms,
                    )
                )
            except sa.exc.IntegrityError:
                if await self._record_exists(recording.record_id):
                    raise ValueError(f"recording {recording.record_id} already exists") from None
                raise _PositionTaken from None
            for media in recording.files:
                await connection.execute(
                    media_files.insert().values(
                        record_id=recording.record_id,
                        file_type=int(media.file_type),
                        source=media.source,
                        size=media.size,
                        media_type=media.media_type,
                        mtime_ns=media.mtime_ns,
                        sha256=media.sha256,
                        **facts_columns(media.facts),
                    )
                )
        return dataclasses.replace(
            recording, conference_id=conference.conference_id, position=position
        )

    async def _record_exists(self, record_id: str) -> bool:
        async with self._engine.connect() as connection:
            found = await connection.scalar(
                sa.select(recordings.c.record_id).where(recordings.c.record_id == record_id)
            )
        return found is not None

    async def remove_conference(self, conference_id: str) -> bool:
        async with self._engine.begin() as connection:
            ids = sa.select(recordings.c.record_id).where(
                recordings.c.conference_id == conference_id
            )
            await connection.execute(media_files.delete().where(media_files.c.record_id.in_(ids)))
            await connection.execute(
                recordings.delete().where(recordings.c.conference_id == conference_id)
            )
            await connection.execute(
                participants.delete().where(participants.c.conference_id == conference_id)
            )
            result = await connection.execute(
                conferences.delete().where(conferences.c.conference_id == conference_id)
            )
        return result.rowcount == 1

    async def remove_recording(self, record_id: str) -> bool:
        async with self._engine.begin() as connection:
            await connection.execute(
                media_files.delete().where(media_files.c.record_id == record_id)
            )
            result = await connection.execute(
                recordings.delete().where(recordings.c.record_id == record_id)
            )
        return result.rowcount == 1

    async def claim_unannounced(self, now_ms: int) -> list[RecordingRecord]:
        async with self._engine.begin() as connection:
            rows = await _claim(connection, recordings, now_ms)
        return [
            RecordingRecord(
                record_id=row.record_id,
                conference_id=row.conference_id,
                position=row.position,
                created_ms=row.created_ms,
                announced_ms=now_ms,
            )
            for row in rows
        ]

    @staticmethod
    async def _upsert_conference(connection: AsyncConnection, conference: ConferenceRecord) -> None:
        # The first registration defines the conference; later ones add to it. Insert-or-nothing,
        # then lock the row: concurrent registrations into one new conference take turns.
        await connection.execute(
            _insert(connection, conferences)
            .values(
                conference_id=conference.conference_id,
                vdn=conference.vdn,
                call_id=conference.call_id,
                started_ms=conference.started_ms,
                ended_ms=conference.ended_ms,
                location_id=conference.location_id,
                caller=conference.caller,
                called=conference.called,
            )
            .on_conflict_do_nothing(index_elements=[conferences.c.conference_id])
        )
        where = conferences.c.conference_id == conference.conference_id
        vdn = await connection.scalar(sa.select(conferences.c.vdn).where(where).with_for_update())
        if vdn is not None and vdn != conference.vdn:
            raise ValueError(
                f"conference {conference.conference_id} is in VDN {vdn}, not {conference.vdn}"
            )
        known = set(
            (
                await connection.execute(
                    sa.select(participants.c.work_no).where(
                        participants.c.conference_id == conference.conference_id
                    )
                )
            ).scalars()
        )
        for work_no in sorted(conference.participants - known):
            await connection.execute(
                _insert(connection, participants)
                .values(conference_id=conference.conference_id, work_no=work_no)
                .on_conflict_do_nothing()
            )

    @staticmethod
    async def _conference(connection: AsyncConnection, row: sa.Row[Any]) -> ConferenceRecord:
        conference_id = row.conference_id
        members = frozenset(
            (
                await connection.execute(
                    sa.select(participants.c.work_no).where(
                        participants.c.conference_id == conference_id
                    )
                )
            ).scalars()
        )
        recording_rows = (
            await connection.execute(
                sa.select(recordings)
                .where(recordings.c.conference_id == conference_id)
                .order_by(recordings.c.position)
            )
        ).all()
        file_rows = (
            await connection.execute(
                sa.select(media_files)
                .join(recordings, recordings.c.record_id == media_files.c.record_id)
                .where(recordings.c.conference_id == conference_id)
                .order_by(media_files.c.file_type)
            )
        ).all()
        files: dict[str, list[MediaFileRecord]] = {}
        for f in file_rows:
            files.setdefault(f.record_id, []).append(
                MediaFileRecord(
                    record_id=f.record_id,
                    file_type=FileType(f.file_type),
                    source=f.source,
                    size=f.size,
                    media_type=f.media_type,
                    mtime_ns=f.mtime_ns,
                    sha256=f.sha256,
                    facts=facts_of_row(f._mapping),
                )
            )
        return ConferenceRecord(
            conference_id=conference_id,
            vdn=row.vdn,
            call_id=row.call_id,
            started_ms=row.started_ms,
            ended_ms=row.ended_ms,
            participants=members,
            location_id=row.location_id,
            caller=row.caller,
            called=row.called,
            recordings=tuple(
                RecordingRecord(
                    record_id=r.record_id,
                    conference_id=conference_id,
                    position=r.position,
                    created_ms=r.created_ms,
                    files=tuple(files.get(r.record_id, ())),
                    announced_ms=r.announced_ms,
                )
                for r in recording_rows
            ),
        )


class SqlAuditEventStore:
    """``audit_events``: shipped events, inserted idempotently by (writer, seq)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, rows: Sequence[AuditEventRow]) -> None:
        if not rows:
            return
        async with self._engine.begin() as connection:
            statement = _insert(connection, audit_events).on_conflict_do_nothing(
                index_elements=["writer", "seq"]
            )
            await connection.execute(statement, [dict(vars(row)) for row in rows])

    async def last_writer(self, low: str, below: str) -> str | None:
        query = sa.select(sa.func.max(audit_events.c.writer)).where(
            audit_events.c.writer >= low, audit_events.c.writer < below
        )
        async with self._engine.connect() as connection:
            found = (await connection.execute(query)).scalar()
        return None if found is None else str(found)

    async def open_starts(self, writer: str) -> list[str]:
        ends = audit_events.alias("ends")
        query = (
            sa.select(audit_events.c.body)
            .where(
                audit_events.c.writer == writer,
                audit_events.c.name == "start",
                ~sa.exists().where(
                    ends.c.writer == writer,
                    ends.c.name == "end",
                    ends.c.start_seq == audit_events.c.seq,
                ),
            )
            .order_by(audit_events.c.seq)
        )
        async with self._engine.connect() as connection:
            return [str(body) for body in (await connection.execute(query)).scalars()]

    async def interrupted_ends(self, start_seqs: Sequence[int], low: str, below: str) -> list[str]:
        if not start_seqs:
            return []
        query = sa.select(audit_events.c.body).where(
            audit_events.c.writer >= low,
            audit_events.c.writer < below,
            audit_events.c.name == "end",
            audit_events.c.outcome == "interrupted",
            audit_events.c.start_seq.in_(list(start_seqs)),
        )
        async with self._engine.connect() as connection:
            return [str(body) for body in (await connection.execute(query)).scalars()]


class SqlFileStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def cached_digest(self, path: str, size: int, mtime_ns: int) -> str | None:
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(sa.select(file_digests).where(file_digests.c.path == path))
            ).first()
        if row is None or (row.size, row.mtime_ns) != (size, mtime_ns):
            return None
        return str(row.sha256)

    async def cache_digest(self, path: str, size: int, mtime_ns: int, sha256: str) -> None:
        """One upsert: two nodes caching the same path at once both succeed."""
        values = {"size": size, "mtime_ns": mtime_ns, "sha256": sha256}
        async with self._engine.begin() as connection:
            insert = _insert(connection, file_digests).values(path=path, **values)
            await connection.execute(
                insert.on_conflict_do_update(index_elements=[file_digests.c.path], set_=values)
            )

    async def add_recording(self, recording: FileRecordingRecord) -> bool:
        values = dataclasses.asdict(recording)
        values["participants"] = ",".join(str(p) for p in sorted(recording.participants))
        try:
            async with self._engine.begin() as connection:
                await connection.execute(file_recordings.insert().values(**values))
        except sa.exc.IntegrityError:
            return False
        return True

    async def find_by_call(self, call_id: str, media: int) -> list[FileRecordingRecord]:
        async with self._engine.connect() as connection:
            rows = (
                await connection.execute(
                    sa.select(file_recordings)
                    .where(file_recordings.c.call_id == call_id)
                    .where(file_recordings.c.media == media)
                    .order_by(file_recordings.c.created_ms)
                )
            ).all()
        return [_file_recording(row) for row in rows]

    async def registrations(self, file_name: str) -> list[FileRecordingRecord]:
        async with self._engine.connect() as connection:
            rows = (
                await connection.execute(
                    sa.select(file_recordings)
                    .where(file_recordings.c.file_name == file_name)
                    .order_by(file_recordings.c.created_ms.desc(), file_recordings.c.record_id)
                )
            ).all()
        return [_file_recording(row) for row in rows]

    async def claim_unannounced(self, now_ms: int) -> list[FileRecordingRecord]:
        async with self._engine.begin() as connection:
            rows = await _claim(connection, file_recordings, now_ms)
        return [dataclasses.replace(_file_recording(row), announced_ms=now_ms) for row in rows]


async def _claim(connection: AsyncConnection, table: sa.Table, now_ms: int) -> list[sa.Row[Any]]:
    """Rows not yet announced, each marked announced by this call only if no other call won it."""
    rows = (
        await connection.execute(
            sa.select(table)
            .where(table.c.announced_ms.is_(None))
            .order_by(table.c.created_ms, table.c.record_id)
        )
    ).all()
    claimed = []
    for row in rows:
        result = await connection.execute(
            table.update()
            .where(table.c.record_id == row.record_id)
            .where(table.c.announced_ms.is_(None))
            .values(announced_ms=now_ms)
        )
        if result.rowcount == 1:
            claimed.append(row)
    return claimed


def _file_recording(row: sa.Row[Any]) -> FileRecordingRecord:
    return FileRecordingRecord(
        record_id=row.record_id,
        file_name=row.file_name,
        call_id=row.call_id,
        location_id=row.location_id,
        media=row.media,
        agent_id=row.agent_id,
        participants=frozenset(int(p) for p in row.participants.split(",") if p),
        created_ms=row.created_ms,
        announced_ms=row.announced_ms,
    )


class SqlAuditEventReader:
    """Reads ``audit_events`` (``AuditEventReader``): transfers as one line, or raw events.

    A transfer's ``start`` is joined to the ``end`` of its writer whose ``start_seq`` is its
    ``seq``; failing that, to the ``interrupted`` end a later run wrote for it, whose body names
    the start's writer (``fields.startWriter``: the table has no column of it).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def lines(self, query: AuditQuery) -> list[AuditLine]:
        start, ended, closed = (audit_events.alias(name) for name in ("s", "e", "i"))
        # '"startWriter":"<writer>"' inside the interrupted end's body (LIKE, wildcards escaped)
        written_by = sa.literal('%"startWriter":"') + _like_escaped(start.c.writer) + '"%'
        select = (
            sa.select(
                start.c.writer,
                start.c.seq,
                start.c.body,
                ended.c.body.label("end_body"),
                closed.c.body.label("closed_body"),
            )
            .select_from(
                start.outerjoin(
                    ended,
                    sa.and_(
                        ended.c.writer == start.c.writer,
                        ended.c.start_seq == start.c.seq,
                        ended.c.name == _END,
                    ),
                ).outerjoin(
                    closed,
                    sa.and_(
                        closed.c.start_seq == start.c.seq,
                        closed.c.name == _END,
                        closed.c.outcome == _INTERRUPTED,
                        closed.c.writer != start.c.writer,
                        closed.c.body.like(written_by, escape="!"),
                    ),
                )
            )
            .where(start.c.name != _END)
        )
        select = _filtered(select, start, query, outcome=None)
        if query.outcome == OPEN:
            select = select.where(start.c.name == _START, ended.c.writer.is_(None))
            select = select.where(closed.c.writer.is_(None))
        elif query.outcome is not None:
            outcome = sa.func.coalesce(ended.c.outcome, closed.c.outcome)
            select = select.where(outcome == query.outcome)
        select = select.order_by(start.c.time_ms.desc(), start.c.writer, start.c.seq.desc()).limit(
            query.limit
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(select)).all()
        lines: dict[tuple[str, int], AuditLine] = {}  # an event once, however many joins
        for row in rows:
            if (row.writer, row.seq) not in lines:
                end = row.end_body if row.end_body is not None else row.closed_body
                lines[(row.writer, row.seq)] = AuditLine(body=row.body, end=end)
        return list(lines.values())

    async def events(self, query: AuditQuery) -> list[str]:
        table = audit_events
        select = _filtered(sa.select(table.c.body), table, query, outcome=query.outcome)
        select = select.order_by(table.c.time_ms.desc(), table.c.writer, table.c.seq.desc())
        async with self._engine.connect() as connection:
            return list((await connection.execute(select.limit(query.limit))).scalars())


_START, _END, _INTERRUPTED = "start", "end", "interrupted"
_Selected = TypeVar("_Selected", bound=sa.Select[Any])


def _filtered(
    select: _Selected, table: sa.FromClause, query: AuditQuery, *, outcome: str | None
) -> _Selected:
    if query.agent_id is not None:
        select = select.where(table.c.agent_id == query.agent_id)
    if query.conference_id is not None:
        select = select.where(table.c.conference_id == query.conference_id)
    if query.kind is not None:
        select = select.where(table.c.kind == query.kind)
    if query.since_ms is not None:
        select = select.where(table.c.time_ms >= query.since_ms)
    if outcome is not None:
        select = select.where(table.c.outcome == outcome)
    return select


def _like_escaped(column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """``column`` matched literally by LIKE ... ESCAPE '!' (a node name may hold ``_``)."""
    for special in ("!", "%", "_"):
        column = sa.func.replace(column, special, "!" + special)
    return column
