"""The audit event: the one model of the trail, its canonical encoding and its hash chain.

The trail is a sequence of events, never updated in place (docs/audit.md). Each event belongs to
a *writer* (one run of a gateway node, or one CLI process), is numbered by it from 1 without
gaps, and carries the SHA-256 of its writer's previous event (``prev``; 64 zeros for the first),
computed over that event's canonical encoding: so each writer's events form a hash chain, and a
changed, removed, inserted or reordered event breaks it.

The canonical encoding of an event is the UTF-8 bytes of one JSON object with exactly the keys of
``AuditEvent.document``, sorted, no whitespace, every non-ASCII character escaped as ``\\uXXXX``
(so the bytes are ASCII), integers only (no floats), ``null`` for absent values. It is what the
journal holds (one per line), what the database keeps in ``audit_events.body``, what ``prev``
hashes, and what ``ccgateway audit verify`` and a third party recompute.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

VERSION = 1
GENESIS = "0" * 64  # ``prev`` of a writer's first event

Value = str | int | bool | None


class Kind(enum.StrEnum):
    DOWNLOAD = "download"  # a GET of a download interface: a transfer (start, end)
    HEAD = "head"  # a HEAD of a download interface: a transfer without body (start, end)
    PLAY = "play"  # a request through a playback link: a transfer (start, end)
    ADMIN = "admin"  # registrations, removals, directory changes
    SESSION = "session"  # sign-in, sign-out, idle sign-out, forced sign-in, ended sessions
    SECURITY = "security"  # failed sign-in, lockout


TRANSFER_KINDS = frozenset({Kind.DOWNLOAD, Kind.HEAD, Kind.PLAY})
START, END = "start", "end"  # the names of a transfer's two events


class Outcome(enum.StrEnum):
    """How a transfer ended (the ``outcome`` field of its ``end`` event), always explicit."""

    COMPLETED = "completed"  # every byte of the answer was handed to the network
    ABORTED = "aborted"  # the client went away before the end
    REFUSED = "refused"  # answered with an error retcode (or 412/416)
    SOURCE_FAILED = "source_failed"  # the source failed after the first byte; transfer cut
    ERROR = "error"  # an unexpected failure of ours
    OFFLOADED = "offloaded"  # authorized and handed to nginx, which sends the bytes
    REVOKED = "revoked"  # cut because access ended
    EXPIRED = "expired"  # a playback link's limit lapsed
    INTERRUPTED = "interrupted"  # no ``end`` was ever written: set when the node next starts


def node_writer(node_name: str, started_ms: int) -> str:
    """The writer of one run of a gateway node."""
    return f"{node_name}@{started_ms}"


def cli_writer(started_ms: int) -> str:
    """The writer of one CLI process that writes events."""
    return f"cli:{socket.gethostname()}:{os.getpid()}:{started_ms}"


@dataclass(frozen=True)
class AuditEvent:
    """One event. ``concerns`` names what it is about (``conference``, ``record``,
    ``fileType``, ``path``, ``export``…); ``fields`` holds the kind's own fields (for a
    transfer's ``end``: ``outcome``, ``status``, ``retcode``, ``bytes``, ``ranges``,
    ``durationMs``, ``startSeq``)."""

    writer: str
    seq: int
    time_ms: int
    kind: Kind
    name: str
    agent_id: int | None
    client: str
    prev: str
    concerns: Mapping[str, Value] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "writer": self.writer,
            "seq": self.seq,
            "time": self.time_ms,
            "kind": self.kind.value,
            "name": self.name,
            "agent": self.agent_id,
            "client": self.client,
            "concerns": dict(self.concerns),
            "fields": dict(self.fields),
            "prev": self.prev,
        }

    def canonical(self) -> bytes:
        return canonical(self.document())

    def digest(self) -> str:
        """The SHA-256 (hex) of the canonical encoding: the next event's ``prev``."""
        return hashlib.sha256(self.canonical()).hexdigest()


# One encoder for every event (``json.dumps`` with these arguments would build one per call).
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)
_KEYS = frozenset(
    ("v", "writer", "seq", "time", "kind", "name", "agent", "client", "concerns", "fields", "prev")
)


def canonical(document: Mapping[str, Any]) -> bytes:
    """The canonical encoding of a JSON document (see the module's doc).

    orjson writes it several times faster than the standard library, and byte for byte the same
    whenever its output is ASCII without DEL (which the standard library escapes; a test checks
    the two agree); any other document (non-ASCII text, an integer beyond 64 bits) takes the
    standard library's path, the definition."""
    try:
        fast = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        fast = b""
    if fast and fast.isascii() and b"\x7f" not in fast:
        return fast
    return _ENCODER.encode(document).encode("ascii")


class MalformedEvent(ValueError):
    """Bytes that are not the canonical encoding of an event."""


def parse(body: bytes) -> AuditEvent:
    """The event ``body`` encodes; ``MalformedEvent`` unless ``body`` is exactly canonical."""
    try:
        document = _loads(body)
        if not isinstance(document, dict) or document.keys() != _KEYS:
            raise ValueError("not the keys of an event")
        if document["v"] != VERSION or canonical(document) != body:
            raise ValueError("not the canonical encoding of a version-1 event")
        agent = document["agent"]
        return AuditEvent(
            writer=_typed(document["writer"], str),
            seq=_typed(document["seq"], int),
            time_ms=_typed(document["time"], int),
            kind=Kind(document["kind"]),
            name=_typed(document["name"], str),
            agent_id=None if agent is None else _typed(agent, int),
            client=_typed(document["client"], str),
            prev=_typed(document["prev"], str),
            concerns=_typed(document["concerns"], dict),
            fields=_typed(document["fields"], dict),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedEvent(str(exc)) from None


def _loads(body: bytes) -> Any:
    """JSON ``body`` decoded: by orjson, or by the standard library where orjson refuses (an
    integer beyond 64 bits), so that both read every JSON document alike."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _typed(value: Any, kind: type[Any]) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{value!r} is not {kind.__name__}")
    return value
