"""``ccgateway agents``: the agent directory, and sign-in lockouts (``unlock``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from ccgateway.agents.directory import AgentDirectory, AgentError
from ccgateway.cli.options import config_option, settings_from
from ccgateway.gateway import Gateway, open_gateway
from ccgateway.stores.base import Role

T = TypeVar("T")


def _run(config_path: str | None, action: Callable[[AgentDirectory], Awaitable[T]]) -> T:
    return _run_on_gateway(config_path, lambda gateway: action(gateway.agents))


def _run_on_gateway(config_path: str | None, action: Callable[[Gateway], Awaitable[T]]) -> T:
    settings = settings_from(config_path)

    async def run() -> T:
        async with open_gateway(settings) as gateway:
            return await action(gateway)

    try:
        return asyncio.run(run())
    except AgentError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def agents() -> None:
    """Add, list, re-password, sign out, remove and unlock agents."""


@agents.command("add")
@click.argument("work_no", type=int)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Sign-in password (prompted when omitted).",
)
@click.option("--name", default="", help="Display name.")
@click.option("--vdn", type=click.IntRange(min=1), default=1, show_default=True, help="VDN id.")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    default=Role.AGENT.value,
    show_default=True,
    help="inspector: may download the recordings of their VDN.",
)
@click.option("--no-video-download", is_flag=True, help="Withhold the video download right.")
@config_option
def add(
    work_no: int,
    password: str,
    name: str,
    vdn: int,
    role: str,
    no_video_download: bool,
    config_path: str | None,
) -> None:
    """Add agent WORK_NO (101-999999)."""
    _run_on_gateway(
        config_path,
        lambda gateway: gateway.sessions.add_agent(
            work_no,
            password,
            name=name,
            vdn=vdn,
            role=Role(role),
            may_download_video=not no_video_download,
        ),
    )
    click.echo(f"added agent {work_no}")


@agents.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@config_option
def list_(as_json: bool, config_path: str | None) -> None:
    """List agents."""
    records = _run(config_path, lambda d: d.list())
    rows = [
        {
            "workNo": a.work_no,
            "name": a.name,
            "vdn": a.vdn,
            "role": a.role.value,
            "videoDownload": a.may_download_video,
        }
        for a in records
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'WORKNO':>7}  {'VDN':>4}  {'ROLE':<9}  {'VIDEO':<5}  NAME")
    for row in rows:
        video = "yes" if row["videoDownload"] else "no"
        click.echo(
            f"{row['workNo']:>7}  {row['vdn']:>4}  {row['role']:<9}  {video:<5}  {row['name']}"
        )


@agents.command("passwd")
@click.argument("work_no", type=int)
@click.option(
    "--password",
    prompt="New password",
    hide_input=True,
    confirmation_prompt=True,
    help="New password (prompted when omitted).",
)
@config_option
def passwd(work_no: int, password: str, config_path: str | None) -> None:
    """Set agent WORK_NO's password."""
    _run_on_gateway(config_path, lambda gateway: gateway.sessions.set_password(work_no, password))
    click.echo(f"password of agent {work_no} changed")


@agents.command("remove")
@click.argument("work_no", type=int)
@config_option
def remove(work_no: int, config_path: str | None) -> None:
    """Remove agent WORK_NO."""
    _run_on_gateway(config_path, lambda gateway: gateway.sessions.remove_agent(work_no))
    click.echo(f"removed agent {work_no}")


@agents.command("signout")
@click.argument("work_no", type=int)
@config_option
def signout(work_no: int, config_path: str | None) -> None:
    """Sign agent WORK_NO out now, on every node.

    Its session ends at its next request on every node within 2 s; on a shared session store
    (Redis) it is removed at once.
    """
    _run_on_gateway(config_path, lambda gateway: gateway.sessions.sign_out_now(work_no))
    click.echo(f"signed agent {work_no} out")


@agents.command("unlock")
@click.argument("work_no", type=click.IntRange(101, 999_999))
@config_option
def unlock(work_no: int, config_path: str | None) -> None:
    """Lift WORK_NO's sign-in lockout now (shared sessions, SESSIONS_URL=redis://, only).

    With SESSIONS_URL=memory:// the lockouts live in the running gateway's own memory, which this
    command cannot reach: use the admin API there (POST /ccgateway/admin/v1/agents/WORK_NO/unlock).
    """
    settings = settings_from(config_path)
    if settings.sessions_url == "memory://":
        raise click.ClickException(
            "lockouts live in the running gateway's memory (SESSIONS_URL=memory://): unlock"
            f" through its admin API, POST /ccgateway/admin/v1/agents/{work_no}/unlock"
        )

    async def run() -> bool:
        async with open_gateway(settings) as gateway:
            return await gateway.sessions.unlock(work_no)

    was_locked = asyncio.run(run())
    click.echo(f"agent {work_no} unlocked" if was_locked else f"agent {work_no} was not locked")
