"""What ``agentcap export`` does, as library functions: targets → staged (and scanned) datasets → out / Hub.

Staged layout (``--out DIR`` is exactly this; ``--push`` stages it in a temp dir and uploads). Each
dataset directory is the Hub repo's name without ``OWNER/BASE-``, as the Rust agentcap named them:

    DIR/captures/README.md, DIR/captures/data/<run>--<model>--<digest>.parquet        → OWNER/BASE-captures
    DIR/<agent>-traces/README.md, DIR/<agent>-traces/data/<run>--<digest>.parquet     → OWNER/BASE-<agent>-traces

and a collection ``OWNER/BASE`` gathers them. The secret scan runs while staging (the captures in
the export workers, the rest here), so what it scans is exactly what is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version as pkg_version
from pathlib import Path
from urllib.parse import urlsplit

from agentcap_cli.export.captures import RunInfo, WrittenFile, write_run
from agentcap_cli.export.cards import CardInfo
from agentcap_cli.export.scan import Gate, Report, scan_json_file, scan_sessions, trufflehog, write_scan_json
from agentcap_cli.export.traces import write_traces
from agentcap_cli.workspace import count_captures
from agentcap_cli.runrecord import RUN_JSON

REPO_RE = re.compile(r"^(?:hf://datasets/)?([A-Za-z0-9][\w.-]{0,95})/([A-Za-z0-9][\w.-]{0,95})/?$")


class TargetError(ValueError):
    pass


@dataclass
class Target:
    run_dir: Path
    run: RunInfo
    captures: int = 0
    report: Report = field(default_factory=Report)  # what the scan found, what was skipped


def version() -> str:
    return pkg_version("agentcap")


def run_info(run_dir: Path, gate: Gate | None = None, report: Report | None = None) -> RunInfo:
    """The run's shared columns and footer, from run.json; scanned first when there is a gate
    (under --redact the footer is made from the masked copy, before prompts are cut to 200
    characters, so no cut can leave half a key)."""
    try:
        text = (run_dir / RUN_JSON).read_text(encoding="utf-8")
        if gate is not None and report is not None:
            text = scan_json_file(RUN_JSON, text, gate, report.findings)
        rec = json.loads(text)
    except (OSError, ValueError):
        return RunInfo(run_dir.name)
    tasks = [{"id": t.get("task_id"), "turns": t.get("completed_turns"), "prompt": (t.get("prompt") or "")[:200]}
             for t in rec.get("tasks") or []]
    return RunInfo(rec.get("run_id") or run_dir.name, agent=rec.get("agent"), provider=rec.get("provider"),
                   label=rec.get("label"), upstream=rec.get("upstream"), started_at=rec.get("started_at"), tasks=tasks)


def resolve_targets(names: list[str], everything: bool, workspace: Path) -> list[Target]:
    """Run dirs, captures dirs or run ids (under ``workspace/.agentcap``); ``everything``: all runs there."""
    home = workspace / ".agentcap"
    dirs: list[Path] = []
    if everything:
        dirs = sorted(p for p in home.iterdir() if (p / "captures").is_dir()) if home.is_dir() else []
        if not dirs:
            raise TargetError(f"no runs with captures under {home}")
    for name in names:
        p = Path(name)
        if p.name == "captures" and p.is_dir():
            p = p.parent
        elif not (p / "captures").is_dir() and (home / name / "captures").is_dir():
            p = home / name
        if not (p / "captures").is_dir():
            raise TargetError(f"{name}: not a run directory, a captures directory or a run id under {home}")
        dirs.append(p)
    if not dirs:
        raise TargetError("give runs to export (directories or run ids), or --all")
    seen: dict[Path, Target] = {}
    for d in dirs:
        seen.setdefault(d.resolve(), Target(d.resolve(), run_info(d), count_captures(d)))
    return list(seen.values())


def parse_repo(value: str) -> tuple[str, str]:
    m = REPO_RE.match(value.strip())
    if not m:
        raise TargetError(f"{value!r} is not OWNER/BASE (or hf://datasets/OWNER/BASE)")
    return m.group(1), m.group(2)


@dataclass
class Staged:
    name: str  # captures | <agent>-traces
    kind: str  # captures | traces
    agent: str | None
    files: list[WrittenFile] = field(default_factory=list)
    runs: list[Target] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


def stage(targets: list[Target], out: Path, progress: Callable[[int], None] | None = None,
          gate: Gate | None = None) -> list[Staged]:
    """Write every target's parquet files under ``out`` (the layout in the module docstring),
    scanning all that goes in when there is a ``gate``: findings and skipped captures go to each
    target's ``report`` (and its run's scan.json)."""
    captures = Staged("captures", "captures", None)
    traces: dict[str, Staged] = {}
    for t in targets:
        t.report = Report()
        if gate is not None:
            t.run = run_info(t.run_dir, gate, t.report)
        captures.files += write_run(t.run_dir / "captures", t.run, out / "captures" / "data", version(), progress,
                                    gate=gate, report=t.report)
        captures.runs.append(t)
        if t.run.agent:
            written = write_traces(t.run_dir, t.run, out / f"{t.run.agent}-traces" / "data", version(), gate, t.report)
            if written is not None:
                s = traces.setdefault(t.run.agent, Staged(f"{t.run.agent}-traces", "traces", t.run.agent))
                s.files.append(written)
                s.runs.append(t)
        if gate is not None:
            scan_sessions(t.run_dir, gate, t.report.findings)
            t.report.findings += trufflehog(t.run_dir, gate, t.report.findings)
            write_scan_json(t.run_dir, t.report)
    return [captures, *traces.values()]


def card_info(staged: Staged, repo: str, captures_repo: str, traces_repos: list[str]) -> CardInfo:
    runs = staged.runs
    models = sorted({f.model for f in staged.files if f.model}) if staged.kind == "captures" else []
    hosts = sorted({urlsplit(r.run.upstream).hostname or r.run.upstream for r in runs
                    if r.run.upstream and "://" in r.run.upstream} |
                   {r.run.upstream for r in runs if r.run.upstream and "://" not in r.run.upstream})
    starts = sorted(r.run.started_at for r in runs if r.run.started_at)
    return CardInfo(repo=repo, kind=staged.kind, agentcap_version=version(),
                    agents=sorted({r.run.agent for r in runs if r.run.agent}), models=models, hosts=hosts,
                    runs=[r.run.run_id for r in runs], first=starts[0][:10] if starts else None,
                    last=starts[-1][:10] if starts else None, rows=staged.rows, captures_repo=captures_repo,
                    traces_repos=traces_repos,
                    exported_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def repo_names(owner: str, base: str, staged: list[Staged]) -> dict[str, str]:
    """Staged dataset name → Hub repo id: ``OWNER/BASE-captures``, ``OWNER/BASE-<agent>-traces``."""
    return {s.name: f"{owner}/{base}-{s.name}" for s in staged}
