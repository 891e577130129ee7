"""What ``agentcap export`` does, as library functions: targets → staged (and scanned) datasets → out / Hub.

Staged layout (``--out DIR`` gets exactly this, staged beside DIR and put in place at the end:
:mod:`agentcap_cli.export.outdir`; ``--push`` stages it in a temp dir and uploads). Each
dataset directory is the Hub repo's name without ``OWNER/BASE-``, as the Rust agentcap named them:

    DIR/captures/data/<run>--<model>--<digest>.parquet   calls (default config)   → OWNER/BASE-captures
    DIR/captures/sessions/<run>--<digest>.parquet        sessions (config "sessions")
    DIR/<agent>-traces/sessions/<run>/<task>--<digest>.jsonl   the agent's sessions → OWNER/BASE-<agent>-traces
    DIR/<agent>-traces/data/<run>--<digest>.parquet            its trace files
    DIR/wire-traces/sessions/<run>/<task>--<digest>.jsonl     sessions from the wire → OWNER/BASE-wire-traces
    DIR/wire-traces/data/<run>--<digest>.parquet

each with a README.md, and a collection ``OWNER/BASE`` gathers them. The secret scan runs while
staging (the captures in the export workers, the rest here), so what it scans is exactly what is
written; sessions and converted traces, made from what was scanned, are scanned again as published.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

from agentcap_addons.wire.api.sessions import CallInfo
from agentcap_addons.wire.util.errors import InputError
from agentcap_addons.wire.util.yamlfile import ConfigError, load
from agentcap_cli.export.captures import RunInfo, WrittenFile, read_footer, write_run
from agentcap_cli.export.cards import CardInfo, from_footers
from agentcap_cli.export.licenses import hub_license
from agentcap_cli.export.scan import (
    SCANNED_DIRS,
    Gate,
    Report,
    scan_json_file,
    scan_sessions,
    write_scan_json,
)
from agentcap_cli.export.scanners import Engine, label, run_engines
from agentcap_cli.export.sessions import (
    SessionOut,
    SessionOutcome,
    SessionWriter,
    build,
    gate_texts,
    outcomes,
)
from agentcap_cli.export.traces import write_traces
from agentcap_cli.runs.record import RUN_JSON
from agentcap_cli.runs.workspace import count_captures
from agentcap_cli.sessions.native import HUB_NATIVE

REPO_RE = re.compile(r"^(?:hf://datasets/)?([A-Za-z0-9][\w.-]{0,95})/([A-Za-z0-9][\w.-]{0,95})/?$")


class TargetError(InputError):
    pass


class NothingToExport(TargetError):
    """No run given has a call or a trace to export (a run dir whose proxy never saw a call)."""


@dataclass
class Target:
    run_dir: Path
    run: RunInfo
    captures: int = 0
    calls: int = 0  # rows this export made of its captures: 0 when it has none readable (nothing exported)
    report: Report = field(default_factory=Report)  # what the scan found, what was skipped
    checks: list[tuple[str, list[str]]] = field(default_factory=list)  # (session id, trace vs wire differences)


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
    except FileNotFoundError:  # a capture dir of `mitmdump -s` (or of a proxy before run.json)
        return RunInfo(run_dir.name, kind="proxy")
    except (OSError, ValueError):
        return RunInfo(run_dir.name)
    tasks = [{"id": t.get("task_id"), "turns": t.get("completed_turns"), "prompt": (t.get("prompt") or "")[:200]}
             for t in rec.get("tasks") or []]
    return RunInfo(rec.get("run_id") or run_dir.name, agent=rec.get("agent"), provider=rec.get("provider"),
                   label=rec.get("label"), upstream=rec.get("upstream"), started_at=rec.get("started_at"), tasks=tasks,
                   kind=rec.get("kind"))


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
    name: str  # captures | <agent>-traces | wire-traces
    kind: str  # captures | traces | wire-traces
    agent: str | None
    root: Path  # the dataset's staging directory
    files: list[WrittenFile] = field(default_factory=list)
    runs: list[Target] = field(default_factory=list)

    def count(self, kind: str) -> int:
        """Rows of one kind (calls, sessions, files) or, for ``session``, session files."""
        return sum(1 if kind == "session" else f.rows for f in self.files if f.kind == kind)

    def repo_path(self, f: WrittenFile) -> str:
        return f.path.relative_to(self.root).as_posix()


@dataclass
class Options:
    """What shapes the sessions: prices for their cost, and whether failed calls count."""

    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    with_failed: bool = False


def stage(targets: list[Target], out: Path, progress: Callable[[int], None] | None = None,
          gate: Gate | None = None, options: Options | None = None, engines: list[Engine] | None = None) -> list[Staged]:
    """Write every target's datasets under ``out`` (the layout in the module docstring), scanning
    all that goes in when there is a ``gate`` (and running the external ``engines`` over each run's
    files): findings and skipped captures go to each target's ``report`` (and its run's scan.json).

    A run with calls but none answered (all refused upstream, all in flight when the proxy was
    killed) gives its calls' rows and its sessions' rows (failed-only: no messages); a run with no readable call
    adds nothing to the captures dataset (``Target.calls`` is 0). Raises :class:`NothingToExport`
    when no target has a call or a trace."""
    options = options or Options()
    captures = Staged("captures", "captures", None, out / "captures")
    wire = Staged("wire-traces", "wire-traces", None, out / "wire-traces")
    traces: dict[str, Staged] = {}
    for t in targets:
        t.report, t.checks = Report(), []
        if gate is not None:
            t.run = run_info(t.run_dir, gate, t.report)
        calls: list[CallInfo] = []
        captures.files += write_run(t.run_dir / "captures", t.run, out / "captures" / "data", version(), progress,
                                    gate=gate, report=t.report, calls=calls)
        t.calls = len(calls)
        if calls:
            captures.runs.append(t)
        native = {}
        ends = outcomes(t.run_dir)
        if t.run.agent:
            ids = {("task",) + k: o.session_id for k, o in ends.items() if o.session_id}
            s = traces.get(t.run.agent) or Staged(f"{t.run.agent}-traces", "traces", t.run.agent,
                                                  out / f"{t.run.agent}-traces")
            written = write_traces(t.run_dir, t.run, s.root, version(), gate, t.report, ids)
            native = written.native
            if written.files:
                traces[t.run.agent] = s
                s.files += written.files
                s.runs.append(t)
        if calls:  # no calls, no sessions; else every session that made a call has its row
            rows, wired = _sessions(t, calls, native, ends, out / "captures" / "sessions", wire.root, gate, options)
            if rows is not None:
                captures.files.append(rows)
            if wired:
                wire.files += wired
                wire.runs.append(t)
        if gate is not None:
            scan_sessions(t.run_dir, gate, t.report.findings)
            t.report.findings += run_engines(engines or [], t.run_dir, [t.run_dir / RUN_JSON, *(
                t.run_dir / d for d in SCANNED_DIRS)], gate, t.report.findings)
            write_scan_json(t.run_dir, t.report, label(engines or []))
    staged = [*([captures] if captures.runs else []), *traces.values(), *([wire] if wire.files else [])]
    if not staged:
        raise NothingToExport("nothing to export: " + "; ".join(f"{t.run_dir}: {_why_empty(t)}" for t in targets))
    return staged


def _why_empty(t: Target) -> str:
    skipped = len(t.report.skipped)
    return "no captured calls" + (f" ({skipped} unreadable, skipped)" if skipped else "") + " and no traces"


SESSION_BATCH = 64  # sessions scanned and written at a time


def _sessions(t: Target, calls: list[CallInfo], native: dict[tuple[Any, ...], Any],
              ends: dict[tuple[str | None, str | None, int | None], SessionOutcome], rows_dir: Path, wire: Path,
              gate: Gate | None, options: Options) -> tuple[WrittenFile | None, list[WrittenFile]]:
    """The run's sessions, a batch at a time: rebuilt, through the gate, written (rows, wire traces)."""
    writer = SessionWriter(t.run, rows_dir, wire, version())
    try:
        batch: list[SessionOut] = []
        for session in build(t.run_dir, t.run, calls, options.prices, options.with_failed, native, ends):
            if session.row["trace_diffs"]:
                t.checks.append((session.row["session_id"], session.row["trace_diffs"]))
            batch.append(session)
            if len(batch) >= SESSION_BATCH:
                _flush(batch, writer, gate, t.report)
                batch = []
        _flush(batch, writer, gate, t.report)
        return writer.close()
    finally:
        writer.discard()


def _flush(batch: list[SessionOut], writer: SessionWriter, gate: Gate | None, report: Report) -> None:
    if gate is not None:
        gate_texts(batch, gate, report)
    writer.add(batch)


@dataclass(frozen=True)
class License:
    """``--license``: an SPDX-style id as the Hub spells it (``mit``, ``cc-by-4.0``), or ``other``
    with a name and a link."""

    id: str
    name: str | None = None
    link: str | None = None


def parse_license(value: str | None, name: str | None, link: str | None) -> License | None:
    """``--license`` / ``--license-name`` / ``--license-link`` as the Hub's card metadata wants them:
    one of the Hub's ids (:mod:`.licenses`, lower case), and for ``other`` a name (lower case, a-z 0-9 -) and a link."""
    if value is None:
        if name or link:
            raise TargetError("--license-name and --license-link go with --license other")
        return None
    try:
        lic = hub_license(value)
    except ValueError as exc:
        raise TargetError(str(exc)) from None
    if lic != "other":
        if name or link:
            raise TargetError("--license-name and --license-link go with --license other")
        return License(lic)
    if not name or not link:
        raise TargetError("--license other needs --license-name and --license-link")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise TargetError(f"--license-name {name!r}: lower-case letters, digits and '-' only")
    return License(lic, name, link)


def load_prices(path: Path) -> dict[str, dict[str, float]]:
    """Model → {input, output[, cached_input]} (USD per million tokens) from a YAML or JSON file —
    the mapping itself, or an agentcap.yaml's ``prices:``. Errors name the file, line and key."""
    try:
        doc = load(path)
    except ConfigError as exc:
        raise TargetError(str(exc)) from None
    data, prefix = doc.data, ""
    if isinstance(data, dict) and isinstance(data.get("prices"), dict):
        data, prefix = data["prices"], "prices."
    if not isinstance(data, dict):
        raise TargetError(str(doc.error("", "must be a mapping model → {input, output} (USD per million tokens)")))
    out: dict[str, dict[str, float]] = {}
    what = "must be {input, output, cached_input}: numbers, USD per million tokens"
    for model, price in data.items():
        key = f"{prefix}{model}"
        if not isinstance(price, dict) or not price:
            raise TargetError(str(doc.error(key, what)))
        for k, v in price.items():
            if k not in ("input", "output", "cached_input") or isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TargetError(str(doc.error(f"{key}.{k}", what)))
        out[str(model)] = {k: float(v) for k, v in price.items()}
    return out


def staged_footers(s: Staged, only: set[str] | None = None) -> list[dict[str, Any]]:
    """Footers of the parquet files in a staged dataset directory — every export's that is there
    (``--out`` into the same directory again), or only the repo paths in ``only``."""
    paths = sorted([*s.root.glob("data/*.parquet"), *s.root.glob("sessions/*.parquet")])
    return [read_footer(p) for p in paths if only is None or p.relative_to(s.root).as_posix() in only]


def card_info(s: Staged, repo: str, names: dict[str, str], footers: list[dict[str, Any]],
              license: License | None = None, local: bool = False) -> CardInfo:
    """What the card of one dataset says: the dataset (from ``footers``: all its files'), this export."""
    rows = {"captures": f"{s.count('calls')} calls, {s.count('sessions')} sessions",
            "traces": f"{s.count('session')} session files, {s.count('files')} trace files",
            "wire-traces": f"{s.count('session')} session files"}[s.kind]
    traces = sorted(names[k] for k in names if k.endswith("-traces") and k != "wire-traces")
    info = CardInfo(repo=repo, kind=s.kind, agentcap_version=version(), local=local,
                    native=s.agent in HUB_NATIVE, captures_repo=names.get("captures"), traces_repos=traces,
                    wire_repo=names.get("wire-traces"), license=license.id if license else None,
                    license_name=license.name if license else None, license_link=license.link if license else None,
                    exported=[t.run.run_id for t in s.runs], exported_rows=rows,
                    exported_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    return from_footers(info, footers)


def repo_names(owner: str, base: str, staged: list[Staged]) -> dict[str, str]:
    """Staged dataset name → Hub repo id: ``OWNER/BASE-captures``, ``OWNER/BASE-<agent>-traces``,
    ``OWNER/BASE-wire-traces``."""
    return {s.name: f"{owner}/{base}-{s.name}" for s in staged}
