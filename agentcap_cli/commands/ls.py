"""``agentcap ls``: the runs under a workspace, from their run.json (and capture counts)."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from agentcap_cli.console import out_console
from agentcap_cli.runs.workspace import list_runs, workspace_root

SHORT = ("run", "agent", "model", "tasks ok", "captures", "status")
LONG = ("provider", "upstream", "label", "started", "finished", "replay of", "drift")  # -l, when not all empty
RIGHT = ("tasks ok", "captures")
LONG_WIDTH = 100  # -l off a terminal
STATUS_STYLE = {"done": "green", "running": "cyan", "interrupted": "yellow", "failed": "red"}


@click.command(name="ls")
@click.argument("workspace", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--workspace", "workspace_opt", type=click.Path(file_okay=False, path_type=Path),
              help="The workspace (same as the argument; default: $AGENTCAP_WORKSPACE, else the current directory).")
@click.option("-l", "long", is_flag=True,
              help="Also provider, upstream, label, start and end, and for a replay its recorded run and drift "
                   "(columns empty in every row left out; wider than the terminal, or 100 columns off one: each run's "
                   "other fields on a line below it).")
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
    out = out_console()
    cells = [_cells(r, long) for r in rows]
    width = _width(out)
    table = _table(cells, SHORT + (_extra(cells) if long else ()))
    if long and out.measure(table).maximum > width:
        out.print(_wrapped(cells, width))
    else:
        out.print(table)


def _width(console: Console) -> int:
    """The terminal's width (or $COLUMNS), else LONG_WIDTH (a pipe, a file, a CI log)."""
    return console.width if console.is_terminal or os.environ.get("COLUMNS") else LONG_WIDTH


def _when(stamp: str | None, same_day_as: str | None = None) -> str:
    """``2026-11-22 04:32``; only ``04:33`` on the day of ``same_day_as``."""
    s = (stamp or "")[:16].replace("T", " ")
    return s[11:] if s and same_day_as and same_day_as[:10] == s[:10] else s


def _cells(r: dict[str, Any], long: bool) -> dict[str, Text]:
    """One run's cells by column (``LONG`` ones with ``long``, empty when unknown)."""
    status = r.get("status") or "-"
    row = {"run": r["run_id"], "agent": r.get("agent") or "-", "model": r.get("model") or "-",
           "tasks ok": f"{r['tasks_ok']}/{r['tasks']}" if "tasks" in r else "-", "captures": str(r["captures"])}
    if long:
        row.update({"provider": r.get("provider") or "", "upstream": r.get("upstream") or "",
                    "label": r.get("label") or "", "started": _when(r.get("started_at")),
                    "finished": _when(r.get("finished_at"), r.get("started_at")), "replay of": r.get("replay_of") or ""})
    cells = {k: Text(v) for k, v in row.items()}
    cells["status"] = Text(status, style=STATUS_STYLE.get(status, "white"))
    if long:
        drifted = r.get("drifted")
        cells["drift"] = Text("" if drifted is None else f"{drifted}/{r['tasks']}", style="red" if drifted else "green")
    return cells


def _extra(cells: list[dict[str, Text]]) -> tuple[str, ...]:
    """``-l``'s columns, less those empty in every row (as ``docker ps`` / ``gh`` leave them out)."""
    return tuple(c for c in LONG if any(row[c].plain for row in cells))


def _table(cells: list[dict[str, Text]], cols: tuple[str, ...]) -> Table:
    table = Table(box=None, header_style="bold")
    for c in cols:
        table.add_column(c, overflow="fold", no_wrap=c == "run", justify="right" if c in RIGHT else "left")
    for row in cells:
        table.add_row(*(row[c] for c in cols))
    return table


def _wrapped(cells: list[dict[str, Text]], width: int) -> Text:
    """``-l`` in ``width`` columns: the short columns, and under each run its other fields as one
    ``key value · …`` line (folded at ``width``); a model too long for its column is cut with … there
    and given whole below."""
    widths = {c: max([len(c), *(row[c].cell_len for row in cells)]) for c in SHORT}
    rest = width - sum(w for c, w in widths.items() if c != "model") - 2 * (len(SHORT) - 1)
    widths["model"] = max(len("model"), min(widths["model"], rest))
    return Text("\n").join([_line({c: Text(c, style="bold") for c in SHORT}, widths),
                            *(_record(row, widths, width) for row in cells)])


def _line(row: dict[str, Text], widths: dict[str, int]) -> Text:
    parts = []
    for c in SHORT:
        t = row[c].copy()
        t.truncate(widths[c], overflow="ellipsis")
        t.align("right" if c in RIGHT else "left", widths[c])
        parts.append(t)
    line = Text("  ").join(parts)
    line.rstrip()
    return line


def _record(row: dict[str, Text], widths: dict[str, int], width: int) -> Text:
    fields = ([("model", row["model"])] if row["model"].cell_len > widths["model"] else []) + \
        [(c, row[c]) for c in LONG if row[c].plain]
    return Text("\n").join([_line(row, widths), *(Text(x, style="dim") for x in _pack(
        [f"{c} {t.plain}" for c, t in fields], width))])


def _pack(fields: list[str], width: int, sep: str = " · ") -> list[str]:
    """``fields`` joined by ``sep`` in lines of at most ``width`` (indented), broken between fields; a field
    wider than a line on its own is folded."""
    lines: list[str] = []
    for f in fields:
        indent = "  " if not lines else "    "
        if lines and len(lines[-1]) + len(sep) + len(f) <= width:
            lines[-1] += sep + f
        else:
            lines += textwrap.wrap(f, width, initial_indent=indent, subsequent_indent="    ", break_on_hyphens=False)
    return lines
