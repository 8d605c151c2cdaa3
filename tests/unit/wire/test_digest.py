from __future__ import annotations

import base64
import hashlib
import random

import pytest

from ccgateway.wire.digest import (
    digest_header_for,
    parse_repr_digest,
    parse_want_repr_digest,
    repr_digest,
)

EMPTY_HEX = hashlib.sha256(b"").hexdigest()
EMPTY_B64 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
HELLO = hashlib.sha256(b"hello").digest()
HELLO_B64 = base64.b64encode(HELLO).decode()


def test_repr_digest_is_a_structured_byte_sequence() -> None:
    assert repr_digest(EMPTY_HEX) == f"sha-256=:{EMPTY_B64}:"
    assert repr_digest(HELLO.hex()) == f"sha-256=:{HELLO_B64}:"
    assert repr_digest(HELLO.hex().upper()) == f"sha-256=:{HELLO_B64}:"


@pytest.mark.parametrize("bad", ["", "ab", "zz" * 32, EMPTY_HEX[:-2], EMPTY_HEX + "00"])
def test_repr_digest_rejects_non_sha256_hex(bad: str) -> None:
    with pytest.raises(ValueError):
        repr_digest(bad)


def test_parse_repr_digest_round_trips() -> None:
    assert parse_repr_digest(repr_digest(HELLO.hex())) == {"sha-256": HELLO}


def test_parse_repr_digest_members_whitespace_and_unknown_algorithms() -> None:
    sha512 = hashlib.sha512(b"hello").digest()
    value = (
        f" sha-512=:{base64.b64encode(sha512).decode()}: ,\t"
        f"sha-256=:{HELLO_B64}:;note=1 , x-custom=:AAEC:"
    )
    assert parse_repr_digest(value) == {"sha-512": sha512, "sha-256": HELLO, "x-custom": b"\0\1\2"}


def test_parse_repr_digest_is_lenient() -> None:
    unpadded = HELLO_B64.rstrip("=")
    assert parse_repr_digest(f"sha-256=:{unpadded}:") == {"sha-256": HELLO}
    assert parse_repr_digest(f"SHA-256=:{HELLO_B64}:") == {"sha-256": HELLO}
    assert parse_repr_digest("a=:AAAA:, a=:AQID:") == {"a": b"\1\2\3"}  # last one wins
    assert parse_repr_digest('x="a,b=:AAAA:", sha-256=:AQID:') == {"sha-256": b"\1\2\3"}
    assert parse_repr_digest("empty=::") == {"empty": b""}


@pytest.mark.parametrize(
    "value",
    [
        "",
        ",,,",
        "sha-256",
        "sha-256=",
        "sha-256=abc",
        "sha-256=:abc",
        "sha-256=:not base64!:",
        "sha-256=:A:",  # impossible length
        "sha-256=:AAAA",
        "=:AAAA:",
        "1sha=:AAAA:",
        "sha 256=:AAAA:",
        "sha-256=:AA-_:",  # base64url is not the SF alphabet
        "sha-256=?1",
        "sha-256=5",
        '"unterminated, sha-256=:AAAA:',
        ":" * 50,
        "sha-256=:" + "A" * 20_000 + ":",
    ],
)
def test_parse_repr_digest_ignores_junk(value: str) -> None:
    assert parse_repr_digest(value) == {}


def test_parse_repr_digest_keeps_good_members_next_to_junk() -> None:
    assert parse_repr_digest(f"junk, sha-256=:{HELLO_B64}:, x=:A:") == {"sha-256": HELLO}


def test_parse_repr_digest_rejects_non_strings() -> None:
    assert parse_repr_digest(None) == {}  # type: ignore[arg-type]
    assert parse_repr_digest(b"sha-256=:AAAA:") == {}  # type: ignore[arg-type]


def test_parse_want_repr_digest() -> None:
    assert parse_want_repr_digest(None) == {}
    assert parse_want_repr_digest("sha-256=1, sha-512=3") == {"sha-256": 1, "sha-512": 3}
    assert parse_want_repr_digest(" sha-256 = 10;q=1 ,junk, md5=?1, x=0.5, y=-1") == {
        "sha-256": 10,
        "y": -1,
    }
    assert parse_want_repr_digest("a=" + "1" * 16) == {}


@pytest.mark.parametrize(
    "want",
    [
        None,
        "",
        "sha-256=1",
        "sha-256=10, sha-512=3",
        "sha-512=3",  # we only have sha-256, and send it anyway
        "sha-512=0",
        "sha-256=junk",
        "sha-256=?0",
        "sha-256=0.0",
        "sha-256=0, sha-256=1",  # last member wins
        "garbage!!!",
    ],
)
def test_digest_header_is_sent_unless_sha256_has_weight_zero(want: str | None) -> None:
    assert digest_header_for(want, HELLO.hex()) == f"sha-256=:{HELLO_B64}:"


@pytest.mark.parametrize(
    "want", ["sha-256=0", "sha-256=0, sha-512=3", " SHA-256 = 0 ", "sha-256=00;x=1", "sha-256=-0"]
)
def test_digest_header_withheld_when_sha256_refused(want: str) -> None:
    assert digest_header_for(want, HELLO.hex()) is None


def test_digest_parsers_never_raise() -> None:
    rng = random.Random(9530)
    pieces = ["sha-256", "=", ":", ",", ";", '"', "\\", " ", "AAAA", "?1", "0", "1", "é", "\x00"]
    for _ in range(20_000):
        value = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert all(isinstance(v, bytes) for v in parse_repr_digest(value).values())
        assert all(isinstance(v, int) for v in parse_want_repr_digest(value).values())
        assert digest_header_for(value, EMPTY_HEX) in (None, f"sha-256=:{EMPTY_B64}:")
