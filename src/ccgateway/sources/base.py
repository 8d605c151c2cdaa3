"""Where media bytes live: the MediaSource interface and its errors.

::

    SourceError            the source cannot serve the registered file (answered 108-008)
     ├── SourceMissing     nothing at that location any more
     └── SourceChanged     something is there, but not the bytes that were registered

Every backend raises only these, translating its library's exceptions at its own edge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class SourceError(Exception):
    """The source failed; the message names the cause (never a credential)."""


class SourceMissing(SourceError):
    pass


class SourceChanged(SourceError):
    pass


@dataclass(frozen=True)
class SourceStat:
    size: int
    mtime_ns: int


class MediaSource(Protocol):
    @property
    def uri(self) -> str: ...

    async def stat(self) -> SourceStat: ...

    def read(self, start: int, length: int) -> AsyncIterator[bytes]:
        """The bytes ``start .. start+length-1``, in chunks; raises SourceError when it fails."""
        ...

    @property
    def local_path(self) -> Path | None:
        """A path the server may hand to ``sendfile``, when the bytes are a local file."""
        ...
