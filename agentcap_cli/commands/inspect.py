"""``agentcap inspect``: browse runs, exported parquet files and Hub datasets in the terminal."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from agentcap_addons.wire.pretty import as_text, request_lines, response_lines
from agentcap_cli.export.exporter import REPO_RE
from agentcap_cli.workspace import workspace_root

HEX = re.compile(r"^[0-9a-f]{4,32}$")


def find_requests(prefix: str, workspace: Path) -> list[Path]:
    home = workspace / ".agentcap"
    return sorted(home.glob(f"*/captures/{prefix}*.request.json")) if home.is_dir() else []


def print_request(path: Path, as_json: bool) -> None:
    from agentcap_addons.wire.store import REQUEST_SUFFIX, read_capture
    from agentcap_cli.inspect.data import call_of

    cap = read_capture(path.parent, path.name.removesuffix(REQUEST_SUFFIX))
    req, resp = cap.request, cap.response
    call = call_of(cap)
    if as_json:
        d = call.decoded()
        click.echo(json.dumps({"request": req, "response": resp, "decoded": {
            "messages": [m.__dict__ | {"tool_calls": [c.__dict__ for c in m.tool_calls]} for m in call.messages()],
            "content": d.content, "reasoning": d.reasoning, "finish_reason": d.finish_reason,
            "tool_calls": [c.__dict__ for c in d.tool_calls], "usage": d.usage.__dict__, "error": d.error}},
            ensure_ascii=False, default=str))
        return
    click.echo(f"{path.parent.parent.name} · seq {req.get('seq')} · task {req.get('task_id')} turn {req.get('turn')}")
    click.echo(as_text(request_lines(call.api, call.body)))
    click.echo("══ response ══")
    click.echo(as_text(response_lines(call.decoded())))


def hub_level(repo: str) -> Any:
    import pyarrow.parquet as pq
    from huggingface_hub import HfFileSystem, hf_hub_download

    from agentcap_cli.export.captures import FOOTER_KEY
    from agentcap_cli.inspect.data import DatasetLevel

    endpoint = os.environ.get("HF_ENDPOINT") or None
    fs = HfFileSystem(endpoint=endpoint)
    files = []
    for path in sorted(fs.glob(f"datasets/{repo}/data/*.parquet")):
        with fs.open(path, "rb") as f:  # ranged reads: only the footer comes over the wire
            meta = pq.read_metadata(f).metadata or {}
        files.append((path, json.loads(meta[FOOTER_KEY]) if FOOTER_KEY in meta else {}))

    def opener(path: str) -> str:  # download a file only when it is entered
        return hf_hub_download(repo, path.split(f"datasets/{repo}/", 1)[1], repo_type="dataset", endpoint=endpoint)

    return DatasetLevel(f"hf://datasets/{repo}", files, opener)


def resolve(target: str | None, workspace: Path) -> Any:
    """The top level for TARGET, or raise click.BadParameter."""
    from agentcap_cli.export.captures import read_footer
    from agentcap_cli.inspect.data import DatasetLevel, ParquetLevel, RunLevel, WorkspaceLevel

    if target is None:
        return WorkspaceLevel(workspace)
    p = Path(target)
    if p.is_file() and p.suffix == ".parquet":
        try:
            return ParquetLevel(str(p), p.name)
        except Exception as exc:
            raise click.BadParameter(f"{target}: not a readable parquet file ({exc})", param_hint="TARGET") from None
    if p.is_dir():
        if (p / ".agentcap").is_dir():
            return WorkspaceLevel(p)
        if (p / "captures").is_dir() or p.name == "captures":
            return RunLevel(p)
        parquets = sorted(p.glob("*.parquet")) or sorted(p.glob("data/*.parquet"))
        if parquets:
            return DatasetLevel(str(p), [(str(f), read_footer(f)) for f in parquets], lambda name: name)
        raise click.BadParameter(f"{target}: no runs, captures or parquet files there", param_hint="TARGET")
    if (workspace / ".agentcap" / target / "captures").is_dir():
        return RunLevel(workspace / ".agentcap" / target)
    m = REPO_RE.match(target)
    if m and (target.startswith("hf://") or not HEX.match(target)):
        try:
            return hub_level(f"{m.group(1)}/{m.group(2)}")
        except Exception as exc:
            raise click.BadParameter(f"{target}: cannot list the Hub dataset ({exc})", param_hint="TARGET") from None
    raise click.BadParameter(f"{target}: not a workspace, run, run id, parquet file, dataset or request id",
                             param_hint="TARGET")


@click.command()
@click.argument("target", required=False)
@click.option("--json", "as_json", is_flag=True, help="With a request id: print it as JSON.")
@click.option("--workspace", type=click.Path(file_okay=False, path_type=Path), envvar="AGENTCAP_WORKSPACE",
              help="Where runs and run ids are looked up (default: cwd).  [env AGENTCAP_WORKSPACE]")
def inspect(target: str | None, as_json: bool, workspace: Path | None) -> None:
    """Browse TARGET: the workspace (default), a run dir or run id, a .parquet file or a dir of them,
    hf://datasets/OWNER/NAME (or OWNER/NAME), or a request-id prefix (printed, not browsed).

    Enter drills in (runs → requests → messages), Esc walks back, typing filters, q quits.
    """
    ws = workspace or workspace_root()
    if target and HEX.match(target) and not Path(target).exists() \
            and not (ws / ".agentcap" / target).exists():
        found = find_requests(target, ws)
        if len(found) != 1:
            what = "no request" if not found else f"{len(found)} requests ({', '.join(p.name[:12] for p in found[:5])} …)"
            raise click.BadParameter(f"{target}: {what} with this id prefix under {ws / '.agentcap'}",
                                     param_hint="TARGET")
        print_request(found[0], as_json)
        return
    if as_json:
        raise click.UsageError("--json goes with a request id")
    level = resolve(target, ws)
    from agentcap_cli.inspect.app import InspectApp

    if not sys.stdout.isatty():
        raise click.UsageError("inspect is interactive: run it in a terminal (or give a request id to print one)")
    InspectApp(level).run()
