"""``ccgateway audit``: who got which recording, when and how it ended, and every other event.

Transfers are one line each (the ``start`` joined to its ``end``, or ``open`` while none was
written); session, admin and security events one line each; ``--events`` the raw events.
``audit`` is a group: its further commands (``verify``, ``export``…) go beside the listing.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import Any

import click

from ccgateway.audit.shapes import KINDS, OUTCOMES, event_json, line_json
from ccgateway.cli.options import config_option, settings_from
from ccgateway.gateway import open_gateway
from ccgateway.stores.base import AuditQuery


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("an ISO date or time, e.g. 2026-11-24T12:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


@click.group(invoke_without_command=True)
@click.option("--agent", type=int, help="Only this agent's events.")
@click.option("--conference", help="Only this conference.")
@click.option("--kind", type=click.Choice(KINDS), help="Only this kind.")
@click.option(
    "--outcome", type=click.Choice(OUTCOMES), help="Only transfers that ended so (open: not yet)."
)
@click.option("--since", callback=_since, help="Only from this ISO time (UTC unless given).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--events", "raw", is_flag=True, help="The raw events, a transfer's two apart.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, newest first.")
@config_option
@click.pass_context
def audit(
    ctx: click.Context,
    agent: int | None,
    conference: str | None,
    kind: str | None,
    outcome: str | None,
    since: int | None,
    limit: int,
    raw: bool,
    as_json: bool,
    config_path: str | None,
) -> None:
    """List the audit trail, newest first: a transfer on one line, start joined to end."""
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_from(config_path)
    query = AuditQuery(
        agent_id=agent,
        conference_id=conference,
        kind=kind,
        outcome=outcome,
        since_ms=since,
        limit=limit,
    )

    async def read() -> list[dict[str, Any]]:
        async with open_gateway(settings) as gateway:
            reader = gateway.audit_reader
            if raw:
                return [event_json(body) for body in await reader.events(query)]
            return [line_json(line) for line in await reader.lines(query)]

    shown = asyncio.run(read())
    if as_json:
        click.echo(json.dumps(shown, indent=2))
        return
    for item in shown:
        click.echo(_event_text(item) if raw else _line_text(item))


def _when(time_ms: int) -> str:
    return f"{datetime.datetime.fromtimestamp(time_ms / 1000, datetime.UTC):%Y-%m-%d %H:%M:%S}"


def _compact(values: dict[str, Any]) -> str:
    return " ".join(f"{key}={json.dumps(value)}" for key, value in sorted(values.items())) or "-"


def _line_text(line: dict[str, Any]) -> str:
    head = f"{_when(line['time'])}  {line['kind']:<8}  agent {line['agent']}"
    place = f"{line['client'] or '-'}  {line['writer']}#{line['seq']}"
    if "outcome" not in line:  # no transfer
        return f"{head}  {line['name']}  {_compact(line['concerns'])}  {place}"
    start, end = line["fields"], (line["end"] or {}).get("fields", {})
    return (
        f"{head}  {start.get('interface', '-')}  {_compact(line['concerns'])}  "
        f"{start.get('range') or '-'}  {line['outcome']}  {end.get('status', '-')}  "
        f"{end.get('retcode', '-')}  {end.get('bytes', '-')} B  {end.get('durationMs', '-')} ms"
        f"  {place}"
    )


def _event_text(event: dict[str, Any]) -> str:
    return (
        f"{_when(event['time'])}  {event['writer']}#{event['seq']}  {event['kind']} "
        f"{event['name']}  agent {event['agent']}  {event['client'] or '-'}  "
        f"{_compact(event['concerns'])}  {_compact(event['fields'])}"
    )
