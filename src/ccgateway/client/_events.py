"""Agent events as the client hands them out, and the bounded buffer between poller and reader.

The background poll must keep running (it is the heartbeat), whether or not anybody reads the
events. They wait in an :class:`EventBuffer`; when it is full the oldest is dropped, with a
warning, so a client that never reads events cannot grow without bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ccgateway.client._errors import ClientError, ProtocolError
from ccgateway.client._targets import FileType, RecordFile, Target, VideoFile, VideoFileEx

log = logging.getLogger("ccgateway.client")

RECORD_EVENT = "AgentMediaEvent_Record"
_VIDEO_MEDIA = "2"


@dataclass(frozen=True)
class AgentEvent:
    """One event of the agent's poll: its type, agent, content and generation time (epoch ms)."""

    event_type: str
    work_no: str
    content: Mapping[str, Any] | None = None
    generated_ms: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_wire(cls, event: Any) -> AgentEvent:
        if not isinstance(event, dict) or not isinstance(event.get("eventType"), str):
            raise ProtocolError("an event without eventType")
        content = event.get("content")
        generated = event.get("eventGenTime")
        return cls(
            event_type=event["eventType"],
            work_no=str(event.get("workNo", "")),
            content=content if isinstance(content, dict) else None,
            generated_ms=generated if isinstance(generated, int) else None,
            raw=event,
        )

    def downloads(self, file_types: Iterable[FileType] = (FileType.HD,)) -> tuple[Target, ...]:
        """What an ``AgentMediaEvent_Record`` announces, as download targets (else empty).

        An MCU recording (``fileName`` ``conferenceId=...;recordId0=...;``) gives one
        :class:`VideoFile` per file type asked for; a file-server recording (a drive-letter
        ``fileName``) gives a :class:`VideoFileEx` (``fileMediaType`` 2) or a :class:`RecordFile`.
        """
        content = self.content
        if self.event_type != RECORD_EVENT or content is None:
            return ()
        file_name = str(content.get("fileName") or "")
        location = str(content.get("locationId") or "") or None
        fields = _key_values(file_name)
        if "conferenceId" in fields:
            record = str(content.get("recordID") or "") or fields.get("recordId0")
            return tuple(VideoFile(fields["conferenceId"], record, t) for t in file_types)
        if not file_name:
            return ()
        if str(content.get("fileMediaType", "")) == _VIDEO_MEDIA:
            return (VideoFileEx(file_name, location),)
        return (RecordFile(file_name, 1, location),)


def _key_values(text: str) -> dict[str, str]:
    """``conferenceId=a;recordId0=b;`` → ``{"conferenceId": "a", "recordId0": "b"}``."""
    pairs = (part.partition("=") for part in text.split(";"))
    return {k.strip(): v.strip() for k, eq, v in pairs if eq and k.strip() and v.strip()}


@dataclass(frozen=True)
class _End:
    error: ClientError | None


class EventBuffer:
    """A bounded FIFO of events that drops the oldest when full, and can be ended with an error."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("the event buffer holds at least one event")
        self._queue: asyncio.Queue[AgentEvent | _End] = asyncio.Queue(maxsize + 1)
        self._maxsize = maxsize
        self._ended = False
        self.dropped = 0

    @property
    def ended(self) -> bool:
        return self._ended

    def put(self, event: AgentEvent) -> None:
        if self._ended:
            return
        if self._queue.qsize() >= self._maxsize:
            oldest = self._queue.get_nowait()
            self.dropped += 1
            kind = oldest.event_type if isinstance(oldest, AgentEvent) else "?"
            log.warning("event buffer full (%d): dropped the oldest event %s", self._maxsize, kind)
        self._queue.put_nowait(event)

    def end(self, error: ClientError | None = None) -> None:
        """No more events: readers get what is buffered, then ``error`` (or the end)."""
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(_End(error))

    async def get(self) -> AgentEvent | None:
        """The next event; None at the end; raises the error the buffer was ended with."""
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # every later reader sees the end too
            if item.error is not None:
                raise item.error
            return None
        return item
