"""The composition root: settings, clock, directory, sessions, events, sources, catalog, files,
audit, flow control and the download service, assembled once.

``open_gateway`` is the one place that picks concrete backends: the database from
``DATABASE_URL`` (SQLite or PostgreSQL, one SQL code), sessions with event queues and sign-in
lockouts from ``SESSIONS_URL`` (process memory or Redis), and the media sources' options
(timeouts, retries, S3 endpoint and keys) from the settings. The web layer and the CLI only see
the ``Gateway``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from ccgateway.agents.directory import AgentDirectory
from ccgateway.audit.recorder import Recorder
from ccgateway.audit.trail import Auditor
from ccgateway.config import Settings
from ccgateway.node.clock import Clock, SystemClock
from ccgateway.node.limits import FlowControl
from ccgateway.recordings.announcements import Announcer
from ccgateway.recordings.catalog import Catalog
from ccgateway.recordings.downloads import Downloads
from ccgateway.recordings.fileserver import FileServer
from ccgateway.sessions import pollrule
from ccgateway.sessions.lockout import Lockout, LockoutRule
from ccgateway.sessions.manager import SessionManager, guid_key_id
from ccgateway.sources import Sources
from ccgateway.sources.http import HttpOptions
from ccgateway.sources.s3 import S3Config
from ccgateway.stores.base import AuditEventReader, EventBus, LockoutStore, SessionStore
from ccgateway.stores.memory import MemoryEventBus, MemorySessionStore
from ccgateway.stores.memory_lockouts import MemoryLockoutStore
from ccgateway.stores.schema import open_engine
from ccgateway.stores.sql import (
    SqlAgentStore,
    SqlAuditEventReader,
    SqlAuditEventStore,
    SqlCatalogStore,
    SqlFileStore,
)


@dataclass(frozen=True)
class Gateway:
    settings: Settings
    clock: Clock
    agents: AgentDirectory
    sessions: SessionManager
    events: EventBus
    sources: Sources
    catalog: Catalog
    files: FileServer
    auditor: Auditor
    flow: FlowControl
    downloads: Downloads
    lockout: Lockout
    audit_reader: AuditEventReader  # the trail as read (ccgateway audit, the admin API)


@asynccontextmanager
async def open_gateway(
    settings: Settings,
    clock: Clock | None = None,
    *,
    node: bool = False,
    recorder: Recorder | None = None,
) -> AsyncIterator[Gateway]:
    """The gateway's services. ``node``: this process serves (``ccgateway serve``): its audit
    writer is the node's run, journaled under ``DATA_DIR/audit/``, and it first recovers the
    earlier runs' journals; otherwise (the CLI) a CLI writer, journaled in a temporary directory
    and shipped before this returns (docs/audit.md). ``recorder``: where the session, security
    and admin events go instead of that writer (tests)."""
    clock = clock or SystemClock()
    async with AsyncExitStack() as stack:
        sources = Sources(http=_http_options(settings), s3=_s3_config(settings))
        stack.push_async_callback(sources.aclose)
        engine = await open_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        session_store, events, lockouts = await _open_sessions(settings, stack)
        directory = AgentDirectory(SqlAgentStore(engine), max_waiting=settings.signin_queue_max)
        stack.callback(directory.close)
        lockout = Lockout(LockoutRule.from_settings(settings), clock, lockouts)
        flow = FlowControl(settings)
        events_store = SqlAuditEventStore(engine)
        if node:
            root = settings.data_dir / "audit"
            auditor = Auditor.for_node(root, settings.node_name, clock, events_store)
        else:
            auditor = Auditor.for_cli(clock, events_store)
        auditor.run(recover=node)
        stack.push_async_callback(auditor.aclose)  # drained before the engine closes
        recorder = recorder or auditor
        sessions = SessionManager(
            settings,
            clock,
            directory,
            session_store,
            events,
            lockout=lockout,
            budget=flow.agents,
            recorder=recorder,
        )
        announcer = Announcer(events, clock, sessions.is_signed_in)
        catalog = Catalog(SqlCatalogStore(engine), sources, announcer, clock, recorder=recorder)
        files = FileServer(
            settings, SqlFileStore(engine), sources, announcer, clock, recorder=recorder
        )
        downloads = Downloads(settings, sessions, directory, catalog, files, sources, auditor, flow)
        yield Gateway(
            settings,
            clock,
            directory,
            sessions,
            events,
            sources,
            catalog,
            files,
            auditor,
            flow,
            downloads,
            lockout,
            SqlAuditEventReader(engine),
        )


async def _open_sessions(
    settings: Settings, stack: AsyncExitStack
) -> tuple[SessionStore, EventBus, LockoutStore]:
    url = settings.sessions_url
    if url == "memory://":
        events = MemoryEventBus()
        return MemorySessionStore(events, pollrule.decide), events, MemoryLockoutStore()
    from ccgateway.stores.redis import RedisEventBus, RedisSessionStore, open_redis
    from ccgateway.stores.redis.lockouts import RedisLockoutStore

    client = await open_redis(url)
    stack.push_async_callback(client.aclose)
    bus = RedisEventBus(client)
    stack.push_async_callback(bus.aclose)
    # The store tags its sessions with the GUID key's id: those of another key are no session.
    store = RedisSessionStore(client, bus, key_id=guid_key_id(settings.guid_digest_key))
    return store, bus, RedisLockoutStore(client, bus.keys)


def _http_options(settings: Settings) -> HttpOptions:
    return HttpOptions(
        connect_timeout_s=settings.source_connect_timeout_ms / 1000,
        read_timeout_s=settings.source_read_timeout_ms / 1000,
        retries=settings.source_retries,
    )


def _s3_config(settings: Settings) -> S3Config:
    return S3Config(
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
        connect_timeout_s=settings.source_connect_timeout_ms / 1000,
        read_timeout_s=settings.source_read_timeout_ms / 1000,
        retries=settings.source_retries,
    )
