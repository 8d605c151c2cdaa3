"""The ``.part`` file a download grows in, its SHA-256 so far, and its side-car of validators.

``NAME.part`` holds the bytes received; ``NAME.part.json`` the strong ETag (and Repr-Digest) they
belong to, so that a later run can resume with ``If-Range``. A part without its side-car is
never resumed. Blocking file work runs in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import IO, Any

_READ = 1 << 20


class PartFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta_path = path.with_name(path.name + ".json")
        self.size = 0
        self.meta: dict[str, Any] = {}
        self._hasher = hashlib.sha256()
        self._handle: IO[bytes] | None = None

    async def prepare(self, resume: bool) -> int:
        """Keep a resumable part (hashing what it holds) or remove a stale one; its size."""
        return await asyncio.to_thread(self._prepare, resume)

    def _prepare(self, resume: bool) -> int:
        meta = self._load_meta() if resume else {}
        if not isinstance(meta.get("etag"), str) or not self.path.is_file():
            self._remove()
            return 0
        self.meta = meta
        with self.path.open("rb") as handle:
            while chunk := handle.read(_READ):
                self._hasher.update(chunk)
                self.size += len(chunk)
        return self.size

    def _load_meta(self) -> dict[str, Any]:
        try:
            loaded = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    async def save_meta(self, **meta: Any) -> None:
        if meta != self.meta:
            self.meta = meta
            await asyncio.to_thread(self.meta_path.write_text, json.dumps(meta))

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        if self._handle is None:
            self._handle = self.path.open("ab")
        self._handle.write(data)
        self._hasher.update(data)
        self.size += len(data)

    async def restart(self) -> None:
        """Empty the part: what it held belongs to another version of the file."""
        await asyncio.to_thread(self._restart)

    def _restart(self) -> None:
        if self._handle is not None:
            self._handle.truncate(0)
        elif self.path.exists():
            self.path.write_bytes(b"")
        self._hasher = hashlib.sha256()
        self.size = 0

    def digest(self) -> bytes:
        return self._hasher.digest()

    async def close(self, keep: bool) -> None:
        """Close; a part is kept (for a later resume) only if asked and not empty."""
        await asyncio.to_thread(self._close, keep)

    def _close(self, keep: bool) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.close()
        if not keep or self.size == 0:
            self._remove()

    async def commit(self, final: Path) -> None:
        """Make the part the finished file ``final`` (atomically replacing one that is there)."""
        await asyncio.to_thread(self._commit, final)

    def _commit(self, final: Path) -> None:
        if self._handle is None:
            self._handle = self.path.open("ab")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None
        os.replace(self.path, final)
        self.meta_path.unlink(missing_ok=True)

    def _remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)
        self.size = 0
        self.meta = {}
        self._hasher = hashlib.sha256()
