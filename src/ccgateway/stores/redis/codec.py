"""How sessions and events are written in Redis: a session as hash fields, an event as JSON.

``attributes`` and ``retired`` travel as JSON: values must be JSON-serialisable, and they come
back as JSON gives them (tuples as lists, mappings as dicts). ``guid`` and the GUIDs of
``retired`` are digests (``SessionRecord``). The store adds one field of its own, ``key_id``
(``RedisSessionStore``): a hash without it, or with another, is no session.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ccgateway.stores.base import Event, SessionRecord


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def session_fields(session: SessionRecord, version: int) -> list[str | int]:
    """The hash's fields and values, flat, with ``version`` as the version."""
    fields: dict[str, str | int] = {
        "agent_id": session.agent_id,
        "guid": session.guid,
        "guid_issued_ms": session.guid_issued_ms,
        "signed_in_ms": session.signed_in_ms,
        "last_seen_ms": session.last_seen_ms,
        "node": session.node,
        "retired": dumps([[guid, until] for guid, until in session.retired]),
        "version": version,
        "attributes": dumps(dict(session.attributes)),
        "credential": session.credential,
    }
    return [item for pair in fields.items() for item in pair]


def session_from(raw: Mapping[bytes | str, bytes | str]) -> SessionRecord:
    fields = {text(k): text(v) for k, v in raw.items()}
    retired = json.loads(fields["retired"])
    return SessionRecord(
        agent_id=int(fields["agent_id"]),
        guid=fields["guid"],
        guid_issued_ms=int(fields["guid_issued_ms"]),
        signed_in_ms=int(fields["signed_in_ms"]),
        last_seen_ms=int(fields["last_seen_ms"]),
        node=fields["node"],
        retired=tuple((str(guid), int(until)) for guid, until in retired),
        version=int(fields["version"]),
        attributes=json.loads(fields["attributes"]),
        credential=fields.get("credential", ""),
    )


def stored_session(raw: Mapping[bytes | str, bytes | str], key_id: str) -> SessionRecord | None:
    """The session a hash holds, or None: none, or one without ``key_id`` (written under
    another GUID key, or by an older version)."""
    fields: dict[bytes | str, bytes | str] = {text(k): text(v) for k, v in raw.items()}
    if not fields or fields.get("key_id") != key_id:
        return None
    return session_from(fields)


def event_json(event: Event) -> str:
    return dumps(
        {
            "event_type": event.event_type,
            "work_no": event.work_no,
            "content": None if event.content is None else dict(event.content),
            "gen_time_ms": event.gen_time_ms,
        }
    )


def event_from(raw: bytes | str) -> Event:
    data = json.loads(raw)
    return Event(
        event_type=data["event_type"],
        work_no=int(data["work_no"]),
        content=data["content"],
        gen_time_ms=int(data["gen_time_ms"]),
    )
