"""The core, assembled: settings, clock, directory, sessions and events, over opened stores.

``open_gateway`` is the one place that picks concrete backends; the web layer and the CLI only
see the ``Gateway`` it yields.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ccgateway.agents import AgentDirectory
from ccgateway.audit import Auditor
from ccgateway.catalog import Catalog
from ccgateway.clock import Clock, SystemClock
from ccgateway.config import Settings
from ccgateway.sessions import SessionManager
from ccgateway.stores.base import EventBus
from ccgateway.stores.memory import MemoryEventBus, MemorySessionStore
from ccgateway.stores.schema import open_engine
from ccgateway.stores.sql import SqlAgentStore, SqlAuditStore, SqlCatalogStore


@dataclass(frozen=True)
class Gateway:
    settings: Settings
    clock: Clock
    agents: AgentDirectory
    sessions: SessionManager
    events: EventBus
    catalog: Catalog
    auditor: Auditor


@asynccontextmanager
async def open_gateway(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Gateway]:
    clock = clock or SystemClock()
    engine = await open_engine(settings.database_url)
    try:
        directory = AgentDirectory(SqlAgentStore(engine))
        events = MemoryEventBus()
        sessions = SessionManager(settings, clock, directory, MemorySessionStore(), events)
        catalog = Catalog(SqlCatalogStore(engine), events, clock, sessions.is_signed_in)
        auditor = Auditor(SqlAuditStore(engine), clock, settings.node_name)
        yield Gateway(settings, clock, directory, sessions, events, catalog, auditor)
    finally:
        await engine.dispose()
