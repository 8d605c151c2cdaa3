"""The canonical encoding of audit events (docs/audit.md, "The canonical encoding")."""

from __future__ import annotations

import json

import hypothesis
import hypothesis.strategies

from ccgateway.audit.events import canonical


@hypothesis.settings(max_examples=1000)
@hypothesis.given(
    hypothesis.strategies.recursive(
        hypothesis.strategies.none()
        | hypothesis.strategies.booleans()
        | hypothesis.strategies.integers(min_value=-(2**70), max_value=2**70)
        | hypothesis.strategies.text(),
        lambda inner: (
            hypothesis.strategies.lists(inner, max_size=4)
            | hypothesis.strategies.dictionaries(hypothesis.strategies.text(), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_the_fast_canonical_encoding_is_the_standard_librarys(value: object) -> None:
    """``events.canonical`` takes orjson's path when it can: byte for byte what the documented
    definition (``json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=True)``)
    writes, for any text (control characters, DEL, non-ASCII, lone surrogates) and integer."""
    document = {"value": value}
    expected = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")
    assert canonical(document) == expected
