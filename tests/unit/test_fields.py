from __future__ import annotations

import pytest

from ccgateway import retcodes
from ccgateway.errors import GatewayError
from ccgateway.wire.fields import FieldReader
from ccgateway.wire.guid import parse_set_guid, request_guid, set_guid_value


def reader(**data: object) -> FieldReader:
    return FieldReader(data, retcodes.SIGN_IN_PARAMETER_INVALID)


def test_integers_from_strings_or_numbers() -> None:
    assert reader(status="4").integer("status", default=0) == 4
    assert reader(status=3).integer("status", default=0) == 3
    assert reader().integer("status", default=4) == 4
    assert reader(status="").integer("status", default=4) == 4
    for bad in (True, "4.0", "four", [4], "9" * 20, "--5", "\u00b2", "\u0664", "4_0"):
        with pytest.raises(GatewayError) as info:
            reader(status=bad).integer("status", default=0)
        assert info.value.retcode is retcodes.SIGN_IN_PARAMETER_INVALID


def test_booleans_from_strings_or_json() -> None:
    assert reader(x="false").boolean("x", default=True) is False
    assert reader(x="TRUE").boolean("x", default=False) is True
    assert reader(x=False).boolean("x", default=True) is False
    assert reader().boolean("x", default=True) is True
    for bad in ("yes", 1, [True]):
        with pytest.raises(GatewayError):
            reader(x=bad).boolean("x", default=True)


def test_text_limits() -> None:
    assert reader(p=7101).text("p", max_length=24) == "7101"
    assert reader(p="").text("p", max_length=24, required=True) == ""
    with pytest.raises(GatewayError):
        reader().text("p", max_length=24, required=True)
    with pytest.raises(GatewayError):
        reader(p="x" * 25).text("p", max_length=24)
    with pytest.raises(GatewayError):
        reader(p="a\nb").text("p", max_length=24)
    with pytest.raises(GatewayError):
        reader(p={"a": 1}).text("p", max_length=24)
    with pytest.raises(GatewayError):  # a lone surrogate (JSON "\ud800") cannot be encoded
        reader(p="a\ud800").text("p", max_length=24)


def test_set_guid_round_trip() -> None:
    value = set_guid_value("279fe21d-2caa-4437-84c3-ab9e9dae20f5.AgentGateway0")
    assert value == "JSESSIONID=279fe21d-2caa-4437-84c3-ab9e9dae20f5.AgentGateway0"
    assert value.count("=") == 1
    assert parse_set_guid(value) == "279fe21d-2caa-4437-84c3-ab9e9dae20f5.AgentGateway0"
    assert parse_set_guid("other=1") is None
    assert parse_set_guid("JSESSIONID=") is None


def test_request_guid() -> None:
    assert request_guid({"Guid": " abc "}) == "abc"
    assert request_guid({}) is None
    assert request_guid({"Guid": ""}) is None
    assert request_guid({"Guid": "x" * 500}) is None
    assert request_guid({"Guid": "  "}) is None
    for junk in ("\udcff\udcfe", "caf\u00e9", "a\u0085b"):  # undecodable bytes, non-ASCII
        assert request_guid({"Guid": junk}) is None
