"""``ccgateway audit``: who downloaded what, and how it ended."""

from __future__ import annotations

import asyncio
import datetime
import json

import click

from ccgateway.audit.events import Outcome
from ccgateway.audit.shapes import audit_json
from ccgateway.cli.options import config_option, settings_from
from ccgateway.gateway import open_gateway
from ccgateway.stores.base import AuditRecord

OUTCOMES = tuple(outcome.value for outcome in Outcome)


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


@click.command()
@click.option("--agent", type=int, help="Only this agent's downloads.")
@click.option("--conference", help="Only this conference.")
@click.option("--outcome", type=click.Choice(OUTCOMES), help="Only this outcome.")
@click.option("--since", callback=_since, help="Only from this ISO time (UTC unless given).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array, newest first.")
@config_option
def audit(
    agent: int | None,
    conference: str | None,
    outcome: str | None,
    since: int | None,
    limit: int,
    as_json: bool,
    config_path: str | None,
) -> None:
    """List download attempts, newest first."""
    settings = settings_from(config_path)

    async def query() -> list[AuditRecord]:
        async with open_gateway(settings) as gateway:
            return await gateway.auditor.query(
                agent_id=agent,
                conference_id=conference,
                outcome=outcome,
                since_ms=since,
                limit=limit,
            )

    records = asyncio.run(query())
    if as_json:
        click.echo(json.dumps([audit_json(r) for r in records], indent=2))
        return
    for r in records:
        when = datetime.datetime.fromtimestamp(r.time_ms / 1000, datetime.UTC)
        click.echo(
            f"{when:%Y-%m-%d %H:%M:%S}  agent {r.agent_id}  {r.interface}  "
            f"{r.conference_id or '-'}  {r.record_id or '-'}  type {r.file_type}  "
            f"{r.status}  {r.outcome}  {r.retcode}  {r.bytes_sent} B  {r.range or '-'}  "
            f"{r.client}  {r.duration_ms} ms"
        )
