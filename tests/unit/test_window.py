"""The recording queries' dates and paging (recordings/window.py; docs/interfaces.md)."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest

from ccgateway import retcodes
from ccgateway.errors import GatewayError
from ccgateway.node.clock import ManualClock
from ccgateway.recordings.window import Calendar, Page, Stamp, TimeWindow, page

PARIS = ZoneInfo("Europe/Paris")
DAY = 86_400_000
HOUR = 3_600_000
NOW = 1_796_554_800_000  # 2026-12-06 12:00:00 in Paris (UTC+1)


def calendar(max_days: int = 31, zone: ZoneInfo = PARIS) -> Calendar:
    return Calendar(zone, ManualClock(NOW), max_days=max_days)


def refused(parameter: str, call: Callable[[], object]) -> str:
    """The detail of the 000-002 a call raises; it names the parameter."""
    with pytest.raises(GatewayError) as info:
        call()
    assert info.value.retcode is retcodes.BAD_INTERFACE_PARAMETER
    assert info.value.retcode.code == "000-002"
    assert info.value.detail.startswith(parameter + ":")
    return info.value.detail


# --- dates -------------------------------------------------------------------------------------


@pytest.mark.parametrize("absent", [None, "", "   ", "undefined", "null", " undefined "])
def test_no_dates_is_the_last_seven_days(absent: str | None) -> None:
    assert calendar().window(absent, absent) == TimeWindow(NOW - 7 * DAY, NOW)


def test_a_formatted_date_is_read_in_the_zone_and_an_end_covers_its_whole_second() -> None:
    window = calendar().window("2026-12-01 00:00:00", "2026-12-06 12:00:00")
    assert window == TimeWindow(NOW - 5 * DAY - 12 * HOUR, NOW + 999)
    assert NOW + 999 in window and NOW + 1000 not in window
    utc = calendar(zone=ZoneInfo("UTC")).window("2026-12-01 00:00:00", "2026-12-01 00:00:00")
    assert utc == TimeWindow(NOW - 5 * DAY - 11 * HOUR, NOW - 5 * DAY - 11 * HOUR + 999)


def test_epoch_milliseconds_are_taken_exactly() -> None:
    window = calendar().window(str(NOW - DAY), NOW)  # a string or an integer
    assert window == TimeWindow(NOW - DAY, NOW)
    assert calendar().window(" 1796468400000 ", "1796554800000") == window


def test_the_two_forms_mix() -> None:
    assert calendar().window("2026-12-05 12:00:00", NOW) == TimeWindow(NOW - DAY, NOW)


def test_only_a_start_ends_seven_days_later() -> None:
    start = NOW - 30 * DAY
    assert calendar().window(start, None) == TimeWindow(start, start + 7 * DAY)


def test_only_a_start_ends_now_at_the_latest() -> None:
    assert calendar().window(NOW - 2 * DAY, "") == TimeWindow(NOW - 2 * DAY, NOW)
    assert calendar().window(NOW, None) == TimeWindow(NOW, NOW)


def test_only_a_start_in_the_future_is_refused() -> None:
    assert "future" in refused("startdate", lambda: calendar().window(NOW + 1, None))


def test_only_an_end_starts_seven_days_before() -> None:
    assert calendar().window(None, NOW - DAY) == TimeWindow(NOW - 8 * DAY, NOW - DAY)
    formatted = calendar().window("undefined", "2026-12-06 12:00:00")
    assert formatted == TimeWindow(NOW - 7 * DAY, NOW + 999)


def test_an_end_in_the_future_is_kept() -> None:
    assert calendar().window(NOW, NOW + DAY) == TimeWindow(NOW, NOW + DAY)


def test_start_after_end_is_refused() -> None:
    assert "after enddate" in refused("startdate", lambda: calendar().window(NOW, NOW - 1))
    refused("startdate", lambda: calendar().window("2026-12-06 12:00:01", "2026-12-06 12:00:00"))
    # the same second at both ends is one second, not an error
    one = calendar().window("2026-12-06 12:00:00", "2026-12-06 12:00:00")
    assert one == TimeWindow(NOW, NOW + 999)


def test_at_most_the_configured_days() -> None:
    assert calendar().window(NOW - 31 * DAY, NOW) == TimeWindow(NOW - 31 * DAY, NOW)
    assert (
        calendar().window("2026-11-05 12:00:00", "2026-12-06 12:00:00").start_ms == NOW - 31 * DAY
    )
    detail = refused("enddate", lambda: calendar().window(NOW - 31 * DAY - 1, NOW))
    assert "31 days" in detail
    refused("enddate", lambda: calendar().window("2026-11-05 11:59:59", "2026-12-06 12:00:00"))
    assert calendar(max_days=60).window(NOW - 60 * DAY, NOW).start_ms == NOW - 60 * DAY
    assert "10 days" in refused(
        "enddate", lambda: calendar(max_days=10).window(NOW - 11 * DAY, NOW)
    )


def test_the_limit_counts_calendar_days_across_a_clock_change() -> None:
    # 1 October to 1 November in Paris is 31 days on the calendar, 31 days and an hour elapsed.
    window = calendar().window("2026-10-01 00:00:00", "2026-11-01 00:00:00")
    assert window.end_ms + 1 - window.start_ms == 31 * DAY + HOUR + 1000


def test_a_time_passed_twice_is_its_first_occurrence() -> None:
    # 2026-10-25 in Paris: 03:00 summer time goes back to 02:00, so 02:30 happens twice.
    window = calendar().window("2026-10-25 02:30:00", "2026-10-25 02:30:00")
    assert window.start_ms == 1_792_888_200_000  # 00:30 UTC, summer time (UTC+2)
    assert calendar().format(window.start_ms) == "2026-10-25 02:30:00"
    assert calendar().format(window.start_ms + HOUR) == "2026-10-25 02:30:00"  # the second


def test_a_time_skipped_reads_with_the_offset_before_the_change() -> None:
    # 2026-03-29 in Paris: 02:00 winter time jumps to 03:00, so 02:30 never happens.
    start = calendar().window("2026-03-29 02:30:00", None).start_ms
    assert start == 1_774_747_800_000  # 01:30 UTC
    assert calendar().format(start) == "2026-03-29 03:30:00"


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-01",  # no time
        "2026-12-01T00:00:00",  # ISO, not the format
        "2026-12-01  00:00:00",  # two spaces
        "2026/12/01 00:00:00",
        "2026-12-01 00:00:00.000",
        "2026-12-01 24:00:00",
        "2026-02-30 00:00:00",  # no such day
        "0000-01-01 00:00:00",
        "1969-12-31 23:59:59",
        "9999-12-31 23:59:59",
        "２０２６-12-01 00:00:00",  # fullwidth digits
        "-1",  # negative
        "-1796554800000",
        "+1796554800000",
        "1_796_554_800_000",
        "1796554800000.0",
        "1.7e12",
        "١٧٩٦٥٥٤٨٠٠٠٠٠",  # Arabic-Indic digits: str.isdigit() and int() accept them
        "１７９６５５４８００００００",  # fullwidth digits
        "²",
        "9" * 16,  # huge
        "253402214400000",  # past 9999-12-30 in every zone
        "NaN",
        "Undefined",
        "now",
        "\x00",
    ],
)
def test_odd_dates_are_refused(value: str) -> None:
    refused("startdate", lambda: calendar().window(value, None))
    refused("enddate", lambda: calendar().window(None, value))


@pytest.mark.parametrize("value", [-1, True, 1.5, 10**20])
def test_odd_numbers_are_refused(value: object) -> None:
    refused("startdate", lambda: calendar().window(value, None))  # type: ignore[arg-type]


def test_epoch_zero_is_a_date() -> None:
    assert calendar().window(0, 0) == TimeWindow(0, 0)


def test_a_result_time_is_epoch_ms_and_the_formatted_string_in_the_zone() -> None:
    assert calendar().stamp(NOW + 999) == Stamp(NOW + 999, "2026-12-06 12:00:00")
    assert calendar(zone=ZoneInfo("UTC")).format(NOW) == "2026-12-06 11:00:00"
    assert calendar(zone=ZoneInfo("Asia/Shanghai")).format(0) == "1970-01-01 08:00:00"
    # a formatted result reads back as the same second
    text = calendar().format(1_792_000_123_456)
    assert calendar().window(text, text).start_ms == 1_792_000_123_000


def test_the_limit_may_not_be_below_the_default_window() -> None:
    with pytest.raises(ValueError, match="at least"):
        Calendar(PARIS, ManualClock(NOW), max_days=6)


# --- paging ------------------------------------------------------------------------------------


@pytest.mark.parametrize("absent", [None, "", " ", "undefined", "null"])
def test_no_positions_is_rows_1_to_20(absent: str | None) -> None:
    assert page(absent, absent) == Page(offset=0, limit=20)
    assert (page(None, None).start_position, page(None, None).end_position) == (1, 20)


def test_positions_are_1_based_and_inclusive() -> None:
    assert page("1", "1") == Page(0, 1)
    assert page(21, 40) == Page(20, 20)
    assert page(" 5 ", "104") == Page(4, 100)
    assert page("007", "7") == Page(6, 1)


def test_only_a_start_is_a_page_of_20_from_it() -> None:
    assert page("41", None) == Page(40, 20)
    assert page(2_147_483_647, "") == Page(2_147_483_646, 20)


def test_only_an_end_is_a_page_of_20_up_to_it() -> None:
    assert page(None, "60") == Page(40, 20)
    assert page("undefined", 20) == Page(0, 20)
    assert page(None, "5") == Page(0, 5)  # from max(1, end - 19)
    assert page(None, 1) == Page(0, 1)


def test_past_the_end_is_still_a_page() -> None:
    # The caller answers an empty page with the total; the positions themselves are fine.
    assert page(1_000_001, 1_000_020) == Page(1_000_000, 20)


def test_a_start_below_1_is_refused() -> None:
    refused("startposition", lambda: page("0", "10"))
    refused("startposition", lambda: page(0, None))
    refused("endposition", lambda: page(None, "0"))


def test_an_end_before_the_start_is_refused() -> None:
    assert "before startposition" in refused("endposition", lambda: page("10", "9"))


def test_more_than_100_rows_is_refused() -> None:
    assert page(1, 100) == Page(0, 100)
    assert "100 rows" in refused("endposition", lambda: page(1, 101))
    refused("endposition", lambda: page("50", "150"))


@pytest.mark.parametrize(
    "value",
    [
        "-1",
        "1.0",
        "1e3",
        "+1",
        "1_0",
        "٤",  # str.isdigit() and int() accept it
        "１",  # fullwidth
        "²",
        "2147483648",  # past a Java int
        "9" * 30,
        "NaN",
        "Undefined",
        "one",
    ],
)
def test_odd_positions_are_refused(value: str) -> None:
    refused("startposition", lambda: page(value, None))
    refused("endposition", lambda: page(None, value))


@pytest.mark.parametrize("value", [-1, True, 1.0, 10**30])
def test_odd_position_numbers_are_refused(value: object) -> None:
    refused("startposition", lambda: page(value, None))  # type: ignore[arg-type]
