"""``ccgateway audit``: who got which recording, when and how it ended, and every other event.

Transfers are one line each (the ``start`` joined to its ``end``, or ``open`` while none was
written); session, admin and security events one line each; ``--events`` the raw events.
``audit`` is a group: its further commands (``verify``, ``export``…) go beside the listing.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgateway.audit.export import (
    ExportError,
    SigningKeyError,
    export,
    load_signing_key,
    public_pem,
    read_heads,
)
from ccgateway.audit.journal_files import read_journal
from ccgateway.audit.shapes import KINDS, OUTCOMES, event_json, line_json
from ccgateway.audit.verify import ChainReport, Head, Report, verify
from ccgateway.cli.options import F, config_option, settings_from
from ccgateway.config import Settings
from ccgateway.gateway import open_gateway
from ccgateway.stores.audit_rows import SqlAuditRows
from ccgateway.stores.base import AuditQuery
from ccgateway.stores.schema import open_engine


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


def _agent(work_no: int | None) -> str:
    return "-" if work_no is None else str(work_no)


def _compact(values: dict[str, Any]) -> str:
    return " ".join(f"{key}={json.dumps(value)}" for key, value in sorted(values.items())) or "-"


def _line_text(line: dict[str, Any]) -> str:
    head = f"{_when(line['time'])}  {line['kind']:<8}  agent {_agent(line['agent'])}"
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
        f"{event['name']}  agent {_agent(event['agent'])}  {event['client'] or '-'}  "
        f"{_compact(event['concerns'])}  {_compact(event['fields'])}"
    )


# ``ccgateway audit verify``, ``export`` and ``public-key``: checking the trail's hash chains and
# exporting it signed (docs/audit.md, "Verifying, exporting"). Kept apart from the listing above.


def _jobs_option(function: F) -> F:
    return click.option(
        "--jobs",
        type=click.IntRange(1, 64),
        help="Processes that parse and hash bodies (default: this machine's CPUs).",
    )(function)


def _signing_key(settings: Settings) -> Ed25519PrivateKey:
    try:
        return load_signing_key(settings.audit_signing_key)
    except SigningKeyError as exc:
        raise click.UsageError(f"configuration: {exc}") from None


def _chain_json(chain: ChainReport) -> dict[str, Any]:
    def head(value: Head | None) -> dict[str, Any] | None:
        return None if value is None else {"seq": value.seq, "sha256": value.sha256}

    broken = chain.broken
    return {
        "writer": chain.writer,
        "intact": chain.intact,
        "events": chain.events,
        "head": head(chain.head),
        "unshipped": chain.unshipped,
        "journalHead": head(chain.journal_head),
        "broken": None
        if broken is None
        else {"seq": broken.seq, "problem": broken.problem.value, "detail": broken.detail},
    }


def _chain_line(chain: ChainReport) -> str:
    if chain.broken is not None:
        b = chain.broken
        return f"{chain.writer}  BROKEN at seq {b.seq}: {b.problem}: {b.detail}"
    head = f"head {chain.head.seq} {chain.head.sha256}" if chain.head else "nothing shipped"
    line = f"{chain.writer}  intact  {chain.events} events  {head}"
    if chain.journal_head is not None:
        line += (
            f"  (+{chain.unshipped} not yet shipped, in the journal: head"
            f" {chain.journal_head.seq} {chain.journal_head.sha256})"
        )
    return line


@audit.command("verify")
@click.option(
    "--journal",
    "journal_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The local journal to check with the database (default: DATA_DIR/audit, if present).",
)
@click.option(
    "--heads",
    "heads_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="An export's heads.json: each chain must still hold the head it states.",
)
@_jobs_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@config_option
def verify_command(
    journal_dir: Path | None,
    heads_path: Path | None,
    jobs: int | None,
    as_json: bool,
    config_path: str | None,
) -> None:
    """Check every writer's hash chain in the database and the local journal.

    Prints one line per writer: intact with its head (last seq and SHA-256), or the first bad
    event and whether it was changed, removed, inserted or reordered. Exit 0: all intact; 1: a
    chain is broken or the journal holds a bad line.
    """
    settings = settings_from(config_path)
    if journal_dir is not None and not journal_dir.is_dir():
        raise click.BadParameter(f"{journal_dir} is not a directory", param_hint="--journal")
    try:
        exported = read_heads(heads_path) if heads_path is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--heads") from None
    journal = read_journal(journal_dir or settings.data_dir / "audit")

    async def run() -> Report:
        engine = await open_engine(settings.database_url)
        try:
            rows = SqlAuditRows(engine).batches()
            return await verify(rows, journal=journal, exported=exported, jobs=jobs)
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    if as_json:
        click.echo(
            json.dumps(
                {
                    "intact": report.intact,
                    "chains": [_chain_json(chain) for chain in report.chains],
                    "journal": {
                        "directory": str(journal.directory),
                        "files": journal.files,
                        "events": journal.events,
                        "partialLines": journal.partial,
                        "problems": journal.problems,
                    },
                },
                indent=2,
            )
        )
    else:
        for chain in report.chains:
            click.echo(_chain_line(chain))
        for problem in journal.problems:
            click.echo(f"journal {journal.directory}: {problem}")
        if not report.chains:
            click.echo("no audit events")
    if not report.intact:
        raise SystemExit(1)


@audit.command("export")
@click.option("--since", callback=_since, help="Events from this ISO time (UTC unless given).")
@click.option(
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write events.jsonl, heads.json and heads.json.sig into.",
)
@click.option(
    "--include-broken",
    is_flag=True,
    help="Export broken chains too, their breaks named in heads.json (default: refuse).",
)
@_jobs_option
@config_option
def export_command(
    since: int | None,
    output: Path,
    include_broken: bool,
    jobs: int | None,
    config_path: str | None,
) -> None:
    """Export the events and a signed statement of each chain's head.

    Writes events.jsonl (canonical events, each writer's from its first at or after --since),
    heads.json (each chain's head, the export time, the SHA-256 of events.jsonl) and
    heads.json.sig (its Ed25519 signature with AUDIT_SIGNING_KEY), which a third party checks
    with openssl (docs/audit.md). Exit 1: a chain is broken, or DIR already holds an export.
    """
    settings = settings_from(config_path)
    key = _signing_key(settings)

    async def run() -> dict[str, Any]:
        engine = await open_engine(settings.database_url)
        try:
            rows = SqlAuditRows(engine).batches()
            now_ms = int(time.time() * 1000)
            _report, statement = await export(
                rows,
                output,
                key,
                since_ms=since,
                now_ms=now_ms,
                include_broken=include_broken,
                jobs=jobs,
            )
            return statement
        finally:
            await engine.dispose()

    try:
        statement = asyncio.run(run())
    except ExportError as exc:
        click.echo(f"export refused: {exc}", err=True)
        raise SystemExit(1) from None
    except OSError as exc:
        click.echo(f"export failed: {output}: {exc.strerror}", err=True)
        raise SystemExit(1) from None
    click.echo(
        f"exported {statement['events']} events of {len(statement['chains'])} chains to"
        f" {output} (events.jsonl {statement['eventsSha256']}; heads.json signed)"
    )


@audit.command("public-key")
@config_option
def public_key_command(config_path: str | None) -> None:
    """Print the public half of AUDIT_SIGNING_KEY (PEM), for whoever checks an export."""
    settings = settings_from(config_path)
    click.echo(public_pem(_signing_key(settings)), nl=False)
