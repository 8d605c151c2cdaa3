"""Every retcode the gateway can return: the single source of ``docs/errors.md``.

A retcode is the string in the ``retcode`` field of the JSON envelope. ``"0"`` is success; anything
else is ``NNN-NNN``. Codes marked ``ours`` are our own assignment where the CC-Gateway documentation
lists a code without a meaning (108-xxx) or has no code at all.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Retcode:
    code: str
    message: str
    when: str
    ours: bool = False

    @property
    def is_success(self) -> bool:
        return self.code == "0"


SUCCESS = Retcode("0", "success", "the call succeeded")

UNKNOWN_ERROR = Retcode(
    "000-000", "unknown error", "an unexpected server fault; the server log has the details"
)
BAD_INTERFACE_PARAMETER = Retcode(
    "000-002",
    "invalid interface parameter",
    "unknown URL, wrong method, agent id not a number or outside 101-999999, body not a JSON object"
    " or too large",
)
NO_RIGHT = Retcode(
    "000-003",
    "no right to invite resource",
    "the Guid header is missing, wrong, or expired for a signed-in agent",
)
SIGN_IN_PARAMETER_INVALID = Retcode(
    "100-001",
    "sign-in parameter empty or invalid",
    "a sign-in field is missing, of the wrong type or too long; push mode (callBackUri) requested",
)
ALREADY_SIGNED_IN = Retcode(
    "100-002", "agent already signed in", "sign-in while signed in; use forcelogin"
)
WRONG_PASSWORD = Retcode(
    "100-004", "wrong user name or password", "unknown agent or wrong password at sign-in"
)
NOT_SIGNED_IN = Retcode("100-006", "agent not signed in", "the agent has no session")
WRONG_AGENT_TYPE = Retcode(
    "100-012", "wrong agent type", "agenttype is not 4 (PC+phone) or 11 (PC+phone video)"
)
INVALID_IP = Retcode("100-016", "invalid ip", "ip is not an IPv4 address")

ALL: tuple[Retcode, ...] = (
    SUCCESS,
    UNKNOWN_ERROR,
    BAD_INTERFACE_PARAMETER,
    NO_RIGHT,
    SIGN_IN_PARAMETER_INVALID,
    ALREADY_SIGNED_IN,
    WRONG_PASSWORD,
    NOT_SIGNED_IN,
    WRONG_AGENT_TYPE,
    INVALID_IP,
)
