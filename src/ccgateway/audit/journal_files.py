"""Reading a node's local journal back, for ``ccgateway audit verify``.

A journal directory (``DATA_DIR/audit``) holds files of canonical events, one per line (the
journal's writing and file naming are ``audit/journal.py``'s). This reads every journal file in
it, at any depth: a file whose name ends ``.jsonl`` or has ``.jsonl.`` in it (a segment). A last
line without its newline is an append cut short (the node was killed, or is writing it now) and
is skipped, not an error; any other line that is not exactly a canonical event is a problem.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ccgateway.audit.events import MalformedEvent, parse


def is_journal_file(path: Path) -> bool:
    return path.is_file() and (path.name.endswith(".jsonl") or ".jsonl." in path.name)


@dataclass(frozen=True)
class JournalEntry:
    """One journal line: its event's SHA-256 and ``prev``, and where it is (``file:line``)."""

    digest: str
    prev: str
    location: str


@dataclass
class Journal:
    directory: Path
    files: int = 0
    lines: int = 0
    partial: list[str] = field(default_factory=list)  # skipped last lines, ``file:line``
    problems: list[str] = field(default_factory=list)  # lines that are not canonical events…
    entries: dict[str, dict[int, JournalEntry]] = field(default_factory=dict)  # writer, seq

    @property
    def events(self) -> int:
        return sum(len(chain) for chain in self.entries.values())


def read_journal(directory: Path) -> Journal:
    """Every event of the journal files under ``directory`` (none when it does not exist)."""
    journal = Journal(directory)
    if not directory.is_dir():
        return journal
    for path in sorted(p for p in directory.rglob("*") if is_journal_file(p)):
        journal.files += 1
        _read_file(journal, path, path.relative_to(directory).as_posix())
    return journal


def _read_file(journal: Journal, path: Path, name: str) -> None:
    try:
        handle = path.open("rb")
    except OSError as exc:
        journal.problems.append(f"{name}: cannot be read: {exc.strerror}")
        return
    with handle:
        for number, line in enumerate(handle, start=1):
            location = f"{name}:{number}"
            if not line.endswith(b"\n"):
                journal.partial.append(location)  # only ever the last line
                break
            journal.lines += 1
            body = line[:-1]
            try:
                event = parse(body)
            except MalformedEvent as exc:
                journal.problems.append(f"{location}: not a canonical event ({exc})")
                continue
            entry = JournalEntry(hashlib.sha256(body).hexdigest(), event.prev, location)
            chain = journal.entries.setdefault(event.writer, {})
            known = chain.get(event.seq)
            if known is None:
                chain[event.seq] = entry
            elif known.digest != entry.digest:
                journal.problems.append(
                    f"{location}: {event.writer} seq {event.seq} differs from {known.location}"
                )
