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
RATE_LIMITED = Retcode(
    "000-007",
    "interface called repeatedly",
    "HTTP 429: the agent's accepted requests exceeded REQUEST_RATE_PER_AGENT, or the client"
    " address's sign-ins SIGNIN_RATE_PER_IP; retry after the Retry-After seconds",
)
TOO_MANY_DOWNLOADS = Retcode(
    "000-008",
    "too many downloads in progress",
    "HTTP 429: the agent already has MAX_DOWNLOADS_PER_AGENT downloads running on this node",
    ours=True,
)
NODE_BUSY = Retcode(
    "000-009",
    "gateway busy",
    "HTTP 503: the node is at REQUEST_RATE or MAX_DOWNLOADS, the client address holds"
    " MAX_CONNECTIONS_PER_IP connections, the node is shutting down, or (a new download) its"
    " audit journal cannot be written (a full DATA_DIR); retry after Retry-After seconds"
    " (another node may answer at once)",
    ours=True,
)
NO_RIGHT = Retcode(
    "000-003",
    "no right to invite resource",
    "the Guid header is missing, wrong, or expired for a signed-in agent; admin API: bad token",
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
AGENT_LOCKED = Retcode(
    "110-016",
    "account locked",
    "sign-in of a work number (known or not) locked after SIGNIN_LOCKOUT_ATTEMPTS failed sign-ins"
    " within SIGNIN_LOCKOUT_WINDOW_S, for SIGNIN_LOCKOUT_S, the right password too",
)

RECORD_DOWNLOAD_OFF = Retcode(
    "104-001", "recording download switch is off", "RECORD_DOWNLOAD_FLAG is not ON"
)
NO_PLAYBACK_RIGHT = Retcode(
    "104-002",
    "no recording inspection or playback right",
    "the file is neither the agent's own nor in an inspected VDN (also for an absent foreign file)",
)
BAD_FILE_NAME = Retcode(
    "104-003",
    "invalid file name",
    "recordId/hwFileName missing or not a safe drive-letter path (traversal, devices, encodings)",
)
NO_DRIVE_MAPPING = Retcode(
    "104-004", "no drive letter mapping configured", "the path's drive letter is not mapped"
)
FILE_MISSING = Retcode(
    "104-005",
    "file does not exist",
    "no such file under the mapped root (or a symlink leaving the root)",
)
LOCATION_NOT_CONFIGURED = Retcode(
    "104-010",
    "locationId not configured in pool mode",
    "no RECORD_DRIVE_MAP_<locationId> for the locationId given",
)
VIDEO_DOWNLOAD_OFF = Retcode(
    "108-001", "video file download switch is off", "VIDEO_DOWNLOAD_FLAG is not ON", ours=True
)
VIDEO_EVENTS_OFF = Retcode(
    "108-002", "video event switch is off", "IF_SUPPORT_VIDEO is not ON", ours=True
)
BAD_CONFERENCE_ID = Retcode(
    "108-003", "conferenceId missing or malformed", "conferenceId absent or not an id", ours=True
)
BAD_FILE_TYPE = Retcode(
    "108-004", "fileType missing or invalid", "fileType absent or not 0, 1 or 2", ours=True
)
NO_SUCH_CONFERENCE = Retcode(
    "108-005",
    "no such conference or no recording",
    "unknown conference, a conference without recordings, or one the agent may not see",
    ours=True,
)
NO_SUCH_RECORD = Retcode(
    "108-006", "no such recordId in this conference", "recordId malformed or not in it", ours=True
)
NO_SUCH_FILE_TYPE = Retcode(
    "108-007",
    "the recording has no file of this fileType",
    "the chosen recording has no HD/SD/aux file as asked",
    ours=True,
)
SOURCE_FAILED = Retcode(
    "108-008",
    "recording source failed or file missing",
    "the file is gone from its source, changed since registration, or the source failed",
    ours=True,
)
NO_VIDEO_RIGHT = Retcode(
    "108-009",
    "no right to download video recordings",
    "the agent's video download right is withheld",
    ours=True,
)
ADMIN_BAD_REQUEST = Retcode(
    "109-001",
    "invalid admin request",
    "admin API: a field is missing or invalid, or the recording already exists",
    ours=True,
)
ADMIN_NOT_FOUND = Retcode(
    "109-002", "no such conference or recording", "admin API: nothing to show or remove", ours=True
)
ADMIN_SOURCE_FAILED = Retcode(
    "109-003",
    "recording source unreadable",
    "admin API: a file to register cannot be read",
    ours=True,
)

ALL: tuple[Retcode, ...] = (
    SUCCESS,
    UNKNOWN_ERROR,
    BAD_INTERFACE_PARAMETER,
    NO_RIGHT,
    RATE_LIMITED,
    TOO_MANY_DOWNLOADS,
    NODE_BUSY,
    SIGN_IN_PARAMETER_INVALID,
    ALREADY_SIGNED_IN,
    WRONG_PASSWORD,
    NOT_SIGNED_IN,
    WRONG_AGENT_TYPE,
    INVALID_IP,
    AGENT_LOCKED,
    RECORD_DOWNLOAD_OFF,
    NO_PLAYBACK_RIGHT,
    BAD_FILE_NAME,
    NO_DRIVE_MAPPING,
    FILE_MISSING,
    LOCATION_NOT_CONFIGURED,
    VIDEO_DOWNLOAD_OFF,
    VIDEO_EVENTS_OFF,
    BAD_CONFERENCE_ID,
    BAD_FILE_TYPE,
    NO_SUCH_CONFERENCE,
    NO_SUCH_RECORD,
    NO_SUCH_FILE_TYPE,
    SOURCE_FAILED,
    NO_VIDEO_RIGHT,
    ADMIN_BAD_REQUEST,
    ADMIN_NOT_FOUND,
    ADMIN_SOURCE_FAILED,
)
