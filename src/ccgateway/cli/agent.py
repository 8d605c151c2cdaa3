"""``ccgateway agent``: act as an agent through ``ccgateway.client``: download, watch.

The exit codes are ``EXIT_CODES``, shown in each command's help.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from ccgateway.client import (
    AgentClient,
    AgentEvent,
    CertificateError,
    ClientError,
    FileType,
    RecordFile,
    RefusedError,
    Target,
    TerminalProgress,
    VerificationError,
    VideoFile,
    VideoFileEx,
)

T = TypeVar("T")
PASSWORD_ENV = "CCGW_AGENT_PASSWORD"  # noqa: S105 - the variable name, not a password
EXIT_CODES = """\b
Exit codes: 0 done; 1 refused by the gateway (retcode and message shown);
2 usage, CA file or output error; 3 network or TLS failure;
4 verification against Repr-Digest failed (the partial file is deleted)."""
NO_SUCH_FILE_TYPE = "108-007"
size_text = TerminalProgress.format_size


class Refused(click.ClickException):
    exit_code = 1


class LocalError(click.ClickException):
    exit_code = 2


class NetworkError(click.ClickException):
    exit_code = 3


class Unverified(click.ClickException):
    exit_code = 4


def exit_error(exc: Exception) -> click.ClickException:
    """The one line and exit code a failure ends the command with."""
    if isinstance(exc, RefusedError):
        hint = " (signed in elsewhere: --force takes over)" if exc.retcode == "100-002" else ""
        return Refused(f"refused by the gateway: {exc.retcode} {exc.message}{hint}")
    if isinstance(exc, CertificateError):
        return NetworkError(f"{exc}; trust the gateway with --ca FILE or --fingerprint")
    if isinstance(exc, VerificationError):
        return Unverified(f"verification failed: {exc}")
    if isinstance(exc, ClientError):  # TransportError, ProtocolError
        return NetworkError(f"network: {exc}")
    if isinstance(exc, OSError):
        return LocalError(f"cannot write {exc.filename or ''}: {exc.strerror}".replace(" :", ":"))
    return LocalError(str(exc))  # ValueError: a bad --server, --ca or --fingerprint


def open_client(login: dict[str, Any]) -> AgentClient:
    """The client for the login options; the password from CCGW_AGENT_PASSWORD or a prompt."""
    password = os.environ.get(PASSWORD_ENV) or click.prompt(
        f"Password of agent {login['agent_id']}", hide_input=True, err=True
    )
    try:
        return AgentClient(
            login["server"],
            login["agent_id"],
            password,
            ca=login["ca"],
            fingerprint=login["fingerprint"],
            force=login["force"],
            phone_number=login["phone"],
        )
    except ValueError as exc:
        raise exit_error(exc) from None


def login_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--server", required=True, help="Gateway URL, e.g. https://gw:8043."),
        click.option(
            "--agent",
            "agent_id",
            type=click.IntRange(101, 999999),
            required=True,
            help="Work number to sign in as.",
        ),
        click.option(
            "--ca",
            type=click.Path(dir_okay=False, exists=True),
            help="Trust this PEM certificate (the gateway's self-signed one, or a CA).",
        ),
        click.option("--fingerprint", help="Trust the certificate with this SHA-256 (AB:CD:...)."),
        click.option("--force", is_flag=True, help="Take over a session signed in elsewhere."),
        click.option("--phone", help="phonenum to sign in with (default: the work number)."),
        click.option("-v", "--verbose", is_flag=True, help="Log retries and resumes."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def run(coro: Coroutine[Any, Any, T], verbose: bool, bar: TerminalProgress | None = None) -> T:
    """Run, with the client's warnings (with -v also retries) on stderr; errors → exit codes.

    The client never logs a password or GUID.
    """
    logger = logging.getLogger("ccgateway.client")
    handler = bar.log_handler() if bar else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    saved = logger.level
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        return asyncio.run(coro)
    except (ClientError, OSError, ValueError) as exc:
        raise exit_error(exc) from None
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def agent() -> None:
    """Act as an agent: download recordings, watch events (password from CCGW_AGENT_PASSWORD
    or a prompt; it is never echoed or logged)."""


def pick_target(options: dict[str, Any]) -> Target:
    conference, record = options.pop("conference"), options.pop("record")
    video_path, voice_path = options.pop("video_path"), options.pop("voice_path")
    ivr, location_id = options.pop("ivr"), options.pop("location_id")
    file_type = options.pop("file_type")
    chosen = [o for o in (conference, video_path, voice_path) if o]
    misplaced = (conference and (location_id or ivr)) or (record and not conference)
    if len(chosen) != 1 or misplaced or (ivr and not voice_path):
        raise click.UsageError(
            "give one of --conference [--record --type], --video-path [--location-id], "
            "--voice-path [--ivr --location-id]"
        )
    if conference:
        return VideoFile(conference, record, FileType.from_label(file_type))
    if video_path:
        return VideoFileEx(video_path, location_id)
    return RecordFile(str(voice_path), 2 if ivr else 1, location_id)


@agent.command("download", epilog=EXIT_CODES)
@login_options
@click.option("--conference", help="videofiledownload: the conferenceId.")
@click.option("--record", help="videofiledownload: the recordId (default: the first recording).")
@click.option(
    "--type",
    "file_type",
    type=click.Choice(["hd", "sd", "aux"]),
    default="hd",
    show_default=True,
    help="videofiledownload: the fileType.",
)
@click.option("--video-path", help="videofiledownloadEx: the video's drive-letter path.")
@click.option("--voice-path", help="recordfile: the voice recording's drive-letter path.")
@click.option("--ivr", is_flag=True, help="recordfile: an IVR / third-party message (filetype 2).")
@click.option("--location-id", help="locationId (pool mode) for --video-path / --voice-path.")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("."),
    help="File to write, or a directory (named as the gateway says). Default: here.",
)
@click.option("--resume", is_flag=True, help="Continue the .part file of an earlier run.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a TTY).")
def download(
    output: Path, resume: bool, progress: bool | None, verbose: bool, **options: Any
) -> None:
    """Sign in, download one recording verified against Repr-Digest, sign out.

    The bytes go to OUTPUT.part first; a cut connection is resumed (Range + If-Range) and
    retried with backoff; the file appears under its name only once its SHA-256 matches.
    """
    target = pick_target(options)
    client = open_client(options)
    show = sys.stderr.isatty() if progress is None else progress
    bar = TerminalProgress(sys.stderr, interactive=sys.stderr.isatty()) if show else None

    async def go() -> Any:
        async with client:
            try:
                return await client.download(target, output, resume=resume, progress=bar)
            finally:
                if bar is not None:
                    bar.finish()

    result = run(go(), verbose, bar)
    kept = f", resumed at {size_text(result.resumed_from)}" if result.resumed_from else ""
    click.echo(f"saved {result.path} ({size_text(result.size)}{kept}), sha-256 verified")


@agent.command("watch", epilog=EXIT_CODES)
@login_options
@click.option(
    "--fetch",
    type=click.Path(file_okay=False, exists=True, writable=True, path_type=Path),
    help="Download every recording AgentMediaEvent_Record announces into this directory.",
)
@click.option(
    "--type",
    "file_types",
    type=click.Choice(["hd", "sd", "aux"]),
    multiple=True,
    default=("hd",),
    show_default=True,
    help="Which files of an MCU recording to fetch (repeatable).",
)
@click.option("--concurrency", type=click.IntRange(1, 16), default=2, help="Fetches at once: 2.")
@click.option("--json", "as_json", is_flag=True, help="Print each event as one JSON line.")
def watch(fetch: Path | None, verbose: bool, as_json: bool, **options: Any) -> None:
    """Sign in and print events as they come, until Ctrl-C (then sign out).

    With --fetch, announced recordings are downloaded and verified as they come; a failed
    fetch is reported and the watch goes on, and the exit code is then the first failure's.
    """
    types = tuple(FileType.from_label(t) for t in options.pop("file_types"))
    concurrency = options.pop("concurrency")
    client = open_client(options)
    code = run(_watch(client, fetch, types, concurrency, as_json), verbose)
    sys.exit(code)


async def _watch(
    client: AgentClient, fetch: Path | None, types: tuple[FileType, ...], limit: int, as_json: bool
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    failures: list[int] = []
    fetches: set[asyncio.Task[None]] = set()
    gate = asyncio.Semaphore(limit)
    async with client:
        click.echo(f"signed in as agent {client.agent_id}; watching (Ctrl-C stops)", err=True)

        async def fetch_one(target: Target, into: Path) -> None:
            async with gate:
                try:
                    result = await client.download(target, into)
                except (ClientError, OSError) as exc:
                    error = exit_error(exc)
                    if getattr(exc, "retcode", "") != NO_SUCH_FILE_TYPE:  # no SD file: no fault
                        failures.append(error.exit_code)
                    click.echo(f"not fetched {target.key}: {error.message}", err=True)
                else:
                    size = size_text(result.size)
                    click.echo(f"fetched {result.path} ({size}), sha-256 verified")

        async def read() -> None:
            async for event in client.events():
                click.echo(_event_line(event, as_json))
                for target in event.downloads(types) if fetch is not None else ():
                    task = asyncio.create_task(fetch_one(target, fetch or Path(".")))
                    fetches.add(task)
                    task.add_done_callback(fetches.discard)

        reader = asyncio.create_task(read())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([reader, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in (reader, stopper, *fetches):
            task.cancel()
        await asyncio.wait([reader, stopper, *fetches])
        if not reader.cancelled() and (error := reader.exception()) is not None:
            raise error
    return failures[0] if failures else 0


def _event_line(event: AgentEvent, as_json: bool) -> str:
    if as_json:
        return json.dumps(dict(event.raw), ensure_ascii=False, separators=(",", ":"))
    content = json.dumps(dict(event.content), ensure_ascii=False) if event.content else ""
    return f"{time.strftime('%H:%M:%S')} {event.event_type} {event.work_no} {content}".rstrip()
