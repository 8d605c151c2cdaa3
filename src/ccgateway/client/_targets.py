"""What to download: one dataclass per download interface, and where the wire names live.

Each target knows its interface's path and query (the only place the client spells the wire
parameter names) and a file-system safe ``key``: the name of its ``.part`` file when the
destination is a directory, and the fallback file name when the gateway sends no usable
``Content-Disposition``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class FileType(enum.IntEnum):
    """``fileType`` of ``videofiledownload``: 0 HD, 1 SD, 2 auxiliary (content) stream."""

    HD = 0
    SD = 1
    AUX = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> FileType:
        """``hd``/``sd``/``aux`` (any case) or ``0``/``1``/``2``; ValueError otherwise."""
        text = label.strip().upper()
        if text.isdigit():
            return cls(int(text))
        try:
            return cls[text]
        except KeyError:
            raise ValueError(f"file type {label!r}: use hd, sd or aux") from None


def safe_name(text: str) -> str:
    """``text`` reduced to letters, digits, ``.``, ``_`` and ``-``, never hidden or empty."""
    name = _UNSAFE.sub("_", text).strip("._") or "download"
    return name[:200]


@dataclass(frozen=True)
class VideoFile:
    """``videofiledownload``: an MCU recording of a conference (the first one without record)."""

    conference_id: str
    record_id: str | None = None
    file_type: FileType = FileType.HD

    interface = "videofiledownload"

    def request(self, agent_id: int) -> tuple[str, dict[str, str]]:
        query = {"conferenceId": self.conference_id, "fileType": str(int(self.file_type))}
        if self.record_id:
            query["recordId"] = self.record_id
        return f"recordfile/{agent_id}/videofiledownload", query

    @property
    def key(self) -> str:
        record = self.record_id or "first"
        return safe_name(f"{self.conference_id}-{record}-{self.file_type.label}")


@dataclass(frozen=True)
class VideoFileEx:
    """``videofiledownloadEx``: a video file on the file server, by its drive-letter path."""

    path: str
    location_id: str | None = None

    interface = "videofiledownloadEx"

    def request(self, agent_id: int) -> tuple[str, dict[str, str]]:
        query = {"recordId": self.path}
        if self.location_id:
            query["locationId"] = self.location_id
        return f"recordfile/{agent_id}/videofiledownloadEx", query

    @property
    def key(self) -> str:
        return safe_name(self.path)


@dataclass(frozen=True)
class RecordFile:
    """``recordfile``: a voice recording by its drive-letter path; kind 1 agent call, 2 IVR."""

    path: str
    kind: int = 1
    location_id: str | None = None

    interface = "recordfile"

    def __post_init__(self) -> None:
        if self.kind not in (1, 2):
            raise ValueError("RecordFile.kind is 1 (agent call) or 2 (IVR / third-party)")

    def request(self, agent_id: int) -> tuple[str, dict[str, str]]:
        query = {"recordId": self.path, "filetype": str(self.kind)}
        if self.location_id:
            query["locationId"] = self.location_id
        return f"recordfile/{agent_id}", query

    @property
    def key(self) -> str:
        return safe_name(self.path)


Target = VideoFile | VideoFileEx | RecordFile
