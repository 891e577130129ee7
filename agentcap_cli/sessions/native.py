"""Agents' own session traces read into one shape: the conversation in the chat shape, and what
the trace says it cost (calls, tool calls, tokens) — for the Hub's trace viewer (agents it does
not read natively get their trace converted to the Session Trace Simple Format) and for the check
against the wire (:func:`agentcap_cli.sessions.schema.compare`).

One reader per agent, each given the task's trace directory (``traces/<task>/``, paths as under
the agent's home). Claude Code, Codex and Pi write JSONL the Hub detects as it is
(:data:`RAW_SESSIONS`): those files are published unchanged; hermes keeps its sessions in SQLite,
and its own export format (:func:`~agentcap_cli.sessions.stores.hermes_export`), which the Hub also
reads, is made from it. This module reads the JSONL traces (pi, claude-code, codex, qwen-code);
:mod:`agentcap_cli.sessions.stores` the others. A trace a reader cannot make sense of gives None,
never an exception: the raw files are published anyway.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentcap_addons.wire.api.sessions import chat_messages
from agentcap_cli.sessions.schema import Counts, NativeSession, call, msg
from agentcap_cli.sessions.stores import (
    add,
    files,
    jsonl,
    ms,
    read_aider,
    read_hermes,
    read_mini_swe_agent,
    read_opencode,
    text,
)

# agent → where under its home its JSONL sessions are, for agents whose files the Hub reads as they are
RAW_SESSIONS = {"claude-code": ".claude/projects", "codex": ".codex/sessions", "pi": ".pi/agent/sessions"}
# agents whose session formats the Hub reads natively (hermes: its ``sessions export`` JSONL, made from state.db)
HUB_NATIVE = frozenset([*RAW_SESSIONS, "hermes"])


def hub_native_files(agent: str, task_dir: Path) -> list[Path]:
    """The JSONL session files of a task that the Hub reads as they are ([] for other agents)."""
    root = RAW_SESSIONS.get(agent)
    return files(task_dir, f"{root}/**/*.jsonl") if root else []


# -- pi ---------------------------------------------------------------------------------------------

def read_pi(task_dir: Path) -> NativeSession | None:
    paths = hub_native_files("pi", task_dir)
    if not paths:
        return None
    s = NativeSession("pi", counts=Counts(0, 0), files=[str(p.relative_to(task_dir)) for p in paths])
    for path in paths:
        for line in jsonl(path):
            if line.get("type") == "session":
                s.id = s.id or line.get("id")
            if line.get("type") != "message" or not isinstance(line.get("message"), dict):
                continue
            m = line["message"]
            role, content, when = m.get("role"), m.get("content"), ms(m.get("timestamp")) or ms(line.get("timestamp"))
            if role == "user":
                s.messages.append(msg("user", text(content), timestamp=when))
            elif role == "assistant":
                parts = content if isinstance(content, list) else []
                calls = [call(p.get("id"), p.get("name"), p.get("arguments")) for p in parts
                         if isinstance(p, dict) and p.get("type") == "toolCall"]
                thinking = "".join(p.get("thinking") or "" for p in parts if isinstance(p, dict)
                                   and p.get("type") == "thinking")
                s.messages.append(msg("assistant", text(content), thinking, calls, timestamp=when, model=m.get("model")))
                u = m.get("usage") or {}
                c = s.counts
                c.calls, c.tool_calls = (c.calls or 0) + 1, (c.tool_calls or 0) + len(calls)
                c.prompt_tokens = add(add(add(c.prompt_tokens, u.get("input")), u.get("cacheRead")), u.get("cacheWrite"))
                c.completion_tokens = add(c.completion_tokens, u.get("output"))
            elif role == "toolResult":
                s.messages.append(msg("tool", text(content), tool_call_id=m.get("toolCallId"), timestamp=when,
                                      name=m.get("toolName")))
    return s


# -- claude-code ----------------------------------------------------------------------------------

def read_claude_code(task_dir: Path) -> NativeSession | None:
    paths = hub_native_files("claude-code", task_dir)
    if not paths:
        return None
    s = NativeSession("claude-code", files=[str(p.relative_to(task_dir)) for p in paths])
    usage: dict[str, dict[str, Any]] = {}  # message id → its usage (repeated on each of its lines)
    calls = 0
    for path in paths:
        last_id = None
        for line in jsonl(path):
            m = line.get("message")
            if line.get("type") not in ("user", "assistant") or not isinstance(m, dict):
                continue
            s.id = s.id or line.get("sessionId")
            when = ms(line.get("timestamp"))
            blocks = m.get("content") if isinstance(m.get("content"), list) else [
                {"type": "text", "text": m.get("content") or ""}]
            if line["type"] == "assistant":
                mid = m.get("id") or line.get("uuid")
                usage[mid] = m.get("usage") or {}
                tool = [call(b.get("id"), b.get("name"), b.get("input")) for b in blocks if b.get("type") == "tool_use"]
                thinking = "".join(b.get("thinking") or "" for b in blocks if b.get("type") == "thinking")
                if line.get("isSidechain"):
                    continue
                if mid == last_id and s.messages and s.messages[-1]["role"] == "assistant":
                    prev = s.messages[-1]  # one model reply is written a content block per line
                    prev["content"] = "\n".join(t for t in (prev["content"], text(blocks)) if t)
                    prev["tool_calls"] = (prev["tool_calls"] or []) + tool or None
                    prev["reasoning_content"] = (prev["reasoning_content"] or "") + thinking or None
                else:
                    s.messages.append(msg("assistant", text(blocks), thinking, tool, timestamp=when, model=m.get("model")))
                last_id = mid
                continue
            last_id = None
            if line.get("isSidechain"):
                continue
            for b in blocks:
                if b.get("type") == "tool_result":
                    s.messages.append(msg("tool", text(b.get("content")), tool_call_id=b.get("tool_use_id"),
                                          timestamp=when))
            said = text([b for b in blocks if b.get("type") == "text"])
            if said:
                s.messages.append(msg("user", said, timestamp=when))
    calls = len(usage)
    s.counts = Counts(calls, sum(len(m["tool_calls"] or []) for m in s.messages if m["role"] == "assistant"))
    for u in usage.values():
        s.counts.prompt_tokens = add(add(add(s.counts.prompt_tokens, u.get("input_tokens")),
                                         u.get("cache_creation_input_tokens")), u.get("cache_read_input_tokens"))
        s.counts.completion_tokens = add(s.counts.completion_tokens, u.get("output_tokens"))
    return s


# -- codex ----------------------------------------------------------------------------------------

def read_codex(task_dir: Path) -> NativeSession | None:
    paths = hub_native_files("codex", task_dir)
    if not paths:
        return None
    s = NativeSession("codex", counts=Counts(0, 0), files=[str(p.relative_to(task_dir)) for p in paths])
    items: list[dict[str, Any]] = []
    stamps: list[int | None] = []
    records, counts_events = [], []
    model = None
    for path in paths:
        for line in jsonl(path):
            kind, p = line.get("type"), line.get("payload")
            if not isinstance(p, dict):
                continue
            if kind == "session_meta":
                s.id = s.id or p.get("id")
            elif kind == "turn_context":
                model = p.get("model") or model
            elif kind == "response_item":
                items.append(p)
                stamps.append(ms(line.get("timestamp")))
            elif kind == "token_usage_record":
                records.append(p.get("usage") or {})
            elif kind == "event_msg" and p.get("type") == "token_count" and isinstance(p.get("info"), dict):
                counts_events.append(p["info"].get("last_token_usage") or {})
    usages = records or counts_events  # one record per model response (older versions: token_count events)
    for it, when in zip(items, stamps):
        for m in chat_messages("openai-responses", {"input": [it]}):
            m.update(timestamp=when, model=model if m["role"] == "assistant" else None)
            s.messages.append(m)
    merged: list[dict[str, Any]] = []
    for m in s.messages:  # a reply is several items (text, then each call): one assistant message
        if merged and m["role"] == "assistant" == merged[-1]["role"] and not m["content"] and m["tool_calls"]:
            merged[-1]["tool_calls"] = (merged[-1]["tool_calls"] or []) + m["tool_calls"]
        else:
            merged.append(m)
    s.messages = merged
    s.counts = Counts(len(usages) if usages else None, sum(len(m["tool_calls"] or []) for m in merged))
    for u in usages:
        s.counts.prompt_tokens = add(s.counts.prompt_tokens, u.get("input_tokens"))
        s.counts.completion_tokens = add(s.counts.completion_tokens, u.get("output_tokens"))
    return s


# -- qwen-code ------------------------------------------------------------------------------------

def read_qwen_code(task_dir: Path) -> NativeSession | None:
    paths = files(task_dir, ".qwen/**/chats/*.jsonl") or files(task_dir, ".qwen/**/*.jsonl")
    if not paths:
        return None
    s = NativeSession("qwen-code", counts=Counts(0, 0), files=[str(p.relative_to(task_dir)) for p in paths])
    for path in paths:
        for line in jsonl(path):
            m = line.get("message")
            if not isinstance(m, dict) or line.get("type") not in ("user", "assistant", "tool_result"):
                continue
            s.id = s.id or line.get("sessionId")
            when, parts = ms(line.get("timestamp")), [p for p in m.get("parts") or [] if isinstance(p, dict)]
            said = "\n".join(p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought"))
            if line["type"] == "assistant":
                thought = "".join(p["text"] for p in parts if isinstance(p.get("text"), str) and p.get("thought"))
                calls = [call(f["id"] if "id" in f else None, f.get("name"), f.get("args"))
                         for f in (p.get("functionCall") for p in parts) if isinstance(f, dict)]
                s.messages.append(msg("assistant", said, thought, calls, timestamp=when, model=line.get("model")))
                u = line.get("usageMetadata") or {}
                s.counts.calls, s.counts.tool_calls = (s.counts.calls or 0) + 1, (s.counts.tool_calls or 0) + len(calls)
                s.counts.prompt_tokens = add(s.counts.prompt_tokens, u.get("promptTokenCount"))
                s.counts.completion_tokens = add(add(s.counts.completion_tokens, u.get("candidatesTokenCount")),
                                                 u.get("thoughtsTokenCount"))
                continue
            for f in (p.get("functionResponse") for p in parts):
                if isinstance(f, dict):
                    r = f.get("response")
                    out = r.get("output") if isinstance(r, dict) and isinstance(r.get("output"), str) else r
                    s.messages.append(msg("tool", out if isinstance(out, str) else json.dumps(out, ensure_ascii=False),
                                          tool_call_id=f.get("id"), timestamp=when, name=f.get("name")))
            if said:
                s.messages.append(msg("user", said, timestamp=when))
    return s


READERS: dict[str, Callable[..., NativeSession | None]] = {
    "pi": read_pi, "claude-code": read_claude_code, "codex": read_codex, "qwen-code": read_qwen_code,
    "opencode": read_opencode, "hermes": read_hermes, "mini-swe-agent": read_mini_swe_agent, "aider": read_aider,
}
_WITH_SESSION_ID = {"opencode", "hermes"}


def read_native(agent: str | None, task_dir: Path, session_id: str | None = None) -> NativeSession | None:
    """The task's session as its agent recorded it; None when there is no reader or no trace the
    reader understands (a damaged file, another version's layout)."""
    reader = READERS.get(agent or "")
    if reader is None or not task_dir.is_dir():
        return None
    try:
        return reader(task_dir, session_id) if agent in _WITH_SESSION_ID else reader(task_dir)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, IndexError, sqlite3.Error):
        return None
