"""RESP2 encoding and decoding of the scripts' lane (``ccgateway.stores.redis.lane``)."""

from __future__ import annotations

from typing import Any

import pytest
import redis.exceptions

from ccgateway.stores.redis.lane import RespError, pack, parse


def parsed(data: bytes) -> tuple[Any, int] | None:
    return parse(bytearray(data))


# -- pack ---------------------------------------------------------------------------------------


def test_pack_writes_an_array_of_bulk_strings() -> None:
    assert pack(["EVALSHA", b"ab", 0]) == b"*3\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n0\r\n"


def test_pack_counts_bytes_not_characters_and_keeps_crlf_in_data() -> None:
    assert pack(["é", b"a\r\nb", -12, ""]) == (
        b"*4\r\n$2\r\n\xc3\xa9\r\n$4\r\na\r\nb\r\n$3\r\n-12\r\n$0\r\n\r\n"
    )


def test_pack_without_arguments_is_an_empty_array() -> None:
    assert pack([]) == b"*0\r\n"


# -- parse: one reply ---------------------------------------------------------------------------


def test_bulk_string() -> None:
    assert parsed(b"$5\r\nhello\r\n") == (b"hello", 11)


def test_bulk_string_may_hold_crlf_and_be_empty() -> None:
    assert parsed(b"$4\r\na\r\nb\r\n") == (b"a\r\nb", 10)
    assert parsed(b"$0\r\n\r\n") == (b"", 6)


def test_integers() -> None:
    assert parsed(b":42\r\n") == (42, 5)
    assert parsed(b":-7\r\n") == (-7, 5)


def test_nil_bulk_and_nil_array_are_none() -> None:
    assert parsed(b"$-1\r\n") == (None, 5)
    assert parsed(b"*-1\r\n") == (None, 5)


def test_nested_arrays() -> None:
    data = b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n*0\r\n"
    assert parsed(data) == ([1, [b"a", None], []], len(data))


def test_simple_string_is_text() -> None:
    assert parsed(b"+OK\r\n") == ("OK", 5)


def test_error_reply_is_returned_not_raised() -> None:
    result = parsed(b"-NOSCRIPT No matching script.\r\n")
    assert result is not None
    error, end = result
    assert isinstance(error, RespError)
    assert isinstance(error, redis.exceptions.ResponseError)
    assert str(error) == "NOSCRIPT No matching script."
    assert end == 31


def test_error_inside_an_array_is_a_value() -> None:
    result = parsed(b"*2\r\n-ERR bad\r\n:1\r\n")
    assert result is not None
    (error, one), _ = result
    assert isinstance(error, RespError)
    assert str(error) == "ERR bad"
    assert one == 1


def test_parse_starts_at_pos_and_leaves_the_rest() -> None:
    buffer = bytearray(b"+OK\r\n:5\r\n$1\r\nx")
    assert parse(buffer, 5) == (5, 9)
    assert parse(buffer, 9) is None


@pytest.mark.parametrize("data", [b"%1\r\n:1\r\n:2\r\n", b"_\r\n", b"#t\r\n", b"\r\n"])
def test_unknown_type_byte_raises_invalid_response(data: bytes) -> None:
    with pytest.raises(redis.exceptions.InvalidResponse):
        parsed(data)


# -- parse: incomplete buffers ------------------------------------------------------------------

REPLIES: list[tuple[bytes, Any]] = [
    (b"+OK\r\n", "OK"),
    (b":1234\r\n", 1234),
    (b"$-1\r\n", None),
    (b"$6\r\nab\r\ncd\r\n", b"ab\r\ncd"),
    (b"-ERR boom\r\n", RespError("ERR boom")),
    (b"*3\r\n$3\r\nfoo\r\n*2\r\n:1\r\n$0\r\n\r\n*-1\r\n", [b"foo", [1, b""], None]),
    (b"$3\r\nend\r\n", b"end"),
]


def _comparable(value: Any) -> Any:
    return ("error", str(value)) if isinstance(value, RespError) else value


def test_every_prefix_of_several_replies_parses_the_complete_ones_then_none() -> None:
    stream = b"".join(raw for raw, _ in REPLIES)
    ends: list[int] = []
    for raw, _ in REPLIES:
        ends.append((ends[-1] if ends else 0) + len(raw))
    for cut in range(len(stream) + 1):
        buffer = bytearray(stream[:cut])
        values: list[Any] = []
        pos = 0
        while (result := parse(buffer, pos)) is not None:
            value, pos = result
            values.append(_comparable(value))
        complete = sum(1 for end in ends if end <= cut)
        assert values == [_comparable(value) for _, value in REPLIES[:complete]], cut
        assert pos == (ends[complete - 1] if complete else 0), cut
