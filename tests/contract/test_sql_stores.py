"""The SQL stores behave the same on SQLite and PostgreSQL (one code, two engines)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from ccgateway import retcodes
from ccgateway.audit.events import parse
from ccgateway.audit.trail import Auditor
from ccgateway.errors import GatewayError
from ccgateway.node.clock import ManualClock
from ccgateway.recordings.announcements import Announcer
from ccgateway.recordings.catalog import Catalog, Registration
from ccgateway.sources import Sources
from ccgateway.stores.base import (
    AgentRecord,
    AuditEventRow,
    ConferenceRecord,
    FileRecordingRecord,
    FileType,
    MediaFileRecord,
    RecordingRecord,
    Role,
)
from ccgateway.stores.facts import MediaFacts, MediaState
from ccgateway.stores.memory import MemoryEventBus
from ccgateway.stores.schema import audit_events, metadata, open_engine
from ccgateway.stores.sql import (
    SqlAgentStore,
    SqlAuditEventStore,
    SqlCatalogStore,
    SqlFileStore,
)

POSTGRES_URL = os.environ.get("CCGW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        sqlite = await open_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
        yield sqlite
        await sqlite.dispose()
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = await _postgres_admin()
    async with admin.begin() as connection:
        await connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        postgres = await open_engine(POSTGRES_URL, search_path=schema)
        yield postgres
        await postgres.dispose()
    finally:
        async with admin.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def _postgres_admin() -> AsyncEngine:
    from sqlalchemy.ext.asyncio import create_async_engine

    from ccgateway.stores.schema import async_url

    admin = create_async_engine(async_url(POSTGRES_URL))
    try:
        async with admin.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
    except (OSError, sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        await admin.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required under CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    return admin


async def test_migrated_schema_matches_the_metadata(engine: AsyncEngine) -> None:
    def differences(connection: sa.Connection) -> list[object]:
        context = MigrationContext.configure(connection)
        return list(compare_metadata(context, metadata))

    async with engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_migrating_twice_is_harmless_and_head_is_known(engine: AsyncEngine) -> None:
    from alembic.script import ScriptDirectory

    from ccgateway.stores.schema import HEAD_REVISION, migrate

    async with engine.begin() as connection:
        assert await connection.run_sync(migrate) == HEAD_REVISION
    migrations = Path(__file__).parents[2] / "src" / "ccgateway" / "stores" / "migrations"
    assert ScriptDirectory(str(migrations)).get_current_head() == HEAD_REVISION


async def test_agents(engine: AsyncEngine) -> None:
    store = SqlAgentStore(engine)
    agent = AgentRecord(101, "Alice", 2, Role.INSPECTOR, False, "$argon2id$x")
    assert await store.add(agent)
    assert not await store.add(agent)
    assert await store.get(101) == agent
    assert await store.set_password_hash(101, "h2")
    assert (await store.get(101) or agent).password_hash == "h2"
    assert [a.work_no for a in await store.list()] == [101]
    assert await store.remove(101) and not await store.remove(101)


def media(record_id: str, file_type: FileType) -> MediaFileRecord:
    return MediaFileRecord(
        record_id,
        file_type,
        f"/m/{record_id}",
        5 * 2**30,
        "video/mp4",
        1_700_000_000_123_456_789,
        "ab" * 32,
    )


async def test_catalog(engine: AsyncEngine) -> None:
    store = SqlCatalogStore(engine)
    conference = ConferenceRecord("c1", 3, "1-2", 10, 20, frozenset({101, 102}), "255", "a", "b")
    first = await store.add_recording(
        conference,
        RecordingRecord("r1", "c1", 0, 100, (media("r1", FileType.HD), media("r1", FileType.AUX))),
    )
    second = await store.add_recording(
        ConferenceRecord("c1", 3, "other", None, None, frozenset({103})),
        RecordingRecord("r2", "c1", 0, 200, (media("r2", FileType.SD),)),
    )
    with pytest.raises(ValueError, match="is in VDN 3, not 9"):  # L11: no silent other VDN
        await store.add_recording(
            ConferenceRecord("c1", 9, "", None, None, frozenset({104})),
            RecordingRecord("r9", "c1", 0, 300),
        )
    assert (first.position, second.position) == (0, 1)
    with pytest.raises(ValueError, match="already exists"):
        await store.add_recording(conference, RecordingRecord("r1", "c1", 0, 1))
    found = await store.get_conference("c1")
    assert found is not None
    assert (found.vdn, found.call_id, found.participants) == (3, "1-2", frozenset({101, 102, 103}))
    assert [r.record_id for r in found.recordings] == ["r1", "r2"]
    assert found.recordings[0].files == (media("r1", FileType.HD), media("r1", FileType.AUX))
    claimed = await store.claim_unannounced(500)
    assert [r.record_id for r in claimed] == ["r1", "r2"]
    assert await store.claim_unannounced(600) == []
    assert await store.remove_recording("r1")
    assert [c.conference_id for c in await store.list_conferences()] == ["c1"]
    assert await store.remove_conference("c1") and await store.get_conference("c1") is None


@contextlib.contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements ``engine`` runs inside the block, as sent (parameters bound apart)."""
    seen: list[str] = []

    def record(*args: object) -> None:
        seen.append(str(args[2]))  # (connection, cursor, statement, parameters, context, many)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", record)


def agent(work_no: int, vdn: int = 1, role: Role = Role.AGENT) -> AgentRecord:
    return AgentRecord(work_no, "", vdn, role, True, "")


async def not_signed_in(agent_id: int) -> bool:
    return False


async def test_m4_an_invisible_conference_costs_what_an_absent_one_does(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Issue 14, M4: a foreign conference answered 108-005 after loading it whole (4 queries),
    an unknown id after 1, so ids could be probed by timing. Now both run the same one statement
    (and are cached alike: a second ask runs none for either)."""
    store = SqlCatalogStore(engine)
    await store.add_recording(
        ConferenceRecord("theirs", 2, "", None, None, frozenset({103})),
        RecordingRecord("r1", "theirs", 0, 1, (media("r1", FileType.HD),)),
    )
    announcer = Announcer(MemoryEventBus(), ManualClock(), not_signed_in)
    catalog = Catalog(store, Sources(), announcer, ManualClock())
    for asker in (agent(104), agent(201, vdn=1, role=Role.INSPECTOR)):
        for attempt in ("first", "cached"):
            runs: dict[str, list[str]] = {}
            for conference_id in ("theirs", "nobody-has-this-one"):
                with statements(engine) as seen, pytest.raises(GatewayError) as refused:
                    await catalog.select(asker, conference_id, None, FileType.HD)
                assert refused.value.retcode is retcodes.NO_SUCH_CONFERENCE
                runs[conference_id] = seen
            assert runs["theirs"] == runs["nobody-has-this-one"], (asker, attempt)
            assert len(runs["theirs"]) == (1 if attempt == "first" else 0), (asker, attempt)
    for asker in (agent(103, vdn=7), agent(202, vdn=2, role=Role.INSPECTOR)):
        selected = await catalog.select(asker, "theirs", None, FileType.HD)
        assert selected.recording.record_id == "r1" and selected.media.file_type is FileType.HD
    # a registration is seen at once by whoever was told "none" a moment ago (cache forgotten)
    hd = tmp_path / "hd.mp4"
    hd.write_bytes(b"x" * 100)
    await catalog.register(
        Registration("nobody-has-this-one", "r2", frozenset({104}), {FileType.HD: str(hd)}, vdn=1)
    )
    selected = await catalog.select(agent(104), "nobody-has-this-one", None, FileType.HD)
    assert selected.recording.record_id == "r2"


async def test_m4_the_visibility_query_mirrors_the_access_rule(engine: AsyncEngine) -> None:
    """Issue 14, M4: ``get_visible_conference`` answers exactly what ``may_see_conference``
    (recordings/access.py) allows, for one table of askers and conferences."""
    from ccgateway.recordings.access import conference_viewer, may_see_conference
    from ccgateway.stores.base import ConferenceViewer

    store = SqlCatalogStore(engine)
    conferences = [
        ConferenceRecord("vdn1", 1, "", None, None, frozenset({101, 102})),
        ConferenceRecord("vdn2", 2, "", None, None, frozenset({103})),
    ]
    for conference in conferences:
        await store.add_recording(
            conference,
            RecordingRecord(f"r-{conference.conference_id}", conference.conference_id, 0, 1),
        )
    askers = [
        agent(101),
        agent(102, vdn=9),  # a participant, whatever their VDN
        agent(103, vdn=2),
        agent(104),  # same VDN, neither participant nor inspector
        agent(201, role=Role.INSPECTOR),
        agent(202, vdn=2, role=Role.INSPECTOR),
        agent(101, vdn=2, role=Role.INSPECTOR),  # participant of one, inspector of the other
    ]
    for asker in askers:
        for conference in conferences:
            found = await store.get_visible_conference(
                conference.conference_id, conference_viewer(asker)
            )
            assert (found is not None) is may_see_conference(asker, conference), (asker, conference)
            if found is not None:
                assert found.participants == conference.participants
    nobody = ConferenceViewer(999, None)
    assert await store.get_visible_conference("absent", nobody) is None


async def test_claims_are_exclusive_under_concurrency(engine: AsyncEngine) -> None:
    store = SqlCatalogStore(engine)
    for i in range(5):
        await store.add_recording(
            ConferenceRecord("c1", 1, "", None, None, frozenset({101})),
            RecordingRecord(f"r{i}", "c1", 0, i),
        )
    results = await asyncio.gather(
        *(SqlCatalogStore(engine).claim_unannounced(9) for _ in range(4)), return_exceptions=True
    )
    claimed = [r.record_id for result in results if isinstance(result, list) for r in result]
    assert sorted(claimed) == [f"r{i}" for i in range(5)]


async def test_m1_odd_header_bytes_never_cost_an_audit_record(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Issue 14, M1: undecodable header bytes reach the Auditor as surrogates, which both
    databases refused (the row was dropped); they are written as U+FFFD instead."""
    auditor = Auditor.for_node(tmp_path / "audit", "n0", ManualClock(), SqlAuditEventStore(engine))
    auditor.run(recover=False)
    attempt = auditor.begin("downloadRecordFile", "127.0.0.1\udcff", range="bytes=0-\udcff")
    attempt.record_id = "Y:/1/0/\udcc3(\x00.V3"
    attempt.conference_id = "c" * 100  # longer than its column: cut there, whole in the body
    auditor.finish(attempt)
    await auditor.aclose()
    async with engine.connect() as connection:
        rows = (await connection.execute(sa.select(audit_events))).all()
    assert [(row.name, row.outcome) for row in rows] == [("start", ""), ("end", "error")]
    start = parse(rows[0].body.encode())
    assert start.fields["range"] == "bytes=0-\ufffd" and start.client == "127.0.0.1\ufffd"
    assert start.concerns["record"] == "Y:/1/0/\ufffd(\ufffd.V3"
    assert rows[0].record_id == "Y:/1/0/\ufffd(\ufffd.V3" and rows[0].client == "127.0.0.1\ufffd"
    assert rows[0].conference_id == "c" * 64 and start.concerns["conference"] == "c" * 64
    assert not list((tmp_path / "audit").iterdir())  # all shipped: the journal is gone


def event_row(writer: str, seq: int, name: str, **fields: object) -> AuditEventRow:
    return AuditEventRow(
        writer,
        seq,
        1000 + seq,
        "download",
        name,
        101,
        "c1",
        "r1",
        str(fields.get("outcome", "")),
        fields.get("startSeq"),  # type: ignore[arg-type]
        "127.0.0.1",
        f'{{"seq":{seq},"writer":"{writer}","fields":{sorted(fields.items())!r}}}',
    )


async def test_audit_events_are_inserted_once_and_open_starts_found(engine: AsyncEngine) -> None:
    store = SqlAuditEventStore(engine)
    old, new = "n0@1700000000000", "n0@1700000000500"
    batch = [
        event_row(old, 1, "start"),
        event_row(old, 2, "start"),
        event_row(old, 3, "end", outcome="completed", startSeq=1),
        event_row(old, 4, "start"),
    ]
    await store.insert(batch)
    await store.insert(batch[1:])  # shipped again after a crash: nothing changes
    changed = dataclasses.replace(batch[0], body="changed")
    await store.insert([changed, event_row(new, 1, "end", outcome="interrupted", startSeq=4)])
    async with engine.connect() as connection:
        rows = (await connection.execute(sa.select(audit_events))).all()
    assert len(rows) == 5 and "changed" not in {row.body for row in rows}
    assert [s.split(",")[0] for s in await store.open_starts(old)] == ['{"seq":2', '{"seq":4']
    assert await store.last_writer("n0@0", "n0@1700000000600") == new
    assert await store.last_writer("n0@0", new) == old
    assert await store.last_writer("n1@0", "n1@:") is None
    (end,) = await store.interrupted_ends([2, 4], old, "n0@:")
    assert '"seq":1,"writer":"n0@1700000000500"' in end
    assert await store.interrupted_ends([2], old, "n0@:") == []


async def test_m5_concurrent_digest_caching_of_one_path_all_succeed(engine: AsyncEngine) -> None:
    """Issue 14, M5: DELETE then INSERT made concurrent first downloads answer 500 on PostgreSQL
    (``file_digests_pkey``); the cache is one upsert."""
    store = SqlFileStore(engine)
    await asyncio.gather(*(store.cache_digest("/same", 10, n, f"{n:02x}") for n in range(16)))
    assert await store.cached_digest("/same", 10, 0) in (None, "00")
    cached = [await store.cached_digest("/same", 10, n) for n in range(16)]
    assert sum(value is not None for value in cached) == 1


async def test_m5_concurrent_registrations_into_one_new_conference(engine: AsyncEngine) -> None:
    """Issue 14, M5: concurrent first registrations of one conference answered 500
    (``conferences_pkey``), and a position clash was reported as "already exists"."""
    store = SqlCatalogStore(engine)
    conference = ConferenceRecord("new-conf", 1, "call", None, None, frozenset({101, 102}))

    def recording(n: int) -> RecordingRecord:
        return RecordingRecord(f"rec-{n}", "new-conf", 0, n)

    added = await asyncio.gather(*(store.add_recording(conference, recording(n)) for n in range(8)))
    assert sorted(r.position for r in added) == list(range(8))
    stored = await store.get_conference("new-conf")
    assert stored is not None and len(stored.recordings) == 8
    assert stored.participants == frozenset({101, 102})
    with pytest.raises(ValueError, match="already exists"):
        await store.add_recording(conference, recording(3))


async def test_file_store(engine: AsyncEngine) -> None:
    store = SqlFileStore(engine)
    assert await store.cached_digest("/a", 1, 2) is None
    await store.cache_digest("/a", 1, 2, "ff")
    await store.cache_digest("/a", 1, 3, "ee")
    assert await store.cached_digest("/a", 1, 3) == "ee"
    assert await store.cached_digest("/a", 1, 2) is None
    recording = FileRecordingRecord(
        "r1", "Y:/1/0/20201202/101/1.mp4", "1-2", "65535", 2, 101, frozenset({101, 102}), 5
    )
    assert await store.add_recording(recording) and not await store.add_recording(recording)
    assert await store.find_by_call("1-2", 2) == [recording]
    assert await store.find_by_call("1-2", 1) == []
    assert await store.registrations("Y:/1/0/20201202/101/1.mp4") == [recording]
    assert await store.registrations("Y:/1/0/20201202/101/2.mp4") == []
    assert [r.record_id for r in await store.claim_unannounced(9)] == ["r1"]


async def test_catalog_keeps_each_files_probed_facts(engine: AsyncEngine) -> None:
    store = SqlCatalogStore(engine)
    ready = MediaFacts(
        MediaState.READY,
        size=5 * 2**30,
        container="mov,mp4,m4a,3gp,3g2,mj2",
        media_type="video/mp4",
        duration_s=3725.042,
        width=1280,
        height=720,
        video_codec="h264",
        audio_codec="aac",
        fast_start=True,
    )
    damaged = MediaFacts(
        MediaState.DAMAGED, "not a media file FFmpeg can open (Invalid data)", size=5 * 2**30
    )
    files = (
        dataclasses.replace(media("rp", FileType.HD), facts=ready),
        dataclasses.replace(media("rp", FileType.SD), facts=damaged),
        media("rp", FileType.AUX),  # not probed: no facts
    )
    await store.add_recording(
        ConferenceRecord("cp", 1, "", None, None, frozenset({101})),
        RecordingRecord("rp", "cp", 0, 100, files),
    )
    found = await store.get_conference("cp")
    assert found is not None
    assert found.recordings[0].files == files
