from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from multidict import CIMultiDict

from ccgateway.wire.ranges import (
    ByteRange,
    Decision,
    RangeKind,
    RangeResult,
    Validators,
    decide,
    http_date,
    parse_http_date,
    parse_range,
    strong_etag,
)

HEX = "ab" * 32
ETAG = strong_etag(HEX)
OPAQUE = ETAG  # the quoted opaque tag
LM = 784_111_777  # Sun, 06 Nov 1994 08:49:37 GMT
LM_TEXT = "Sun, 06 Nov 1994 08:49:37 GMT"
V = Validators(etag=ETAG, last_modified=LM + 0.5, size=1000)
GIB = 2**30


def get(headers: Mapping[str, str], validators: Validators = V) -> Decision:
    return decide("GET", headers, validators)


def status(headers: Mapping[str, str], validators: Validators = V) -> int:
    return get(headers, validators).status


def ranges(header: str | None, size: int = 1000, max_ranges: int = 16) -> RangeResult:
    return parse_range(header, size, max_ranges)


def sat(*pairs: tuple[int, int]) -> RangeResult:
    return RangeResult(RangeKind.SATISFIABLE, tuple(ByteRange(a, b) for a, b in pairs))


IGNORED = RangeResult(RangeKind.IGNORED)
UNSAT = RangeResult(RangeKind.UNSATISFIABLE)


# -- validators, ETags, dates ------------------------------------------------------------------


def test_strong_etag_is_quoted_full_hex() -> None:
    assert ETAG == f'"sha256-{HEX}"'
    assert strong_etag(HEX.upper()) == ETAG


def test_validators_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        Validators(ETAG, 0.0, -1)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            Validators(ETAG, bad, 1)


def test_http_date_is_imf_fixdate_floored_and_clamped() -> None:
    assert http_date(LM) == LM_TEXT
    assert http_date(LM + 0.999) == LM_TEXT
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(-5) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(float("nan")) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(1e30) == "Fri, 31 Dec 9999 23:59:59 GMT"
    assert http_date(float("inf")) == "Fri, 31 Dec 9999 23:59:59 GMT"
    assert http_date(951_782_400) == "Tue, 29 Feb 2000 00:00:00 GMT"


@pytest.mark.parametrize(
    "text",
    [
        LM_TEXT,
        "  Sun, 06 Nov 1994 08:49:37 GMT ",
        "sun, 06 nov 1994 08:49:37 gmt",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Sun Nov 06 08:49:37 1994",
    ],
)
def test_parse_http_date_accepts_the_three_formats(text: str) -> None:
    assert parse_http_date(text) == LM


def test_parse_http_date_details() -> None:
    assert parse_http_date("Thu, 31 Dec 1998 23:59:60 GMT") == 915_148_799  # leap second
    assert parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT") == 0
    assert (
        parse_http_date("Sunday, 01-Jan-69 00:00:00 GMT")
        == datetime(2069, 1, 1, tzinfo=UTC).timestamp()
    )
    for epoch in (0, LM, 951_782_400, 4_102_444_800, 253_402_300_799):
        assert parse_http_date(http_date(epoch)) == epoch


@pytest.mark.parametrize(
    "text",
    [
        "",
        "junk",
        "784111777",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 GMT x",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 0000 08:49:37 GMT",
        "Sun, ０6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT" + " " * 100,
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994 GMT",
    ],
)
def test_parse_http_date_rejects_junk(text: str) -> None:
    assert parse_http_date(text) is None


def test_parse_http_date_rejects_non_strings() -> None:
    assert parse_http_date(None) is None  # type: ignore[arg-type]
    assert parse_http_date(784111777) is None  # type: ignore[arg-type]


# -- parse_range ---------------------------------------------------------------------------------


def test_byte_range() -> None:
    r = ByteRange(10, 19)
    assert r.length == 10
    assert r.content_range(1000) == "bytes 10-19/1000"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-499", sat((0, 499))),
        ("bytes=500-", sat((500, 999))),
        ("bytes=-200", sat((800, 999))),
        ("bytes=-1000", sat((0, 999))),
        ("bytes=-5000", sat((0, 999))),  # suffix larger than the file
        ("bytes=0-0", sat((0, 0))),
        ("bytes=999-999", sat((999, 999))),
        ("bytes=999-", sat((999, 999))),
        ("bytes=900-5000", sat((900, 999))),  # end clamped
        ("bytes=0-99999999999999999", sat((0, 999))),
        ("BYTES=0-1", sat((0, 1))),
        ("Bytes=0-1", sat((0, 1))),
        ("bytes=  0-1 ,\t", sat((0, 1))),
        ("bytes=1000-", UNSAT),  # start beyond the end
        ("bytes=1000-2000", UNSAT),
        ("bytes=-0", UNSAT),
        ("bytes=1000-, 5000-6000, -0", UNSAT),
        ("bytes=1000-, 0-9", sat((0, 9))),  # unsatisfiable members dropped
        ("bytes=0-9,20-29", sat((0, 9), (20, 29))),
        ("bytes=20-29,0-9", sat((0, 9), (20, 29))),
        ("bytes=0-9,10-19", sat((0, 19))),  # adjacent coalesced
        ("bytes=5-20,0-9", sat((0, 20))),  # overlapping coalesced
        ("bytes=0-9,,,20-29", sat((0, 9), (20, 29))),  # empty list elements
        ("bytes=0-,-10", sat((0, 999))),
        ("bytes=0-0,2-2,1-1", sat((0, 2))),
    ],
)
def test_parse_range(header: str, expected: RangeResult) -> None:
    assert ranges(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes",
        "bytes=",
        "bytes=,",
        "bytes=abc",
        "bytes=5-3",  # last < first
        "bytes=0-9,5-3",
        "bytes=--5",
        "bytes=1-2-3",
        "bytes=-",
        "bytes=0x10-",
        "bytes=+5-",
        "bytes=-+5",
        "bytes=1_0-",
        "bytes=1 -2",
        "bytes=1- 2",
        "bytes=５-",  # full-width digit
        "bytes=²-",
        "bytes=0-1;2",
        "bytes=0-9, junk",
        "bytes 0-1",
        "items=0-1",
        "bytes=" + "9" * 20 + "-",  # more than 19 digits
        "bytes=0-" + "9" * 20,
        "bytes=-" + "1" * 20,
        "bytes=0-1=2",
    ],
)
def test_invalid_ranges_are_ignored(header: str | None) -> None:
    assert ranges(header) == IGNORED


def test_too_many_ranges_are_ignored() -> None:
    sixteen = "bytes=" + ",".join(f"{i * 10}-{i * 10 + 1}" for i in range(16))
    assert ranges(sixteen).kind is RangeKind.SATISFIABLE
    assert len(ranges(sixteen).ranges) == 16
    assert ranges(sixteen + ",500-501") == IGNORED
    assert ranges("bytes=0-1,5-6", max_ranges=1) == IGNORED
    assert ranges("bytes=0-1", max_ranges=1) == sat((0, 1))
    assert ranges("bytes=0-1", max_ranges=0) == IGNORED


@pytest.mark.parametrize("header", ["bytes=0-", "bytes=0-0", "bytes=-1", "bytes=5-", "bytes=-0"])
def test_zero_length_representation_ignores_range(header: str) -> None:
    assert ranges(header, size=0) == IGNORED


def test_offsets_beyond_4_gib() -> None:
    size = 5 * GIB
    assert ranges("bytes=4294967296-4294967305", size) == sat((4_294_967_296, 4_294_967_305))
    assert ranges("bytes=-10", size) == sat((size - 10, size - 1))
    assert ranges(f"bytes={size}-", size) == UNSAT
    big = 2**63
    assert ranges("bytes=9223372036854775807-", big) == sat((big - 1, big - 1))
    assert ranges("bytes=-9223372036854775807", big) == sat((1, big - 1))
    assert ranges("bytes=9223372036854775800-9999999999999999999", big) == sat((big - 8, big - 1))


def test_parse_range_matches_a_byte_set_oracle() -> None:
    """Every pair of small specs selects exactly the bytes a naive model says."""
    specs = [f"{a}-{b}" for a in range(7) for b in range(a, 8)]
    specs += [f"{a}-" for a in range(8)] + [f"-{n}" for n in range(8)]

    def selected(spec: str, size: int) -> set[int]:
        first, _, last = spec.partition("-")
        if not first:
            return set(range(max(size - int(last), 0), size))
        return set(range(int(first), min(int(last) + 1 if last else size, size)))

    for size in range(1, 7):
        for one, two in itertools.product(specs, repeat=2):
            result = ranges(f"bytes={one},{two}", size)
            want = selected(one, size) | selected(two, size)
            if not want:
                assert result == UNSAT
                continue
            assert result.kind is RangeKind.SATISFIABLE
            got = [i for r in result.ranges for i in range(r.start, r.end + 1)]
            assert got == sorted(want)  # sorted, no overlap
            for left, right in itertools.pairwise(result.ranges):
                assert left.end + 1 < right.start  # coalesced


# -- decide: Range and If-Range -----------------------------------------------------------------


def test_no_headers_is_200_with_full_headers() -> None:
    d = get({})
    assert (d.status, d.ranges, d.offset, d.content_length, d.content_range) == (
        200,
        (),
        0,
        1000,
        None,
    )
    assert d.headers() == {
        "ETag": ETAG,
        "Last-Modified": LM_TEXT,
        "Accept-Ranges": "bytes",
        "Content-Length": "1000",
    }


def test_single_range_is_206() -> None:
    d = get({"Range": "bytes=100-199"})
    assert d.status == 206
    assert d.ranges == (ByteRange(100, 199),)
    assert d.offset == 100
    assert d.headers() == {
        "ETag": ETAG,
        "Last-Modified": LM_TEXT,
        "Accept-Ranges": "bytes",
        "Content-Range": "bytes 100-199/1000",
        "Content-Length": "100",
    }


def test_unsatisfiable_range_is_416() -> None:
    d = get({"Range": "bytes=1000-"})
    assert d.status == 416
    assert d.ranges == ()
    assert d.content_length is None
    assert d.headers() == {"Content-Range": "bytes */1000"}


@pytest.mark.parametrize("header", ["bytes=0-9,20-29", "bytes=-1,0-0", "bytes=0-1,5-"])
def test_multiple_ranges_send_the_full_body(header: str) -> None:
    d = get({"Range": header})
    assert (d.status, d.ranges, d.content_length) == (200, (), 1000)


def test_coalesced_ranges_are_one_206() -> None:
    d = get({"Range": "bytes=0-9,10-19,5-15"})
    assert (d.status, d.ranges) == (206, (ByteRange(0, 19),))


@pytest.mark.parametrize("header", ["bytes=5-3", "items=0-1", "bytes=x", "bytes=" + "1" * 20 + "-"])
def test_invalid_range_sends_200(header: str) -> None:
    assert status({"Range": header}) == 200


def test_zero_size_file_always_200() -> None:
    empty = Validators(ETAG, LM, 0)
    for header in ("bytes=0-", "bytes=-1", "bytes=5-10", "bytes=-0"):
        d = get({"Range": header}, empty)
        assert (d.status, d.content_length) == (200, 0)
        assert d.headers()["Content-Length"] == "0"


def test_range_beyond_4_gib() -> None:
    big = Validators(ETAG, LM, 5 * GIB)
    d = get({"Range": "bytes=4294967296-4294967305"}, big)
    assert d.status == 206
    assert d.offset == 4_294_967_296
    assert d.content_length == 10
    assert d.content_range == "bytes 4294967296-4294967305/5368709120"
    d = get({"Range": "bytes=5000000000-"}, big)
    assert d.content_range == f"bytes 5000000000-{5 * GIB - 1}/{5 * GIB}"
    assert d.content_length == 5 * GIB - 5_000_000_000
    assert get({}, big).headers()["Content-Length"] == "5368709120"


@pytest.mark.parametrize(
    ("if_range", "expected"),
    [
        (ETAG, 206),
        (f" {ETAG} ", 206),
        ('"sha256-other"', 200),
        (f"W/{ETAG}", 200),  # weak never matches
        (LM_TEXT, 206),  # date equal to Last-Modified, to the second
        ("Sunday, 06-Nov-94 08:49:37 GMT", 206),
        (http_date(LM - 1), 200),
        (http_date(LM + 1), 200),
        ("junk", 200),
        (ETAG[:-1], 200),
        (f"{ETAG}, {ETAG}", 200),  # a list is not an entity-tag
        ("*", 200),
    ],
)
def test_if_range(if_range: str, expected: int) -> None:
    assert status({"Range": "bytes=0-9", "If-Range": if_range}) == expected


def test_if_range_with_unsatisfiable_range() -> None:
    assert status({"Range": "bytes=5000-", "If-Range": ETAG}) == 416
    assert status({"Range": "bytes=5000-", "If-Range": '"other"'}) == 200


def test_if_range_without_range_is_ignored() -> None:
    assert status({"If-Range": ETAG}) == 200
    assert status({"If-Range": '"other"'}) == 200


def test_weak_validator_never_satisfies_if_range_or_if_match() -> None:
    weak = Validators(f"W/{ETAG}", LM, 1000)
    assert status({"Range": "bytes=0-9", "If-Range": ETAG}, weak) == 200
    assert status({"Range": "bytes=0-9", "If-Range": f"W/{ETAG}"}, weak) == 200
    assert status({"If-Match": f"W/{ETAG}"}, weak) == 412
    assert status({"If-None-Match": ETAG}, weak) == 304


# -- decide: preconditions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        ETAG,
        f"W/{ETAG}",
        "*",
        f'"a", {ETAG}',
        f'W/"a",W/{ETAG} , "b"',
        f"junk, {ETAG}",
        f'"unterminated, {ETAG}',
        f'"a"junk, {ETAG}',
    ],
)
def test_if_none_match_hit_is_304(value: str) -> None:
    d = get({"If-None-Match": value, "Range": "bytes=0-9"})
    assert d.status == 304
    assert d.headers() == {"ETag": ETAG, "Last-Modified": LM_TEXT}
    assert d.content_length is None


@pytest.mark.parametrize(
    "value",
    ['"other"', "junk", ETAG[1:-1], f"w/{ETAG}", f"{ETAG}x", '"a", "b"', "**", ", ,", '"a" *'],
)
def test_if_none_match_miss_proceeds(value: str) -> None:
    assert status({"If-None-Match": value}) == 200
    assert status({"If-None-Match": value, "Range": "bytes=0-9"}) == 206


def test_if_none_match_for_other_methods_is_412() -> None:
    assert decide("POST", {"If-None-Match": ETAG}, V).status == 412
    assert decide("POST", {"If-None-Match": '"x"'}, V).status == 200


@pytest.mark.parametrize("value", [ETAG, "*", f'"x", {ETAG}', f"junk,{ETAG}"])
def test_if_match_hit_proceeds(value: str) -> None:
    assert status({"If-Match": value}) == 200
    assert status({"If-Match": value, "Range": "bytes=0-9"}) == 206


@pytest.mark.parametrize("value", ['"other"', f"W/{ETAG}", "junk", ETAG[1:-1], '"a", "b"'])
def test_if_match_miss_is_412(value: str) -> None:
    d = get({"If-Match": value, "Range": "bytes=0-9"})
    assert d.status == 412
    assert d.headers() == {}
    assert decide("HEAD", {"If-Match": value}, V).status == 412


def test_empty_conditional_headers_count_as_absent() -> None:
    names = ("If-Match", "If-None-Match", "If-Range", "If-Modified-Since", "If-Unmodified-Since")
    for name in names:
        assert status({name: " ", "Range": "bytes=0-9"}) == 206
        assert status({name: "", "Range": "bytes=0-9"}) == 206
    assert status({"Range": " "}) == 200


def test_if_match_is_evaluated_before_if_none_match() -> None:
    assert status({"If-Match": '"other"', "If-None-Match": ETAG}) == 412
    assert status({"If-Match": ETAG, "If-None-Match": ETAG}) == 304


def test_if_unmodified_since() -> None:
    assert status({"If-Unmodified-Since": LM_TEXT}) == 200
    assert status({"If-Unmodified-Since": http_date(LM + 100)}) == 200
    assert status({"If-Unmodified-Since": http_date(LM - 1)}) == 412
    assert status({"If-Unmodified-Since": "junk"}) == 200
    # ignored when If-Match is present
    assert status({"If-Match": ETAG, "If-Unmodified-Since": http_date(LM - 1)}) == 200
    assert status({"If-Match": '"x"', "If-Unmodified-Since": http_date(LM + 1)}) == 412


def test_if_modified_since() -> None:
    assert status({"If-Modified-Since": LM_TEXT}) == 304  # equal to the second
    assert status({"If-Modified-Since": http_date(LM + 100)}) == 304
    assert status({"If-Modified-Since": http_date(LM - 1)}) == 200
    assert status({"If-Modified-Since": http_date(LM - 1), "Range": "bytes=0-9"}) == 206
    assert status({"If-Modified-Since": "junk"}) == 200
    # ignored when If-None-Match is present, and for methods other than GET and HEAD
    assert status({"If-None-Match": '"x"', "If-Modified-Since": http_date(LM + 1)}) == 200
    assert decide("POST", {"If-Modified-Since": http_date(LM + 1)}, V).status == 200


def test_preconditions_beat_range() -> None:
    headers = {"Range": "bytes=5000-", "If-Modified-Since": LM_TEXT}
    assert status(headers) == 304
    assert status({"Range": "bytes=5000-", "If-Match": '"x"'}) == 412


def test_other_methods_never_get_a_range() -> None:
    assert decide("POST", {"Range": "bytes=0-9"}, V).status == 200
    assert decide("get", {"Range": "bytes=0-9"}, V).status == 200  # methods are case-sensitive


HEAD_CASES: list[dict[str, str]] = [
    {},
    {"Range": "bytes=0-9"},
    {"Range": "bytes=5000-"},
    {"Range": "bytes=0-1,5-6"},
    {"Range": "bytes=0-9", "If-Range": ETAG},
    {"Range": "bytes=0-9", "If-Range": '"x"'},
    {"If-None-Match": ETAG},
    {"If-Match": '"x"'},
    {"If-Modified-Since": LM_TEXT},
    {"If-Unmodified-Since": http_date(LM - 1)},
]


@pytest.mark.parametrize("headers", HEAD_CASES)
def test_head_is_decided_like_get(headers: dict[str, str]) -> None:
    assert decide("HEAD", headers, V) == decide("GET", headers, V)


def test_header_names_are_case_insensitive() -> None:
    assert status({"range": "bytes=0-9"}) == 206
    assert status({"RANGE": "bytes=0-9", "if-range": '"x"'}) == 200
    assert status({"if-none-match": ETAG}) == 304
    multi = CIMultiDict([("range", "bytes=0-9"), ("IF-MATCH", ETAG)])
    assert status(multi) == 206


def test_non_string_header_values_are_ignored() -> None:
    headers: dict[str, object] = {"Range": 5, "If-Match": None, "If-None-Match": [ETAG]}
    assert status(headers) == 200  # type: ignore[arg-type]
    assert status({1: "x", "range": "bytes=0-0"}) == 206  # type: ignore[dict-item]


# -- never raises --------------------------------------------------------------------------------

_NAMES = ["Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "range"]
_NAMES += ["If-Unmodified-Since"]
_PIECES = [
    "bytes=",
    "BYTES=",
    "=",
    "-",
    "-",
    ",",
    ", ",
    " ",
    "\t",
    '"',
    "W/",
    "w/",
    "*",
    ETAG,
    f"W/{ETAG}",
    LM_TEXT,
    "GMT",
    ";",
    "\x00",
    "\x7f",
    "é",
    "５",
    "²",
    "\ud800",
    "bytes=0-",
    "-0",
    "0",
]


def _random_value(rng: random.Random, size: int) -> str:
    parts: list[str] = []
    for _ in range(rng.randint(0, 8)):
        roll = rng.random()
        if roll < 0.35:
            parts.append(str(rng.choice([0, 1, size - 1, size, size + 1, rng.randint(0, 2**64)])))
        elif roll < 0.45:
            parts.append(str(rng.randint(0, 10**25)))
        elif roll < 0.5:
            parts.append(http_date(rng.uniform(LM - 5, LM + 5)))
        else:
            parts.append(rng.choice(_PIECES))
    return "".join(parts)


def test_decide_never_raises_on_random_headers() -> None:
    rng = random.Random(20240607)
    statuses: set[int] = set()
    for _ in range(20_000):
        size = rng.choice([0, 1, 2, 1000, 5 * GIB, 2**63, rng.randint(0, 2**40)])
        validators = Validators(ETAG, rng.choice([LM, LM + 0.5, 0.0, -1.0, 1e20]), size)
        headers = {rng.choice(_NAMES): _random_value(rng, size) for _ in range(rng.randint(0, 4))}
        if rng.random() < 0.5:
            headers["Range"] = "bytes=" + _random_value(rng, size)
        method = rng.choice(["GET", "HEAD", "POST"])
        d = decide(method, headers, validators)
        statuses.add(d.status)
        assert d.status in (200, 206, 304, 412, 416)
        out = d.headers()
        if d.status == 206:
            assert method != "POST"
            (r,) = d.ranges
            assert 0 <= r.start <= r.end < size
            assert out["Content-Length"] == str(r.length)
            assert out["Content-Range"] == f"bytes {r.start}-{r.end}/{size}"
        else:
            assert d.ranges == ()
        result = parse_range(headers.get("Range"), size, rng.randint(0, 20))
        for left, right in itertools.pairwise(result.ranges):
            assert left.end + 1 < right.start
        assert all(0 <= r.start <= r.end < size for r in result.ranges)
    assert statuses == {200, 206, 304, 412, 416}
