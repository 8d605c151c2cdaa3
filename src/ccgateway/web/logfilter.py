"""Keep request bytes out of the log when aiohttp rejects malformed HTTP.

aiohttp answers a request it cannot parse (a header over 16 KiB, a broken request line) with a
plain-text 400 and logs ``Error handling request`` at ERROR with the exception, whose message
quotes the offending bytes: a Guid or an admin token could land in the log that way. This filter
turns such records into one WARNING line naming only the exception's class.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError


class MalformedRequestFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = "malformed HTTP request (%s) from %s: answered 400"
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.args = (type(exc).__name__, peer)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


_FILTER = MalformedRequestFilter()


def install() -> None:
    """Filter aiohttp's server log (once per process)."""
    logger = logging.getLogger("aiohttp.server")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
