"""The ``Set-GUID`` response header and the ``Guid`` request header."""

from __future__ import annotations

from collections.abc import Mapping

SET_GUID = "Set-GUID"
GUID = "Guid"
_PREFIX = "JSESSIONID="
MAX_GUID_LENGTH = 128


def set_guid_value(guid: str) -> str:
    """``JSESSIONID=<guid>``: exactly one ``=``, as clients split on it."""
    return _PREFIX + guid


def parse_set_guid(value: str) -> str | None:
    """The GUID carried by a ``Set-GUID`` value, or None when it has none."""
    if not value.startswith(_PREFIX):
        return None
    return value[len(_PREFIX) :] or None


def request_guid(headers: Mapping[str, str]) -> str | None:
    """The ``Guid`` header (any case) of a request; None if absent, empty, oversized or not
    printable ASCII (a GUID never is: such a value, even undecodable bytes, is just wrong)."""
    value = headers.get(GUID)
    if value is None or not value or len(value) > MAX_GUID_LENGTH:
        return None
    value = value.strip()
    if not value or not value.isascii() or not value.isprintable():
        return None
    return value
