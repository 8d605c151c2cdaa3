"""``Repr-Digest`` and ``Want-Repr-Digest`` (RFC 9530), pure.

Both fields are Structured Field Dictionaries (RFC 9651). We produce ``sha-256=:<base64>:`` and
parse leniently: members are split on commas outside quoted strings, parameters (``;...``) are
dropped, keys are lower-cased, and any member that is not ``key=value`` of the expected type is
skipped. Nothing here raises on header input.

Decision on Want-Repr-Digest: we always send ``sha-256`` (the only algorithm we hold), even when
the client prefers others or sends no Want-Repr-Digest, unless the client explicitly gives
``sha-256`` the weight 0 ("not acceptable"); then no Repr-Digest is sent.
"""

from __future__ import annotations

import base64
import binascii
import re

SHA256 = "sha-256"
_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")
_BYTES = re.compile(r":([A-Za-z0-9+/]*=*):")
_INTEGER = re.compile(r"-?[0-9]{1,15}")
_MAX_FIELD_LENGTH = 16384


def repr_digest(sha256_hex: str) -> str:
    """``sha-256=:<base64>:`` for a 64-digit SHA-256 hex string (ValueError otherwise)."""
    raw = bytes.fromhex(sha256_hex)
    if len(raw) != 32:
        raise ValueError("a SHA-256 digest is 32 bytes")
    return f"{SHA256}=:{base64.b64encode(raw).decode('ascii')}:"


def _members(value: str) -> list[tuple[str, str]]:
    """``(key, value)`` of each ``key=value`` member, parameters dropped; junk skipped."""
    if not isinstance(value, str) or len(value) > _MAX_FIELD_LENGTH:
        return []
    parts: list[str] = []
    start, quoted, escaped = 0, False, False
    for i, char in enumerate(value):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    members: list[tuple[str, str]] = []
    for part in parts:
        key, eq, rest = part.partition("=")
        key = key.strip(" \t").lower()
        item = rest.split(";", 1)[0].strip(" \t")
        if eq and item and _KEY.fullmatch(key):
            members.append((key, item))
    return members


def parse_repr_digest(value: str) -> dict[str, bytes]:
    """Algorithm → raw digest of each byte-sequence member; unknown algorithms are kept."""
    digests: dict[str, bytes] = {}
    for key, item in _members(value):
        m = _BYTES.fullmatch(item)
        if m is None:
            continue
        text = m.group(1).rstrip("=")
        try:
            digests[key] = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
    return digests


def parse_want_repr_digest(value: str | None) -> dict[str, int]:
    """Algorithm → preference (0 means "not acceptable") of each integer member."""
    if value is None:
        return {}
    return {key: int(item) for key, item in _members(value) if _INTEGER.fullmatch(item)}


def digest_header_for(want_header: str | None, sha256_hex: str) -> str | None:
    """The ``Repr-Digest`` value to send, or None when the client gave ``sha-256`` weight 0."""
    if parse_want_repr_digest(want_header).get(SHA256) == 0:
        return None
    return repr_digest(sha256_hex)
