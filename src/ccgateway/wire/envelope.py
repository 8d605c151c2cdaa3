"""The JSON envelope ``{"message", "retcode", "result"}`` every agent interface answers with."""

from __future__ import annotations

import json
from typing import Any

from ccgateway.retcodes import Retcode

JSON_CONTENT_TYPE = "application/json;charset=UTF-8"


def envelope(retcode: Retcode, result: Any = "", *, message: str | None = None) -> dict[str, Any]:
    return {
        "message": retcode.message if message is None else message,
        "retcode": retcode.code,
        "result": result,
    }


def event_envelope(event: dict[str, Any] | None) -> dict[str, Any]:
    """The event poll's shape: ``event`` instead of ``result``; null when no event came."""
    return {"message": "", "retcode": "0", "event": event}


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
