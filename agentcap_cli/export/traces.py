"""Traces → the paired ``<agent>-traces`` dataset: the agent's session files the Hub's trace viewer
renders, and every native trace file as a parquet row.

Layout (``DIR`` = the dataset's directory):

    DIR/sessions/<run>/<task>--<digest>.jsonl   one session file per task session (the default config)
    DIR/data/<run>--<digest>.parquet             one row per native trace file (not a config: ``datasets``
                                                 reads a dataset with one builder, here JSON; load these
                                                 by their files, as the card says)

Claude Code, Codex and Pi sessions are published as the agents wrote them, hermes' as its own
``sessions export`` JSONL made from its state.db (the Hub reads those four formats); the other
agents' traces (opencode's SQLite, qwen-code's chat JSONL, mini-swe-agent's trajectories, aider's
markdown history) are converted to Pi's session format with a ``harness`` field (the agent's name),
the route the Hub's docs give other harnesses, which ``datasets`` + ``teich`` read with their tool
calls (:func:`agentcap_cli.sessions.schema.session_text`).
A suite run's traces (``cells/<cell>/<repeat>/traces``) are tasks ``<cell>`` with their repeat.
Every byte goes through the gate first (:func:`.scan.scan_blobs`): under ``--redact`` the parquet,
the raw session files and the converted ones all hold the masked copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentcap_cli.export.captures import RunInfo, WrittenFile
from agentcap_cli.export.files import SCHEMA, FileRows, file_row, key_name, session_file  # noqa: F401 (SCHEMA: re-exported)
from agentcap_cli.export.scan import UNREADABLE, Blob, Finding, Gate, Report, scan_blobs, scan_derived
from agentcap_cli.sessions.native import HUB_NATIVE, hub_native_files, read_native
from agentcap_cli.sessions.schema import Counts, NativeSession, session_text
from agentcap_cli.sessions.stores import hermes_export

BATCH_BYTES = 64 << 20


def _format(path: Path) -> str:
    return {".jsonl": "jsonl", ".json": "json", ".md": "markdown", ".db": "sqlite", ".sqlite": "sqlite"}.get(
        path.suffix, path.suffix.lstrip(".") or "text")


@dataclass
class TaskTrace:
    """One task session's trace directory."""

    key: tuple[Any, ...]  # the session key (agentcap_cli.export.sessions.session_key)
    dir: Path
    rel: str  # the directory relative to the run dir, as findings name it

    @property
    def task_id(self) -> str:
        return str(self.key[1])

    @property
    def repeat(self) -> int | None:
        return self.key[3]


def task_traces(run_dir: Path) -> list[TaskTrace]:
    """``traces/<task>/`` of a corpus run, ``cells/<cell>/<repeat>/traces/`` of a suite run."""
    out = []
    root = run_dir / "traces"
    for task in sorted(root.iterdir()) if root.is_dir() else []:
        if task.is_dir():
            out.append(TaskTrace(("task", task.name, None, None), task, f"traces/{task.name}"))
    for d in sorted((run_dir / "cells").glob("*/*/traces")) if (run_dir / "cells").is_dir() else []:
        if d.is_dir() and d.parent.name.isdigit():
            cell = d.parent.parent.name
            out.append(TaskTrace(("task", cell, cell, int(d.parent.name)), d, str(d.relative_to(run_dir))))
    return out


@dataclass
class TracesWritten:
    files: list[WrittenFile] = field(default_factory=list)  # the parquet, then the session files
    native: dict[tuple[Any, ...], Counts] = field(default_factory=dict)  # what each task's trace says it cost


def _leave_out(batch: list[tuple[TaskTrace, Path, Blob]], blobs: list[Blob], found: list[Finding]
               ) -> tuple[list[tuple[TaskTrace, Path, Blob]], list[Blob]]:
    """``--leave-out-unreadable``: the files with something that cannot be read are not published;
    every finding in them is ``left out`` (it blocks nothing: nothing of the file leaves)."""
    out = {f.file for f in found if f.state == "blocking" and f.detector.startswith(UNREADABLE)}
    for f in found:
        if f.file in out:
            f.state = "left out"
    keep = [i for i, b in enumerate(blobs) if b.file not in out]
    return [batch[i] for i in keep], [blobs[i] for i in keep]


def write_traces(run_dir: Path, run: RunInfo, dataset: Path, version: str, gate: Gate | None = None,
                 report: Report | None = None, session_ids: dict[tuple[Any, ...], str] | None = None) -> TracesWritten:
    """The run's traces into ``dataset`` (the layout in the module docstring), each batch of files
    scanned before it is written when there is a gate. ``session_ids``: the agent's own session id
    per task (from run.json), to pick the right session out of a shared database."""
    result = TracesWritten()
    tasks = task_traces(run_dir)
    files = [(t, f) for t in tasks for f in sorted(p for p in t.dir.rglob("*") if p.is_file())]
    if not files:
        return result
    report = report if report is not None else Report()
    raw = {f for t in tasks for f in hub_native_files(run.agent or "", t.dir)}
    table = FileRows(dataset / "data", run)
    sessions: list[WrittenFile] = []

    def flush(batch: list[tuple[TaskTrace, Path, Blob]]) -> None:
        blobs = [b for _, _, b in batch]
        if gate is not None:
            found: list[Finding] = []
            blobs = scan_blobs(blobs, gate, found)
            if gate.leave_out:
                batch, blobs = _leave_out(batch, blobs, found)
            report.findings += found
        table.write([file_row(run, t.key, b.name or "", b.data, _format(p)) for (t, p, _), b in zip(batch, blobs)])
        for (t, p, _), b in zip(batch, blobs):
            if p in raw:  # published as the agent wrote it (masked under --redact)
                sessions.append(session_file(dataset / "sessions", run, t.key, b.data, b.data.count(b"\n")))

    try:
        pending: list[tuple[TaskTrace, Path, Blob]] = []
        size = 0
        for t, path in files:
            pending.append((t, path, Blob(f"{t.rel}/{path.relative_to(t.dir)}", path.read_bytes(), path,
                                          str(path.relative_to(t.dir)))))
            size += len(pending[-1][2].data)
            if size >= BATCH_BYTES:
                flush(pending)
                pending, size = [], 0
        if pending:
            flush(pending)
        for t in tasks:
            native = read_native(run.agent, t.dir, (session_ids or {}).get(t.key))
            if native is None:
                continue
            result.native[t.key] = native.counts
            if run.agent == "hermes":
                data = hermes_export(t.dir)
                if data is not None:
                    sessions.append(_derived(t, data, "(as hermes sessions export)", run, dataset, gate, report))
            elif run.agent not in HUB_NATIVE and native.messages:
                sessions.append(_converted(t, native, run, dataset, gate, report))
        written = table.close(version, kind="traces", sessions=len(sessions))
        result.files = ([written] if written else []) + sessions
        return result
    finally:
        table.discard()


def _converted(t: TaskTrace, native: NativeSession, run: RunInfo, dataset: Path, gate: Gate | None,
               report: Report) -> WrittenFile:
    """A native trace as a session file in Pi's format, harness the agent's name (the tools it was
    offered are not in these traces: the wire traces have them)."""
    first = next((m["content"].strip() for m in native.messages if m["role"] == "user" and m["content"].strip()), "")
    header = {"harness": native.harness, "id": native.id or f"{run.run_id}/{key_name(t.key)}",
              "name": native.title or (first.splitlines()[0][:120] if first else None), "source": "native",
              "agent": run.agent, "run_id": run.run_id, "task_id": t.task_id, "repeat": t.repeat,
              "native_files": native.files}
    return _derived(t, session_text(header, native.messages).encode(), "(as a session file)", run, dataset, gate, report,
                    native.files[0] if native.files else "")


def _derived(t: TaskTrace, data: bytes, how: str, run: RunInfo, dataset: Path, gate: Gate | None, report: Report,
             source: str = ".hermes/state.db") -> WrittenFile:
    """A session file made from a native trace, through the gate."""
    if gate is not None:
        [blob] = scan_derived([Blob(f"{t.rel}/{source} {how}", data)], gate, report)
        data = blob.data
    return session_file(dataset / "sessions", run, t.key, data, data.count(b"\n"))
