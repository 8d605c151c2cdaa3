from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ccgateway.config import KEYS, load_settings, machine_zone
from ccgateway.errors import ConfigError


def test_defaults_match_the_cc_gateway() -> None:
    settings = load_settings(environ={})
    assert settings.auth_mode == 2
    assert settings.guid_interval_ms == 60_000
    assert settings.guid_timeout_ms == 120_000
    assert settings.poll_wait_ms == 10_000
    assert settings.listen_port == 8043
    assert settings.node_name == "AgentGateway0"
    assert settings.server_name == "AgentGateway"
    assert settings.database_url == "sqlite:///ccgateway-data/ccgateway.db"


def test_properties_file_then_environment_override(tmp_path: Path) -> None:
    path = tmp_path / "basic.properties"
    path.write_text(
        "# CC-Gateway style\nAUTHMODE = 1\nAGENT_POLL_WAIT_FLAG=OFF\n"
        "SOME_ORIGINAL_KEY=kept but unused\nNODE_NAME:AgentGateway3\n",
        encoding="iso-8859-1",
    )
    settings = load_settings(path, environ={"CCGW_AUTHMODE": "2", "AUTHMODE": "1"})
    assert settings.auth_mode == 2  # CCGW_ wins over the file; plain AUTHMODE is not ours
    assert settings.poll_wait is False and settings.poll_wait_ms == 0
    assert settings.node_name == "AgentGateway3"


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("AUTHMODE", "3", "1 or 2"),
        ("AGENT_POLL_WAIT_FLAG", "yes", "ON or OFF"),
        ("LISTEN_PORT", "70000", "from 1 to 65535"),
        ("GUIDINTERVAL", "soon", "an integer"),
        ("NODE_NAME", "a.b", "letters, digits"),
        ("LOG_LEVEL", "LOUD", "DEBUG, INFO"),
    ],
)
def test_bad_value_names_key_and_allowed_values(key: str, value: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={f"CCGW_{key}": value})
    assert key in str(info.value) and allowed in str(info.value)


def test_guidtimeout_must_exceed_guidinterval() -> None:
    with pytest.raises(ConfigError, match="GUIDTIMEOUT"):
        load_settings(environ={"CCGW_GUIDINTERVAL": "60000", "CCGW_GUIDTIMEOUT": "60000"})


def test_tls_cert_and_key_go_together() -> None:
    with pytest.raises(ConfigError, match="TLS_CERT and TLS_KEY"):
        load_settings(environ={"CCGW_TLS_CERT": "/x.pem"})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.properties", environ={})


def test_every_key_has_help_and_a_valid_default() -> None:
    for key in KEYS:
        assert key.help
        key.parse(key.default)


@pytest.mark.parametrize(
    ("key", "value", "secret"),
    [
        ("ADMIN_TOKEN", "short-secret", "short-secret"),
        ("METRICS_TOKEN", "with space secret-token-xyz", "secret-token-xyz"),
        ("SESSIONS_URL", "redis//:hunter2-password@127.0.0.1:6379/0", "hunter2-password"),
        ("SESSIONS_URL", "mysql://user:hunter2-password@db/x", "hunter2-password"),
    ],
)
def test_l7_configuration_errors_never_print_a_secret(key: str, value: str, secret: str) -> None:
    """Issue 14, L7: the error names the key, and hides a token or a URL's password."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={f"CCGW_{key}": value})
    message = str(caught.value)
    assert key in message and secret not in message


def test_l14_a_shared_session_store_needs_the_guid_digest_key() -> None:
    """Issue 14, L14: Redis keeps keyed GUID digests, so a node on Redis without the key (the
    same on every node) refuses to start, saying which key is missing."""
    with pytest.raises(ConfigError, match="GUID_DIGEST_KEY is required"):
        load_settings(environ={}, SESSIONS_URL="redis://127.0.0.1:6379/0")
    settings = load_settings(
        environ={}, SESSIONS_URL="redis://127.0.0.1:6379/0", GUID_DIGEST_KEY="k" * 16
    )
    assert settings.guid_digest_key == "k" * 16
    assert load_settings(environ={}).guid_digest_key == ""  # memory://: unused


def test_time_zone_is_an_iana_name() -> None:
    settings = load_settings(environ={"CCGW_TIME_ZONE": " Europe/Paris "})
    assert settings.time_zone == ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    "value",
    ["Mars/Olympus", "europe/paris", "Europe", "CET-1CEST", "../etc/passwd", "/etc/localtime"],
)
def test_a_bad_time_zone_names_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"CCGW_TIME_ZONE": value})
    assert "TIME_ZONE" in str(info.value) and "IANA" in str(info.value)


def test_an_empty_time_zone_is_the_machines() -> None:
    assert load_settings(environ={"TZ": "Asia/Tokyo"}).time_zone == ZoneInfo("Asia/Tokyo")
    assert load_settings(environ={"TZ": ":America/New_York"}).time_zone.key == "America/New_York"
    posix = load_settings(environ={"TZ": "CET-1CEST"})  # a POSIX rule: /etc/localtime's zone
    assert posix.time_zone == machine_zone({})
    explicit = load_settings(environ={"TZ": "CET-1CEST", "CCGW_TIME_ZONE": "UTC"})
    assert explicit.time_zone == ZoneInfo("UTC")


def test_the_machines_zone_from_etc_localtime(tmp_path: Path) -> None:
    link = tmp_path / "localtime"
    link.symlink_to("/usr/share/zoneinfo/Europe/Berlin")
    assert machine_zone({}, link) == ZoneInfo("Europe/Berlin")
    copy = tmp_path / "copied"
    copy.write_bytes(Path("/usr/share/zoneinfo/Asia/Kolkata").read_bytes())
    zone = machine_zone({}, copy)  # a copied file: its rules, under the name "localtime"
    assert zone.utcoffset(datetime(2026, 1, 1)) == timedelta(hours=5, minutes=30)
    assert machine_zone({}, tmp_path / "absent") == ZoneInfo("UTC")


def test_query_max_days() -> None:
    assert load_settings(environ={}).query_max_days == 31
    assert load_settings(environ={"CCGW_QUERY_MAX_DAYS": "92"}).query_max_days == 92
    for bad in ("6", "367", "x"):
        with pytest.raises(ConfigError, match="QUERY_MAX_DAYS"):
            load_settings(environ={"CCGW_QUERY_MAX_DAYS": bad})
