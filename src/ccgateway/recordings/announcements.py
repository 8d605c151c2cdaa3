"""``AgentMediaEvent_Record``: the one builder of its payload, and the one way it is announced.

``AgentMediaEvent_Record_Fail``, the original's event for a recording that failed, carries the
same content; an MCU recording with a damaged file (as probed when registered) is announced so.

A recording is announced once, by whichever gateway claims it first (the stores' atomic
``claim_unannounced``): the admin API announces at once, and every gateway looks for recordings
registered elsewhere (the CLI, another node) every ``ANNOUNCE_EVERY_S``. Each participant signed
in at that moment gets one event in their queue.

The payload's fields and their typing are the CC-Gateway's, as its MCU and third-party
(file-server) examples show them; ``fileMediaType`` is the number 2 for video and the string
``"1"`` for audio, as the original sends them.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ccgateway.node.clock import Clock
from ccgateway.stores.base import (
    AUDIO,
    VIDEO,
    ConferenceRecord,
    Event,
    EventBus,
    FileRecordingRecord,
    RecordingRecord,
)

RECORD_EVENT = "AgentMediaEvent_Record"
RECORD_FAIL_EVENT = "AgentMediaEvent_Record_Fail"  # same content: a recording with a damaged file
ANNOUNCE_EVERY_S = 1.0

IsSignedIn = Callable[[int], Awaitable[bool]]


def record_event_content(
    *,
    record_id: str,
    file_name: str,
    call_id: str,
    location_id: str,
    media: int,
    caller: str = "",
    called: str = "",
) -> dict[str, Any]:
    """The event's ``content``, wire names and typing included."""
    return {
        "taskId": zlib.crc32(record_id.encode()) & 0x7FFFFFFF,
        "caller": caller,
        "called": called,
        "locationId": location_id,
        "recordID": record_id,
        "fileName": file_name,
        "callId": call_id,
        "fileMediaType": VIDEO if media == VIDEO else str(AUDIO),
    }


def conference_record_content(
    conference: ConferenceRecord, recording: RecordingRecord
) -> dict[str, Any]:
    """An MCU recording: ``fileName`` lists the conference and every recording id in order."""
    ids = "".join(f"recordId{i}={r.record_id};" for i, r in enumerate(conference.recordings))
    return record_event_content(
        record_id=recording.record_id,
        file_name=f"conferenceId={conference.conference_id};{ids}",
        call_id=conference.call_id,
        location_id=conference.location_id,
        media=VIDEO,
        caller=conference.caller,
        called=conference.called,
    )


def file_record_content(recording: FileRecordingRecord) -> dict[str, Any]:
    """A file-server recording: ``fileName`` is its drive-letter path."""
    return record_event_content(
        record_id=recording.record_id,
        file_name=recording.file_name,
        call_id=recording.call_id,
        location_id=recording.location_id,
        media=recording.media,
    )


class Announcer:
    """Queues a record event for each signed-in participant of a recording."""

    def __init__(self, events: EventBus, clock: Clock, is_signed_in: IsSignedIn) -> None:
        self._events = events
        self._clock = clock
        self._is_signed_in = is_signed_in

    async def announce(
        self, participants: Iterable[int], content: dict[str, Any], *, failed: bool = False
    ) -> int:
        """Publish ``content`` to every participant signed in now, as ``RECORD_FAIL_EVENT``
        when ``failed``; returns how many events."""
        name = RECORD_FAIL_EVENT if failed else RECORD_EVENT
        sent = 0
        for agent_id in sorted(participants):
            if await self._is_signed_in(agent_id):
                await self._events.publish(Event(name, agent_id, content, self._clock.now_ms()))
                sent += 1
        return sent
