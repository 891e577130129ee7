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


def dataset_file(rel: str) -> bool:
    """A file of a dataset (path inside it) that the inspector opens: ``data/*.parquet`` (captures),
    ``sessions/*.parquet`` (the sessions config), ``sessions/**/*.jsonl`` (trace files)."""
    parts = rel.split("/")
    return len(parts) >= 2 and (parts[0] in ("data", "sessions") and len(parts) == 2 and rel.endswith(".parquet")
                                or parts[0] == "sessions" and rel.endswith(".jsonl"))


def dataset_files(paths: list[str], read: Any) -> list[tuple[str, dict[str, Any]]]:
    """(path, footer) of a dataset's files: captures and sessions parquet (a table of trace files —
    a traces dataset's ``files`` config — is left out: its session files are listed), and trace
    files (footer ``{}``)."""
    parquet = footers([p for p in paths if p.endswith(".parquet")], read)
    return [(p, f) for p, f in parquet if f.get("kind") in (None, "sessions")] + \
        [(p, {}) for p in paths if p.endswith(".jsonl")]


def hub_level(repo: str) -> Any:
    from huggingface_hub import HfFileSystem, hf_hub_download

    from agentcap_cli.export.captures import read_footer
    from agentcap_cli.inspect.data import DatasetLevel

    endpoint = os.environ.get("HF_ENDPOINT") or None
    fs = HfFileSystem(endpoint=endpoint)

    def footer(path: str) -> dict[str, Any]:
        with fs.open(path, "rb") as f:  # ranged reads: only the footer comes over the wire
            return read_footer(f)

    root = f"datasets/{repo}/"
    files = dataset_files([p for p in fs.find(root) if dataset_file(p.removeprefix(root))], footer)

    def opener(path: str) -> str:  # download a file only when it is entered
        return hf_hub_download(repo, path.split(f"datasets/{repo}/", 1)[1], repo_type="dataset", endpoint=endpoint)

    return DatasetLevel(f"hf://datasets/{repo}", files, opener)


def hub_names(repo: str) -> list[str]:
    """The Hub datasets ``OWNER/NAME`` may mean, in the order tried: the name as given, then the
    captures dataset of an export pushed as ``--push OWNER/NAME`` (``OWNER/NAME-captures``) — for any
    name, one that ends in ``-captures`` too (``--push my-org/my-captures`` publishes
    ``my-org/my-captures-captures``)."""
    return [repo, f"{repo}-captures"]


def hub_dataset(target: str, repo: str) -> Any:
    """The first of :func:`hub_names` that lists files the inspector opens, or BadParameter naming
    what each said."""
    problems = []
    for name in hub_names(repo):
        try:
            level = hub_level(name)
        except Exception as exc:
            problems.append(f"{name}: {exc}")
            continue
        if level.files:
            return level
        problems.append(f"{name}: no data/*.parquet, sessions/*.parquet or sessions/**/*.jsonl")
    raise click.BadParameter(f"{target}: cannot list the Hub dataset ({'; '.join(problems)})", param_hint="TARGET")


def local_files(p: Path) -> list[str]:
    """A dataset dir's files: the dir's own, else those of its layout (:func:`dataset_file`), else
    those of the datasets of an ``export --out`` dir (captures/, <agent>-traces/, wire-traces/)."""
    own = sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix in (".parquet", ".jsonl"))
    if own:
        return own
    for roots in ([p], sorted(d for d in p.iterdir() if d.is_dir())):
        found = sorted(str(f) for root in roots for sub in ("data", "sessions") if (root / sub).is_dir()
                       for f in (root / sub).rglob("*") if f.is_file() and dataset_file(f.relative_to(root).as_posix()))
        if found:
            return found
    return []


def is_captures_dir(p: Path) -> bool:
    """A run's captures/ (not the captures dataset of an export --out dir: it has data/)."""
    return p.name == "captures" and p.is_dir() and not (p / "data").is_dir()


def resolve(target: str | None, workspace: Path) -> Any:
    """The top level for TARGET, or raise click.BadParameter."""
    from agentcap_cli.export.captures import read_footer
    from agentcap_cli.inspect.data import (
        DatasetLevel,
        RunLevel,
        TraceLevel,
        WorkspaceLevel,
        parquet_level,
    )

    if target is None:
        return WorkspaceLevel(workspace)
    p = Path(target)
    if p.is_file() and p.suffix == ".parquet":
        try:
            return parquet_level(str(p), p.name)
        except Exception as exc:
            raise click.BadParameter(f"{target}: not a readable parquet file ({exc})", param_hint="TARGET") from None
    if p.is_file() and p.suffix == ".jsonl":
        return TraceLevel(p, p.name)
    if p.is_dir():
        if (p / ".agentcap").is_dir():
            return WorkspaceLevel(p)
        if is_captures_dir(p) or is_captures_dir(p / "captures"):
            return RunLevel(p)
        files = dataset_files(local_files(p), read_footer)
        if files:
            return DatasetLevel(str(p), files, lambda name: name)
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
    """Browse TARGET: the workspace (default), a run dir or run id, a .parquet or .jsonl trace file
    or a dataset dir (or an export --out dir), hf://datasets/OWNER/NAME (or OWNER/NAME; when that
    has no files, OWNER/NAME-captures: an export pushed as OWNER/NAME), or a request-id prefix
    (printed, not browsed).

    Enter drills in (runs → requests → messages; sessions → messages), Esc walks back, typing
    filters (task:ID, repeat:N, thread:ID; text also searches message bodies), q quits.
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
