"""The ``agenteval`` command: agenteval's CLI (run, list, validate, init) on agentcap.

``agenteval run`` is ``agentcap test`` (same flags: ``--root --filter --provider --agent --model
--repeat --report-dir --no-judge --keep-workspace -v``, plus agentcap's ``-j`` and ``--upstream``);
``agenteval init [TARGET]`` writes an agenteval-format project (never overwriting a file) that passes
out of the box against agentcap's scripted model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from agentcap_cli.console import err_console
from agentcap_cli.commands.suite import list_, test, validate

SCAFFOLD = Path(__file__).resolve().parent.parent / "scaffold_agenteval"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="agentcap")
def agenteval() -> None:
    """Unit tests for agents (agenteval projects), run in agentcap's sandbox with every model call captured."""


agenteval.add_command(test, name="run")
agenteval.add_command(list_, name="list")
agenteval.add_command(validate, name="validate")


@agenteval.command(name="init")
@click.argument("target", default=".", type=click.Path(file_okay=False, path_type=Path))
def init(target: Path) -> None:
    """Scaffold an agenteval project at TARGET (files that exist are left alone)."""
    err = err_console()
    created = []
    for src in sorted(p for p in SCAFFOLD.rglob("*") if p.is_file()):
        rel = src.relative_to(SCAFFOLD)
        dest = target / rel
        if dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        created.append(str(rel))
    err.print(f"  scaffolded eval project at {target.resolve()}")
    for c in created:
        err.print(f"    + {c}")
    err.print("\n  next: `agenteval validate`, then `agenteval run -v` (a scripted model: no key needed;"
              " remove upstream: from agenteval.yaml to use ANTHROPIC_API_KEY)")


def main() -> None:
    from agentcap_cli.main import _terminate
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    agenteval(prog_name="agenteval")
