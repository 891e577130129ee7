"""What ``agentcap inspect`` shows, level by level, without any UI: rows, previews, children.

Levels: a workspace (runs) or a dataset (parquet files) → the requests of a run or a file → the
messages of one call. Rows come in chunks so a big source paints its first screen without reading
the rest: a run dir is read capture by capture, a parquet file row group by row group and only its
small columns; the request / response bodies of a row are read when it is previewed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from agentcap_addons.wire.api.decode import request_messages
from agentcap_addons.wire.api.messages import DecodedResponse, Message
from agentcap_addons.wire.api.pretty import (
    Line,
    decode_response_bytes,
    message_lines,
    response_lines,
)
from agentcap_addons.wire.capture.records import (
    REQUEST_SUFFIX,
    Capture,
    resolve_captures_dir,
)
from agentcap_addons.wire.capture.repair import repair
from agentcap_cli.export.captures import UnreadableCapture, read_checked, readable_order
from agentcap_cli.runs.record import load_run
from agentcap_cli.runs.workspace import list_runs

CHUNK = 500
LIST_COLUMNS = ["request_id", "seq", "task_id", "turn", "model", "status_code", "ttft_ms", "prompt_tokens",
                "completion_tokens", "n_tool_calls", "finish_reason", "api"]


@dataclass
class Row:
    key: str
    cells: tuple[str, ...]

    @property
    def search(self) -> str:
        return " ".join(self.cells)


@dataclass
class Call:
    """One model call, from a capture file pair or a parquet row."""

    request_id: str
    api: str
    body: Any
    response: bytes
    stream: bool | None
    status: int | None
    meta: dict[str, Any] = field(default_factory=dict)

    def messages(self) -> list[Message]:
        return request_messages(self.api, self.body)

    def decoded(self) -> DecodedResponse:
        return decode_response_bytes(self.api, self.response, self.stream) if self.response else DecodedResponse(
            error="no response recorded")


def call_of(cap: Capture) -> Call:
    """A capture file pair as a Call."""
    req, resp = cap.request, cap.response
    return Call(req["request_id"], req.get("api") or "other", req.get("body"), cap.response_bytes(),
                resp.get("stream") if resp else None, resp.get("status_code") if resp else None,
                {k: req.get(k) for k in ("seq", "task_id", "turn", "path", "captured_at")} |
                {"timings": (resp or {}).get("timings"), "error": (resp or {}).get("error")})


def previous_of_task(keys: list[str], task_of: Any, key: str) -> str | None:
    """The key before ``key`` (in list order) whose task is the same as ``key``'s, if any."""
    task = task_of(key)
    for k in reversed(keys[: keys.index(key)]):
        if task_of(k) == task:
            return k
    return None


def _fmt(v: Any, spec: str = "") -> str:
    if v is None:
        return "-"
    return format(v, spec) if spec else str(v)


def added(prev: list[Message] | None, now: list[Message]) -> str:
    """What a call's request adds to the previous call of its task: new messages, answered tool calls."""
    if prev is None:
        return f"{len(now)} msgs (first)"
    same = len(prev) <= len(now) and all(a.role == b.role and a.content == b.content for a, b in zip(prev, now))
    new = now[len(prev):] if same else now
    tools = [m.name or m.tool_call_id or "tool" for m in new if m.role == "tool"]
    names = {c.id: c.name for m in prev for c in m.tool_calls}
    answered = [names.get(m.tool_call_id or "", m.name or "tool") for m in new if m.role == "tool"] if tools else []
    text = f"+{len(new)} msgs" + ("" if same else " (history rewritten)")
    return text + (f" ← {', '.join(answered)}" if answered else "")


class Level:
    title: str = ""
    columns: tuple[str, ...] = ()

    def chunks(self) -> Iterator[list[Row]]:
        raise NotImplementedError

    def preview(self, key: str) -> list[Line]:
        return []

    def child(self, key: str) -> Level | None:
        return None


# -- runs -------------------------------------------------------------------------------------------

class WorkspaceLevel(Level):
    columns = ("run", "agent", "model", "tasks ok", "captures", "status")

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.title = f"runs in {workspace}"
        self.runs = {r["run_id"]: r for r in list_runs(workspace)}

    def chunks(self) -> Iterator[list[Row]]:
        yield [Row(r["run_id"], (r["run_id"], r.get("agent") or "-", r.get("model") or "-",
                                 f"{r['tasks_ok']}/{r['tasks']}" if "tasks" in r else "-", str(r["captures"]),
                                 r.get("status") or "-")) for r in self.runs.values()]

    def preview(self, key: str) -> list[Line]:
        r = self.runs[key]
        lines = [("header", f"── {key} ──")]
        lines += [("meta", f"{k}: {r.get(k)}") for k in ("agent", "model", "provider", "upstream", "label", "status",
                                                         "started_at", "finished_at", "shard") if r.get(k)]
        try:
            rec = load_run(r["path"])
        except (OSError, ValueError, TypeError, KeyError):  # no run.json (a proxy-only dir), or not one of ours
            return lines
        for t in rec.tasks:
            lines.append(("text", f"{t.task_id}  {t.completed_turns}/{t.turns_planned}  {t.aborted_reason or 'ok'}  "
                                  f"{(t.prompt or '')[:70]}"))
        return lines

    def child(self, key: str) -> Level:
        return RunLevel(Path(self.runs[key]["path"]))


class RunLevel(Level):
    """The calls of a run directory, read from its capture files in seq order."""

    columns = ("#", "task.call", "turn", "model", "status", "ttft ms", "tokens in/out", "added")

    def __init__(self, run_dir: Path) -> None:
        self.dir = resolve_captures_dir(run_dir)
        repair(self.dir, "agentcap inspect")  # calls a killed proxy left open get their response record
        self.title = f"requests of {run_dir.name if run_dir.name != 'captures' else run_dir.parent.name}"
        self.calls: dict[str, Call] = {}
        self.errors: dict[str, str] = {}

    def load(self, rid: str) -> Call:
        """The call ``rid``; raises :class:`UnreadableCapture` naming the file that does not parse."""
        try:
            cap = read_checked(self.dir, rid)
            if cap is None:
                raise UnreadableCapture(f"captures/{rid}{REQUEST_SUFFIX}: removed")
            return call_of(cap)
        except (KeyError, TypeError, AttributeError) as exc:  # JSON, but not a capture record
            raise UnreadableCapture(f"captures/{rid}{REQUEST_SUFFIX}: not a capture record ({exc!r})") from None

    def _unreadable(self, rid: str, seq: str, message: str) -> Row:
        """A row for a capture that is skipped: it says so, and its preview names the file and why."""
        self.errors[rid] = f"skipped: {message}"
        return Row(rid, (seq, "?", "-", "-", "error", "-", "-", "unreadable, skipped"))

    def chunks(self) -> Iterator[list[Row]]:
        per_task: dict[str, int] = {}
        last: dict[str, list[Message]] = {}
        rows: list[Row] = []
        order, bad = readable_order(self.dir)
        for message in bad:  # the request file's head does not parse: not even its seq is known
            rows.append(self._unreadable(message.split(REQUEST_SUFFIX)[0].rsplit("/", 1)[-1], "?", message))
        for seq, _, rid in order:
            try:
                call = self.calls[rid] = self.load(rid)
            except (OSError, UnreadableCapture) as exc:
                rows.append(self._unreadable(rid, str(seq), str(exc)))
                continue
            task = str(call.meta.get("task_id") or "-")
            per_task[task] = per_task.get(task, 0) + 1
            msgs = call.messages()
            d = call.decoded()
            u = d.usage
            rows.append(Row(rid, (str(seq), f"{task}.{per_task[task]}", _fmt(call.meta.get("turn")),
                                  str((call.body or {}).get("model") if isinstance(call.body, dict) else "-"),
                                  _fmt(call.status), _fmt((call.meta.get("timings") or {}).get("first_byte"), ".0f"),
                                  f"{_fmt(u.prompt_tokens)}/{_fmt(u.completion_tokens)}", added(last.get(task), msgs))))
            last[task] = msgs
            if len(rows) >= CHUNK:
                yield rows
                rows = []
        yield rows

    def call(self, key: str) -> Call:
        return self.calls.get(key) or self.load(key)

    def preview(self, key: str) -> list[Line]:
        if key in self.errors:
            return [("error", self.errors[key])]
        return call_preview(self.call(key), self._previous(key))

    def _previous(self, key: str) -> Call | None:
        if key not in self.calls:
            return None
        prev = previous_of_task(list(self.calls), lambda k: self.calls[k].meta.get("task_id"), key)
        return self.calls[prev] if prev else None

    def child(self, key: str) -> Level | None:
        return None if key in self.errors else MessagesLevel(self.call(key))


def call_preview(call: Call, previous: Call | None) -> list[Line]:
    msgs = call.messages()
    first_user = next((m.content for m in msgs if m.role == "user"), "")
    prev = previous.messages() if previous else None
    new = msgs[len(prev):] if prev is not None and len(prev) <= len(msgs) else msgs
    lines: list[Line] = [("meta", f"{call.request_id} · {call.api} · status {call.status} · "
                                  f"task {call.meta.get('task_id')} turn {call.meta.get('turn')}")]
    if call.meta.get("error"):
        lines.append(("error", f"error: {call.meta['error']}"))
    lines += [("header", "── first user prompt ──"), *[("text", x) for x in first_user.splitlines()[:8]]]
    lines.append(("header", f"── new in this call ({len(new)}) ──"))
    for m in new:
        lines += message_lines(m)
    lines.append(("header", "══ response ══"))
    lines += response_lines(call.decoded())
    return lines


# -- messages ---------------------------------------------------------------------------------------

class MessagesLevel(Level):
    columns = ("#", "role", "content", "tool calls / id")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.title = f"messages of {call.request_id}"
        self.items: list[tuple[Message | None, list[Line]]] = []

    def chunks(self) -> Iterator[list[Row]]:
        rows = []
        msgs = self.call.messages()
        decoded = self.call.decoded()
        for i, m in enumerate(msgs, start=1):
            self.items.append((m, message_lines(m)))
            rows.append(Row(str(i), (str(i), m.role, (m.content or "").replace("\n", " ")[:80],
                                     ", ".join(c.name or "" for c in m.tool_calls) or (m.tool_call_id or ""))))
        self.items.append((None, response_lines(decoded)))
        rows.append(Row(str(len(msgs) + 1), (str(len(msgs) + 1), "response", decoded.content.replace("\n", " ")[:80],
                                             ", ".join(c.name or "" for c in decoded.tool_calls))))
        yield rows

    def preview(self, key: str) -> list[Line]:
        m, lines = self.items[int(key) - 1]
        if m is not None and m.role == "tool" and m.tool_call_id:  # link the result to the call it answers
            for other, _ in self.items:
                for c in (other.tool_calls if other else []):
                    if c.id == m.tool_call_id:
                        lines = [("meta", f"answers {c.name}({c.arguments})"), *lines]
        return lines


# -- parquet ----------------------------------------------------------------------------------------

class ParquetLevel(Level):
    """An exported captures file: the list columns of one row group at a time; bodies on preview."""

    columns = ("#", "task.call", "turn", "model", "status", "ttft ms", "tokens in/out", "tools", "finish")

    def __init__(self, source: Any, name: str) -> None:
        self.file = pq.ParquetFile(source)
        self.title = f"requests of {name}"
        names = set(self.file.schema_arrow.names)
        self.list_cols = [c for c in LIST_COLUMNS if c in names]
        self.where: dict[str, tuple[int, int]] = {}  # request_id → (row group, index)
        self.meta: dict[str, dict[str, Any]] = {}

    def chunks(self) -> Iterator[list[Row]]:
        per_task: dict[str, int] = {}
        for g in range(self.file.num_row_groups):
            table = self.file.read_row_group(g, columns=self.list_cols).to_pylist()
            rows = []
            for i, r in enumerate(table):
                rid = r.get("request_id") or f"{g}:{i}"
                self.where[rid] = (g, i)
                self.meta[rid] = r
                task = str(r.get("task_id") or "-")
                per_task[task] = per_task.get(task, 0) + 1
                rows.append(Row(rid, (_fmt(r.get("seq")), f"{task}.{per_task[task]}", _fmt(r.get("turn")),
                                      _fmt(r.get("model")), _fmt(r.get("status_code")), _fmt(r.get("ttft_ms"), ".0f"),
                                      f"{_fmt(r.get('prompt_tokens'))}/{_fmt(r.get('completion_tokens'))}",
                                      _fmt(r.get("n_tool_calls")), _fmt(r.get("finish_reason")))))
            yield rows

    def call(self, key: str) -> Call:
        g, i = self.where[key]
        full = self.file.read_row_group(g, columns=["request", "response", "stream", "status_code", "api", "task_id",
                                                    "turn", "seq", "error"]).slice(i, 1).to_pylist()[0]
        try:
            body = json.loads(full["request"]) if full.get("request") else None
        except ValueError:
            body = None
        return Call(key, full.get("api") or "other", body, (full.get("response") or "").encode(), full.get("stream"),
                    full.get("status_code"), {k: full.get(k) for k in ("task_id", "turn", "seq", "error")})

    def preview(self, key: str) -> list[Line]:
        call = self.call(key)
        prev_key = self._previous(key)
        return call_preview(call, self.call(prev_key) if prev_key else None)

    def _previous(self, key: str) -> str | None:
        return previous_of_task(list(self.where), lambda k: self.meta[k].get("task_id"), key)

    def child(self, key: str) -> Level:
        return MessagesLevel(self.call(key))


class DatasetLevel(Level):
    """Parquet files of a dataset (local or on the Hub), listed from their footers alone."""

    columns = ("file", "run", "agent", "model", "rows")

    def __init__(self, title: str, files: list[tuple[str, Any]], opener: Any) -> None:
        self.title = title
        self.files = files  # (name, footer dict)
        self.opener = opener  # name → a path or file object for pyarrow

    def chunks(self) -> Iterator[list[Row]]:
        yield [Row(name, (name.rsplit("/", 1)[-1], _fmt(f.get("run_id")), _fmt(f.get("agent")), _fmt(f.get("model")),
                          _fmt(f.get("rows")))) for name, f in self.files]

    def preview(self, key: str) -> list[Line]:
        footer = dict(self.files)[key]
        lines: list[Line] = [("header", f"── {key} ──")]
        lines += [("meta", f"{k}: {v}") for k, v in footer.items() if k != "tasks"]
        for t in footer.get("tasks") or []:
            lines.append(("text", f"{t.get('id')}  turns {t.get('turns')}  {t.get('prompt')}"))
        return lines

    def child(self, key: str) -> Level:
        return ParquetLevel(self.opener(key), key.rsplit("/", 1)[-1])
