"""Body and query fields as clients really send them: numbers and booleans as strings or JSON."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ccgateway.errors import GatewayError
from ccgateway.retcodes import Retcode

_MISSING = object()
_INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits only: int() also takes "²" and "٤" (or fails)


class FieldReader:
    """Reads typed fields from a JSON object, raising ``GatewayError(retcode)`` on a bad one."""

    def __init__(self, data: Mapping[str, Any], retcode: Retcode) -> None:
        self._data = data
        self._retcode = retcode

    def _bad(self, name: str, why: str) -> GatewayError:
        return GatewayError(self._retcode, f"{name}: {why}")

    def text(self, name: str, *, max_length: int, required: bool = False, default: str = "") -> str:
        value = self._data.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise self._bad(name, "missing")
            return default
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self._bad(name, "not a string")
        text = str(value)
        if len(text) > max_length:
            raise self._bad(name, f"longer than {max_length}")
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise self._bad(name, "control character")
        if any(0xD800 <= ord(c) <= 0xDFFF for c in text):  # a lone "\ud800" escape: not UTF-8
            raise self._bad(name, "lone surrogate")
        return text

    def integer(self, name: str, *, default: int) -> int:
        value = self._data.get(name, _MISSING)
        if value is _MISSING or value is None or value == "":
            return default
        if isinstance(value, bool):
            raise self._bad(name, "not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, str) and len(value) < 12 and _INTEGER.fullmatch(value.strip()):
            return int(value)
        raise self._bad(name, "not an integer")

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self._data.get(name, _MISSING)
        if value is _MISSING or value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise self._bad(name, "not a boolean")
