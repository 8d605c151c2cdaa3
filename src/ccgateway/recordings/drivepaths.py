"""Drive-letter recording paths (``Y:/1/0/20201202/503/1714442.mp4``) and their safe resolution.

Agents send these paths back as ``recordId``/``hwFileName``; a path from a request must never
name anything but a regular file under the directory the drive letter is mapped to. Rules:

* ``parse_drive_path`` accepts ``<letter>:`` (either case) then ``/`` or ``\\`` separated
  segments, at most 1024 characters in all. Each segment matches ``[A-Za-z0-9._-]{1,255}``
  (recording names are ASCII), so spaces, ``:`` (alternate data streams), ``%``, controls and
  every non-ASCII character (fullwidth or "one dot leader" dots, overlong UTF-8 read as
  Latin-1) are refused. Also refused: empty segments (doubled or trailing separators),
  segments starting or ending with ``.`` (so ``.``, ``..`` and hidden files), Windows device
  names as a segment's stem (``CON``, ``aux.mp4``, ``COM1``...), ``%XX`` escapes (the HTTP
  layer has decoded the query once already), absolute/UNC/device prefixes (``/x``,
  ``\\\\server``, ``\\\\?\\``). Every refusal is ``BadName``.
* ``resolve`` maps the drive through the configured roots (``NoMapping`` when unmapped or not
  mapped to an absolute ``Path``), follows symlinks and answers only a regular file strictly
  inside the root's real path, as its real (symlink-free) path. Symlinks whose target stays
  inside the root are allowed; anything missing, a directory, a FIFO or device, or a target
  outside the root is ``NoSuchFile`` alike, so the answer reveals nothing outside. (The check
  is made when called: whoever can rewrite links on the file server between it and the
  ``open`` is not defended against.)
* Only ``DrivePathError`` subclasses escape either function, whatever the input.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple

MAX_PATH = 1024
MAX_SEGMENT = 255
SEGMENT = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_SEGMENT}}}")
_DRIVE = re.compile(r"([A-Za-z]):[/\\]")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_CANONICAL_NUMBER = re.compile(r"0|[1-9][0-9]{0,9}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{d}{n}" for d in ("COM", "LPT") for n in range(1, 10)]
)


class DrivePathError(ValueError):
    """A recording path that cannot be served; ``retcode`` is the gateway's answer."""

    retcode: ClassVar[str] = "104-003"


class BadName(DrivePathError):
    """Not a well-formed, safe drive-letter path (104-003)."""

    retcode = "104-003"


class NoMapping(DrivePathError):
    """The path's drive letter has no configured mount directory (104-004)."""

    retcode = "104-004"


class NoSuchFile(DrivePathError):
    """No regular file there, or one reached only by leaving the root (104-005)."""

    retcode = "104-005"


class _Layout(NamedTuple):
    kind: str | None
    vdn: int | None
    agent_id: int | None


def _layout(parts: tuple[str, ...]) -> _Layout:
    """Interpret the segments after the drive, by shape (``record``/``3rdfile`` any case):

    * ``3rdfile/<vdn>/record/<yyyymmdd>/<agent>/<file>`` -> third-party message, agent parts[4];
    * ``<vdn>/record/<yyyymmdd>/<file>`` -> IVR message (``playvoice<ts>.wav``), no agent;
    * ``<vdn>/<dirNo>/<yyyymmdd>/<agentId>/<file>`` -> agent call, agent parts[3];
    * anything else -> unknown: kind, vdn and agent are all None.

    A number that is not canonical decimal digits (``0``, or 1-10 ASCII digits without a leading
    zero) reads as None: ``0101`` is not agent 101.
    """

    def num(text: str) -> int | None:
        return int(text) if _CANONICAL_NUMBER.fullmatch(text) else None

    low = tuple(p.lower() for p in parts)
    if len(parts) == 6 and low[0] == "3rdfile" and low[2] == "record":
        return _Layout("thirdparty", num(parts[1]), num(parts[4]))
    if len(parts) == 4 and low[1] == "record":
        return _Layout("ivr", num(parts[0]), None)
    if len(parts) == 5:
        return _Layout("agent", num(parts[0]), num(parts[3]))
    return _Layout(None, None, None)


def _check_segment(segment: str) -> None:
    if not isinstance(segment, str) or not SEGMENT.fullmatch(segment):
        raise BadName(f"segment {str(segment)[:40]!r} is empty or not [A-Za-z0-9._-]{{1,255}}")
    if segment.startswith(".") or segment.endswith("."):
        raise BadName(f"segment {segment!r} starts or ends with '.'")
    if segment.split(".", 1)[0].upper() in _DEVICES:
        raise BadName(f"segment {segment!r} is a Windows device name")


@dataclass(frozen=True)
class DrivePath:
    """A validated drive-letter path; constructing one directly validates it too."""

    drive: str
    parts: tuple[str, ...]

    def __post_init__(self) -> None:
        if not (isinstance(self.drive, str) and re.fullmatch(r"[A-Z]", self.drive)):
            raise BadName("the drive must be one upper-case letter")
        if not isinstance(self.parts, tuple) or not self.parts:
            raise BadName("no file after the drive letter")
        for segment in self.parts:
            _check_segment(segment)
        if len(str(self)) > MAX_PATH:
            raise BadName(f"longer than {MAX_PATH} characters")

    def __str__(self) -> str:
        return f"{self.drive}:/" + "/".join(self.parts)

    @property
    def kind(self) -> str | None:
        """``"agent"``, ``"ivr"``, ``"thirdparty"`` or None (see ``_layout``)."""
        return _layout(self.parts).kind

    @property
    def vdn(self) -> int | None:
        return _layout(self.parts).vdn

    @property
    def agent_id(self) -> int | None:
        return _layout(self.parts).agent_id


def parse_drive_path(raw: str) -> DrivePath:
    """Validate ``raw`` (``Y:/a/b`` or ``y:\\a\\b``); BadName for anything unsafe or odd."""
    if not isinstance(raw, str) or not raw:
        raise BadName("empty file name")
    if len(raw) > MAX_PATH:
        raise BadName(f"longer than {MAX_PATH} characters")
    if _CONTROL.search(raw):
        raise BadName("control character in file name")
    if not raw.isascii():
        raise BadName("non-ASCII character in file name")
    if _PERCENT.search(raw):
        raise BadName("percent-encoded sequence in file name")
    match = _DRIVE.match(raw)
    if match is None:
        raise BadName("not <drive letter>:/ followed by a path")
    parts = tuple(re.split(r"[/\\]", raw[match.end() :]))
    return DrivePath(match.group(1).upper(), parts)


def resolve(path: DrivePath, roots: Mapping[str, Path]) -> Path:
    """The real path of the regular file ``path`` names under its drive's root."""
    root = roots.get(path.drive)
    if root is None or not isinstance(root, Path) or not root.is_absolute():
        raise NoMapping(f"drive {path.drive}: has no mapping (to an absolute directory)")
    try:
        real_root = Path(os.path.realpath(root, strict=True))
        target = Path(os.path.realpath(real_root.joinpath(*path.parts), strict=True))
        inside = target != real_root and target.is_relative_to(real_root)
        regular = inside and stat.S_ISREG(os.stat(target).st_mode)
    except (OSError, ValueError, RuntimeError, TypeError) as exc:
        raise NoSuchFile(f"{path} does not exist") from exc
    if not regular:
        raise NoSuchFile(f"{path} does not exist")
    return target
