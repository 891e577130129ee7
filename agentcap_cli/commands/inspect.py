"""``agentcap inspect``: browse runs, exported parquet files and Hub datasets in the terminal."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from agentcap_addons.wire.api.pretty import as_text, request_lines, response_lines
from agentcap_cli.export.exporter import REPO_RE
from agentcap_cli.runs.workspace import workspace_root

HEX = re.compile(r"^[0-9a-f]{4,32}$")


def find_requests(prefix: str, workspace: Path) -> list[Path]:
    home = workspace / ".agentcap"
    return sorted(home.glob(f"*/captures/{prefix}*.request.json")) if home.is_dir() else []


def print_request(path: Path, as_json: bool) -> None:
    from agentcap_addons.wire.capture.records import REQUEST_SUFFIX
    from agentcap_cli.export.captures import UnreadableCapture, read_checked
    from agentcap_cli.inspect.data import call_of

    rid = path.name.removesuffix(REQUEST_SUFFIX)
    try:
        cap = read_checked(path.parent, rid)
        if cap is None:
            raise UnreadableCapture(f"captures/{path.name}: removed")
        call = call_of(cap)
    except (UnreadableCapture, KeyError, TypeError, AttributeError) as exc:
        what = str(exc) if isinstance(exc, UnreadableCapture) else f"captures/{path.name}: not a capture record ({exc!r})"
        raise click.BadParameter(f"{path.parent.parent}/{what}", param_hint="TARGET") from None
    req, resp = cap.request, cap.response
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


def footers(paths: list[str], read: Any) -> list[tuple[str, dict[str, Any]]]:
    """(path, agentcap footer) of each parquet file; one that cannot be read is skipped with a
    warning naming it (a corrupt file among many should not hide the others)."""
    out = []
    for path in paths:
        try:
            out.append((path, read(path)))
        except Exception as exc:
            click.echo(f"warning: {path}: not a readable parquet file ({exc}), skipped", err=True)
    return out


def hub_level(repo: str) -> Any:
    from huggingface_hub import HfFileSystem, hf_hub_download

    from agentcap_cli.export.captures import read_footer
    from agentcap_cli.inspect.data import DatasetLevel

    endpoint = os.environ.get("HF_ENDPOINT") or None
    fs = HfFileSystem(endpoint=endpoint)

    def footer(path: str) -> dict[str, Any]:
        with fs.open(path, "rb") as f:  # ranged reads: only the footer comes over the wire
            return read_footer(f)

    files = footers(sorted(fs.glob(f"datasets/{repo}/data/*.parquet")), footer)

    def opener(path: str) -> str:  # download a file only when it is entered
        return hf_hub_download(repo, path.split(f"datasets/{repo}/", 1)[1], repo_type="dataset", endpoint=endpoint)

    return DatasetLevel(f"hf://datasets/{repo}", files, opener)


def hub_dataset(target: str, repo: str) -> Any:
    """The Hub dataset ``repo``, or — given an export's ``OWNER/BASE`` — its captures dataset
    ``OWNER/BASE-captures`` (the name ``agentcap export --push OWNER/BASE`` publishes under)."""
    names = [repo] if repo.endswith("-captures") else [repo, f"{repo}-captures"]
    problems = []
    for name in names:
        try:
            level = hub_level(name)
        except Exception as exc:
            problems.append(f"{name}: {exc}")
            continue
        if level.files:
            return level
        problems.append(f"{name}: no data/*.parquet")
    raise click.BadParameter(f"{target}: cannot list the Hub dataset ({'; '.join(problems)})", param_hint="TARGET")


def resolve(target: str | None, workspace: Path) -> Any:
    """The top level for TARGET, or raise click.BadParameter."""
    from agentcap_cli.export.captures import read_footer
    from agentcap_cli.inspect.data import (
        DatasetLevel,
        ParquetLevel,
        RunLevel,
        WorkspaceLevel,
    )

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
        # a dataset dir, its data/, or an `export --out` dir (its captures dataset)
        parquets = sorted(p.glob("*.parquet")) or sorted(p.glob("data/*.parquet")) or \
            sorted(p.glob("captures/data/*.parquet"))
        if parquets:
            return DatasetLevel(str(p), footers([str(f) for f in parquets], read_footer), lambda name: name)
        if (p / "captures").is_dir() or p.name == "captures":
            return RunLevel(p)
        raise click.BadParameter(f"{target}: no runs, captures or parquet files there", param_hint="TARGET")
    if (workspace / ".agentcap" / target / "captures").is_dir():
        return RunLevel(workspace / ".agentcap" / target)
    m = REPO_RE.match(target)
    if m and (target.startswith("hf://") or not HEX.match(target)):
        return hub_dataset(target, f"{m.group(1)}/{m.group(2)}")
    raise click.BadParameter(f"{target}: not a workspace, run, run id, parquet file, dataset or request id",
                             param_hint="TARGET")


@click.command()
@click.argument("target", required=False)
@click.option("--json", "as_json", is_flag=True, help="With a request id: print it as JSON.")
@click.option("--workspace", type=click.Path(file_okay=False, path_type=Path), envvar="AGENTCAP_WORKSPACE",
              help="Where runs and run ids are looked up (default: cwd).  [env AGENTCAP_WORKSPACE]")
def inspect(target: str | None, as_json: bool, workspace: Path | None) -> None:
    """Browse TARGET: the workspace (default), a run dir or run id, a .parquet file or a dir of them,
    hf://datasets/OWNER/NAME (or OWNER/NAME; an export's OWNER/BASE opens OWNER/BASE-captures),
    or a request-id prefix (printed, not browsed).

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
