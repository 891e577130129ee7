"""The session files agentcap writes, and the check that sets an agent's own account of a session
beside the wire's.

A session file agentcap makes (the wire's, and an agent trace it converts) is **Pi's session format
with a ``harness`` field** in its header — the route the Hub's docs give a harness of its own
(https://huggingface.co/docs/hub/session-traces-format, "Alternative: Pi's session format"): the
Hub's trace viewer renders it and attributes it to the harness, and ``datasets`` + ``teich`` read
it as what it is, a Pi session (its ``type: session`` header is how both detect Pi), keeping every
tool call, tool result id and timestamp. The Session Trace Simple Format (STS) the Hub also renders
is read by ``datasets`` as a Pi session too, and loses its ``toolCalls`` / ``toolCallId`` there, so
agentcap no longer writes it; :func:`sts_text` and :data:`SCHEMA` stay for the files earlier
exports published, and :func:`validate` checks both.

:func:`session_text` writes a file (https://github.com/badlogic/pi-mono, packages/coding-agent/docs/
session-format.md): a header ``{type: "session", version: 3, id, timestamp, harness, …metadata}``,
a ``session_info`` entry naming it, a ``custom`` entry ``teich-available-tools`` holding the tools
the agent was offered (the entry teich reads a Pi session's tools from; without it teich knows only
Pi's built-in tools), then one ``message`` entry per message — ``user`` / ``system`` with text
content, ``assistant`` with ``thinking``, ``text`` and ``toolCall`` blocks (arguments as the object
they are), ``toolResult`` with the ``toolCallId`` and ``toolName`` it answers — each entry with an
``id``, the ``parentId`` of the entry before it and an ISO ``timestamp``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ROLES = ("user", "assistant", "system", "tool")

_TOOL_CALL = {"type": "object", "required": ["id", "function"], "additionalProperties": False,
              "properties": {"id": {"type": "string"},
                             "function": {"type": "object", "required": ["name", "arguments"],
                                          "additionalProperties": False,
                                          "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}}}}}
HEADER_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["type", "harness", "id"],
    "properties": {"type": {"const": "session"}, "harness": {"type": "string", "minLength": 1},
                   "id": {"type": "string", "minLength": 1}, "name": {"type": "string"}},
}
MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["type", "message"], "additionalProperties": False,
    "properties": {"type": {"const": "message"}, "message": {
        "type": "object", "required": ["role", "content"], "additionalProperties": False,
        "properties": {"role": {"enum": list(ROLES)}, "content": {"type": "string"},
                       "reasoningContent": {"type": "string"}, "toolCalls": {"type": "array", "items": _TOOL_CALL},
                       "toolCallId": {"type": "string"}, "timestamp": {"type": "integer", "minimum": 0},
                       "model": {"type": "string"}}}},
}
SCHEMA: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                          "title": "Session Trace Simple Format line",
                          "oneOf": [HEADER_SCHEMA, MESSAGE_SCHEMA]}


def sts_message(m: dict[str, Any]) -> dict[str, Any]:
    """A chat-shape message (plus optional ``timestamp`` in epoch ms and ``model``) as an STS line."""
    role = m.get("role") if m.get("role") in ROLES else "system"  # developer (and anything unknown): system
    out: dict[str, Any] = {"role": role, "content": m.get("content") or ""}
    if m.get("reasoning_content"):
        out["reasoningContent"] = m["reasoning_content"]
    calls = [{"id": str(c.get("id") or f"call_{i}"),
              "function": {"name": str((c.get("function") or {}).get("name") or ""),
                           "arguments": _arguments((c.get("function") or {}).get("arguments"))}}
             for i, c in enumerate(m.get("tool_calls") or [])]
    if calls:
        out["toolCalls"] = calls
    if role == "tool" and m.get("tool_call_id"):
        out["toolCallId"] = str(m["tool_call_id"])
    if isinstance(m.get("timestamp"), int) and m["timestamp"] >= 0:
        out["timestamp"] = m["timestamp"]
    if isinstance(m.get("model"), str) and m["model"]:
        out["model"] = m["model"]
    return {"type": "message", "message": out}


def _arguments(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value if value is not None else {}, ensure_ascii=False)


def sts_text(header: dict[str, Any], messages: Iterable[dict[str, Any]]) -> str:
    """The whole file: ``header`` (``type: session`` added first; keys with None values dropped)
    and a line per message."""
    head = {"type": "session", **{k: v for k, v in header.items() if v is not None and k != "type"}}
    lines = [json.dumps(head, ensure_ascii=False)]
    lines += [json.dumps(sts_message(m), ensure_ascii=False) for m in messages]
    return "\n".join(lines) + "\n"


# -- Pi's session format, with a harness ---------------------------------------------------------

PI_VERSION = 3
TOOLS_ENTRY = "teich-available-tools"  # the custom entry teich reads a Pi session's offered tools from
PI_ROLES = ("user", "assistant", "system", "toolResult")
_ENTRY = {"id": {"type": "string", "minLength": 1}, "parentId": {"type": ["string", "null"]},
          "timestamp": {"type": "string", "minLength": 1}}
_TEXT = {"type": "object", "required": ["type", "text"], "properties": {"type": {"const": "text"},
                                                                         "text": {"type": "string"}}}
_BLOCK = {"oneOf": [_TEXT,
                    {"type": "object", "required": ["type", "thinking"],
                     "properties": {"type": {"const": "thinking"}, "thinking": {"type": "string"}}},
                    {"type": "object", "required": ["type", "id", "name", "arguments"],
                     "properties": {"type": {"const": "toolCall"}, "id": {"type": "string", "minLength": 1},
                                    "name": {"type": "string"}, "arguments": {"type": ["object", "string"]}}}]}
PI_HEADER_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["type", "version", "id", "timestamp", "harness"],
    "properties": {"type": {"const": "session"}, "version": {"const": PI_VERSION},
                   "id": {"type": "string", "minLength": 1}, "timestamp": {"type": "string"},
                   "harness": {"type": "string", "minLength": 1}},
}
PI_ENTRY_SCHEMA: dict[str, Any] = {"oneOf": [
    {"type": "object", "required": ["type", "id", "parentId", "timestamp", "message"], "properties": {
        **_ENTRY, "type": {"const": "message"}, "message": {
            "type": "object", "required": ["role", "content"],
            "properties": {"role": {"enum": list(PI_ROLES)}, "timestamp": {"type": "integer", "minimum": 0},
                           "content": {"type": "array", "items": _BLOCK},
                           "toolCallId": {"type": "string", "minLength": 1}, "toolName": {"type": "string"},
                           "isError": {"type": "boolean"}, "model": {"type": "string"}}}}},
    {"type": "object", "required": ["type", "id", "parentId", "timestamp", "customType", "data"],
     "properties": {**_ENTRY, "type": {"const": "custom"}, "customType": {"type": "string"},
                    "data": {"type": "object"}}},
    {"type": "object", "required": ["type", "id", "parentId", "timestamp", "name"],
     "properties": {**_ENTRY, "type": {"const": "session_info"}, "name": {"type": "string"}}},
]}


def _iso(ms_: int) -> str:
    return datetime.fromtimestamp(ms_ / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _object(arguments: Any) -> Any:
    """A tool call's arguments as Pi keeps them, an object; text that is not a JSON object stays text."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        return arguments
    return value if isinstance(value, dict) else _arguments(arguments)


def pi_message(m: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A chat-shape message (plus ``timestamp`` in epoch ms and ``model``) as a Pi ``AgentMessage``;
    ``names``: tool call id → tool name, of the calls made so far (a tool result names its tool)."""
    role = m.get("role")
    text = [{"type": "text", "text": m.get("content") or ""}] if m.get("content") else []
    if role == "tool":
        out: dict[str, Any] = {"role": "toolResult", "toolCallId": str(m.get("tool_call_id") or ""),
                               "toolName": m.get("name") or names.get(str(m.get("tool_call_id")), ""),
                               "content": text, "isError": False}
    elif role == "assistant":
        calls = [{"type": "toolCall", "id": str(c.get("id") or f"call_{i}"),
                  "name": str((c.get("function") or {}).get("name") or ""),
                  "arguments": _object((c.get("function") or {}).get("arguments"))}
                 for i, c in enumerate(m.get("tool_calls") or [])]
        names.update((c["id"], c["name"]) for c in calls)
        thinking = [{"type": "thinking", "thinking": m["reasoning_content"]}] if m.get("reasoning_content") else []
        out = {"role": "assistant", "content": thinking + text + calls}
        if isinstance(m.get("model"), str) and m["model"]:
            out["model"] = m["model"]
    else:  # user, system (developer and anything unknown: system)
        out = {"role": "user" if role == "user" else "system", "content": text}
    if isinstance(m.get("timestamp"), int) and m["timestamp"] >= 0:
        out["timestamp"] = m["timestamp"]
    return out


def session_text(header: dict[str, Any], messages: Iterable[dict[str, Any]],
                 tools: list[dict[str, Any]] | None = None) -> str:
    """A session file in Pi's format (the module docstring): ``header`` must hold ``harness`` and
    ``id``, its other keys are metadata (None values dropped); ``tools`` the chat-shape tools the
    agent was offered (None: not known, no entry). Entries with no time of their own take the time
    of the message before them (the first: the first time there is)."""
    messages = list(messages)
    times = [m["timestamp"] for m in messages if isinstance(m.get("timestamp"), int) and m["timestamp"] >= 0]
    at = times[0] if times else 0
    head = {"type": "session", "version": PI_VERSION, "id": header["id"], "timestamp": _iso(at),
            **{k: v for k, v in header.items() if v is not None and k not in ("type", "version", "id")}}
    entries: list[dict[str, Any]] = []
    if header.get("name"):
        entries.append({"type": "session_info", "name": header["name"]})
    if tools is not None:
        entries.append({"type": "custom", "customType": TOOLS_ENTRY, "data": {"tools": tools, "source": "agentcap"}})
    names: dict[str, str] = {}
    for m in messages:
        message = pi_message(m, names)
        at = message.get("timestamp", at)
        entries.append({"type": "message", "timestamp": _iso(at), "message": message})
    lines = [json.dumps(head, ensure_ascii=False)]
    for i, e in enumerate(entries):
        e = {"type": e.pop("type"), "id": f"{i + 1:08x}", "parentId": f"{i:08x}" if i else None,
             "timestamp": e.pop("timestamp", _iso(times[0] if times else 0)), **e}
        lines.append(json.dumps(e, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def validate(text: str) -> list[str]:
    """What is wrong with a session file agentcap writes (``line N: …``); [] when it is valid: a
    header first and only there, the schema per line — Pi's format when the header has a
    ``version`` (each entry's ``parentId`` the entry before it), else STS — and each tool result's
    ``toolCallId`` answering a tool call made before it."""
    import jsonschema  # ~0.1 s to import, and only this check needs it (the export writes, never validates)

    lines = text.splitlines()
    if not lines:
        return ["empty file"]
    problems: list[str] = []
    seen: set[str] = set()
    pi = False
    last_id: str | None = None
    for n, line in enumerate(lines, start=1):
        try:
            obj = json.loads(line)
        except ValueError as exc:
            problems.append(f"line {n}: not JSON ({exc})")
            continue
        if n == 1:
            pi = isinstance(obj, dict) and "version" in obj
        schema = (PI_HEADER_SCHEMA if pi else HEADER_SCHEMA) if n == 1 else (PI_ENTRY_SCHEMA if pi else MESSAGE_SCHEMA)
        for err in jsonschema.Draft202012Validator(schema).iter_errors(obj):
            problems.append(f"line {n}: {'/'.join(map(str, err.absolute_path)) or '$'}: {err.message}")
        if n == 1 or not isinstance(obj, dict):
            continue
        if pi:
            if obj.get("parentId") != last_id:
                problems.append(f"line {n}: parentId {obj.get('parentId')!r} is not the entry before ({last_id!r})")
            last_id = obj.get("id")
        problems += _answers(n, obj.get("message"), pi, seen)
    return problems


def _answers(n: int, message: Any, pi: bool, seen: set[str]) -> list[str]:
    """Record a message's tool calls; a tool result whose id answers none made before is a problem."""
    if not isinstance(message, dict):
        return []
    content = message.get("content")
    calls: list[Any] = ([b for b in content if isinstance(b, dict) and b.get("type") == "toolCall"]
                        if pi and isinstance(content, list) else message.get("toolCalls") or [] if not pi else [])
    seen.update(str(c.get("id")) for c in calls if isinstance(c, dict))
    answered = message.get("toolCallId") if not pi or message.get("role") == "toolResult" else None
    if answered and answered not in seen:
        return [f"line {n}: toolCallId {answered!r} answers no earlier tool call"]
    return []


# -- native vs wire ------------------------------------------------------------------------------

@dataclass
class Counts:
    """What a session says it cost: model calls, tool calls, tokens (None: not recorded)."""

    calls: int | None = None
    tool_calls: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def compare(native: Counts, wire: Counts) -> list[str]:
    """The differences between an agent's own trace and the wire, one line each (``calls: trace
    3, wire 4``); a count the trace does not record is not compared."""
    out = []
    for name, label in (("calls", "calls"), ("tool_calls", "tool calls"), ("prompt_tokens", "prompt tokens"),
                        ("completion_tokens", "completion tokens")):
        a, b = getattr(native, name), getattr(wire, name)
        if a is not None and b is not None and a != b:
            out.append(f"{label}: trace {a}, wire {b}")
    return out


# -- an agent's own session, in the chat shape -----------------------------------------------------

@dataclass
class NativeSession:
    harness: str
    id: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)  # chat shape + timestamp (ms), model
    counts: Counts = field(default_factory=Counts)
    title: str | None = None
    files: list[str] = field(default_factory=list)  # what it was read from, relative to the task dir


def msg(role: str, content: str = "", reasoning: str | None = None, calls: list[dict[str, Any]] | None = None,
        tool_call_id: str | None = None, timestamp: int | None = None, model: str | None = None,
        name: str | None = None) -> dict[str, Any]:
    return {"role": role, "content": content or "", "reasoning_content": reasoning or None, "tool_calls": calls or None,
            "tool_call_id": tool_call_id, "name": name, "timestamp": timestamp, "model": model}


def call(id_: Any, name: Any, arguments: Any) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments if arguments is not None else {},
                                                                    ensure_ascii=False)
    return {"id": None if id_ is None else str(id_), "type": "function", "function": {"name": str(name or ""),
                                                                                      "arguments": args}}
