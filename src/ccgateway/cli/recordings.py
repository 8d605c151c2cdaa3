"""``ccgateway recordings``: the recording catalog (works with or without a running gateway).

A gateway running on the same database announces recordings added here to their signed-in
participants within a second (it watches for recordings no gateway has announced yet).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from ccgateway.cli.options import config_option, settings_from
from ccgateway.gateway import Gateway, open_gateway
from ccgateway.recordings.catalog import CatalogError, Registration
from ccgateway.recordings.discovery import discover
from ccgateway.recordings.shapes import conference_json
from ccgateway.sources.base import SourceError
from ccgateway.stores.base import AUDIO, VIDEO, FileRecordingRecord, FileType

T = TypeVar("T")
PROGRESS_FROM_BYTES = 16 * 1024 * 1024


def _run(config_path: str | None, action: Callable[[Gateway], Awaitable[T]]) -> T:
    settings = settings_from(config_path)

    async def run() -> T:
        async with open_gateway(settings) as gateway:
            return await action(gateway)

    try:
        return asyncio.run(run())
    except (CatalogError, SourceError) as exc:
        raise click.ClickException(str(exc)) from None


class _Location(click.ParamType[str]):
    """A recording file: an existing local file (made absolute), or an http(s):// or s3:// URL."""

    name = "path|url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if text.startswith(("http://", "https://", "s3://")):
            return text
        path = click.Path(dir_okay=False, exists=True, resolve_path=True)
        return str(path.convert(text, param, ctx))


LOCATION = _Location()


def _participants(_ctx: click.Context, _param: click.Parameter, value: str) -> frozenset[int]:
    try:
        return frozenset(int(p) for p in value.split(",") if p.strip())
    except ValueError:
        raise click.BadParameter("a comma-separated list of work numbers") from None


@click.group()
def recordings() -> None:
    """Register, list, show and remove video recordings."""


@recordings.command("add")
@click.argument("conference_id")
@click.option("--record", "record_id", required=True, help="Recording id (recordId).")
@click.option(
    "--participants",
    required=True,
    callback=_participants,
    help="Work numbers of the participating agents, e.g. 101,102.",
)
@click.option(
    "--vdn",
    type=click.IntRange(min=1),
    help="The conference's VDN: required when this creates the conference.",
)
@click.option("--call-id", default="", help="The call's callId.")
@click.option(
    "--hd",
    type=LOCATION,
    help="HD rendition (fileType 0): a file, http(s):// URL or s3://bucket/key.",
)
@click.option(
    "--sd",
    type=LOCATION,
    help="SD rendition (fileType 1): a file, http(s):// URL or s3://bucket/key.",
)
@click.option(
    "--aux",
    type=LOCATION,
    help="Auxiliary (content) stream (fileType 2): a file, http(s):// URL or s3://bucket/key.",
)
@click.option(
    "--location-id",
    default="255",
    show_default=True,
    help="locationId carried by the record event.",
)
@config_option
def add(
    conference_id: str,
    record_id: str,
    participants: frozenset[int],
    vdn: int | None,
    call_id: str,
    hd: str | None,
    sd: str | None,
    aux: str | None,
    location_id: str,
    config_path: str | None,
) -> None:
    """Register recording RECORD of CONFERENCE_ID; each file is read for size and SHA-256, then
    probed (a damaged file is still registered, and said so)."""
    files = {t: p for t, p in ((FileType.HD, hd), (FileType.SD, sd), (FileType.AUX, aux)) if p}
    registration = Registration(
        conference_id=conference_id,
        record_id=record_id,
        participants=participants,
        files=files,
        vdn=vdn,
        call_id=call_id,
        location_id=location_id,
    )
    bars: dict[str, Any] = {}

    def progress(name: str, done: int, total: int) -> None:
        if total < PROGRESS_FROM_BYTES or not sys.stderr.isatty():
            return  # off a terminal click would print the bare label, a stray "HD " line
        bar = bars.get(name)
        if bar is None:
            bar = bars[name] = click.progressbar(
                length=total, label=f"{name:<3}", file=sys.stderr, show_eta=True
            )
            bar.__enter__()
        bar.update(done - bar.pos)
        if done >= total:
            bar.__exit__(None, None, None)

    recording = _run(config_path, lambda g: g.catalog.register(registration, progress))
    kinds = ", ".join(f.file_type.name.lower() for f in recording.files)
    click.echo(
        f"registered {record_id} in {conference_id} as recording {recording.position} ({kinds})"
    )
    for media in recording.files:  # still registered; announced as AgentMediaEvent_Record_Fail
        if media.facts is not None and media.facts.reason:
            name = media.file_type.name.lower()
            click.echo(f"  {name}: {media.facts.state.value}: {media.facts.reason}")


@recordings.command("discover")
@click.argument("conference_id")
@click.argument("base_url")
@click.option(
    "--participants",
    required=True,
    callback=_participants,
    help="Work numbers of the participating agents, e.g. 101,102.",
)
@click.option(
    "--vdn",
    type=click.IntRange(min=1),
    help="The conference's VDN: required when this creates the conference.",
)
@click.option("--call-id", default="", help="The call's callId.")
@config_option
def discover_(
    conference_id: str,
    base_url: str,
    participants: frozenset[int],
    vdn: int | None,
    call_id: str,
    config_path: str | None,
) -> None:
    """Register the recordings listed in BASE_URL/index.json (docs/recordings.md has the format)."""

    async def register_all(gateway: Gateway) -> list[str]:
        found = await discover(
            gateway.sources, base_url, conference_id, participants, vdn=vdn, call_id=call_id
        )
        return [(await gateway.catalog.register(r)).record_id for r in found]

    registered = _run(config_path, register_all)
    click.echo(
        f"registered {len(registered)} recording(s) in {conference_id}: " + ", ".join(registered)
    )


@recordings.command("add-file")
@click.argument("record_id")
@click.option(
    "--path",
    "file_name",
    required=True,
    help="Drive-letter path on the file server, e.g. Y:/1/0/20201202/503/1714442.mp4.",
)
@click.option("--call-id", required=True, help="The call's callId.")
@click.option("--audio", is_flag=True, help="A voice recording (default: video).")
@click.option("--location-id", default="65535", show_default=True)
@click.option(
    "--participants",
    default="",
    callback=_participants,
    help="Further agents to notify (the path's agent always is).",
)
@config_option
def add_file(
    record_id: str,
    file_name: str,
    call_id: str,
    audio: bool,
    location_id: str,
    participants: frozenset[int],
    config_path: str | None,
) -> None:
    """Register a file-server recording so its agents get AgentMediaEvent_Record."""
    settings = settings_from(config_path)

    async def run() -> FileRecordingRecord:
        async with open_gateway(settings) as gateway:
            return await gateway.files.register(
                record_id,
                file_name,
                call_id=call_id,
                location_id=location_id,
                media=AUDIO if audio else VIDEO,
                participants=participants,
            )

    try:
        recording = asyncio.run(run())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"registered {recording.record_id}: {recording.file_name}")


@recordings.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@config_option
def list_(as_json: bool, config_path: str | None) -> None:
    """List conferences with their recordings and file types."""
    conferences = _run(config_path, lambda g: g.catalog.list_conferences())
    if as_json:
        rows = [conference_json(c) for c in conferences]
        click.echo(json.dumps(rows, indent=2))
        return
    for conference in conferences:
        members = ",".join(str(p) for p in sorted(conference.participants))
        click.echo(f"{conference.conference_id}  vdn {conference.vdn}  agents {members}")
        for recording in conference.recordings:
            kinds = ",".join(f.file_type.name.lower() for f in recording.files)
            click.echo(f"  {recording.position}  {recording.record_id}  {kinds}")


@recordings.command("show")
@click.argument("conference_id")
@config_option
def show(conference_id: str, config_path: str | None) -> None:
    """Show one conference as JSON (files with sizes and SHA-256)."""
    conference = _run(config_path, lambda g: g.catalog.get_conference(conference_id))
    if conference is None:
        raise click.ClickException(f"no conference {conference_id}")
    click.echo(json.dumps(conference_json(conference), indent=2))


@recordings.command("remove")
@click.argument("conference_id")
@click.option("--record", "record_id", help="Remove only this recording.")
@config_option
def remove(conference_id: str, record_id: str | None, config_path: str | None) -> None:
    """Remove a conference (or one of its recordings) from the catalog; files are kept."""
    if record_id:
        done = _run(config_path, lambda g: g.catalog.remove_recording(record_id))
    else:
        done = _run(config_path, lambda g: g.catalog.remove_conference(conference_id))
    if not done:
        raise click.ClickException(f"no such {'recording' if record_id else 'conference'}")
    click.echo(f"removed {record_id or conference_id}")
