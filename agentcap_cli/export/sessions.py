"""Sessions from a run's captures: the ``sessions`` config of the captures dataset (one parquet row
per task session, messages in the OpenAI chat shape) and the wire-derived session traces (one
session file per session in Pi's format with ``harness: agentcap``, for the Hub's trace viewer
and ``datasets`` + ``teich``: :func:`agentcap_cli.sessions.schema.session_text`).

A session is a task (a suite run: a cell's repeat); captures with no task (a proxy run) give one
session per conversation thread. Messages are rebuilt by :func:`agentcap_addons.wire.api.sessions.rebuild`
from the closing call of each turn, read again from the capture files; what is published passes
the publish gate (:func:`gate_texts`): findings already reported for the run's captures are not
reported twice, and under ``--redact`` the published copy is masked like the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from agentcap_addons.wire.api.decode import decode_response
from agentcap_addons.wire.api.sessions import (
    CallInfo,
    Loaded,
    RebuiltSession,
    chat_messages,
    chat_tools,
    rebuild,
    reply_message,
    stamp,
    totals,
)
from agentcap_addons.wire.util.jsonio import read_json
from agentcap_cli.export.captures import (
    RunInfo,
    UnreadableCapture,
    WrittenFile,
    call_ok,
    footer,
    put_in_place,
    read_checked,
)
from agentcap_cli.export.files import FileRows, abandon, file_row, key_name, session_file
from agentcap_cli.export.scan import (
    Blob,
    Finding,
    Gate,
    Report,
    scan_derived,
    scan_texts,
)
from agentcap_cli.runs.record import RUN_JSON
from agentcap_cli.sessions.schema import Counts, compare, session_text

_TOOL_CALL = pa.struct([("id", pa.string()), ("type", pa.string()),
                        ("function", pa.struct([("name", pa.string()), ("arguments", pa.string())]))])
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string()), ("reasoning_content", pa.string()),
                     ("tool_calls", pa.list_(_TOOL_CALL)), ("tool_call_id", pa.string()), ("name", pa.string())])
SCHEMA = pa.schema([
    ("session_id", pa.string()), ("run_id", pa.string()), ("task_id", pa.string()), ("cell", pa.string()),
    ("repeat", pa.int32()), ("thread_id", pa.string()), ("agent", pa.string()), ("provider", pa.string()),
    ("label", pa.string()), ("model", pa.string()), ("served_model", pa.string()), ("api", pa.string()),
    ("prompt", pa.string()), ("messages", pa.list_(MESSAGE)), ("tools", pa.string()),
    ("turns", pa.int32()), ("n_calls", pa.int32()), ("n_failed_calls", pa.int32()), ("n_threads", pa.int32()),
    ("n_contexts", pa.int32()), ("n_tool_calls", pa.int32()),
    ("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()), ("cached_tokens", pa.int64()),
    ("reasoning_tokens", pa.int64()), ("cost_usd", pa.float64()), ("cost_source", pa.string()),
    ("started_at", pa.timestamp("us", tz="UTC")), ("ended_at", pa.timestamp("us", tz="UTC")),
    ("finish_reason", pa.string()), ("ok", pa.bool_()), ("aborted_reason", pa.string()), ("passed", pa.bool_()),
    ("judge_score", pa.float64()), ("request_ids", pa.list_(pa.string())), ("trace_diffs", pa.list_(pa.string())),
])
MESSAGE_KEYS = ("role", "content", "reasoning_content", "tool_calls", "tool_call_id", "name")
WIRE_HARNESS = "agentcap"
SESSION_FORMAT = "pi"  # the ``format`` of a session file agentcap writes, as a files row (earlier exports: sts)


@dataclass
class SessionOutcome:
    """How a task (or a suite cell's repeat) ended, from run.json / results/<cell>/<repeat>.json."""

    prompt: str | None = None
    session_id: str | None = None  # the agent's own session id
    ok: bool | None = None
    aborted_reason: str | None = None
    passed: bool | None = None
    judge_score: float | None = None
    cost_usd: float | None = None
    cost_source: str | None = None


def outcomes(run_dir: Path) -> dict[tuple[str | None, str | None, int | None], SessionOutcome]:
    """(task_id, cell, repeat) → outcome, for corpus tasks and suite repeats alike."""
    try:
        rec = read_json(run_dir / RUN_JSON)
    except (OSError, ValueError):
        return {}
    out: dict[tuple[str | None, str | None, int | None], SessionOutcome] = {}
    prompts = {}
    for t in rec.get("tasks") or []:
        turns = t.get("turns") or []
        reason = t.get("aborted_reason") or next((x.get("aborted_reason") for x in turns if x.get("aborted_reason")), None)
        done = (t.get("completed_turns") or 0) >= (t.get("turns_planned") or 0) and not reason
        out[(t.get("task_id"), None, None)] = SessionOutcome(t.get("prompt"), t.get("session_id"), done, reason)
        prompts[str(t.get("task_id") or "").split("#")[0]] = t.get("prompt")
    results = run_dir / "results"
    for path in sorted(results.glob("*/*.json")) if results.is_dir() else []:
        try:
            r = read_json(path)
            repeat = int(r.get("repeat") or path.stem)
        except (OSError, ValueError, TypeError):
            continue
        cell = str(r.get("cell") or path.parent.name)
        judge = r.get("judge") if isinstance(r.get("judge"), dict) else {}
        score = judge.get("score")
        out[(cell, cell, repeat)] = SessionOutcome(
            prompts.get(cell), None, bool(r.get("passed")) and not r.get("error"), r.get("error"), r.get("passed"),
            float(score) if isinstance(score, (int, float)) else None,
            r.get("cost_usd") if isinstance(r.get("cost_usd"), (int, float)) else None, r.get("cost_source"))
    return out


def session_key(c: CallInfo) -> tuple[Any, ...]:
    """Which session a call belongs to: its task (and suite repeat), or, with no task, its thread."""
    if c.task_id is None and c.cell is None:
        return ("thread", c.thread_id)
    return ("task", c.task_id, c.cell, c.repeat)


def loader(captures_dir: Path) -> Callable[[str], Loaded]:
    def load(rid: str) -> Loaded:
        try:
            cap = read_checked(captures_dir, rid)
        except UnreadableCapture:
            cap = None
        if cap is None:
            return Loaded([], None)
        body, api = cap.request.get("body"), cap.request.get("api") or "openai-chat"
        decoded = decode_response(cap)
        return Loaded(chat_messages(api, body), reply_message(decoded) if call_ok(cap.response, decoded) else None,
                      chat_tools(body))

    memo: dict[str, Loaded] = {}

    def cached(rid: str) -> Loaded:
        if rid not in memo:
            memo[rid] = load(rid)
        return memo[rid]
    return cached


def cost(calls: list[CallInfo], prices: dict[str, dict[str, float]]) -> float | None:
    """USD from per-million-token prices (``input``, ``output``, optional ``cached_input``); None
    when a call's model has no price."""
    total = 0.0
    for c in calls:
        price = prices.get(c.model or "") or prices.get(c.served_model or "")
        if price is None:
            return None
        cached = c.cached_tokens or 0
        fresh = max((c.prompt_tokens or 0) - cached, 0)
        total += (fresh * price.get("input", 0) + cached * price.get("cached_input", price.get("input", 0)) +
                  (c.completion_tokens or 0) * price.get("output", 0)) / 1e6
    return total


@dataclass
class SessionOut:
    """One session: its parquet row and its wire trace (STS text)."""

    key: tuple[Any, ...]
    row: dict[str, Any]
    trace: str | None  # None: no call of the session counted (none answered), nothing to show as a trace
    counts: Counts = field(default_factory=Counts)


def build(run_dir: Path, run: RunInfo, calls: list[CallInfo], prices: dict[str, dict[str, float]] | None = None,
          with_failed: bool = False, native: dict[tuple[Any, ...], Counts] | None = None,
          ends: dict[tuple[str | None, str | None, int | None], SessionOutcome] | None = None) -> Iterator[SessionOut]:
    """Every session of a run, in the order of their first call, one at a time (memory stays flat:
    only the calls' small records are held, and one session's messages). ``ends``: the run's
    ``outcomes``, when the caller has read them already. A session none of whose calls counts (all
    failed, and not ``with_failed``) is a row all the same: no messages, ``n_calls`` 0, its
    failures in ``n_failed_calls`` — so every session that made a call has its row."""
    ends = outcomes(run_dir) if ends is None else ends
    groups: dict[tuple[Any, ...], list[CallInfo]] = {}
    for c in sorted(calls, key=lambda c: c.seq):
        groups.setdefault(session_key(c), []).append(c)
    for key, group in groups.items():
        load = loader(run_dir / "captures")  # one session's calls: its memo goes with it
        rebuilt = rebuild(group, load, with_failed)
        outcome = ends.get(key[1:]) or ends.get((key[1], None, None)) if key[0] == "task" else None
        yield _session(run, key, group, rebuilt, outcome or SessionOutcome(), load, prices or {}, (native or {}).get(key))


def _session(run: RunInfo, key: tuple[Any, ...], group: list[CallInfo], rebuilt: RebuiltSession, outcome: SessionOutcome,
             load: Callable[[str], Loaded], prices: dict[str, dict[str, float]], native: Counts | None) -> SessionOut:
    last = rebuilt.final[-1] if rebuilt.final else group[-1]  # none counted: the last call says what it was
    messages = rebuilt.messages
    prompt = outcome.prompt or next((m["content"] for m in messages if m["role"] == "user"), None)
    tokens = totals(rebuilt.calls)
    counts = Counts(len(rebuilt.calls), sum(c.n_tool_calls for c in rebuilt.calls), tokens["prompt_tokens"],
                    tokens["completion_tokens"])
    priced = cost(rebuilt.calls, prices) if prices else None
    session_id = f"{run.run_id}/{key_name(key)}"
    tools = load(last.request_id).tools
    row = {
        "session_id": session_id, "run_id": run.run_id, "task_id": key[1] if key[0] == "task" else None,
        "cell": key[2] if key[0] == "task" else None, "repeat": key[3] if key[0] == "task" else None,
        "thread_id": last.thread_id, "agent": run.agent, "provider": run.provider, "label": run.label,
        "model": last.model, "served_model": last.served_model, "api": last.api, "prompt": prompt,
        "messages": [{k: m.get(k) for k in MESSAGE_KEYS} for m in messages],
        "tools": json.dumps(tools, ensure_ascii=False),
        "turns": len({c.turn for c in rebuilt.calls}), "n_calls": len(rebuilt.calls),
        "n_failed_calls": sum(not c.ok for c in group), "n_threads": rebuilt.threads,
        "n_contexts": len(rebuilt.segments), "n_tool_calls": counts.tool_calls, **tokens,
        "cost_usd": outcome.cost_usd if outcome.cost_usd is not None else priced,
        "cost_source": outcome.cost_source if outcome.cost_usd is not None else ("prices" if priced is not None else None),
        "started_at": (rebuilt.calls or group)[0].captured_us, "ended_at": _ended_us(rebuilt.calls or group),
        "finish_reason": last.finish_reason, "ok": outcome.ok, "aborted_reason": outcome.aborted_reason,
        "passed": outcome.passed, "judge_score": outcome.judge_score,
        "request_ids": [c.request_id for c in rebuilt.calls],
        "trace_diffs": compare(native, counts) if native is not None else None,
    }
    header = {"harness": WIRE_HARNESS, "id": session_id, "name": (prompt or "").strip().splitlines()[0][:120]
              if (prompt or "").strip() else session_id, "source": "wire", "agent": run.agent, "run_id": run.run_id,
              "task_id": row["task_id"], "cell": row["cell"], "repeat": row["repeat"], "model": last.model,
              "turns": row["turns"], "n_calls": row["n_calls"]}
    trace = session_text(header, [m for s in rebuilt.segments for m in stamp(s)], tools) if rebuilt.calls else None
    return SessionOut(key, row, trace, counts)


def _ended_us(calls: list[CallInfo]) -> int | None:
    """When the last of these calls was done; None when none was (all in flight)."""
    ends = [c.ended_ms for c in calls if c.ended_ms is not None]
    return max(ends) * 1000 if ends else None


# -- through the gate, then to disk -------------------------------------------------------------

def _leaves(value: Any, path: str = "$") -> list[tuple[str, Any, Any]]:
    """(JSON path, container, key) of every string in a row (to scan, and to mask in place)."""
    out: list[tuple[str, Any, Any]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        p = f"{path}.{k}" if isinstance(k, str) else f"{path}[{k}]"
        if isinstance(v, str):
            out.append((p, value, k))
        elif isinstance(v, (dict, list)):
            out += _leaves(v, p)
    return out


def gate_texts(sessions: list[SessionOut], gate: Gate, report: Report) -> None:
    """Scan what the sessions publish (row strings, trace files) and, under ``--redact``, mask it in
    place. A secret already reported for this run is not reported again."""
    known = {f.fingerprint for f in report.findings}
    found: list[Finding] = []
    leaves = [(s, p, c, k) for s in sessions for p, c, k in _leaves(s.row)]
    texts = scan_texts([c[k] for _, _, c, k in leaves], lambda i: f"captures → sessions row {leaves[i][0].row['session_id']}",
                       lambda i: lambda at: leaves[i][1], gate, found)
    for (_, _, container, k), text in zip(leaves, texts):
        container[k] = text
    report.findings += [f for f in found if f.fingerprint not in known or f.state == "blocking"]
    traced = [s for s in sessions if s.trace is not None]
    blobs = [Blob(f"captures → wire trace {s.row['session_id']}.jsonl", (s.trace or "").encode()) for s in traced]
    for s, b in zip(traced, scan_derived(blobs, gate, report)):
        s.trace = b.data.decode()


class SessionWriter:
    """A run's sessions, written as they come: rows into ``<captures>/sessions/<run>--<digest>.parquet``,
    wire traces into ``<wire>/sessions/<run>/<task>--<digest>.jsonl`` and, as rows, ``<wire>/data/``."""

    def __init__(self, run: RunInfo, rows_dir: Path, wire: Path, version: str) -> None:
        self.run, self.rows_dir, self.wire, self.version = run, rows_dir, wire, version
        self.tmp = rows_dir / f".{run.run_id}--sessions.{os.getpid()}.tmp"
        self.writer: pq.ParquetWriter | None = None
        self.digest = hashlib.sha256()
        self.rows = 0
        self.files = FileRows(wire / "data", run)
        self.traces: list[WrittenFile] = []

    def add(self, sessions: list[SessionOut]) -> None:
        if not sessions:
            return
        if self.writer is None:
            self.rows_dir.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.tmp, SCHEMA, compression="zstd")
        rows = [x.row for x in sessions]
        for row in rows:
            self.digest.update(json.dumps(row, default=str, sort_keys=True).encode())
        self.writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMA))
        self.rows += len(rows)
        for x in sessions:
            if x.trace is None:
                continue
            data = x.trace.encode()
            f = session_file(self.wire / "sessions", self.run, x.key, data, data.count(b"\n"))
            self.traces.append(f)
            self.files.write([file_row(self.run, x.key, str(f.path.relative_to(self.wire)), data, SESSION_FORMAT)])

    def close(self) -> tuple[WrittenFile | None, list[WrittenFile]]:
        """(the sessions parquet, the wire-traces files: its parquet, then the session files)."""
        if self.writer is None:
            return None, []
        meta = footer(self.run, None, self.rows, self.version)
        meta[b"agentcap"] = json.dumps({**json.loads(meta[b"agentcap"]), "kind": "sessions"},
                                       ensure_ascii=False).encode()
        self.writer.add_key_value_metadata(meta)
        self.writer.close()
        self.writer = None
        final = self.rows_dir / f"{self.run.run_id}--{self.digest.hexdigest()[:12]}.parquet"
        rows = WrittenFile(final, None, self.rows, put_in_place(self.tmp, final), kind="sessions")
        table = self.files.close(self.version, kind="wire-traces", sessions=len(self.traces))
        return rows, ([table] if table else []) + self.traces

    def discard(self) -> None:
        abandon(self.writer, self.tmp)
        self.files.discard()
