"""Probed media facts as the catalog keeps them with each media file (docs/recordings.md).

The probe (``ccgateway.recordings.probe``) answers them; the stores keep them (the nullable
``media_files`` columns of migration 0005, NULL on a row registered before the probe: "not probed
yet"); the listings show ``MediaFacts.to_json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class MediaState(StrEnum):
    READY = "ready"
    DAMAGED = "damaged"
    MISSING = "missing"


@dataclass(frozen=True)
class MediaFacts:
    """What one recording file holds. Fields a probe could not learn are ``None``."""

    state: MediaState
    reason: str = ""  # why ``damaged`` or ``missing``; empty when ``ready``
    size: int | None = None  # bytes
    container: str | None = None  # FFmpeg's demuxer name, as ffprobe's format_name
    media_type: str | None = None  # from the content, e.g. video/mp4
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    video_codec: str | None = None  # FFmpeg's codec name, as ffprobe's codec_name
    audio_codec: str | None = None
    fast_start: bool | None = None  # an MP4 whose moov precedes its mdat; None: not an MP4

    def to_json(self) -> dict[str, Any]:
        """The facts as the listings show them (camelCase; absent facts as null)."""
        return {
            "state": self.state.value,
            "reason": self.reason,
            "size": self.size,
            "container": self.container,
            "mediaType": self.media_type,
            "durationS": None if self.duration_s is None else round(self.duration_s, 3),
            "width": self.width,
            "height": self.height,
            "videoCodec": self.video_codec,
            "audioCodec": self.audio_codec,
            "fastStart": self.fast_start,
        }


def facts_columns(facts: MediaFacts | None) -> dict[str, Any]:
    """The ``media_files`` columns of ``facts`` (all None when not probed); the duration is
    kept in whole milliseconds, as the listings round it."""
    if facts is None:
        return dict.fromkeys(_COLUMNS)
    return {
        "state": facts.state.value,
        "reason": facts.reason,
        "container": facts.container,
        "content_type": facts.media_type,
        "duration_ms": None if facts.duration_s is None else round(facts.duration_s * 1000),
        "width": facts.width,
        "height": facts.height,
        "video_codec": facts.video_codec,
        "audio_codec": facts.audio_codec,
        "fast_start": facts.fast_start,
    }


def facts_of_row(row: Mapping[Any, Any]) -> MediaFacts | None:
    """The facts of a ``media_files`` row (with its ``size``); None when it was not probed."""
    if row["state"] is None:
        return None
    duration_ms = row["duration_ms"]
    return MediaFacts(
        state=MediaState(row["state"]),
        reason=row["reason"] or "",
        size=row["size"],
        container=row["container"],
        media_type=row["content_type"],
        duration_s=None if duration_ms is None else duration_ms / 1000,
        width=row["width"],
        height=row["height"],
        video_codec=row["video_codec"],
        audio_codec=row["audio_codec"],
        fast_start=None if row["fast_start"] is None else bool(row["fast_start"]),
    )


_COLUMNS = (
    "state",
    "reason",
    "container",
    "content_type",
    "duration_ms",
    "width",
    "height",
    "video_codec",
    "audio_codec",
    "fast_start",
)
