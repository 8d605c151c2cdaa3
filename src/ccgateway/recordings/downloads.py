"""The download service: one owner of what every download interface decides before the bytes.

``Downloads.serve`` takes a parsed request (interface, agent, GUID, the named parameters as they
came) and either refuses it with a ``GatewayError`` carrying its retcode, or hands a
``ReadyDownload`` (source, size, validators, file name) to the caller's ``send``. The checks run
in the documented order (docs/recordings.md): the interface's switches and parameters, then the
GUID, then what the agent may have (``access``), then the lookup (catalog or file server), then
the source and its freshness. Whatever happens, the attempt is audited exactly once, as one
transfer: a ``start`` event before the response, an ``end`` after it. The node's
download slot (``_Slot``) is held while the bytes go out (``ReadyDownload.slot``), and while a
file-server file's digest is computed or awaited for the attempt, HEAD included: hashing is
bounded by the same per-agent and node limits, and refused as they refuse.

The interfaces:

- ``videofiledownload``: an MCU recording from the catalog (conferenceId, recordId, fileType).
- ``videofiledownloadEx``: a video file on the file server (recordId = drive-letter path).
- ``recordfile`` (no suffix): a voice file on the file server (recordId = drive-letter path).
- ``recordfiledownloadEx``: by callId (voice, from the registered file-server recordings) or
  hwFileName (a video path).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ccgateway import retcodes
from ccgateway.agents.directory import AgentDirectory
from ccgateway.audit.events import Kind, Outcome
from ccgateway.audit.trail import Auditor, DownloadAttempt
from ccgateway.config import Settings
from ccgateway.errors import GatewayError
from ccgateway.node.limits import FlowControl, node_busy
from ccgateway.recordings.access import inspected_agent, may_fetch_registered
from ccgateway.recordings.catalog import Catalog, is_id
from ccgateway.recordings.fileserver import FileServer, LocatedFile
from ccgateway.sessions.manager import SessionManager
from ccgateway.sources import Sources
from ccgateway.sources.base import MediaSource, SourceError, redact
from ccgateway.stores.base import AUDIO, AgentRecord, FileType

log = logging.getLogger("ccgateway.download")

T = TypeVar("T")


class Interface(enum.Enum):
    """The download interfaces, valued by their documented log names."""

    VIDEO = "downloadVideoFile"  # videofiledownload
    VIDEO_EX = "downloadVideoFileEx"  # videofiledownloadEx
    RECORD = "downloadRecordFile"  # recordfile
    RECORD_EX = "recordfiledownloadEx"  # recordfiledownloadEx


@dataclass(frozen=True)
class DownloadRequest:
    """A download request's named parameters, as they came (checked by the service, in order).

    ``conference_id`` and ``record_id`` are the ``conferenceId`` and ``recordId`` parameters of
    every interface (the audit records them as sent); ``file_type`` is ``fileType`` for
    videofiledownload and ``filetype`` for recordfile.
    """

    interface: Interface
    agent_id: int
    guid: str | None
    client: str
    head: bool = False
    conference_id: str = ""
    record_id: str = ""
    file_type: str | None = None
    location_id: str | None = None
    call_id: str = ""
    hw_file_name: str = ""
    work_no: str = ""
    range: str = ""  # the Range header, as requested (for the audit)


@dataclass(frozen=True)
class ReadyDownload:
    """An authorized download: the source and the validators registered for its bytes."""

    source: MediaSource
    size: int
    mtime_ns: int
    sha256: str
    filename: str
    attempt: DownloadAttempt  # the transfer fills in range, status, outcome and bytes
    slot: Callable[[], AbstractContextManager[None]]  # held while the bytes go out


# Retry-After of a download refused while the audit journal cannot be written (a full disk).
AUDIT_RETRY_AFTER_S = 5.0


class DownloadObserver(Protocol):
    """Told when an attempt starts and ends (the web layer's metrics)."""

    def download_started(self) -> None: ...

    def download_finished(self, attempt: DownloadAttempt) -> None: ...


class Downloads:
    def __init__(
        self,
        settings: Settings,
        sessions: SessionManager,
        agents: AgentDirectory,
        catalog: Catalog,
        files: FileServer,
        sources: Sources,
        auditor: Auditor,
        flow: FlowControl,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._agents = agents
        self._catalog = catalog
        self._files = files
        self._sources = sources
        self._auditor = auditor
        self._flow = flow

    async def serve(
        self,
        request: DownloadRequest,
        send: Callable[[ReadyDownload], Awaitable[T]],
        observer: DownloadObserver | None = None,
    ) -> T:
        """Decide ``request``, then ``send`` what it may have; the attempt is audited however
        it ends (a ``GatewayError`` from the checks or from ``send`` is a refusal): its ``start``
        before the first byte, its ``end`` after the last (docs/audit.md). While the audit
        journal cannot be written (a full disk), a new download is refused with 503 ``000-009``
        (running ones finish)."""
        kind = Kind.HEAD if request.head else Kind.DOWNLOAD
        attempt = self._auditor.begin(
            request.interface.value, request.client, kind=kind, range=request.range
        )
        attempt.agent_id = request.agent_id
        attempt.conference_id = request.conference_id
        attempt.record_id = request.record_id
        if observer is not None:
            observer.download_started()
        slot = _Slot(self._flow, attempt)
        try:
            if not self._auditor.writable:
                raise node_busy(AUDIT_RETRY_AFTER_S)
            ready = await self._decide(request, attempt, slot)
            self._auditor.authorize(attempt)
            return await send(ready)
        except GatewayError as exc:
            attempt.outcome = Outcome.REFUSED
            attempt.retcode = exc.retcode.code
            attempt.status = exc.http_status
            if exc.retcode is retcodes.SOURCE_FAILED:
                log.warning(
                    "%s refused with %s: %s", attempt.interface, exc.retcode.code, exc.detail
                )
            raise
        except (asyncio.CancelledError, ConnectionError):
            if attempt.outcome is None:
                attempt.outcome = Outcome.ABORTED  # the client went away before any byte
            raise
        except Exception:
            if attempt.outcome is None:  # a fault of ours, answered 500 by the error middleware
                attempt.outcome, attempt.status = Outcome.ERROR, 500
                attempt.retcode = retcodes.UNKNOWN_ERROR.code
            raise
        finally:
            slot.release()
            if observer is not None:
                observer.download_finished(attempt)
            self._auditor.finish(attempt)

    async def _decide(
        self, request: DownloadRequest, attempt: DownloadAttempt, slot: _Slot
    ) -> ReadyDownload:
        match request.interface:
            case Interface.VIDEO:
                return await self._video(request, attempt, slot)
            case Interface.VIDEO_EX:
                return await self._video_ex(request, attempt, slot)
            case Interface.RECORD:
                return await self._record(request, attempt, slot)
            case Interface.RECORD_EX:
                return await self._record_ex(request, attempt, slot)

    # -- the interfaces -----------------------------------------------------------------------

    async def _video(
        self, request: DownloadRequest, attempt: DownloadAttempt, slot: _Slot
    ) -> ReadyDownload:
        self._video_switches()
        conference_id = request.conference_id.strip()
        if not is_id(conference_id):
            raise GatewayError(retcodes.BAD_CONFERENCE_ID)
        file_type = parse_file_type(request.file_type)
        attempt.file_type = int(file_type)
        record_id = request.record_id.strip() or None
        if record_id is not None and not is_id(record_id):
            raise GatewayError(retcodes.NO_SUCH_RECORD)
        agent = await self._signed_in_agent(request)
        selection = await self._catalog.select(agent, conference_id, record_id, file_type)
        attempt.record_id = selection.recording.record_id
        media = selection.media
        source = self._sources.open(media.source)
        try:
            stat = await source.stat()
        except SourceError as exc:
            raise GatewayError(retcodes.SOURCE_FAILED, str(exc)) from None
        if (stat.size, stat.mtime_ns) != (media.size, media.mtime_ns):
            raise GatewayError(
                retcodes.SOURCE_FAILED, f"{redact(source.uri)} changed since registration"
            )
        name = catalog_filename(conference_id, attempt.record_id, file_type, media.source)
        return self._ready(
            request, attempt, slot, source, media.size, media.mtime_ns, media.sha256, name
        )

    async def _video_ex(
        self, request: DownloadRequest, attempt: DownloadAttempt, slot: _Slot
    ) -> ReadyDownload:
        self._video_switches()
        agent = await self._signed_in_agent(request)
        named = await self._files.name(request.record_id)
        located = self._files.locate(agent, named, request.location_id, video=True)
        return await self._file(request, attempt, slot, located)

    async def _record(
        self, request: DownloadRequest, attempt: DownloadAttempt, slot: _Slot
    ) -> ReadyDownload:
        if not self._settings.record_download:
            raise GatewayError(retcodes.RECORD_DOWNLOAD_OFF)
        kind = (request.file_type or "").strip() or "1"
        if kind not in ("1", "2"):
            raise GatewayError(retcodes.BAD_INTERFACE_PARAMETER, "filetype")
        attempt.file_type = int(kind)
        agent = await self._signed_in_agent(request)
        named = await self._files.name(request.record_id)
        if named.video:  # a video file asked for as voice: the video switches and right apply
            self._video_switches()
        located = self._files.locate(agent, named, request.location_id, video=named.video)
        return await self._file(request, attempt, slot, located)

    async def _record_ex(
        self, request: DownloadRequest, attempt: DownloadAttempt, slot: _Slot
    ) -> ReadyDownload:
        if not self._settings.video_download:
            raise GatewayError(retcodes.VIDEO_DOWNLOAD_OFF)
        call_id = request.call_id.strip()
        if not is_id(call_id):
            raise GatewayError(retcodes.BAD_INTERFACE_PARAMETER, "callId")
        attempt.conference_id = call_id
        hw_file_name = request.hw_file_name.strip()
        agent = await self._signed_in_agent(request)
        if hw_file_name:
            attempt.record_id = hw_file_name
            named = await self._files.name(hw_file_name)
            located = self._files.locate(agent, named, request.location_id, video=True)
            return await self._file(request, attempt, slot, located)
        owner = inspected_agent(agent, request.work_no)
        found = [
            r
            for r in await self._files.find_by_call(call_id, AUDIO)
            if r.agent_id == owner and may_fetch_registered(agent, r)
        ]
        if not found:  # none, or none this agent may have: the same answer (no existence oracle)
            raise GatewayError(retcodes.FILE_MISSING)
        recording = found[-1]
        attempt.record_id = recording.file_name
        location = request.location_id or recording.location_id
        named = await self._files.name(recording.file_name)
        located = self._files.locate(agent, named, location, video=False)
        return await self._file(request, attempt, slot, located)

    # -- shared steps -------------------------------------------------------------------------

    def _video_switches(self) -> None:
        if not self._settings.video_download:
            raise GatewayError(retcodes.VIDEO_DOWNLOAD_OFF)
        if not self._settings.video_events:
            raise GatewayError(retcodes.VIDEO_EVENTS_OFF)

    async def _signed_in_agent(self, request: DownloadRequest) -> AgentRecord:
        await self._sessions.authenticate(request.agent_id, request.guid)
        agent = await self._agents.get(request.agent_id)
        if agent is None:
            raise GatewayError(retcodes.NOT_SIGNED_IN)
        return agent

    async def _file(
        self, request: DownloadRequest, attempt: DownloadAttempt, slot: _Slot, located: LocatedFile
    ) -> ReadyDownload:
        attempt.path = str(located.drive_path)
        try:  # hashing an uncached file (or waiting for its hash) holds the attempt's slot
            digest = await self._files.digest(located.path, before_hashing=slot.take)
        except SourceError:
            raise GatewayError(retcodes.FILE_MISSING) from None
        source = self._sources.open(str(located.path))
        return self._ready(
            request,
            attempt,
            slot,
            source,
            digest.size,
            digest.mtime_ns,
            digest.sha256,
            located.path.name,
        )

    def _ready(
        self,
        request: DownloadRequest,
        attempt: DownloadAttempt,
        slot: _Slot,
        source: MediaSource,
        size: int,
        mtime_ns: int,
        sha256: str,
        filename: str,
    ) -> ReadyDownload:
        def held() -> AbstractContextManager[None]:
            # the bytes of a GET go out under the slot (kept if hashing took it); a HEAD sends
            # none and takes none (it holds one only while a hash is computed for it)
            return contextlib.nullcontext() if request.head else slot.held()

        return ReadyDownload(source, size, mtime_ns, sha256, filename, attempt, held)


class _Slot:
    """One attempt's download slot (``node/limits.py`` ``DownloadSlots``): taken at most once,
    to hash a file or to send the bytes, whichever comes first, and released when the bytes are
    out or the attempt ends. A refusal (429 ``000-008``, 503 ``000-009``) is the attempt's."""

    def __init__(self, flow: FlowControl, attempt: DownloadAttempt) -> None:
        self._flow = flow
        self._attempt = attempt
        self._release: Callable[[], None] | None = None

    def take(self) -> None:
        if self._release is not None:
            return
        try:
            self._release = self._flow.downloads.acquire(self._attempt.agent_id or 0)
        except GatewayError as exc:
            self._attempt.status = exc.http_status
            raise

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.take()
        try:
            yield
        finally:
            self.release()


def parse_file_type(value: str | None) -> FileType:
    """videofiledownload's ``fileType``: 0 HD, 1 SD, 2 aux (108-002 otherwise)."""
    if value is None or value.strip() not in ("0", "1", "2"):
        raise GatewayError(retcodes.BAD_FILE_TYPE)
    return FileType(int(value))


def catalog_filename(conference_id: str, record_id: str, file_type: FileType, src: str) -> str:
    """``<conference>-<record>-<hd|sd|aux><suffix of the registered file>``."""
    path = urllib.parse.urlsplit(src).path if "://" in src else src
    suffix = path[path.rfind(".") :] if "." in path.rsplit("/", 1)[-1] else ""
    return f"{conference_id}-{record_id}-{file_type.name.lower()}{suffix}"
