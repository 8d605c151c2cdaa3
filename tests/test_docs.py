"""The docs tell the same story as the code: every key, retcode and command is documented."""

from __future__ import annotations

from pathlib import Path

from tests import docgen

ROOT = Path(__file__).resolve().parent.parent


def test_generated_doc_blocks_are_current() -> None:
    assert docgen.stale() == [], "run scripts/docs and commit the result"


def test_readme_shows_the_two_commands_that_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "scripts/demo" in readme
    assert "scripts/test" in readme
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_readme_names_every_top_level_command() -> None:
    readme = (ROOT / "README.md").read_text()
    for path in docgen.command_paths()[1:]:
        assert f"ccgateway {path[0]}" in readme, path
