"""Options and helpers shared by the CLI's commands."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ccgateway.config import Settings, load_settings
from ccgateway.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True),
    envvar="CCGW_CONFIG",
    help="basic.properties file (also CCGW_CONFIG); CCGW_<KEY> variables override its keys.",
)


def settings_from(config_path: str | None) -> Settings:
    try:
        return load_settings(config_path)
    except ConfigError as exc:
        raise click.UsageError(f"configuration: {exc}") from None


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
