"""The recording catalog's rules: registering MCU recordings, announcing them, choosing a file.

A conference has participants and recordings in the order they were registered; a recording has at
most one file per FileType (0 HD, 1 SD, 2 aux). Registering streams each file once for its size
and SHA-256, then probes it (``probe``: a second read, of its index and packets) and keeps its
facts with it. A recording with a damaged file is still registered. A new recording is announced
to its signed-in participants as ``AgentMediaEvent_Record``, or ``AgentMediaEvent_Record_Fail``
when any of its files is damaged (``announcements``). Registrations and removals are audit events of
kind ``admin`` (``register_recording``, ``remove_recording``, ``remove_conference``).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ccgateway import retcodes
from ccgateway.agents.directory import is_work_no
from ccgateway.audit.events import Kind, Value
from ccgateway.audit.recorder import Recorder
from ccgateway.errors import GatewayError
from ccgateway.node.clock import Clock
from ccgateway.node.recent import RecentCache
from ccgateway.recordings.access import (
    conference_viewer,
    may_download_video,
    may_see_conference,
)
from ccgateway.recordings.announcements import Announcer, conference_record_content
from ccgateway.recordings.probe import MediaState, probe_source
from ccgateway.sources import Sources, digest
from ccgateway.stores.base import (
    AgentRecord,
    CatalogStore,
    ConferenceRecord,
    ConferenceViewer,
    FileType,
    MediaFileRecord,
    RecordingRecord,
)

CACHE_S = 2.0  # downloads may see a registration or removal this much later
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_MEDIA_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".mkv": "video/x-matroska"}


class CatalogError(ValueError):
    """A registration was refused; the message says why."""


def is_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def media_type_of(location: str) -> str:
    path = urllib.parse.urlsplit(location).path if "://" in location else location
    name = path.rsplit("/", 1)[-1]
    suffix = name[name.rfind(".") :].lower() if "." in name else ""
    return _MEDIA_TYPES.get(suffix, "application/octet-stream")


@dataclass(frozen=True)
class Registration:
    conference_id: str
    record_id: str
    participants: frozenset[int]
    files: Mapping[FileType, str]
    vdn: int | None = None  # required when the registration creates the conference
    call_id: str = ""
    started_ms: int | None = None
    ended_ms: int | None = None
    location_id: str = "255"
    caller: str = ""
    called: str = ""


@dataclass(frozen=True)
class Selection:
    conference: ConferenceRecord
    recording: RecordingRecord
    media: MediaFileRecord


Progress = Callable[[str, int, int], None]


class Catalog:
    def __init__(
        self,
        store: CatalogStore,
        sources: Sources,
        announcer: Announcer,
        clock: Clock,
        *,
        recorder: Recorder | None = None,
    ) -> None:
        self.store = store
        self._recorder = recorder
        self._sources = sources
        self._announcer = announcer
        self._clock = clock
        # keyed by conference and viewer: what a viewer may not see is cached as None, as an
        # absent conference is, so neither answers faster than the other
        self._recent: RecentCache[tuple[str, ConferenceViewer], ConferenceRecord | None] = (
            RecentCache(CACHE_S)
        )

    async def register(
        self, request: Registration, progress: Progress | None = None, *, client: str = ""
    ) -> RecordingRecord:
        """Digest every file, then store the recording (not yet announced).

        The VDN is required when the registration creates the conference; into an existing
        conference it may be left out, and if given it must be the conference's. ``client``:
        the address of who asked, for the audit.
        """
        _check_registration(request)
        vdn = await self._vdn_of(request)
        files = []
        for file_type, location in sorted(request.files.items()):
            source = self._sources.open(location)
            report = (
                (lambda done, total, n=file_type.name: progress(n, done, total))
                if progress
                else None
            )
            size, mtime_ns, sha256 = await digest(source, report)
            facts = await probe_source(source)  # a read that fails raises SourceError
            files.append(
                MediaFileRecord(
                    record_id=request.record_id,
                    file_type=file_type,
                    source=source.uri,
                    size=size,
                    media_type=media_type_of(location),
                    mtime_ns=mtime_ns,
                    sha256=sha256,
                    facts=facts,
                )
            )
        conference = ConferenceRecord(
            conference_id=request.conference_id,
            vdn=vdn,
            call_id=request.call_id,
            started_ms=request.started_ms,
            ended_ms=request.ended_ms,
            participants=request.participants,
            location_id=request.location_id,
            caller=request.caller,
            called=request.called,
        )
        recording = RecordingRecord(
            record_id=request.record_id,
            conference_id=request.conference_id,
            position=0,
            created_ms=self._clock.now_ms(),
            files=tuple(files),
        )
        try:
            added = await self.store.add_recording(conference, recording)
        except ValueError as exc:
            raise CatalogError(str(exc)) from None
        self._forget(request.conference_id)
        self._record(
            "register_recording",
            client,
            {"conference": added.conference_id, "record": added.record_id},
            {"fileTypes": [int(media.file_type) for media in added.files], "vdn": vdn},
        )
        return added

    async def _vdn_of(self, request: Registration) -> int:
        """The VDN the registration's conference is in: the conference's own when it exists
        (the store checks it again, under its lock), else the registration's, required."""
        existing = await self.store.get_conference(request.conference_id)
        if existing is None:
            if request.vdn is None:
                raise CatalogError(
                    f"conference {request.conference_id} is new: its VDN is required (vdn)"
                )
            return request.vdn
        if request.vdn is not None and request.vdn != existing.vdn:
            raise CatalogError(
                f"conference {request.conference_id} is in VDN {existing.vdn}, not {request.vdn}"
            )
        return existing.vdn

    def _forget(self, conference_id: str) -> None:
        self._recent.forget_where(lambda key: key[0] == conference_id)

    async def announce_pending(self, video_events: bool) -> int:
        """Announce every recording no gateway has announced yet; returns how many events."""
        sent = 0
        for recording in await self.store.claim_unannounced(self._clock.now_ms()):
            conference = await self.store.get_conference(recording.conference_id)
            if conference is None or not video_events:
                continue
            content = conference_record_content(conference, recording)
            stored = next(
                (r for r in conference.recordings if r.record_id == recording.record_id), recording
            )  # the claim carries no files; the conference has them, with their facts
            sent += await self._announcer.announce(
                conference.participants, content, failed=is_damaged(stored)
            )
        return sent

    async def get_conference(self, conference_id: str) -> ConferenceRecord | None:
        """The conference as stored now, with its recordings and files (no cache)."""
        return await self.store.get_conference(conference_id)

    async def list_conferences(self) -> list[ConferenceRecord]:
        return await self.store.list_conferences()

    async def remove_conference(self, conference_id: str, *, client: str = "") -> bool:
        """Remove a conference from the catalog (its files are kept); False if there is none."""
        removed = await self.store.remove_conference(conference_id)
        self._forget(conference_id)
        if removed:
            self._record("remove_conference", client, {"conference": conference_id})
        return removed

    async def remove_recording(self, record_id: str, *, client: str = "") -> bool:
        """Remove one recording from the catalog (its files are kept); False if there is none."""
        removed = await self.store.remove_recording(record_id)
        if removed:
            self._record("remove_recording", client, {"record": record_id})
        return removed

    def _record(
        self,
        name: str,
        client: str,
        concerns: Mapping[str, Value],
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        """Append an ``admin`` audit event (none without a recorder)."""
        if self._recorder is not None:
            self._recorder.record(Kind.ADMIN, name, client=client, concerns=concerns, fields=fields)

    async def select(
        self, agent: AgentRecord, conference_id: str, record_id: str | None, file_type: FileType
    ) -> Selection:
        """The file an agent asks for, checked in order: right, conference, record, file.

        A conference the agent may not see and an absent one answer alike, after the same work:
        the store's one visibility query (``get_visible_conference``), cached alike.
        """
        if not may_download_video(agent):
            raise GatewayError(retcodes.NO_VIDEO_RIGHT)
        viewer = conference_viewer(agent)
        conference = await self._recent.get(
            (conference_id, viewer), lambda key: self.store.get_visible_conference(*key)
        )
        if conference is None or not may_see_conference(agent, conference):
            raise GatewayError(retcodes.NO_SUCH_CONFERENCE)
        if not conference.recordings:
            raise GatewayError(retcodes.NO_SUCH_CONFERENCE)
        if record_id is None:
            recording = conference.recordings[0]
        else:
            found = [r for r in conference.recordings if r.record_id == record_id]
            if not found:
                raise GatewayError(retcodes.NO_SUCH_RECORD)
            recording = found[0]
        media = next((f for f in recording.files if f.file_type is file_type), None)
        if media is None:
            raise GatewayError(retcodes.NO_SUCH_FILE_TYPE)
        return Selection(conference, recording, media)


def is_damaged(recording: RecordingRecord) -> bool:
    """Whether any file of the recording was probed damaged (or missing) when registered."""
    return any(
        f.facts is not None and f.facts.state is not MediaState.READY for f in recording.files
    )


def _check_registration(request: Registration) -> None:
    if not is_id(request.conference_id):
        raise CatalogError("conference id: 1-64 letters, digits, '.', '_', ':' or '-'")
    if not is_id(request.record_id):
        raise CatalogError("record id: 1-64 letters, digits, '.', '_', ':' or '-'")
    if not request.participants:
        raise CatalogError("at least one participant is needed")
    if not all(is_work_no(p) for p in request.participants):
        raise CatalogError("participants are work numbers 101-999999")
    if not request.files:
        raise CatalogError("at least one file (hd, sd or aux) is needed")
    if request.vdn is not None and request.vdn < 1:
        raise CatalogError("vdn must be a positive integer")
