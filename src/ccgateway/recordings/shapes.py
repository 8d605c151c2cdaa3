"""The JSON shapes of recordings that the admin API answers and the CLI prints (``--json``)."""

from __future__ import annotations

from typing import Any

from ccgateway.stores.base import ConferenceRecord, FileRecordingRecord


def conference_json(conference: ConferenceRecord) -> dict[str, Any]:
    return {
        "conferenceId": conference.conference_id,
        "vdn": conference.vdn,
        "callId": conference.call_id,
        "startTime": conference.started_ms,
        "endTime": conference.ended_ms,
        "locationId": conference.location_id,
        "participants": sorted(conference.participants),
        "recordings": [
            {
                "recordId": r.record_id,
                "created": r.created_ms,
                "fileTypes": [int(f.file_type) for f in r.files],
                "files": [
                    {
                        "fileType": int(f.file_type),
                        "name": f.file_type.name.lower(),
                        "source": f.source,
                        "size": f.size,
                        "mediaType": f.media_type,
                        "sha256": f.sha256,
                        # the probed facts (MediaFacts.to_json); null: not probed yet
                        "state": None if f.facts is None else f.facts.state.value,
                        "facts": None if f.facts is None else f.facts.to_json(),
                    }
                    for f in r.files
                ],
            }
            for r in conference.recordings
        ],
    }


def file_recording_json(recording: FileRecordingRecord) -> dict[str, Any]:
    return {
        "recordId": recording.record_id,
        "fileName": recording.file_name,
        "callId": recording.call_id,
        "locationId": recording.location_id,
        "fileMediaType": recording.media,
        "participants": sorted(recording.participants),
    }
