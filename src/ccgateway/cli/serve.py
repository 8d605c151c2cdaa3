"""``ccgateway serve``: run the gateway."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from pathlib import Path

import click
from aiohttp import web

from ccgateway.app import RUNNER_OPTIONS, create_app, release_freed_memory
from ccgateway.cli.options import config_option, settings_from, setup_logging
from ccgateway.config import Settings
from ccgateway.demo.seed import DEMO_CONFERENCES, DemoAgent, seed_demo_agents, seed_demo_recordings
from ccgateway.gateway import open_gateway
from ccgateway.web.connections import GuardedSite

log = logging.getLogger("ccgateway")


@click.command()
@config_option
@click.option(
    "--http",
    "plain_http",
    is_flag=True,
    help="Serve plain HTTP (behind a TLS-terminating proxy only).",
)
@click.option("--demo", is_flag=True, help="Create demo agents and print how to sign in.")
def serve(config_path: str | None, plain_http: bool, demo: bool) -> None:
    """Run the gateway (HTTPS on LISTEN_PORT, 8043 by default)."""
    settings = settings_from(config_path)
    setup_logging(settings.log_level)
    release_freed_memory()
    context = None if plain_http else _tls_context(settings)
    try:
        asyncio.run(_serve(settings, context, demo))
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.listen_host}:{settings.listen_port}: {exc.strerror}"
        ) from None


def _tls_context(settings: Settings) -> ssl.SSLContext:
    from ccgateway.cli import tls  # cryptography only when serving HTTPS

    if settings.tls_cert:
        cert, key = Path(settings.tls_cert), Path(settings.tls_key)
    else:
        cert, key, created = tls.ensure_self_signed(settings.data_dir)
        log.info("%s self-signed certificate %s", "generated" if created else "using", cert)
        click.echo(f"TLS certificate {cert}\n  SHA-256 fingerprint {tls.fingerprint(cert)}")
    try:
        return tls.server_context(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise click.ClickException(f"cannot load TLS certificate {cert}: {exc}") from None


async def _serve(settings: Settings, context: ssl.SSLContext | None, demo: bool) -> None:
    async with open_gateway(settings, node=True) as gateway:
        demo_agents = await seed_demo_agents(gateway.agents, settings.data_dir) if demo else []
        if demo:
            await seed_demo_recordings(gateway.catalog, settings.data_dir)
        options = RUNNER_OPTIONS | {"shutdown_timeout": float(settings.shutdown_timeout_s)}
        runner = web.AppRunner(create_app(gateway), **options)
        await runner.setup()
        site = GuardedSite(runner, settings.listen_host, settings.listen_port, ssl_context=context)
        await site.start()
        scheme = "https" if context else "http"
        if context is None:
            log.warning("serving plain HTTP (--http): put a TLS-terminating proxy in front")
        log.info(
            "ccgateway node %s listening on %s://%s:%s (AUTHMODE=%s)",
            settings.node_name,
            scheme,
            settings.listen_host,
            settings.listen_port,
            settings.auth_mode,
        )
        if demo_agents:
            _print_demo(demo_agents, settings, scheme)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info(
            "stopping: no new connections; downloads in progress get up to %s s",
            settings.shutdown_timeout_s,
        )
        await runner.cleanup()
        log.info("stopped")


def _print_demo(agents: list[DemoAgent], settings: Settings, scheme: str) -> None:
    from ccgateway.cli import tls

    base = f"{scheme}://localhost:{settings.listen_port}/agentgateway/resource"
    cacert = ""
    if scheme == "https" and not settings.tls_cert:
        cacert = f"--cacert {tls.self_signed_paths(settings.data_dir)[0]} "
    click.echo("\nDemo agents (work number / password / role):")
    for agent in agents:
        click.echo(
            f"  {agent.work_no}  {agent.password}  {agent.role.value} of VDN {agent.vdn}"
            f"  {agent.name}"
        )
    first = agents[0]
    click.echo(
        "\nSign in (the GUID comes back in the Set-GUID header):\n"
        f"  curl {cacert}-i -X PUT {base}/onlineagent/{first.work_no} "
        "-H 'Content-Type: application/json' "
        f'-d \'{{"password":"{first.password}","phonenum":"7{first.work_no}"}}\'\n'
        "Then poll events with the GUID (the part after JSESSIONID=):\n"
        f"  curl {cacert}-H 'Guid: <guid>' {base}/agentevent/{first.work_no}\n"
        "and download the HD recording of agent 101's video call (fileType 0 HD, 1 SD, 2 aux):\n"
        f"  curl {cacert}-H 'Guid: <guid>' -OJ "
        f"'{base}/recordfile/{first.work_no}/videofiledownload"
        f"?conferenceId={DEMO_CONFERENCES[0].conference_id}&fileType=0'\n",
    )
