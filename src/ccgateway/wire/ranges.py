"""Range and conditional-request decisions for downloads (RFC 9110 §13, §14), pure.

:func:`decide` is the one place a download endpoint turns request headers and the
:class:`Validators` of a representation into a status: 200, 206, 304, 412 or 416. Every
malformed header degrades to "ignore that header" and nothing here ever raises on request input.

Decisions:

* Preconditions run in RFC 9110 §13.2.2 order: If-Match (strong comparison), else
  If-Unmodified-Since; then If-None-Match (weak comparison), else If-Modified-Since; then Range.
  ``*`` matches in both If-Match and If-None-Match, as a representation always exists here.
* Entity-tag lists are parsed leniently: well-formed members count, junk members never match.
  An If-Match made only of junk therefore fails (412); an empty header counts as absent.
* HEAD is decided exactly like GET (same 206/416/304), so HEAD sends the headers GET would.
  Other methods get only the preconditions (an If-None-Match match gives 412), never a range.
* A Range that is not ``bytes``, is syntactically invalid (including a ``last < first`` member
  or a number longer than 19 digits), or has more than ``max_ranges`` members is ignored (200).
* A zero-length representation ignores every Range and answers 200 with an empty body: the
  only range RFC 9110 deems satisfiable there (a suffix) would select nothing anyway.
* Overlapping or adjacent ranges are coalesced. If more than one range remains the full body
  is sent (200): multipart/byteranges is not implemented.
* If-Range: an entity-tag matches only by strong comparison (``W/`` never matches); a date
  matches only if it equals Last-Modified to the second. Junk or a mismatch means full 200.
* Dates compare at whole seconds, Last-Modified floored and clamped to years 1970..9999.
* RFC 850 dates with two-digit years pivot at 70: ``69`` is 2069, ``70`` is 1970.
* Methods are case-sensitive tokens: ``get`` is not GET.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z, the last IMF-fixdate
_MAX_DIGITS = 19  # 2**63 - 1 has 19 digits
_MAX_DATE_LENGTH = 64

_MON = "(" + "|".join(_MONTHS) + ")"
_TIME = r"(\d\d):(\d\d):(\d\d)"
_FLAGS = re.ASCII | re.IGNORECASE
_IMF = re.compile(rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) {_MON} (\d{{4}}) {_TIME} GMT", _FLAGS)
_RFC850 = re.compile(
    rf"(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, (\d\d)-{_MON}-(\d\d) {_TIME} GMT", _FLAGS
)
_ASCTIME = re.compile(
    rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) {_MON} ([ \d]\d) {_TIME} (\d{{4}})", _FLAGS
)
_ETAG = re.compile(r'(W/)?("[^"\x00-\x20\x7f]*")')
_SEP = re.compile(r"[ \t]*(?:,|\Z)")

_Tag = tuple[bool, str]  # (weak, opaque-tag including its quotes)


@dataclass(frozen=True)
class Validators:
    """What a backend knows of one stored representation: strong ETag (quoted), mtime, size."""

    etag: str
    last_modified: float
    size: int

    def __post_init__(self) -> None:
        if self.size < 0 or not math.isfinite(self.last_modified):
            raise ValueError("Validators need size >= 0 and a finite last_modified")


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` to ``end`` inclusive, both within the representation."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


class RangeKind(enum.Enum):
    IGNORED = "ignored"  # no Range, or one we may ignore: send the full body
    SATISFIABLE = "satisfiable"
    UNSATISFIABLE = "unsatisfiable"  # 416


@dataclass(frozen=True)
class RangeResult:
    """What a Range header asks for; ``ranges`` sorted and coalesced when satisfiable."""

    kind: RangeKind
    ranges: tuple[ByteRange, ...] = ()


_IGNORED = RangeResult(RangeKind.IGNORED)


@dataclass(frozen=True)
class Decision:
    """The outcome of one GET or HEAD; ``ranges`` holds the one range of a 206, else empty."""

    status: int
    validators: Validators
    ranges: tuple[ByteRange, ...] = ()

    @property
    def offset(self) -> int:
        """Where the body starts in the representation."""
        return self.ranges[0].start if self.status == 206 else 0

    @property
    def content_length(self) -> int | None:
        """The body length of a 200 or 206; None otherwise (no body, or the caller's own)."""
        if self.status == 200:
            return self.validators.size
        return self.ranges[0].length if self.status == 206 else None

    @property
    def content_range(self) -> str | None:
        if self.status == 206:
            return self.ranges[0].content_range(self.validators.size)
        return f"bytes */{self.validators.size}" if self.status == 416 else None

    def headers(self) -> dict[str, str]:
        """The response headers this decision determines (no Content-Type, no Repr-Digest)."""
        out: dict[str, str] = {}
        if self.status in (200, 206, 304):
            out["ETag"] = self.validators.etag
            out["Last-Modified"] = http_date(self.validators.last_modified)
        if self.status in (200, 206):
            out["Accept-Ranges"] = "bytes"
        if (content_range := self.content_range) is not None:
            out["Content-Range"] = content_range
        if (content_length := self.content_length) is not None:
            out["Content-Length"] = str(content_length)
        return out


def strong_etag(sha256_hex: str) -> str:
    """``"sha256-<hex>"``: a strong ETag, quotes included, from the content's SHA-256."""
    return f'"sha256-{sha256_hex.lower()}"'


def _second(epoch_seconds: float) -> int:
    if math.isnan(epoch_seconds):
        return 0
    return int(min(max(epoch_seconds, 0.0), float(_MAX_EPOCH)))


def http_date(epoch_seconds: float) -> str:
    """IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``; floored, clamped to 1970..9999."""
    t = _EPOCH + timedelta(seconds=_second(epoch_seconds))
    return f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year:04d} {t:%H:%M:%S} GMT"


def parse_http_date(value: str) -> float | None:
    """Epoch seconds of an IMF-fixdate, RFC 850 or asctime date; None when it is none of them."""
    if not isinstance(value, str) or len(value) > _MAX_DATE_LENGTH:
        return None
    text = value.strip()
    if m := _IMF.fullmatch(text):
        day, month, year, hour, minute, sec = m.groups()
    elif m := _RFC850.fullmatch(text):
        day, month, yy, hour, minute, sec = m.groups()
        year = str(int(yy) + (2000 if int(yy) < 70 else 1900))
    elif m := _ASCTIME.fullmatch(text):
        month, day, hour, minute, sec, year = m.groups()
    else:
        return None
    month_number = _MONTHS.index(month.title()) + 1
    try:
        t = datetime(int(year), month_number, int(day), int(hour), int(minute), tzinfo=UTC)
    except ValueError:
        return None
    if int(sec) > 60:
        return None
    return t.timestamp() + min(int(sec), 59)


def _digits(text: str) -> int | None:
    if 0 < len(text) <= _MAX_DIGITS and text.isascii() and text.isdigit():
        return int(text)
    return None


def parse_range(header: str | None, size: int, max_ranges: int = 16) -> RangeResult:
    """Parse a ``Range`` header against a representation of ``size`` bytes (see module notes)."""
    if not isinstance(header, str) or size <= 0:
        return _IGNORED
    unit, eq, range_set = header.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return _IGNORED
    members = [m for m in (part.strip(" \t") for part in range_set.split(",")) if m]
    if not members or len(members) > max_ranges:
        return _IGNORED
    wanted: list[ByteRange] = []
    for member in members:
        first_text, dash, last_text = member.partition("-")
        if not dash:
            return _IGNORED
        last = _digits(last_text) if last_text else None
        if not first_text:  # suffix-range: the final `last` bytes
            if last is None:
                return _IGNORED
            if last > 0:
                wanted.append(ByteRange(max(size - last, 0), size - 1))
            continue
        first = _digits(first_text)
        if first is None or (last_text and last is None) or (last is not None and last < first):
            return _IGNORED
        if first < size:
            wanted.append(ByteRange(first, size - 1 if last is None else min(last, size - 1)))
    if not wanted:
        return RangeResult(RangeKind.UNSATISFIABLE)
    wanted.sort(key=lambda r: r.start)
    merged = [wanted[0]]
    for r in wanted[1:]:
        if r.start <= merged[-1].end + 1:
            merged[-1] = ByteRange(merged[-1].start, max(merged[-1].end, r.end))
        else:
            merged.append(r)
    return RangeResult(RangeKind.SATISFIABLE, tuple(merged))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's stripped value by exact then case-insensitive name; None if absent or empty."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next(
            (v for k, v in headers.items() if isinstance(k, str) and k.lower() == lowered), None
        )
    if not isinstance(value, str):
        return None
    return value.strip(" \t") or None


def _etag_list(value: str) -> list[_Tag]:
    """The well-formed entity-tags of a comma-separated list; junk members are skipped."""
    tags: list[_Tag] = []
    pos, n = 0, len(value)
    while pos < n:
        if value[pos] in " \t,":
            pos += 1
            continue
        m = _ETAG.match(value, pos)
        sep = _SEP.match(value, m.end()) if m else None
        if m and sep:
            tags.append((m.group(1) is not None, m.group(2)))
            pos = sep.end()
        else:
            comma = value.find(",", m.end() if m else pos)
            pos = n if comma < 0 else comma + 1
    return tags


def _one_etag(value: str) -> _Tag | None:
    m = _ETAG.fullmatch(value.strip(" \t"))
    return None if m is None else (m.group(1) is not None, m.group(2))


def _list_matches(value: str, current: _Tag | None, *, strong: bool) -> bool:
    if value == "*":
        return True
    if current is None:
        return False
    for weak, opaque in _etag_list(value):
        if opaque == current[1] and not (strong and (weak or current[0])):
            return True
    return False


def _if_range_matches(value: str, current: _Tag | None, last_modified: int) -> bool:
    if value.startswith(('"', "W/")):  # an entity-tag, compared strongly
        return current is not None and not current[0] and _one_etag(value) == (False, current[1])
    return parse_http_date(value) == last_modified


def decide(method: str, headers: Mapping[str, str], validators: Validators) -> Decision:
    """Decide a GET or HEAD from its request headers (RFC 9110 §13.2.2; see module notes)."""
    safe = method in ("GET", "HEAD")
    current = _one_etag(validators.etag)
    last_modified = _second(validators.last_modified)
    if (if_match := _header(headers, "If-Match")) is not None:
        if not _list_matches(if_match, current, strong=True):
            return Decision(412, validators)
    elif (since := _header(headers, "If-Unmodified-Since")) is not None:
        date = parse_http_date(since)
        if date is not None and last_modified > date:
            return Decision(412, validators)
    if (if_none_match := _header(headers, "If-None-Match")) is not None:
        if _list_matches(if_none_match, current, strong=False):
            return Decision(304 if safe else 412, validators)
    elif safe and (since := _header(headers, "If-Modified-Since")) is not None:
        date = parse_http_date(since)
        if date is not None and last_modified <= date:
            return Decision(304, validators)
    if not safe:
        return Decision(200, validators)
    requested = parse_range(_header(headers, "Range"), validators.size)
    if requested.kind is RangeKind.IGNORED:
        return Decision(200, validators)
    if_range = _header(headers, "If-Range")
    if if_range is not None and not _if_range_matches(if_range, current, last_modified):
        return Decision(200, validators)
    if requested.kind is RangeKind.UNSATISFIABLE:
        return Decision(416, validators)
    if len(requested.ranges) != 1:
        return Decision(200, validators)
    return Decision(206, validators, requested.ranges)
