"""The gateway's exceptions.

::

    Exception
     ├── ConfigError            names the bad key and its allowed values; stops start-up
     └── GatewayError           anything a client can cause; carries the Retcode it is answered with
          └── (raised as is, with a retcode from ccgateway.retcodes)

A ``GatewayError`` never becomes a 5xx: the web layer turns it into the JSON envelope.
"""

from __future__ import annotations

from collections.abc import Mapping

from ccgateway.retcodes import Retcode


class ConfigError(Exception):
    """A configuration value is missing or invalid."""


class GatewayError(Exception):
    """A failure a client can cause, answered with ``retcode``.

    ``http_status`` stays 200 for business errors, as the CC-Gateway does; only routing errors
    (unknown path, wrong method) use 404/405, and flow control 429/503 with ``Retry-After``.
    """

    def __init__(
        self,
        retcode: Retcode,
        detail: str = "",
        *,
        http_status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{retcode.code} {retcode.message}" + (f": {detail}" if detail else ""))
        self.retcode = retcode
        self.detail = detail
        self.http_status = http_status
        self.headers: Mapping[str, str] = headers or {}
