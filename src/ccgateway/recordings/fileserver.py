"""File-server recordings: drive-letter paths confined to their mounts, registered and announced.

A request names a file by its drive-letter path (``Y:/1/0/20201202/503/1714442.mp4``). It is parsed
strictly (``drivepaths``) and looked up among the registrations (``name``), authorized by the path
and those registrations (``access.may_fetch_file``), then resolved inside the drive's mapped root
(``locate``). Authorization comes before existence, so a foreign file and an absent foreign file
get the same answer (104-002).

Pool mode: when any ``RECORD_DRIVE_MAP_<locationId>`` is configured, a request must carry a
configured ``locationId`` (104-010 otherwise); without pool mode ``RECORD_DRIVE_MAP`` serves all.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ccgateway import retcodes
from ccgateway.audit.events import Kind
from ccgateway.audit.recorder import Recorder
from ccgateway.config import Settings
from ccgateway.errors import GatewayError
from ccgateway.node.clock import Clock
from ccgateway.recordings.access import is_video_file, may_fetch_file
from ccgateway.recordings.announcements import Announcer, file_record_content
from ccgateway.recordings.catalog import is_id
from ccgateway.recordings.drivepaths import (
    BadName,
    DrivePath,
    DrivePathError,
    NoMapping,
    NoSuchFile,
    parse_drive_path,
    resolve,
)
from ccgateway.sources import Sources, digest
from ccgateway.stores.base import AUDIO, VIDEO, AgentRecord, FileRecordingRecord, FileStore

_LOCATION = re.compile(r"[0-9]{1,10}")  # ASCII only: str.isdigit() also takes "²" and "٥"


@dataclass(frozen=True)
class NamedFile:
    """A drive-letter path a request named, with its registrations (newest first)."""

    drive_path: DrivePath
    registrations: tuple[FileRecordingRecord, ...]

    @property
    def video(self) -> bool:
        """Video or voice (``access.is_video_file``): the newest registration, else the name."""
        media = self.registrations[0].media if self.registrations else None
        return is_video_file(self.drive_path, media)


@dataclass(frozen=True)
class LocatedFile:
    drive_path: DrivePath
    path: Path


@dataclass(frozen=True)
class FileDigest:
    size: int
    mtime_ns: int
    sha256: str


class FileServer:
    def __init__(
        self,
        settings: Settings,
        store: FileStore,
        sources: Sources,
        announcer: Announcer,
        clock: Clock,
        *,
        recorder: Recorder | None = None,
    ) -> None:
        self._maps = settings.drive_maps
        self._recorder = recorder
        self.store = store
        self._sources = sources
        self._announcer = announcer
        self._clock = clock
        self._digesting: dict[Path, asyncio.Future[FileDigest]] = {}

    def roots(self, location_id: str | None) -> Mapping[str, Path]:
        pool = {k: v for k, v in self._maps.items() if k}
        if pool:
            location = (location_id or "").strip()
            if not _LOCATION.fullmatch(location) or str(int(location)) not in pool:
                raise GatewayError(retcodes.LOCATION_NOT_CONFIGURED)
            return pool[str(int(location))]
        if "" not in self._maps:
            raise GatewayError(retcodes.NO_DRIVE_MAPPING)
        return self._maps[""]

    async def name(self, raw: str | None) -> NamedFile:
        """The file ``raw`` names and its registrations; 104-003 for a name that is no safe
        drive-letter path."""
        if not raw:
            raise GatewayError(retcodes.BAD_FILE_NAME)
        try:
            drive_path = parse_drive_path(raw)
        except DrivePathError:
            raise GatewayError(retcodes.BAD_FILE_NAME) from None
        registrations = await self.store.registrations(str(drive_path))
        return NamedFile(drive_path, tuple(registrations))

    def locate(
        self, agent: AgentRecord, named: NamedFile, location_id: str | None, *, video: bool
    ) -> LocatedFile:
        """The file, if this agent may have it; 104-xxx otherwise."""
        drive_path = named.drive_path
        roots = self.roots(location_id)
        if not may_fetch_file(agent, drive_path, named.registrations, video=video):
            raise GatewayError(retcodes.NO_PLAYBACK_RIGHT)
        try:
            return LocatedFile(drive_path, resolve(drive_path, roots))
        except NoMapping:
            raise GatewayError(retcodes.NO_DRIVE_MAPPING) from None
        except NoSuchFile:
            raise GatewayError(retcodes.FILE_MISSING) from None
        except BadName:
            raise GatewayError(retcodes.BAD_FILE_NAME) from None

    async def digest(
        self, path: Path, before_hashing: Callable[[], None] | None = None
    ) -> FileDigest:
        """Size, mtime and SHA-256, computed once per (path, size, mtime) and cached; requests
        for a path whose digest is being computed wait for that one computation (single flight).

        A request that must have the digest computed (not cached, or being computed) first
        calls ``before_hashing``, which may refuse by raising: downloads take their slot there,
        so hashing, and waiting for a hash, counts as a download (``Downloads``).
        """
        flight = self._digesting.get(path)
        if flight is None:
            known = await self._cached(path)
            if known is not None:
                return known
            flight = self._digesting.get(path)  # begun while the cache was read
        if before_hashing is not None:
            before_hashing()
        if flight is None:
            flight = asyncio.ensure_future(self._digest(path))
            self._digesting[path] = flight
            flight.add_done_callback(lambda done: self._landed(path, done))
        return await asyncio.shield(flight)

    async def _cached(self, path: Path) -> FileDigest | None:
        """The digest of the file as it is now, if the cache has it (no hashing)."""
        stat = await self._sources.open(str(path)).stat()
        cached = await self.store.cached_digest(str(path), stat.size, stat.mtime_ns)
        return None if cached is None else FileDigest(stat.size, stat.mtime_ns, cached)

    def _landed(self, path: Path, flight: asyncio.Future[FileDigest]) -> None:
        """A computation ended: forget it (its failure is its waiters', read here so an
        abandoned one is not reported as never retrieved)."""
        self._digesting.pop(path, None)
        if not flight.cancelled():
            flight.exception()

    async def _digest(self, path: Path) -> FileDigest:
        known = await self._cached(path)  # another node may have cached it meanwhile
        if known is not None:
            return known
        size, mtime_ns, sha256 = await digest(self._sources.open(str(path)))
        await self.store.cache_digest(str(path), size, mtime_ns, sha256)
        return FileDigest(size, mtime_ns, sha256)

    async def register(
        self,
        record_id: str,
        file_name: str,
        *,
        call_id: str,
        location_id: str = "65535",
        media: int = VIDEO,
        participants: frozenset[int] = frozenset(),
        client: str = "",
    ) -> FileRecordingRecord:
        """Register a file-server recording so its participants get ``AgentMediaEvent_Record``;
        audited (``admin`` ``register_file_recording``; ``client``: the address of who asked)."""
        if not is_id(record_id) or not is_id(call_id):
            raise ValueError("record id and call id: 1-64 letters, digits, '.', '_', ':' or '-'")
        try:
            drive_path = parse_drive_path(file_name)
        except DrivePathError as exc:
            raise ValueError(f"not a safe drive-letter path: {exc}") from None
        if media not in (AUDIO, VIDEO):
            raise ValueError("media is 1 (audio) or 2 (video)")
        owner = drive_path.agent_id
        members = participants | ({owner} if owner is not None else set())
        if not members:
            raise ValueError("the path names no agent: give the participants")
        recording = FileRecordingRecord(
            record_id=record_id,
            file_name=str(drive_path),
            call_id=call_id,
            location_id=location_id,
            media=media,
            agent_id=owner,
            participants=frozenset(members),
            created_ms=self._clock.now_ms(),
        )
        if not await self.store.add_recording(recording):
            raise ValueError(f"recording {record_id} already exists")
        if self._recorder is not None:
            self._recorder.record(
                Kind.ADMIN,
                "register_file_recording",
                agent_id=owner,
                client=client,
                concerns={"record": record_id, "path": recording.file_name},
                fields={"callId": call_id, "media": media, "locationId": location_id},
            )
        return recording

    async def find_by_call(self, call_id: str, media: int) -> list[FileRecordingRecord]:
        """The registered recordings of a call, of one media (AUDIO or VIDEO), oldest first."""
        return await self.store.find_by_call(call_id, media)

    async def announce_pending(self, video_events: bool) -> int:
        """Announce every recording no gateway has announced yet; returns how many events."""
        sent = 0
        for recording in await self.store.claim_unannounced(self._clock.now_ms()):
            if recording.media == VIDEO and not video_events:
                continue
            content = file_record_content(recording)
            sent += await self._announcer.announce(recording.participants, content)
        return sent
