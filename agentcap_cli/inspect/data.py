"""What ``agentcap inspect`` shows, level by level, without any UI: rows, previews, children.

Levels: a workspace (runs) or a dataset (its files: captures and sessions parquet, trace files) →
the requests of a run or a captures file, the sessions of a sessions file, the lines of a trace
file → the messages of one call or one session. Rows come in chunks so a big source paints its
first screen without reading the rest: a run dir is read capture by capture, a parquet file row
group by row group and only its small columns; the bodies of a row are read when it is previewed.

A call belongs to a conversation: its task, its suite cell's repeat (a suite runs one task per cell,
``repeat`` times) and, within those, its thread (a side call — a title, a summary — is its own
thread). What a call "adds" is measured against the previous call of its conversation. A parquet
row carries its ``thread_id``; a run dir's threads are assigned as the export assigns them.

Each row has ``fields`` (task, cell, repeat, thread, session) that the filter matches exactly, and
each level answers a full-text search over its bodies (:meth:`Level.body_hits`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from agentcap_addons.wire.api.decode import request_messages
from agentcap_addons.wire.api.messages import DecodedResponse, Message
from agentcap_addons.wire.api.pretty import (
    Line,
    decode_response_bytes,
    message_lines,
    response_lines,
)
from agentcap_addons.wire.api.sessions import (
    ThreadTracker,
    previous_response_id,
    reply_fingerprint,
    request_fingerprints,
)
from agentcap_addons.wire.capture.policy import API_OPENAI_RESPONSES
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
LIST_COLUMNS = ["request_id", "seq", "task_id", "cell", "repeat", "thread_id", "turn", "model", "status_code",
                "ttft_ms", "prompt_tokens", "completion_tokens", "n_tool_calls", "finish_reason", "api"]
SESSION_COLUMNS = ["session_id", "run_id", "task_id", "cell", "repeat", "thread_id", "agent", "model", "turns",
                   "n_calls", "n_failed_calls", "n_tool_calls", "prompt_tokens", "completion_tokens", "ok",
                   "aborted_reason", "passed", "judge_score"]


@dataclass
class Row:
    key: str
    cells: tuple[str, ...]
    fields: dict[str, str] = field(default_factory=dict)  # task, cell, repeat, thread, session: matched exactly

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
                {k: req.get(k) for k in ("seq", "task_id", "cell", "repeat", "turn", "path", "captured_at")} |
                {"timings": (resp or {}).get("timings"), "error": (resp or {}).get("error")})


Conversation = tuple[Any, ...]  # (task, cell, repeat, thread)


def previous_in(keys: list[str], conversation_of: Callable[[str], Conversation], key: str) -> str | None:
    """The key before ``key`` (in list order) in the same conversation, if any."""
    mine = conversation_of(key)
    for k in reversed(keys[: keys.index(key)]):
        if conversation_of(k) == mine:
            return k
    return None


def task_label(task: Any, repeat: Any) -> str:
    """A task as the rows name it: its id, and ``#repeat`` for a suite cell's repeat (as run.json does)."""
    return f"{task if task is not None else '-'}" + (f"#{repeat}" if repeat is not None else "")


def row_fields(task: Any, cell: Any, repeat: Any, thread: Any, session: Any = None) -> dict[str, str]:
    values = {"task": task, "cell": cell, "repeat": repeat, "thread": thread, "session": session}
    return {k: str(v) for k, v in values.items() if v is not None}


def _fmt(v: Any, spec: str = "") -> str:
    if v is None:
        return "-"
    return format(v, spec) if spec else str(v)


def added(prev: list[Message] | None, now: list[Message], first: str = "first") -> str:
    """What a call's request adds to the previous call of its conversation: new messages, answered tool calls."""
    if prev is None:
        return f"{len(now)} msgs ({first})"
    same = len(prev) <= len(now) and all(a.role == b.role and a.content == b.content for a, b in zip(prev, now))
    new = now[len(prev):] if same else now
    tools = [m.name or m.tool_call_id or "tool" for m in new if m.role == "tool"]
    names = {c.id: c.name for m in now for c in m.tool_calls}  # the call answered is in the history sent
    answered = [names.get(m.tool_call_id or "", m.name or "tool") for m in new if m.role == "tool"] if tools else []
    text = f"+{len(new)} msgs" + ("" if same else " (history rewritten)")
    return text + (f" ← {', '.join(answered)}" if answered else "")


def json_needle(text: str) -> str:
    """``text`` as it appears inside a JSON string (quotes and backslashes escaped)."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def contains(hay: str, needle: str, case: bool) -> bool:
    return needle in hay if case else needle.lower() in hay.lower()


class Level:
    title: str = ""
    columns: tuple[str, ...] = ()

    def chunks(self) -> Iterator[list[Row]]:
        raise NotImplementedError

    def preview(self, key: str) -> list[Line]:
        return []

    def child(self, key: str) -> Level | None:
        return None

    def body_hits(self, text: str, case: bool, within: set[str] | None) -> set[str]:
        """Keys of the loaded rows whose bodies hold ``text`` (only among ``within`` when given)."""
        return set()


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


class Threads:
    """Each call's conversation, in seq order: its task, cell and repeat, and its thread as the export
    assigns it (:class:`ThreadTracker`), with a per-task ordinal (1: the task's first thread)."""

    def __init__(self) -> None:
        self.tracker = ThreadTracker()
        self.ordinals: dict[Conversation, dict[str, int]] = {}

    def assign(self, call: Call, decoded: DecodedResponse) -> tuple[Conversation, int]:
        scope = (call.meta.get("task_id"), call.meta.get("cell"), call.meta.get("repeat"))
        ok = bool(call.status is not None and call.status < 400 and decoded.error is None and not call.meta.get("error"))
        thread, _ = self.tracker.assign(
            scope, call.request_id, request_fingerprints(call.api, call.body) if call.body is not None else [], ok,
            reply_fingerprint(decoded) if ok else None, decoded.id if call.api == API_OPENAI_RESPONSES else None,
            previous_response_id(call.api, call.body))
        seen = self.ordinals.setdefault(scope, {})
        return (*scope, thread), seen.setdefault(thread, len(seen) + 1)


class RunLevel(Level):
    """The calls of a run directory, read from its capture files in seq order."""

    columns = ("#", "task.call", "thread", "turn", "model", "status", "ttft ms", "tokens in/out", "added")

    def __init__(self, run_dir: Path) -> None:
        self.dir = resolve_captures_dir(run_dir)
        repair(self.dir, "agentcap inspect")  # calls a killed proxy left open get their response record
        self.title = f"requests of {run_dir.name if run_dir.name != 'captures' else run_dir.parent.name}"
        self.calls: dict[str, Call] = {}
        self.conversation: dict[str, Conversation] = {}
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
        return Row(rid, (seq, "?", "-", "-", "-", "error", "-", "-", "unreadable, skipped"))

    def chunks(self) -> Iterator[list[Row]]:
        per_task: dict[Conversation, int] = {}
        last: dict[Conversation, list[Message]] = {}
        threads = Threads()
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
            d = call.decoded()
            conv, ordinal = threads.assign(call, d)
            self.conversation[rid] = conv
            per_task[conv[:3]] = per_task.get(conv[:3], 0) + 1
            msgs = call.messages()
            rows.append(self._row(call, d, conv, per_task[conv[:3]], ordinal,
                                  added(last.get(conv), msgs, "first" if ordinal == 1 else "new thread")))
            last[conv] = msgs
            if len(rows) >= CHUNK:
                yield rows
                rows = []
        yield rows

    @staticmethod
    def _row(call: Call, d: DecodedResponse, conv: Conversation, n: int, ordinal: int, what: str) -> Row:
        task, cell, repeat, thread = conv
        u = d.usage
        return Row(call.request_id, (
            _fmt(call.meta.get("seq")), f"{task_label(task, repeat)}.{n}", str(ordinal), _fmt(call.meta.get("turn")),
            str((call.body or {}).get("model") if isinstance(call.body, dict) else "-"), _fmt(call.status),
            _fmt((call.meta.get("timings") or {}).get("first_byte"), ".0f"),
            f"{_fmt(u.prompt_tokens)}/{_fmt(u.completion_tokens)}", what), row_fields(task, cell, repeat, thread))

    def call(self, key: str) -> Call:
        return self.calls.get(key) or self.load(key)

    def preview(self, key: str) -> list[Line]:
        if key in self.errors:
            return [("error", self.errors[key])]
        prev = previous_in(list(self.conversation), self.conversation.__getitem__, key) \
            if key in self.conversation else None
        return call_preview(self.call(key), self.calls[prev] if prev else None)

    def child(self, key: str) -> Level | None:
        return None if key in self.errors else MessagesLevel.of_call(self.call(key))

    def body_hits(self, text: str, case: bool, within: set[str] | None) -> set[str]:
        """Substring of the request body (as JSON) or of the response as received."""
        needle = json_needle(text)
        out = set()
        for rid in self.calls if within is None else within & self.calls.keys():
            call = self.calls[rid]
            if contains(json.dumps(call.body, ensure_ascii=False), needle, case) or \
                    contains(call.response.decode("utf-8", "replace"), needle, case):
                out.add(rid)
        return out


def call_preview(call: Call, previous: Call | None) -> list[Line]:
    msgs = call.messages()
    first_user = next((m.content for m in msgs if m.role == "user"), "")
    prev = previous.messages() if previous else None
    new = msgs[len(prev):] if prev is not None and len(prev) <= len(msgs) else msgs
    repeat = call.meta.get("repeat")
    lines: list[Line] = [("meta", f"{call.request_id} · {call.api} · status {call.status} · "
                                  f"task {call.meta.get('task_id')}" + (f" repeat {repeat}" if repeat is not None else "")
                                  + f" turn {call.meta.get('turn')}")]
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
    """The messages of one call (its request, then its response) or of one session."""

    columns = ("#", "role", "content", "tool calls / id")

    def __init__(self, title: str, messages: list[Message], response: DecodedResponse | None = None) -> None:
        self.title = title
        self.messages, self.response = messages, response
        self.items: list[tuple[Message | None, list[Line]]] = []

    @classmethod
    def of_call(cls, call: Call) -> MessagesLevel:
        return cls(f"messages of {call.request_id}", call.messages(), call.decoded())

    def chunks(self) -> Iterator[list[Row]]:
        rows = []
        for i, m in enumerate(self.messages, start=1):
            self.items.append((m, message_lines(m)))
            rows.append(Row(str(i), (str(i), m.role, (m.content or "").replace("\n", " ")[:80],
                                     ", ".join(c.name or "" for c in m.tool_calls) or (m.tool_call_id or ""))))
        if self.response is not None:
            d, n = self.response, len(self.messages) + 1
            self.items.append((None, response_lines(d)))
            rows.append(Row(str(n), (str(n), "response", d.content.replace("\n", " ")[:80],
                                     ", ".join(c.name or "" for c in d.tool_calls))))
        yield rows

    def preview(self, key: str) -> list[Line]:
        m, lines = self.items[int(key) - 1]
        if m is not None and m.role == "tool" and m.tool_call_id:  # link the result to the call it answers
            for other, _ in self.items:
                for c in (other.tool_calls if other else []):
                    if c.id == m.tool_call_id:
                        lines = [("meta", f"answers {c.name}({c.arguments})"), *lines]
        return lines

    def body_hits(self, text: str, case: bool, within: set[str] | None) -> set[str]:
        out = set()
        for i, (_, lines) in enumerate(self.items, start=1):
            if (within is None or str(i) in within) and contains("\n".join(t for _, t in lines), text, case):
                out.add(str(i))
        return out


# -- parquet ----------------------------------------------------------------------------------------

def parquet_level(source: Any, name: str) -> Level:
    """A captures file's requests, or a sessions file's sessions (told apart by their columns)."""
    file = pq.ParquetFile(source)
    names = set(file.schema_arrow.names)
    return SessionsLevel(file, name) if {"session_id", "messages"} <= names else ParquetLevel(file, name)


def _matching(column: pa.ChunkedArray | pa.Array, needle: str, case: bool) -> pa.Array:
    """Which values of a string column hold ``needle`` (null: no)."""
    return pc.fill_null(pc.match_substring(column, needle, ignore_case=not case), False)


def _scan(file: pq.ParquetFile, keys: dict[int, list[str]], within: set[str] | None,
          test: Callable[[pa.Table], pa.Array], columns: list[str]) -> set[str]:
    """Keys of the rows ``test`` keeps, reading ``columns`` row group by row group (only the groups
    holding a key of ``within``, when given)."""
    out = set()
    for g, group in keys.items():
        if within is not None and within.isdisjoint(group):
            continue
        mask = test(file.read_row_group(g, columns=columns)).to_pylist()
        out.update(k for k, hit in zip(group, mask) if hit and (within is None or k in within))
    return out


class ParquetLevel(Level):
    """An exported captures file: the list columns of one row group at a time; bodies on preview."""

    columns = ("#", "task.call", "thread", "turn", "model", "status", "ttft ms", "tokens in/out", "tools", "finish")

    def __init__(self, file: pq.ParquetFile, name: str) -> None:
        self.file = file
        self.title = f"requests of {name}"
        names = set(self.file.schema_arrow.names)
        self.list_cols = [c for c in LIST_COLUMNS if c in names]
        self.where: dict[str, tuple[int, int]] = {}  # request_id → (row group, index)
        self.groups: dict[int, list[str]] = {}
        self.meta: dict[str, dict[str, Any]] = {}

    def chunks(self) -> Iterator[list[Row]]:
        per_task: dict[Conversation, int] = {}
        ordinals: dict[Conversation, dict[Any, int]] = {}
        for g in range(self.file.num_row_groups):
            table = self.file.read_row_group(g, columns=self.list_cols).to_pylist()
            rows = []
            for i, r in enumerate(table):
                rid = r.get("request_id") or f"{g}:{i}"
                self.where[rid] = (g, i)
                self.groups.setdefault(g, []).append(rid)
                self.meta[rid] = r
                scope = (r.get("task_id"), r.get("cell"), r.get("repeat"))
                per_task[scope] = per_task.get(scope, 0) + 1
                seen = ordinals.setdefault(scope, {})
                ordinal = seen.setdefault(r.get("thread_id"), len(seen) + 1)
                rows.append(Row(rid, (_fmt(r.get("seq")), f"{task_label(*scope[::2])}.{per_task[scope]}",
                                      str(ordinal) if r.get("thread_id") else "-", _fmt(r.get("turn")),
                                      _fmt(r.get("model")), _fmt(r.get("status_code")), _fmt(r.get("ttft_ms"), ".0f"),
                                      f"{_fmt(r.get('prompt_tokens'))}/{_fmt(r.get('completion_tokens'))}",
                                      _fmt(r.get("n_tool_calls")), _fmt(r.get("finish_reason"))),
                                row_fields(*scope, r.get("thread_id"))))
            yield rows

    def call(self, key: str) -> Call:
        g, i = self.where[key]
        want = ["request", "response", "stream", "status_code", "api", "task_id", "cell", "repeat", "turn", "seq",
                "error"]
        names = set(self.file.schema_arrow.names)
        full = self.file.read_row_group(g, columns=[c for c in want if c in names]).slice(i, 1).to_pylist()[0]
        try:
            body = json.loads(full["request"]) if full.get("request") else None
        except ValueError:
            body = None
        return Call(key, full.get("api") or "other", body, (full.get("response") or "").encode(), full.get("stream"),
                    full.get("status_code"),
                    {k: full.get(k) for k in ("task_id", "cell", "repeat", "turn", "seq", "error")})

    def _conversation(self, key: str) -> Conversation:
        r = self.meta[key]
        return (r.get("task_id"), r.get("cell"), r.get("repeat"), r.get("thread_id"))

    def preview(self, key: str) -> list[Line]:
        prev = previous_in(list(self.where), self._conversation, key)
        return call_preview(self.call(key), self.call(prev) if prev else None)

    def child(self, key: str) -> Level:
        return MessagesLevel.of_call(self.call(key))

    def body_hits(self, text: str, case: bool, within: set[str] | None) -> set[str]:
        """Substring of the request (JSON text) or of the response as received, row group by row group."""
        needle = json_needle(text)
        cols = [c for c in ("request", "response") if c in self.file.schema_arrow.names]
        return _scan(self.file, self.groups, within, lambda t: _any_column(t, needle, case), cols)


def _any_column(table: pa.Table, needle: str, case: bool) -> pa.Array:
    masks = [_matching(table.column(c), needle, case) for c in table.column_names]
    out = masks[0]
    for m in masks[1:]:
        out = pc.or_(out, m)
    return out


# -- sessions ---------------------------------------------------------------------------------------

def session_messages(rows: list[dict[str, Any]]) -> list[Message]:
    """A sessions row's messages (the OpenAI chat shape) as decoded messages."""
    return request_messages("openai-chat", {"messages": [{k: v for k, v in m.items() if v is not None}
                                                         for m in rows]})


def _list_text_hits(column: pa.ChunkedArray, path: list[str], needle: str, case: bool, n: int) -> pa.Array:
    """Which rows of a list-of-structs column hold ``needle`` in the string at ``path`` of an item
    (``"[]"`` in ``path``: a list there, flattened)."""
    values, parents = column.combine_chunks(), None
    for step in ["[]", *path]:
        if step == "[]":
            idx = pc.list_parent_indices(values)
            parents = idx if parents is None else pc.take(parents, idx)
            values = pc.list_flatten(values)
        if step != "[]":
            values = pc.struct_field(values, [step])
    hit = pc.filter(parents, _matching(values, needle, case)).to_pylist()
    mask = [False] * n
    for p in hit:
        mask[p] = True
    return pa.array(mask)


class SessionsLevel(Level):
    """A sessions file (the ``sessions`` config): a row per session — a task, a suite cell's repeat,
    or a proxy run's conversation thread — with its rebuilt messages."""

    columns = ("#", "session", "thread", "model", "turns", "calls", "tool calls", "tokens in/out", "outcome")
    TEXT_PATHS = (["content"], ["reasoning_content"], ["tool_calls", "[]", "function", "arguments"])

    def __init__(self, file: pq.ParquetFile, name: str) -> None:
        self.file = file
        self.title = f"sessions of {name}"
        names = set(self.file.schema_arrow.names)
        self.list_cols = [c for c in SESSION_COLUMNS if c in names]
        self.where: dict[str, tuple[int, int]] = {}
        self.groups: dict[int, list[str]] = {}
        self.meta: dict[str, dict[str, Any]] = {}

    def chunks(self) -> Iterator[list[Row]]:
        n = 0
        for g in range(self.file.num_row_groups):
            rows = []
            for i, r in enumerate(self.file.read_row_group(g, columns=self.list_cols).to_pylist()):
                n += 1
                key = r.get("session_id") or f"{g}:{i}"
                self.where[key], self.meta[key] = (g, i), r
                self.groups.setdefault(g, []).append(key)
                rows.append(self._row(n, key, r))
            yield rows

    @staticmethod
    def _row(n: int, key: str, r: dict[str, Any]) -> Row:
        name = task_label(r.get("task_id"), r.get("repeat")) if r.get("task_id") or r.get("cell") else "(no task)"
        outcome = "passed" if r.get("passed") else "failed" if r.get("passed") is False else \
            (r.get("aborted_reason") or ("ok" if r.get("ok") else "not ok" if r.get("ok") is False else "-"))
        failed = f" +{r['n_failed_calls']} failed" if r.get("n_failed_calls") else ""
        return Row(key, (str(n), name, (r.get("thread_id") or "-")[:8], _fmt(r.get("model")), _fmt(r.get("turns")),
                         f"{_fmt(r.get('n_calls'))}{failed}", _fmt(r.get("n_tool_calls")),
                         f"{_fmt(r.get('prompt_tokens'))}/{_fmt(r.get('completion_tokens'))}", outcome),
                   row_fields(r.get("task_id"), r.get("cell"), r.get("repeat"), r.get("thread_id"), key))

    def _full(self, key: str) -> dict[str, Any]:
        g, i = self.where[key]
        names = set(self.file.schema_arrow.names)
        cols = [c for c in ("messages", "prompt", "tools", "judge_score", "started_at", "ended_at") if c in names]
        return self.file.read_row_group(g, columns=cols).slice(i, 1).to_pylist()[0]

    def preview(self, key: str) -> list[Line]:
        r, full = self.meta[key], self._full(key)
        lines: list[Line] = [("meta", f"{key} · {r.get('agent')} · {r.get('model')} · {r.get('turns')} turns · "
                                      f"{r.get('n_calls')} calls")]
        lines += [("meta", f"{k}: {r[k]}") for k in ("cell", "repeat", "thread_id", "passed", "judge_score", "ok",
                                                     "aborted_reason") if r.get(k) is not None]
        lines += [("header", "── prompt ──"), *[("text", x) for x in (full.get("prompt") or "").splitlines()[:8]]]
        msgs = session_messages(full.get("messages") or [])
        lines.append(("header", f"── messages ({len(msgs)}) ──"))
        for m in msgs:
            lines += message_lines(m)
        return lines

    def child(self, key: str) -> Level:
        return MessagesLevel(f"messages of {key}", session_messages(self._full(key).get("messages") or []))

    def body_hits(self, text: str, case: bool, within: set[str] | None) -> set[str]:
        """Substring of a message's content, reasoning or tool-call arguments, or of the prompt."""
        def test(t: pa.Table) -> pa.Array:
            masks = [_list_text_hits(t.column("messages"), p, text, case, t.num_rows) for p in self.TEXT_PATHS]
            masks.append(_matching(t.column("prompt"), text, case))
            out = masks[0]
            for m in masks[1:]:
                out = pc.or_(out, m)
            return out
        return _scan(self.file, self.groups, within, test, ["messages", "prompt"])


# -- trace files ------------------------------------------------------------------------------------

class TraceLevel(Level):
    """A trace file (JSON lines: a wire trace in the Session Trace format, or an agent's own log):
    a row per line, its kind and text; the whole line on preview."""

    columns = ("#", "kind", "text")

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.title = f"trace {name}"
        self.lines: list[str] = []

    def chunks(self) -> Iterator[list[Row]]:
        rows = []
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, start=1):
                self.lines.append(line.rstrip("\n"))
                rows.append(Row(str(n), (str(n), *_trace_summary(self.lines[-1]))))
                if len(rows) >= CHUNK:
                    yield rows
                    rows = []
        yield rows

    def preview(self, key: str) -> list[Line]:
        line = self.lines[int(key) - 1]
        try:
            text = json.dumps(json.loads(line), indent=2, ensure_ascii=False)
        except ValueError:
            return [("error", f"line {key}: not JSON"), ("text", line[:2000])]
        return [("text", x) for x in text.splitlines()]

    def body_hits(self, text: str, case: bool, within: set[str] | None) -> set[str]:
        needle = json_needle(text)
        return {str(n) for n, line in enumerate(self.lines, start=1)
                if (within is None or str(n) in within) and contains(line, needle, case)}


def _trace_summary(line: str) -> tuple[str, str]:
    """(kind, text) of one trace line: its role or type, and the first text it holds."""
    try:
        obj = json.loads(line)
    except ValueError:
        return "?", line[:80]
    if not isinstance(obj, dict):
        return "?", line[:80]
    inner = obj.get("message") if isinstance(obj.get("message"), dict) else obj
    kind = str(inner.get("role") or obj.get("type") or "-")
    content = inner.get("content")
    if isinstance(content, list):
        content = " ".join(str(p.get("text") or p.get("type") or "") if isinstance(p, dict) else str(p) for p in content)
    text = content if isinstance(content, str) else obj.get("name") or obj.get("id") or ""
    return kind, str(text).replace("\n", " ")[:80]


# -- datasets ---------------------------------------------------------------------------------------

class DatasetLevel(Level):
    """The files of a dataset (local or on the Hub): parquet listed from their footers alone (a
    captures or a sessions file), trace files by name."""

    columns = ("file", "kind", "run", "agent", "model", "rows")

    def __init__(self, title: str, files: list[tuple[str, Any]], opener: Any) -> None:
        self.title = title
        self.files = files  # (name, footer dict; {} for a trace file)
        self.opener = opener  # name → a path or file object for pyarrow

    def chunks(self) -> Iterator[list[Row]]:
        yield [Row(name, (name.rsplit("/", 1)[-1], _file_kind(name, f), _fmt(f.get("run_id")), _fmt(f.get("agent")),
                          _fmt(f.get("model")), _fmt(f.get("rows")))) for name, f in self.files]

    def preview(self, key: str) -> list[Line]:
        footer = dict(self.files)[key]
        lines: list[Line] = [("header", f"── {key} ──")]
        lines += [("meta", f"{k}: {v}") for k, v in footer.items() if k != "tasks"]
        for t in footer.get("tasks") or []:
            lines.append(("text", f"{t.get('id')}  turns {t.get('turns')}  {t.get('prompt')}"))
        return lines

    def child(self, key: str) -> Level:
        name = key.rsplit("/", 1)[-1]
        if not key.endswith(".parquet"):
            return TraceLevel(Path(self.opener(key)), name)
        return parquet_level(self.opener(key), name)


def _file_kind(name: str, footer: dict[str, Any]) -> str:
    if not name.endswith(".parquet"):
        return "trace"
    return str(footer.get("kind") or "captures")
