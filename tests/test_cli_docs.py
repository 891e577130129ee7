"""The CLI and its docs agree: every option of every command is in that command's docs page, the
top-level help comes from the lazy table without importing any command module, and the table's
commands all resolve."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from agentcap_cli.main import COMMANDS, cli

REPO = Path(__file__).resolve().parent.parent
DOCS = {"run": "run.md", "ls": "run.md", "export": "export.md", "inspect": "inspect.md", "test": "testing.md",
        "validate": "testing.md", "list": "testing.md", "init": "testing.md", "proxy": "capture.md",
        "model": "upstreams.md", "mock": "mocks.md", "sandbox": "sandbox.md", "doctor": "sandbox.md"}


def walk(ctx: click.Context, name: str, cmd: click.Command) -> Iterator[tuple[str, click.Command]]:
    if isinstance(cmd, click.Group):
        for sub in cmd.list_commands(ctx):
            yield from walk(ctx, f"{name} {sub}", cmd.get_command(ctx, sub))
    else:
        yield name, cmd


@pytest.mark.parametrize("top", sorted(COMMANDS))
def test_every_option_is_documented(top):
    ctx = click.Context(cli)
    doc = (REPO / "docs" / DOCS[top]).read_text()
    missing = [f"{name} {p.opts}" for name, cmd in walk(ctx, top, cli.get_command(ctx, top))
               for p in cmd.params if isinstance(p, click.Option) and not any(o in doc for o in p.opts + p.secondary_opts)]
    assert not missing, f"not in docs/{DOCS[top]}: {missing}"


def test_top_level_help_imports_no_command_module():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom agentcap_cli.main import cli\n"
            "r = CliRunner().invoke(cli, ['--help'])\nassert r.exit_code == 0, r.output\n"
            "print(sorted(m for m in sys.modules if m.startswith('agentcap_cli.commands')))\nprint(r.output)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO).stdout
    assert out.splitlines()[0] == "[]"
    for name, (_, short) in COMMANDS.items():
        assert name in out and short[:30] in out


def test_agenteval_help_lists_its_commands():
    from click.testing import CliRunner

    from agentcap_cli.main import agenteval

    out = CliRunner().invoke(agenteval, ["--help"]).output
    assert all(c in out for c in ("run", "list", "validate", "init"))
