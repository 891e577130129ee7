"""``agenteval init``: an agenteval-format project (never overwriting a file) that passes out of the
box against agentcap's scripted model. The ``agenteval`` group itself is in main.py: ``agenteval run``
is ``agentcap test`` (same flags: ``--root --filter --provider --agent --model --repeat --report-dir
--no-judge --keep-workspace -v``, plus agentcap's ``-j``, ``--upstream`` …), ``list`` and ``validate``
are agentcap's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from agentcap_cli.console import err_console

SCAFFOLD = Path(__file__).resolve().parent.parent / "scaffold_agenteval"


@click.command(name="init")
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
              " remove upstream: from agenteval.yaml to use ANTHROPIC_API_KEY or your Claude login)")
