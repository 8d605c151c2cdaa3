"""The ``ccgateway`` command.

Exit codes: 0 success; 1 the operation was refused (the message says why); 2 bad usage or bad
configuration.
"""

from __future__ import annotations

import click

from ccgateway import __version__
from ccgateway.cli.agent import agent
from ccgateway.cli.agents import agents
from ccgateway.cli.audit import audit
from ccgateway.cli.db import db
from ccgateway.cli.recordings import recordings
from ccgateway.cli.serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ccgateway")
def cli() -> None:
    """ccgateway: a CC-Gateway compatible agent gateway for call recordings."""


cli.add_command(serve)
cli.add_command(agents)
cli.add_command(recordings)
cli.add_command(audit)
cli.add_command(db)
cli.add_command(agent)


def main() -> None:
    cli()
