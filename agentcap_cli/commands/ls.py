"""``agentcap ls``: the runs under a workspace, from their run.json (and capture counts)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from agentcap_cli.console import out_console
from agentcap_cli.runrecord import RUN_JSON
from agentcap_cli.workspace import workspace_root


def count_captures(run_dir: Path) -> int:
    try:
        return sum(1 for e in os.scandir(run_dir / "captures") if e.name.endswith(".request.json"))
    except FileNotFoundError:
        return 0


def list_runs(workspace: Path) -> list[dict[str, Any]]:
    """One summary per run dir under ``workspace/.agentcap`` (a proxy-only dir has no run.json)."""
    home = workspace / ".agentcap"
    rows = []
    for d in sorted(p for p in home.iterdir() if p.is_dir()) if home.is_dir() else []:
        row: dict[str, Any] = {"run_id": d.name, "path": str(d), "captures": count_captures(d)}
        try:
            rec = json.loads((d / RUN_JSON).read_text())
        except FileNotFoundError:
            if not (d / "captures").is_dir():
                continue
            row.update(kind="proxy", status=None)
        except ValueError:
            row.update(status="unreadable")
        else:
            tasks = rec.get("tasks") or []
            ok = sum(1 for t in tasks if not t.get("aborted_reason")
                     and (t.get("completed_turns") or 0) >= (t.get("turns_planned") or rec.get("turns_per_task") or 1))
            row.update({k: rec.get(k) for k in ("kind", "agent", "model", "provider", "upstream", "label",
                                                "status", "started_at", "finished_at", "shard", "replay_of")})
            # a replay (`agentcap run --replay`): how many of its tasks drifted from the recording
            row.update(tasks_ok=ok, tasks=len(tasks),
                       drifted=sum(1 for t in tasks if t.get("drift")) if rec.get("replay_of") else None)
        rows.append(row)
    return rows


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
