"""``agentcap ls``: the runs under a workspace, from their run.json (and capture counts)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from agentcap_cli.console import out_console
from agentcap_cli.runs.workspace import list_runs, workspace_root


@click.command(name="ls")
@click.argument("workspace", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--workspace", "workspace_opt", type=click.Path(file_okay=False, path_type=Path),
              help="The workspace (same as the argument; default: $AGENTCAP_WORKSPACE, else the current directory).")
@click.option("-l", "long", is_flag=True,
              help="Also provider, upstream, label, start and end, and for a replay its recorded run and drift.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout instead of a table (null for unknown).")
def ls(workspace: Path | None, workspace_opt: Path | None, long: bool, as_json: bool) -> None:
    """The runs in WORKSPACE (default: $AGENTCAP_WORKSPACE, else the current directory)."""
    root = workspace_opt or workspace or workspace_root()
    if not root.is_dir():
        raise click.BadParameter(f"{root}: no such directory", param_hint="WORKSPACE")
    rows = list_runs(root)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    table = Table(box=None, header_style="bold")
    cols = ["run", "agent", "model", "tasks ok", "captures", "status"]
    if long:
        cols += ["provider", "upstream", "label", "started", "finished", "replay of", "drift"]
    for c in cols:
        table.add_column(c, overflow="fold", no_wrap=c == "run", justify="right" if c in ("tasks ok", "captures") else "left")
    style = {"done": "green", "running": "cyan", "interrupted": "yellow", "failed": "red"}
    for r in rows:
        status = r.get("status") or "-"
        cells = [r["run_id"], r.get("agent") or "-", r.get("model") or "-",
                 f"{r['tasks_ok']}/{r['tasks']}" if "tasks" in r else "-", str(r["captures"]),
                 f"[{style.get(status, 'white')}]{status}[/]"]
        if long:
            drift = "" if r.get("drifted") is None else \
                f"[{'red' if r['drifted'] else 'green'}]{r['drifted']}/{r['tasks']}[/]"
            cells += [r.get("provider") or "-", r.get("upstream") or "-", r.get("label") or "",
                      (r.get("started_at") or "")[:19], (r.get("finished_at") or "")[:19], r.get("replay_of") or "",
                      drift]
        table.add_row(*cells)
    out_console().print(table)
