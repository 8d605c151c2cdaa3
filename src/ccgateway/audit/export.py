"""A signed export of the trail: the events, and a statement of each chain's head.

``export`` writes into a directory:

- ``events.jsonl``: the database's events since a time, as canonical lines ordered by (writer,
  seq). For each writer it starts at its first event at or after the time and runs to the
  writer's last, so what it holds of a chain is unbroken.
- ``heads.json``: the statement: each chain's head (writer, last seq, the SHA-256 of that
  event), what of it was exported, the export time and the SHA-256 of ``events.jsonl``.
- ``heads.json.sig``: the Ed25519 signature of ``heads.json``'s bytes (64 raw bytes, as
  ``openssl pkeyutl -verify -rawin`` reads it).

The export walks every chain first (``verify``) and refuses a broken one unless told to include
it, in which case the statement names the break. The key is ``AUDIT_SIGNING_KEY``, an
unencrypted PEM private key (``openssl genpkey -algorithm ed25519``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgateway.audit.verify import Head, Report, verify
from ccgateway.stores.audit_rows import AuditRow

EVENTS = "events.jsonl"
STATEMENT = "heads.json"
SIGNATURE = "heads.json.sig"
FORMAT = "ccgateway-audit-export-1"
KEYGEN = "openssl genpkey -algorithm ed25519 -out audit-key.pem"


class SigningKeyError(ValueError):
    """``AUDIT_SIGNING_KEY`` is unset, unreadable or not an Ed25519 private key."""


class ExportError(Exception):
    """The export was refused (the message says why); nothing was left in the directory."""


def load_signing_key(path: str) -> Ed25519PrivateKey:
    if not path:
        raise SigningKeyError(
            f"AUDIT_SIGNING_KEY is not set: the path of an Ed25519 private key (PEM), made e.g."
            f" with: {KEYGEN}"
        )
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"AUDIT_SIGNING_KEY {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SigningKeyError(
            f"AUDIT_SIGNING_KEY {path} is not an unencrypted PEM private key"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"AUDIT_SIGNING_KEY {path} is not an Ed25519 key ({KEYGEN})")
    return key


def public_pem(key: Ed25519PrivateKey) -> str:
    """The public half of ``key``, as the PEM ``openssl pkeyutl -pubin -inkey`` reads."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def read_heads(path: Path) -> dict[str, Head]:
    """The chain heads of an export's statement (``heads.json``), for ``verify``."""
    try:
        statement = json.loads(path.read_bytes())
        return {
            str(chain["writer"]): Head(int(chain["headSeq"]), str(chain["headSha256"]))
            for chain in statement["chains"]
            if chain["headSeq"] is not None
        }
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path} is not an export's {STATEMENT}") from None


@dataclass
class _Exported:
    first: int
    count: int = 0


class _EventsFile:
    """Writes each writer's events from its first at or after ``since_ms``, hashing as it goes."""

    def __init__(self, handle: IO[bytes], since_ms: int | None) -> None:
        self.handle = handle
        self.since_ms = since_ms
        self.sha256 = hashlib.sha256()
        self.chains: dict[str, _Exported] = {}
        self.count = 0

    def __call__(self, row: AuditRow, _digest: str) -> None:
        writer, seq, time_ms = row[0], row[1], row[2]
        exported = self.chains.get(writer)
        if exported is None:
            if self.since_ms is not None and time_ms < self.since_ms:
                return
            exported = self.chains[writer] = _Exported(seq)
        line = row[11].encode("utf-8", "surrogatepass") + b"\n"
        self.handle.write(line)
        self.sha256.update(line)
        exported.count += 1
        self.count += 1


def _iso(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def export(
    batches: AsyncIterable[list[AuditRow]],
    output: Path,
    key: Ed25519PrivateKey,
    *,
    since_ms: int | None,
    now_ms: int,
    include_broken: bool = False,
    jobs: int | None = None,
) -> tuple[Report, dict[str, Any]]:
    """Export into ``output`` (made if missing, refused if it already holds an export)."""
    partial = _prepare(output)
    try:
        with partial.open("wb") as handle:
            events = _EventsFile(handle, since_ms)
            report = await verify(batches, jobs=jobs, on_row=events)
            handle.flush()
            os.fsync(handle.fileno())
        broken = [chain for chain in report.chains if chain.broken is not None]
        if broken and not include_broken:
            first, problem = broken[0], broken[0].broken
            raise ExportError(
                f"{len(broken)} chain(s) broken, e.g. {first.writer}"
                + (
                    f" at seq {problem.seq} ({problem.problem}: {problem.detail})"
                    if problem
                    else ""
                )
                + "; run ccgateway audit verify"
            )
        statement = _statement(report, events, since_ms, now_ms)
        _write(output, partial, statement, key)
    finally:
        partial.unlink(missing_ok=True)
    return report, statement


def _prepare(output: Path) -> Path:
    names = (EVENTS, STATEMENT, SIGNATURE)
    output.mkdir(parents=True, exist_ok=True)
    if any((output / name).exists() for name in names):
        raise ExportError(f"{output} already holds an export ({', '.join(names)})")
    return output / f".{EVENTS}.partial"


def _write(output: Path, partial: Path, statement: dict[str, Any], key: Ed25519PrivateKey) -> None:
    body = (json.dumps(statement, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode()
    partial.rename(output / EVENTS)
    (output / STATEMENT).write_bytes(body)
    (output / SIGNATURE).write_bytes(key.sign(body))


def _statement(
    report: Report, events: _EventsFile, since_ms: int | None, now_ms: int
) -> dict[str, Any]:
    chains = []
    for chain in report.chains:
        exported = events.chains.get(chain.writer)
        broken = chain.broken
        chains.append(
            {
                "writer": chain.writer,
                "headSeq": chain.head.seq if chain.head else None,
                "headSha256": chain.head.sha256 if chain.head else None,
                "firstSeq": exported.first if exported else None,
                "exported": exported.count if exported else 0,
                "broken": None
                if broken is None
                else {"seq": broken.seq, "problem": broken.problem.value, "detail": broken.detail},
            }
        )
    return {
        "format": FORMAT,
        "exportedAt": _iso(now_ms),
        "exportedMs": now_ms,
        "since": _iso(since_ms) if since_ms is not None else None,
        "sinceMs": since_ms,
        "eventsFile": EVENTS,
        "eventsSha256": events.sha256.hexdigest(),
        "events": events.count,
        "chains": chains,
    }
