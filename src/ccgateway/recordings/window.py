"""Which slice of the catalog a recording query asks for: its date window and its page of rows.

The one reading of the query interfaces' ``startdate``/``enddate`` and
``startposition``/``endposition`` (docs/interfaces.md, "Finding recordings: dates and paging"),
and the one writing of a result's time. Pure: "now" comes from the node's ``Clock``; a bad value
raises ``GatewayError(000-002)`` naming the parameter.

Values come as query parameters (strings, already percent-decoded) or, from the admin API and
the CLI, as integers. Leading and trailing ASCII whitespace is ignored; an empty value, and
``undefined`` or ``null`` (what JavaScript writes for a parameter it has no value for), are
absent. Digits are ASCII digits only: ``int()`` also takes ``"٤"``, ``"１"`` and ``"1_0"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from ccgateway import retcodes
from ccgateway.errors import GatewayError
from ccgateway.node.clock import Clock

DATE_FORMAT = "yyyy-MM-dd HH:mm:ss"
DEFAULT_DAYS = 7
PAGE_SIZE = 20
MAX_ROWS = 100
MAX_POSITION = 2_147_483_647  # a Java int, the original's; also keeps OFFSET within any database

_DAY_MS = 86_400_000
_ABSENT = frozenset({"", "undefined", "null"})
_WHITESPACE = " \t\r\n\f\v"
_EPOCH_MS = re.compile(r"[0-9]{1,15}")
_POSITION = re.compile(r"[0-9]{1,10}")
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")
_MAX_EPOCH_MS = 253_402_214_400_000 - 1  # 9999-12-31 00:00:00 UTC: any zone's wall time fits
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TimeWindow:
    """Calls started from ``start_ms`` to ``end_ms``, both included (epoch milliseconds)."""

    start_ms: int
    end_ms: int

    def __contains__(self, ms: int) -> bool:
        return self.start_ms <= ms <= self.end_ms


@dataclass(frozen=True)
class Page:
    """Rows ``offset + 1`` to ``offset + limit`` of a result in its order (1-based positions)."""

    offset: int
    limit: int

    @property
    def start_position(self) -> int:
        return self.offset + 1

    @property
    def end_position(self) -> int:
        return self.offset + self.limit


@dataclass(frozen=True)
class Stamp:
    """A result's time: epoch milliseconds, and the same instant as ``yyyy-MM-dd HH:mm:ss``."""

    ms: int
    text: str


Value = str | int | None


def page(startposition: Value, endposition: Value) -> Page:
    """The rows asked for: 1-20 by default; a page of 20 from the start, or up to the end."""
    start = _position("startposition", startposition)
    end = _position("endposition", endposition)
    if end is None:
        return Page((start or 1) - 1, PAGE_SIZE)
    if start is None:
        start = max(1, end - PAGE_SIZE + 1)
    if end < start:
        raise _bad("endposition", "before startposition")
    if end - start + 1 > MAX_ROWS:
        raise _bad("endposition", f"at most {MAX_ROWS} rows from startposition")
    return Page(start - 1, end - start + 1)


class Calendar:
    """Dates as the recording queries read and answer them, in one zone (``TIME_ZONE``)."""

    def __init__(self, zone: tzinfo, clock: Clock, *, max_days: int = 31) -> None:
        if max_days < DEFAULT_DAYS:
            raise ValueError(f"max_days must be at least the default window's {DEFAULT_DAYS}")
        self._zone = zone
        self._clock = clock
        self._max_days = max_days

    def window(self, startdate: Value, enddate: Value) -> TimeWindow:
        """The calls asked for: the last 7 days by default; one end given, 7 days from it."""
        start = self._instant("startdate", startdate)
        end = self._instant("enddate", enddate)
        now = self._clock.now_ms()
        if start is None:
            if end is None:
                return TimeWindow(now - DEFAULT_DAYS * _DAY_MS, now)
            return TimeWindow(end.first_ms - DEFAULT_DAYS * _DAY_MS, end.last_ms)
        if end is None:
            if start.first_ms > now:
                raise _bad("startdate", "in the future")
            return TimeWindow(start.first_ms, min(start.first_ms + DEFAULT_DAYS * _DAY_MS, now))
        if start.first_ms > end.last_ms:
            raise _bad("startdate", "after enddate")
        if end.wall - start.wall > timedelta(days=self._max_days):
            raise _bad("enddate", f"more than {self._max_days} days after startdate")
        return TimeWindow(start.first_ms, end.last_ms)

    def format(self, ms: int) -> str:
        """``ms`` as ``yyyy-MM-dd HH:mm:ss`` in the zone."""
        return self._wall(ms).strftime("%Y-%m-%d %H:%M:%S")

    def stamp(self, ms: int) -> Stamp:
        return Stamp(ms, self.format(ms))

    def _wall(self, ms: int) -> datetime:
        return (_EPOCH + timedelta(milliseconds=ms)).astimezone(self._zone).replace(tzinfo=None)

    def _instant(self, name: str, value: Value) -> _Instant | None:
        text = _text(name, value)
        if text is None:
            return None
        if _EPOCH_MS.fullmatch(text):
            ms = int(text)
            if ms > _MAX_EPOCH_MS:
                raise _bad(name, f"epoch milliseconds up to {_MAX_EPOCH_MS}")
            return _Instant(ms, ms, self._wall(ms))
        match = _DATE.fullmatch(text)
        if not match:
            raise _bad(name, f"{DATE_FORMAT} or epoch milliseconds")
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        if not 1970 <= year <= 9998:
            raise _bad(name, "a year from 1970 to 9998")
        try:
            wall = datetime(year, month, day, hour, minute, second)
        except ValueError:
            raise _bad(name, f"not a date ({DATE_FORMAT})") from None
        # fold=0: a wall time the zone passes twice (clocks going back) is its first occurrence;
        # one it skips (clocks going forward) is read with the offset before the change.
        first = (wall.replace(tzinfo=self._zone) - _EPOCH) // timedelta(milliseconds=1)
        return _Instant(first, first + 999, wall)  # the whole second: an end includes it


@dataclass(frozen=True)
class _Instant:
    first_ms: int
    last_ms: int
    wall: datetime  # in the zone, naive: the day limit counts calendar days, DST or not


def _text(name: str, value: Value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _bad(name, "not a string or a number")
    text = str(value).strip(_WHITESPACE)
    return None if text in _ABSENT else text


def _position(name: str, value: Value) -> int | None:
    text = _text(name, value)
    if text is None:
        return None
    if not _POSITION.fullmatch(text) or not 1 <= int(text) <= MAX_POSITION:
        raise _bad(name, f"a whole number from 1 to {MAX_POSITION}")
    return int(text)


def _bad(name: str, why: str) -> GatewayError:
    return GatewayError(retcodes.BAD_INTERFACE_PARAMETER, f"{name}: {why}")
