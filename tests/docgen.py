"""Keeps the generated parts of docs/ in step with the code (``scripts/docs`` writes them).

A generated block sits between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``.
``tests/test_docs.py`` fails when a block is stale.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from ccgateway import retcodes
from ccgateway.cli import cli
from ccgateway.config import KEYS

DOCS = Path(__file__).resolve().parent.parent / "docs"


def config_table() -> str:
    rows = ["| Key | Default | Ours | Meaning |", "|---|---|---|---|"]
    for key in KEYS:
        default = f"`{key.default}`" if key.default else "(empty)"
        rows.append(f"| `{key.name}` | {default} | {'yes' if key.ours else ''} | {key.help} |")
    return "\n".join(rows)


def retcode_table() -> str:
    rows = ["| retcode | message | when | ours |", "|---|---|---|---|"]
    for code in retcodes.ALL:
        rows.append(
            f"| `{code.code}` | {code.message} | {code.when} | {'yes' if code.ours else ''} |"
        )
    return "\n".join(rows)


def cli_help() -> str:
    runner = CliRunner()
    parts = []
    for args in command_paths():
        result = runner.invoke(cli, [*args, "--help"], prog_name="ccgateway", terminal_width=100)
        parts.append(
            f"### `{' '.join(['ccgateway', *args])}`\n\n```\n{result.output.rstrip()}\n```"
        )
    return "\n\n".join(parts)


def command_paths() -> list[list[str]]:
    import click

    paths: list[list[str]] = [[]]

    def walk(group: click.Group, prefix: list[str]) -> None:
        for name, command in sorted(group.commands.items()):
            paths.append([*prefix, name])
            if isinstance(command, click.Group):
                walk(command, [*prefix, name])

    walk(cli, [])
    return paths


BLOCKS: dict[str, tuple[str, Callable[[], str]]] = {
    "config-keys": ("configuration.md", config_table),
    "retcodes": ("errors.md", retcode_table),
    "cli-help": ("cli.md", cli_help),
}


def render(text: str, name: str, content: str) -> str:
    pattern = re.compile(
        rf"(<!-- generated:{name} -->\n)(?:.*?\n)?(<!-- /generated:{name} -->)", re.DOTALL
    )
    if not pattern.search(text):
        raise ValueError(f"no generated:{name} block")
    return pattern.sub(lambda m: m[1] + content + "\n" + m[2], text)


def stale() -> list[str]:
    """The generated blocks that differ from what the code says, each with a diff."""
    import difflib

    found = []
    for name, (filename, make) in BLOCKS.items():
        text = (DOCS / filename).read_text()
        fresh = render(text, name, make())
        if fresh != text:
            diff = difflib.unified_diff(text.splitlines(), fresh.splitlines(), lineterm="", n=1)
            found.append(f"docs/{filename}:{name}\n" + "\n".join(list(diff)[:40]))
    return found


def write() -> None:
    for name, (filename, make) in BLOCKS.items():
        path = DOCS / filename
        path.write_text(render(path.read_text(), name, make()))


if __name__ == "__main__":
    if "--write" in sys.argv:
        write()
    sys.exit(1 if stale() else 0)
