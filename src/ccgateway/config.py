"""Settings: read once at start from ``basic.properties`` plus ``CCGW_<KEY>`` environment overrides.

Every key is declared once in ``KEYS`` with its default, its parser and one line of help; that table
is what ``docs/configuration.md`` documents (a test checks it). Keys the CC-Gateway defines keep its
names and meanings; keys marked ``ours`` cover what the original leaves to Tomcat or does not have.
A bad value raises ``ConfigError`` naming the key and the values it allows.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import javaproperties

from ccgateway.errors import ConfigError

ENV_PREFIX = "CCGW_"

Parser = Callable[[str], Any]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _on_off(value: str) -> bool:
    upper = value.strip().upper()
    if upper not in ("ON", "OFF"):
        raise ValueError("ON or OFF")
    return upper == "ON"


def _int_between(low: int, high: int) -> Parser:
    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise ValueError(f"an integer from {low} to {high}")
        return number

    return parse


def _one_of(*allowed: int) -> Parser:
    def parse(value: str) -> int:
        text = value.strip()
        if text not in {str(a) for a in allowed}:
            raise ValueError(" or ".join(str(a) for a in allowed))
        return int(text)

    return parse


def _text(value: str) -> str:
    return value.strip()


def _sessions_url(value: str) -> str:
    text = value.strip()
    if text != "memory://" and not text.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("memory:// or a redis:// URL")
    return text


def _accel_prefix(value: str) -> str:
    text = value.strip().rstrip("/")
    if text and (not text.startswith("/") or not all(c.isalnum() or c in "/_-" for c in text)):
        raise ValueError("empty, or a location path like /_ccgw_files")
    return text


_DRIVE_ROOT_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def parse_drive_map(value: str) -> dict[str, Path]:
    """``Y:=/srv/recordings;Z:=/mnt/z`` -> ``{"Y": Path("/srv/recordings"), "Z": ...}``."""
    roots: dict[str, Path] = {}
    for entry in value.split(";"):
        if not entry.strip():
            continue
        drive, sep, root = (part.strip() for part in entry.partition("="))
        fmt = "<letter>:=<absolute directory> entries separated by ';'"
        if not sep or not re.fullmatch(r"[A-Za-z]:?", drive):
            raise ValueError(f"{fmt} (bad entry {entry.strip()!r})")
        if not root or not Path(root).is_absolute() or _DRIVE_ROOT_CONTROL.search(root):
            raise ValueError(f"{fmt} ({drive}: root {root!r} is not an absolute path)")
        letter = drive[0].upper()
        if letter in roots:
            raise ValueError(f"{fmt} (drive {letter}: is mapped twice)")
        roots[letter] = Path(root)
    return roots


def _drive_map(value: str) -> dict[str, Path]:
    return parse_drive_map(value)


def _token(value: str) -> str:
    text = value.strip()
    if text and (len(text) < 16 or not text.isascii() or not text.isprintable() or " " in text):
        raise ValueError("empty, or at least 16 printable ASCII characters without spaces")
    return text


def _networks(value: str) -> tuple[IPNetwork, ...]:
    try:
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in value.split(",")
            if part.strip()
        )
    except ValueError:
        raise ValueError("empty, or addresses and networks separated by commas") from None


def _node_name(value: str) -> str:
    text = value.strip()
    if not text or not text.isascii() or not all(c.isalnum() or c in "-_" for c in text):
        raise ValueError("letters, digits, '-' and '_' (e.g. AgentGateway0)")
    return text


# The zone names the system's (or tzdata's) database holds; listing them reads ~600 files, once.
_zone_names = functools.cache(available_timezones)


def _time_zone(value: str) -> ZoneInfo | None:
    text = value.strip()
    if not text:
        return None  # the machine's zone, resolved by load_settings
    if text not in _zone_names():
        raise ValueError("empty (the machine's zone), or an IANA time zone name like Europe/Paris")
    return ZoneInfo(text)


def machine_zone(environ: Mapping[str, str], localtime: Path = Path("/etc/localtime")) -> ZoneInfo:
    """The machine's zone: ``TZ`` when it is an IANA name, else ``/etc/localtime``, else UTC
    (a ``TZ`` holding a POSIX rule such as ``CET-1CEST`` is passed over: set ``TIME_ZONE``)."""
    tz = environ.get("TZ", "").removeprefix(":").strip()
    if tz and tz in _zone_names():
        return ZoneInfo(tz)
    try:
        target = str(localtime.readlink())
    except OSError:
        target = ""
    name = target.rpartition("zoneinfo/")[2] if "zoneinfo/" in target else ""
    if name in _zone_names():
        return ZoneInfo(name)
    try:
        with localtime.open("rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError):
        return ZoneInfo("UTC")


@dataclass(frozen=True)
class Key:
    name: str
    default: str
    parse: Parser
    help: str
    ours: bool = False


KEYS: tuple[Key, ...] = (
    Key(
        "AUTHMODE",
        "2",
        _one_of(1, 2),
        "GUID authentication: 1 static (one GUID per sign-in), "
        "2 dynamic (rotates every GUIDINTERVAL)",
    ),
    Key(
        "GUIDINTERVAL",
        "60000",
        _int_between(1000, 86_400_000),
        "AUTHMODE=2: milliseconds between GUID rotations",
    ),
    Key(
        "GUIDTIMEOUT",
        "120000",
        _int_between(1000, 86_400_000),
        "AUTHMODE=2: milliseconds a rotated-out GUID stays valid; must exceed GUIDINTERVAL",
    ),
    Key(
        "AGENT_POLL_WAIT_FLAG",
        "ON",
        _on_off,
        "ON: an event poll with no event waiting holds until one arrives or the wait ends",
    ),
    Key(
        "AGENT_POLL_WAIT_TIMES",
        "100",
        _int_between(0, 10_000),
        "maximum wait iterations of an event poll",
    ),
    Key(
        "AGENT_POLL_WAIT_INTERVAL",
        "100",
        _int_between(1, 10_000),
        "milliseconds per wait iteration (the poll holds TIMES x INTERVAL at most)",
    ),
    Key(
        "VIDEO_DOWNLOAD_FLAG",
        "ON",
        _on_off,
        "video download switch: videofiledownload, videofiledownloadEx, recordfiledownloadEx",
    ),
    Key("IF_SUPPORT_VIDEO", "ON", _on_off, "video event switch"),
    Key("LISTEN_HOST", "0.0.0.0", _text, "address to listen on", ours=True),  # noqa: S104
    Key("LISTEN_PORT", "8043", _int_between(1, 65535), "TCP port to listen on", ours=True),
    Key(
        "TLS_CERT",
        "",
        _text,
        "PEM certificate (chain) for HTTPS; empty: a self-signed one is "
        "generated in DATA_DIR/tls on first start",
        ours=True,
    ),
    Key("TLS_KEY", "", _text, "PEM private key for TLS_CERT", ours=True),
    Key(
        "DATA_DIR",
        "./ccgateway-data",
        _text,
        "directory for the embedded database, generated TLS files and demo data",
        ours=True,
    ),
    Key(
        "NODE_NAME",
        "AgentGateway0",
        _node_name,
        "this node's name: the GUID suffix (<uuid>.<NODE_NAME>); serverName is it without "
        "trailing digits",
        ours=True,
    ),
    Key(
        "DATABASE_URL",
        "",
        _text,
        "agents, catalog and audit: sqlite:///PATH or postgresql://user@host/db; "
        "empty: sqlite:///DATA_DIR/ccgateway.db",
        ours=True,
    ),
    Key(
        "SESSIONS_URL",
        "memory://",
        _sessions_url,
        "where sessions and event queues live: memory:// (this process only) or "
        "redis://host:port/db (shared by every node)",
        ours=True,
    ),
    Key(
        "GUID_DIGEST_KEY",
        "",
        _token,
        "the key of the GUID digests the session store keeps instead of GUIDs (HMAC-SHA256); "
        "the same on every node; changing it signs every agent out; required with Redis "
        "(SESSIONS_URL), unused with memory://",
        ours=True,
    ),
    Key(
        "ACCEL_REDIRECT",
        "",
        _accel_prefix,
        "behind nginx: an internal location prefix (e.g. /_ccgw_files) to hand local files to "
        "nginx with X-Accel-Redirect; empty: the gateway sends the bytes itself",
        ours=True,
    ),
    Key(
        "AGENT_IDLE_TIMEOUT",
        "120000",
        _int_between(10_000, 86_400_000),
        "milliseconds without an event poll after which an agent is signed out",
        ours=True,
    ),
    Key(
        "RECORD_DOWNLOAD_FLAG",
        "ON",
        _on_off,
        "voice recording download switch: recordfile (off: 104-001)",
        ours=True,
    ),
    Key(
        "RECORD_DRIVE_MAP",
        "",
        _drive_map,
        "drive letters to mount directories, e.g. Y:=/srv/recordings;Z:=/mnt/z; "
        "RECORD_DRIVE_MAP_<locationId> sets a node's map in pool mode",
        ours=True,
    ),
    Key(
        "SENDFILE",
        "ON",
        _on_off,
        "ON: local files go out with zero-copy sendfile on plain HTTP; OFF: 1 MiB copies",
        ours=True,
    ),
    Key(
        "ADMIN_TOKEN",
        "",
        _token,
        "bearer token of the admin API (/ccgateway/admin/v1); empty: the admin API is off",
        ours=True,
    ),
    Key(
        "METRICS_TOKEN",
        "",
        _token,
        "bearer token of the Prometheus metrics at /metrics; empty: /metrics answers 404",
        ours=True,
    ),
    Key(
        "TRUSTED_PROXIES",
        "",
        _networks,
        "reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For names the"
        " client for the audit, the access log and the rate limits; empty: none",
        ours=True,
    ),
    Key(
        "S3_ENDPOINT_URL",
        "",
        _text,
        "s3:// recordings: the S3-compatible endpoint, e.g. http://127.0.0.1:8333; empty: AWS",
        ours=True,
    ),
    Key(
        "S3_REGION",
        "",
        _text,
        "s3:// recordings: the region (empty: botocore's default)",
        ours=True,
    ),
    Key(
        "S3_ACCESS_KEY_ID",
        "",
        _text,
        "s3:// recordings: access key id; empty: botocore's chain (AWS_* variables, profiles)",
        ours=True,
    ),
    Key("S3_SECRET_ACCESS_KEY", "", _text, "s3:// recordings: secret access key", ours=True),
    Key(
        "SOURCE_CONNECT_TIMEOUT",
        "5000",
        _int_between(100, 600_000),
        "http(s):// and s3:// recordings: milliseconds to connect to the upstream",
        ours=True,
    ),
    Key(
        "SOURCE_READ_TIMEOUT",
        "30000",
        _int_between(100, 3_600_000),
        "http(s):// and s3:// recordings: milliseconds an upstream read may wait for data",
        ours=True,
    ),
    Key(
        "SOURCE_RETRIES",
        "2",
        _int_between(0, 10),
        "remote recordings: retries of a failed upstream request before its first byte",
        ours=True,
    ),
    Key(
        "MAX_DOWNLOADS_PER_AGENT",
        "4",
        _int_between(1, 1000),
        "downloads one agent may have in progress at once on this node; more answer 000-008",
        ours=True,
    ),
    Key(
        "MAX_DOWNLOADS",
        "200",
        _int_between(1, 100_000),
        "downloads this node sends at once, all agents together; more answer 000-009",
        ours=True,
    ),
    Key(
        "REQUEST_RATE_PER_AGENT",
        "20",
        _int_between(1, 100_000),
        "requests per second of one agent counted once its GUID (or password) is accepted, from"
        " any address (bursts of twice that); more answer 000-007",
        ours=True,
    ),
    Key(
        "REQUEST_RATE",
        "2000",
        _int_between(1, 1_000_000),
        "requests per second this node accepts in all (bursts of twice that); more answer 000-009",
        ours=True,
    ),
    Key(
        "MAX_CONNECTIONS_PER_IP",
        "512",
        _int_between(0, 1_000_000),
        "open connections one client address may hold (0: no cap); behind nginx every client"
        " has nginx's address, so raise it or set 0 there",
        ours=True,
    ),
    Key(
        "SIGNIN_QUEUE_MAX",
        "64",
        _int_between(0, 100_000),
        "sign-ins that may wait for a password-hashing thread (two hash at once); more answer"
        " 000-009 at once",
        ours=True,
    ),
    Key(
        "SIGNIN_RATE_PER_IP",
        "50",
        _int_between(1, 1_000_000),
        "sign-ins per second one client address may make, whatever the agent ids (behind"
        " TRUSTED_PROXIES: the agent's address); more answer 000-007",
        ours=True,
    ),
    Key(
        "SIGNIN_BURST_PER_IP",
        "500",
        _int_between(1, 10_000_000),
        "sign-ins one client address may make at once before SIGNIN_RATE_PER_IP applies (a"
        " floor behind one NAT address signing in at shift start)",
        ours=True,
    ),
    Key(
        "SIGNIN_LOCKOUT_ATTEMPTS",
        "10",
        _int_between(0, 1000),
        "failed sign-ins of one work number within SIGNIN_LOCKOUT_WINDOW_S that lock it"
        " (110-016) for SIGNIN_LOCKOUT_S; 0: no lockout",
        ours=True,
    ),
    Key(
        "SIGNIN_LOCKOUT_WINDOW_S",
        "600",
        _int_between(1, 86_400),
        "seconds within which SIGNIN_LOCKOUT_ATTEMPTS failed sign-ins lock a work number",
        ours=True,
    ),
    Key(
        "SIGNIN_LOCKOUT_S",
        "300",
        _int_between(1, 86_400),
        "seconds a locked work number stays locked (ccgateway agents unlock, or the admin API,"
        " lift it early)",
        ours=True,
    ),
    Key(
        "HEADER_TIMEOUT_S",
        "10",
        _int_between(1, 3600),
        "seconds a client has to send a whole request head, and then its body, once it began",
        ours=True,
    ),
    Key(
        "KEEPALIVE_TIMEOUT_S",
        "75",
        _int_between(1, 3600),
        "seconds an idle keep-alive connection stays open",
        ours=True,
    ),
    Key(
        "CLIENT_STALL_TIMEOUT_S",
        "30",
        _int_between(1, 3600),
        "seconds a download may go without the client accepting a byte; then it is dropped"
        " and audited as aborted",
        ours=True,
    ),
    Key(
        "SHUTDOWN_TIMEOUT_S",
        "30",
        _int_between(0, 3600),
        "on SIGTERM: seconds downloads in progress may take to finish before they are cut",
        ours=True,
    ),
    Key(
        "AUDIT_SIGNING_KEY",
        "",
        _text,
        "Ed25519 private key (PEM file) that signs ccgateway audit export's statement of chain"
        " heads; keep it off the database host; empty: export refuses",
        ours=True,
    ),
    Key(
        "TIME_ZONE",
        "",
        _time_zone,
        "the zone of the dates the recording queries read and answer (yyyy-MM-dd HH:mm:ss), an"
        " IANA name such as Europe/Paris; empty: the machine's zone (TZ, else /etc/localtime);"
        " the queries are not yet built (issue 16)",
        ours=True,
    ),
    Key(
        "QUERY_MAX_DAYS",
        "31",
        _int_between(7, 366),
        "the longest date window (startdate to enddate, in days of TIME_ZONE) a recording query"
        " may ask for (7 to 366); a longer one answers 000-002; the queries are not yet built",
        ours=True,
    ),
    Key(
        "LOG_LEVEL",
        "INFO",
        lambda v: _choice(v, ("DEBUG", "INFO", "WARNING", "ERROR")),
        "log level: DEBUG, INFO, WARNING or ERROR",
        ours=True,
    ),
)


def _choice(value: str, allowed: tuple[str, ...]) -> str:
    upper = value.strip().upper()
    if upper not in allowed:
        raise ValueError(", ".join(allowed))
    return upper


@dataclass(frozen=True)
class Settings:
    auth_mode: int
    guid_interval_ms: int
    guid_timeout_ms: int
    poll_wait: bool
    poll_wait_times: int
    poll_wait_interval_ms: int
    video_download: bool
    video_events: bool
    listen_host: str
    listen_port: int
    tls_cert: str
    tls_key: str
    data_dir: Path
    node_name: str
    database_url: str
    agent_idle_timeout_ms: int
    log_level: str
    sessions_url: str = "memory://"
    guid_digest_key: str = dataclasses.field(default="", repr=False)
    accel_redirect: str = ""
    record_download: bool = True
    drive_maps: Mapping[str, Mapping[str, Path]] = dataclasses.field(default_factory=dict)
    sendfile: bool = True
    admin_token: str = dataclasses.field(default="", repr=False)
    metrics_token: str = dataclasses.field(default="", repr=False)
    trusted_proxies: tuple[IPNetwork, ...] = ()
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_access_key_id: str = dataclasses.field(default="", repr=False)
    s3_secret_access_key: str = dataclasses.field(default="", repr=False)
    source_connect_timeout_ms: int = 5000
    source_read_timeout_ms: int = 30000
    source_retries: int = 2
    max_downloads_per_agent: int = 4
    max_downloads: int = 200
    request_rate_per_agent: int = 20
    request_rate: int = 2000
    max_connections_per_ip: int = 512
    header_timeout_s: int = 10
    keepalive_timeout_s: int = 75
    client_stall_timeout_s: int = 30
    shutdown_timeout_s: int = 30
    signin_queue_max: int = 64
    signin_rate_per_ip: int = 50
    signin_burst_per_ip: int = 500
    signin_lockout_attempts: int = 10
    signin_lockout_window_s: int = 600
    signin_lockout_s: int = 300
    audit_signing_key: str = ""
    # load_settings resolves an empty TIME_ZONE to the machine's zone; UTC only when built directly.
    time_zone: ZoneInfo = dataclasses.field(default_factory=lambda: ZoneInfo("UTC"))
    query_max_days: int = 31

    @property
    def poll_wait_ms(self) -> int:
        return self.poll_wait_times * self.poll_wait_interval_ms if self.poll_wait else 0

    @property
    def server_name(self) -> str:
        return self.node_name.rstrip("0123456789") or self.node_name


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: str,
) -> Settings:
    """Build Settings from a properties file, then ``CCGW_<KEY>`` variables, then ``overrides``."""
    raw: dict[str, str] = {}
    if path is not None:
        try:
            with open(path, encoding="iso-8859-1") as handle:
                raw.update(javaproperties.load(handle))
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from exc
    env = os.environ if environ is None else environ
    for key in KEYS:
        if ENV_PREFIX + key.name in env:
            raw[key.name] = env[ENV_PREFIX + key.name]
    raw.update(overrides)
    for name, value in env.items():
        if name.startswith(ENV_PREFIX + POOL_DRIVE_MAP):
            raw[name.removeprefix(ENV_PREFIX)] = value
    values = {key.name: _parse(key, raw.get(key.name, key.default)) for key in KEYS}
    if values["GUIDTIMEOUT"] <= values["GUIDINTERVAL"]:
        raise ConfigError(
            f"GUIDTIMEOUT ({values['GUIDTIMEOUT']}) must be greater than GUIDINTERVAL "
            f"({values['GUIDINTERVAL']})"
        )
    if bool(values["TLS_CERT"]) != bool(values["TLS_KEY"]):
        raise ConfigError("TLS_CERT and TLS_KEY must be set together")
    if values["SESSIONS_URL"] != "memory://" and not values["GUID_DIGEST_KEY"]:
        raise ConfigError(
            "GUID_DIGEST_KEY is required with a shared session store (SESSIONS_URL): "
            "the same secret of at least 16 characters on every node"
        )
    data_dir = Path(values["DATA_DIR"])
    return Settings(
        auth_mode=values["AUTHMODE"],
        guid_interval_ms=values["GUIDINTERVAL"],
        guid_timeout_ms=values["GUIDTIMEOUT"],
        poll_wait=values["AGENT_POLL_WAIT_FLAG"],
        poll_wait_times=values["AGENT_POLL_WAIT_TIMES"],
        poll_wait_interval_ms=values["AGENT_POLL_WAIT_INTERVAL"],
        video_download=values["VIDEO_DOWNLOAD_FLAG"],
        video_events=values["IF_SUPPORT_VIDEO"],
        listen_host=values["LISTEN_HOST"],
        listen_port=values["LISTEN_PORT"],
        tls_cert=values["TLS_CERT"],
        tls_key=values["TLS_KEY"],
        data_dir=data_dir,
        node_name=values["NODE_NAME"],
        database_url=values["DATABASE_URL"] or f"sqlite:///{data_dir / 'ccgateway.db'}",
        agent_idle_timeout_ms=values["AGENT_IDLE_TIMEOUT"],
        log_level=values["LOG_LEVEL"],
        sessions_url=values["SESSIONS_URL"],
        guid_digest_key=values["GUID_DIGEST_KEY"],
        accel_redirect=values["ACCEL_REDIRECT"],
        record_download=values["RECORD_DOWNLOAD_FLAG"],
        drive_maps=_drive_maps(values["RECORD_DRIVE_MAP"], raw),
        sendfile=values["SENDFILE"],
        admin_token=values["ADMIN_TOKEN"],
        metrics_token=values["METRICS_TOKEN"],
        trusted_proxies=values["TRUSTED_PROXIES"],
        s3_endpoint_url=values["S3_ENDPOINT_URL"],
        s3_region=values["S3_REGION"],
        s3_access_key_id=values["S3_ACCESS_KEY_ID"],
        s3_secret_access_key=values["S3_SECRET_ACCESS_KEY"],
        source_connect_timeout_ms=values["SOURCE_CONNECT_TIMEOUT"],
        source_read_timeout_ms=values["SOURCE_READ_TIMEOUT"],
        source_retries=values["SOURCE_RETRIES"],
        max_downloads_per_agent=values["MAX_DOWNLOADS_PER_AGENT"],
        max_downloads=values["MAX_DOWNLOADS"],
        request_rate_per_agent=values["REQUEST_RATE_PER_AGENT"],
        request_rate=values["REQUEST_RATE"],
        max_connections_per_ip=values["MAX_CONNECTIONS_PER_IP"],
        header_timeout_s=values["HEADER_TIMEOUT_S"],
        keepalive_timeout_s=values["KEEPALIVE_TIMEOUT_S"],
        client_stall_timeout_s=values["CLIENT_STALL_TIMEOUT_S"],
        shutdown_timeout_s=values["SHUTDOWN_TIMEOUT_S"],
        signin_queue_max=values["SIGNIN_QUEUE_MAX"],
        signin_rate_per_ip=values["SIGNIN_RATE_PER_IP"],
        signin_burst_per_ip=values["SIGNIN_BURST_PER_IP"],
        signin_lockout_attempts=values["SIGNIN_LOCKOUT_ATTEMPTS"],
        signin_lockout_window_s=values["SIGNIN_LOCKOUT_WINDOW_S"],
        signin_lockout_s=values["SIGNIN_LOCKOUT_S"],
        audit_signing_key=values["AUDIT_SIGNING_KEY"],
        time_zone=values["TIME_ZONE"] or machine_zone(env),
        query_max_days=values["QUERY_MAX_DAYS"],
    )


POOL_DRIVE_MAP = "RECORD_DRIVE_MAP_"


def _drive_maps(default: dict[str, Path], raw: Mapping[str, str]) -> dict[str, dict[str, Path]]:
    """The drive maps by locationId; "" is RECORD_DRIVE_MAP, used without a locationId."""
    maps = {"": default} if default else {}
    for name, value in raw.items():
        if not name.startswith(POOL_DRIVE_MAP):
            continue
        location = name.removeprefix(POOL_DRIVE_MAP)
        if not location.isdigit():
            raise ConfigError(f"{name}: the suffix must be a locationId (digits)")
        key = Key(name, "", _drive_map, "")
        maps[str(int(location))] = _parse(key, value)
    return maps


# Keys whose values are credentials: a configuration error names the key, never the value.
SECRET_KEYS = frozenset(
    {
        "ADMIN_TOKEN",
        "METRICS_TOKEN",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
        "GUID_DIGEST_KEY",
    }
)
_URL_PASSWORD = re.compile(r"[^/@\s]*@")  # user:password@ of a URL, even a malformed one


def shown(name: str, value: str) -> str:
    """A configured value fit for a message or a log line: a credential is hidden, and a URL's
    user information (``redis://:password@host``) is cut."""
    if name in SECRET_KEYS:
        return "(hidden)"
    return repr(_URL_PASSWORD.sub("***@", value))


def _parse(key: Key, value: str) -> Any:
    try:
        return key.parse(value)
    except ValueError as exc:
        raise ConfigError(
            f"{key.name}={shown(key.name, value)} is invalid: allowed values are {exc}"
        ) from None
