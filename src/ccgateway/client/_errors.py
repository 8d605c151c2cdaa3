"""What can go wrong talking to a gateway, as one tree.

::

    Exception
     └── ClientError              base of everything ccgateway.client raises
          ├── RefusedError        the gateway answered a retcode other than "0" (.retcode, .message)
          │    └── SignedOutError the agent is no longer signed in (100-006, or refused polls)
          ├── TransportError      the network failed (connect, reset, timeout) after the retries
          │    └── CertificateError  the server's certificate is not trusted or not the pinned one
          ├── VerificationError   the bytes do not match Repr-Digest (the .part file is deleted)
          └── ProtocolError       the server answered something a gateway never should

The aiohttp exceptions are translated into these in one place (``_connection.translate``), so no
aiohttp type leaks out of the package.
"""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error of :mod:`ccgateway.client`."""


class RefusedError(ClientError):
    """The gateway refused: ``retcode`` (e.g. ``100-004``) and the gateway's ``message``."""

    def __init__(self, retcode: str, message: str, interface: str = "") -> None:
        self.retcode = retcode
        self.message = message
        self.interface = interface
        where = f" ({interface})" if interface else ""
        super().__init__(f"{retcode} {message}{where}".strip())


class SignedOutError(RefusedError):
    """The agent's session ended on the gateway (sign-out elsewhere, idle timeout, 100-006)."""


class TransportError(ClientError):
    """The connection failed: refused, reset, cut short or timed out."""


class CertificateError(TransportError):
    """TLS: the certificate was not trusted (use a CA file) or not the pinned fingerprint."""


class VerificationError(ClientError):
    """The downloaded file's SHA-256 is not the one announced in ``Repr-Digest``."""


class ProtocolError(ClientError):
    """An answer no gateway should give (not JSON where JSON is due, a bad Content-Range, ...)."""
