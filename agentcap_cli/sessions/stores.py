"""Readers for agents that keep their sessions in a store or a file of their own — opencode's and
hermes' SQLite databases, mini-swe-agent's trajectories, aider's markdown history — into the chat
shape (:class:`agentcap_cli.sessions.schema.NativeSession`); and hermes' own export format, which
the Hub reads. A reader gives None for what it cannot make sense of; :func:`agentcap_cli.sessions.native.read_native`
picks the reader.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from agentcap_addons.wire.api.sessions import chat_messages
from agentcap_cli.sessions.schema import Counts, NativeSession, call, msg


def text(content: Any, kinds: tuple[str, ...] = ("text", "input_text", "output_text")) -> str:
    """The text parts of a content list (or the string itself)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") in kinds)
    return ""


def ms(value: Any) -> int | None:
    """Epoch ms from epoch seconds / ms or an ISO 8601 string."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value if value > 1e11 else value * 1000)
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return None
    return None


def add(a: int | None, b: Any) -> int | None:
    return (a or 0) + int(b) if isinstance(b, (int, float)) and not isinstance(b, bool) else a


def jsonl(path: Path) -> Iterator[dict[str, Any]]:
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            yield obj


def files(task_dir: Path, pattern: str) -> list[Path]:
    return sorted(p for p in task_dir.glob(pattern) if p.is_file())


# -- opencode (SQLite) ------------------------------------------------------------------------------

@contextmanager
def _db(path: Path) -> Iterator[sqlite3.Connection]:
    """A database read-only, the trace's own files untouched. With a write-ahead log beside it
    (``-wal``: the agents keep theirs in WAL mode, and the latest turns may be only there) it is
    read from a copy of both, since SQLite would otherwise create its ``-shm`` file next to them."""
    with tempfile.TemporaryDirectory(prefix="agentcap-db-") as tmp:
        wal = path.with_name(path.name + "-wal")
        if wal.is_file():
            shutil.copyfile(path, Path(tmp) / path.name)
            shutil.copyfile(wal, Path(tmp) / wal.name)
            con = sqlite3.connect(f"{(Path(tmp) / path.name).as_uri()}?mode=ro", uri=True)
        else:
            con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        con.row_factory = sqlite3.Row
        try:
            yield con
        finally:
            con.close()


def _loads(value: Any) -> Any:
    try:
        return json.loads(value) if isinstance(value, (str, bytes)) else value
    except ValueError:
        return None


def read_opencode(task_dir: Path, session_id: str | None = None) -> NativeSession | None:
    paths = files(task_dir, ".local/share/opencode/*.db")
    if not paths:
        return None
    with _db(paths[0]) as con:
        sessions = con.execute("SELECT s.id, s.title, (SELECT count(*) FROM message m WHERE m.session_id = s.id) AS n "
                               "FROM session s WHERE s.parent_id IS NULL ORDER BY s.time_created").fetchall()
        if not sessions:
            return None
        main = next((r for r in sessions if r["id"] == session_id), None) or max(sessions, key=lambda r: r["n"])
        s = NativeSession("opencode", main["id"], counts=Counts(0, 0), title=main["title"],
                          files=[str(paths[0].relative_to(task_dir))])
        for m in con.execute("SELECT id, time_created, data FROM message WHERE session_id = ? ORDER BY time_created, id",
                             (main["id"],)).fetchall():
            info = _loads(m["data"]) or {}
            parts = [_loads(p["data"]) or {} for p in con.execute(
                "SELECT data FROM part WHERE message_id = ? ORDER BY id", (m["id"],)).fetchall()]
            if info.get("role") == "user":
                s.messages.append(msg("user", "\n".join(p.get("text") or "" for p in parts if p.get("type") == "text"
                                                        and not p.get("synthetic")), timestamp=m["time_created"]))
            elif info.get("role") == "assistant":
                _opencode_steps(s, parts, info, m["time_created"])
    return s


def _opencode_steps(s: NativeSession, parts: list[dict[str, Any]], info: dict[str, Any], when: int) -> None:
    """An opencode assistant message is one or more model calls (``step-start`` … ``step-finish``):
    each becomes an assistant message, followed by the results of its tool calls."""
    model = info.get("modelID")
    reply: dict[str, Any] | None = None
    results: list[dict[str, Any]] = []

    def close() -> None:
        nonlocal reply, results
        if reply is not None:
            s.messages.append(reply)
            s.messages.extend(results)
        reply, results = None, []

    for p in parts:
        kind = p.get("type")
        if kind == "step-start" or reply is None and kind in ("text", "reasoning", "tool"):
            close()
            reply = msg("assistant", timestamp=when, model=model)
        if reply is None:
            continue
        if kind == "text":
            reply["content"] = "\n".join(t for t in (reply["content"], p.get("text") or "") if t)
        elif kind == "reasoning":
            reply["reasoning_content"] = (reply["reasoning_content"] or "") + (p.get("text") or "")
        elif kind == "tool":
            state = p.get("state") or {}
            reply["tool_calls"] = (reply["tool_calls"] or []) + [call(p.get("callID"), p.get("tool"), state.get("input"))]
            out = state.get("output") if state.get("output") is not None else state.get("error")
            results.append(msg("tool", out if isinstance(out, str) else json.dumps(out, ensure_ascii=False),
                               tool_call_id=p.get("callID"), timestamp=when, name=p.get("tool")))
            s.counts.tool_calls = (s.counts.tool_calls or 0) + 1
        elif kind == "step-finish":
            t = p.get("tokens") or {}
            cache = t.get("cache") or {}
            s.counts.calls = (s.counts.calls or 0) + 1
            s.counts.prompt_tokens = add(add(add(s.counts.prompt_tokens, t.get("input")), cache.get("read")),
                                         cache.get("write"))
            s.counts.completion_tokens = add(add(s.counts.completion_tokens, t.get("output")), t.get("reasoning"))
    close()


# -- hermes (SQLite, or session JSON files) ---------------------------------------------------------

def read_hermes(task_dir: Path, session_id: str | None = None) -> NativeSession | None:
    db = task_dir / ".hermes" / "state.db"
    if db.is_file():
        try:
            found = _hermes_db(db, task_dir, session_id)
        except sqlite3.Error:
            found = None
        if found is not None:
            return found
    for path in files(task_dir, ".hermes/sessions/**/*.json"):
        doc = _loads(path.read_text(encoding="utf-8", errors="replace"))
        if isinstance(doc, dict) and isinstance(doc.get("messages"), list):
            s = NativeSession("hermes", doc.get("session_id") or path.stem, files=[str(path.relative_to(task_dir))])
            s.messages = _openai_messages(doc["messages"])
            s.counts = Counts(sum(m["role"] == "assistant" for m in s.messages),
                              sum(len(m["tool_calls"] or []) for m in s.messages))
            return s
    return None


def _hermes_db(db: Path, task_dir: Path, session_id: str | None) -> NativeSession | None:
    with _db(db) as con:
        rows = con.execute("SELECT * FROM sessions WHERE parent_session_id IS NULL ORDER BY started_at").fetchall()
        if not rows:
            return None
        main = next((r for r in rows if r["id"] == session_id), None) or rows[-1]
        s = NativeSession("hermes", main["id"], title=main["title"], files=[str(db.relative_to(task_dir))])
        for r in con.execute("SELECT * FROM messages WHERE session_id = ? ORDER BY id", (main["id"],)).fetchall():
            keys = r.keys()
            calls = [call(c.get("id"), (c.get("function") or {}).get("name"), (c.get("function") or {}).get("arguments"))
                     for c in _loads(r["tool_calls"]) or [] if isinstance(c, dict)]
            reasoning = (r["reasoning_content"] if "reasoning_content" in keys else None) or r["reasoning"]
            s.messages.append(msg(r["role"], r["content"] or "", reasoning, calls, r["tool_call_id"], ms(r["timestamp"]),
                                  main["model"] if r["role"] == "assistant" else None,
                                  r["tool_name"] if "tool_name" in keys else None))
        assistants = sum(m["role"] == "assistant" for m in s.messages)
        s.counts = Counts(main["api_call_count"] or assistants, sum(len(m["tool_calls"] or []) for m in s.messages),
                          (main["input_tokens"] or 0) + (main["cache_read_tokens"] or 0) + (main["cache_write_tokens"] or 0),
                          main["output_tokens"])
        return s


_CONTENT_JSON = "\x00json:"  # hermes' prefix for message content it stored as JSON


def hermes_export(task_dir: Path) -> bytes | None:
    """The task's hermes sessions as ``hermes sessions export`` writes them (JSONL, a session per
    line: its ``sessions`` row plus its active ``messages``) — the form the Hub reads hermes
    sessions in — from ``.hermes/state.db``; None without one."""
    db = task_dir / ".hermes" / "state.db"
    if not db.is_file():
        return None
    try:
        with _db(db) as con:
            lines = []
            for session in con.execute("SELECT * FROM sessions ORDER BY started_at").fetchall():
                cols = session.keys()
                active = " AND active = 1" if "active" in [r[1] for r in con.execute("PRAGMA table_info(messages)")] else ""
                messages = []
                for row in con.execute(f"SELECT * FROM messages WHERE session_id = ?{active} ORDER BY id",
                                       (session["id"],)).fetchall():
                    m = dict(row)
                    if isinstance(m.get("content"), str) and m["content"].startswith(_CONTENT_JSON):
                        m["content"] = _loads(m["content"][len(_CONTENT_JSON):]) or m["content"]
                    if m.get("tool_calls"):
                        m["tool_calls"] = _loads(m["tool_calls"]) or []
                    messages.append({k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
                                     for k, v in m.items()})
                lines.append(json.dumps({**{c: session[c] for c in cols}, "messages": messages}, ensure_ascii=False))
    except sqlite3.Error:
        return None
    return ("\n".join(lines) + "\n").encode() if lines else None


def _openai_messages(items: list[Any]) -> list[dict[str, Any]]:
    out = []
    for m in chat_messages("openai-chat", {"messages": [i for i in items if isinstance(i, dict)]}):
        out.append({**m, "timestamp": None, "model": None})
    return out


# -- mini-swe-agent -------------------------------------------------------------------------------

def read_mini_swe_agent(task_dir: Path) -> NativeSession | None:
    paths = files(task_dir, ".mini/trajectory*.json")
    if not paths:
        return None
    s = NativeSession("mini-swe-agent", counts=Counts(0, 0), files=[str(p.relative_to(task_dir)) for p in paths])
    api_calls: int | None = None
    for path in paths:  # one trajectory per turn, each a conversation of its own
        doc = _loads(path.read_text(encoding="utf-8", errors="replace"))
        if not isinstance(doc, dict):
            continue
        stats = (doc.get("info") or {}).get("model_stats") or {}
        api_calls = add(api_calls, stats.get("api_calls"))
        for m in doc.get("messages") or []:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
                continue
            response = (m.get("extra") or {}).get("response")
            if isinstance(response, dict):  # a model reply — kept, or (a format error) only here
                u = response.get("usage") or {}
                s.counts.prompt_tokens = add(s.counts.prompt_tokens, u.get("prompt_tokens"))
                s.counts.completion_tokens = add(s.counts.completion_tokens, u.get("completion_tokens"))
                s.counts.calls = (s.counts.calls or 0) + 1
                if m.get("role") != "assistant":
                    choice = ((response.get("choices") or [{}])[0] or {}).get("message") or {}
                    s.messages.append({**chat_messages("openai-chat", {"messages": [{"role": "assistant", **choice}]})[0],
                                       "timestamp": None, "model": response.get("model")})
            [m2] = chat_messages("openai-chat", {"messages": [m]}) or [None]
            if m2 is not None:
                s.messages.append({**m2, "timestamp": ms((m.get("extra") or {}).get("timestamp")),
                                   "model": (response or {}).get("model") if m.get("role") == "assistant" else None})
                s.counts.tool_calls = (s.counts.tool_calls or 0) + len(m2["tool_calls"] or [])
    if api_calls is not None:
        s.counts.calls = api_calls
    return s


# -- aider (chat history markdown) ----------------------------------------------------------------

_TOKENS = re.compile(r"^> Tokens: ([\d.,]+)(k?) sent(?:, ([\d.,]+)(k?) cache \w+)*, ([\d.,]+)(k?) received", re.I)


def _count(number: str, k: str) -> int:
    return int(float(number.replace(",", "")) * (1000 if k else 1))


def read_aider(task_dir: Path) -> NativeSession | None:
    paths = files(task_dir, ".aider/chat.history.md") or files(task_dir, "**/.aider.chat.history.md")
    if not paths:
        return None
    s = NativeSession("aider", counts=Counts(0, 0, None, None), files=[str(p.relative_to(task_dir)) for p in paths])
    role, buf, header = None, [], False

    def flush() -> None:
        nonlocal role, buf
        body = "\n".join(buf).strip()
        if role and body:
            s.messages.append(msg(role, body))
        role, buf = None, []

    for line in paths[0].read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("# aider chat started at"):
            flush()
            header = True
            continue
        if line.startswith("#### "):
            if role != "user":
                flush()
            header, role = False, "user"
            buf.append(line[5:].rstrip())
            continue
        if line.startswith(">"):
            m = _TOKENS.match(line)
            if m:
                s.counts.calls = (s.counts.calls or 0) + 1
                s.counts.prompt_tokens = (s.counts.prompt_tokens or 0) + _count(m.group(1), m.group(2))
                s.counts.completion_tokens = (s.counts.completion_tokens or 0) + _count(m.group(5), m.group(6))
                continue
            if header:
                continue
            if role != "system":
                flush()
            role = "system"
            buf.append(line[1:].strip())
            continue
        if role in ("user", "system") and line.strip():
            flush()
            role = "assistant"
        elif role is None and line.strip() and not header:
            role = "assistant"
        buf.append(line)
    flush()
    return s
