"""The Hub's Session Trace Simple Format (STS), written and checked; and the check that sets an
agent's own account of a session beside the wire's.

STS (https://huggingface.co/docs/hub/session-traces-format) is JSONL: a header line ``{type:
"session", harness, id, name?, …extra metadata}``, then one ``{type: "message", message: {role,
content, reasoningContent?, toolCalls? [{id, function {name, arguments (JSON text)}}], toolCallId?,
timestamp? (epoch ms), model?}}`` line per message; the Hub's trace viewer renders such files and
stitches each tool result to the call with its ``toolCallId``. :data:`SCHEMA` is that contract as a
JSON Schema, as agentcap writes it (no message fields beyond the documented ones).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
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


def validate(text: str) -> list[str]:
    """What is wrong with an STS file (``line N: …``); [] when it is valid: the schema per line, a
    header first and only there, each ``toolCallId`` answering a tool call made before it."""
    import jsonschema  # ~0.1 s to import, and only this check needs it (the export writes, never validates)

    problems: list[str] = []
    seen: set[str] = set()
    lines = text.splitlines()
    if not lines:
        return ["empty file"]
    for n, line in enumerate(lines, start=1):
        try:
            obj = json.loads(line)
        except ValueError as exc:
            problems.append(f"line {n}: not JSON ({exc})")
            continue
        schema = HEADER_SCHEMA if n == 1 else MESSAGE_SCHEMA
        for err in jsonschema.Draft202012Validator(schema).iter_errors(obj):
            problems.append(f"line {n}: {'/'.join(map(str, err.absolute_path)) or '$'}: {err.message}")
        msg = obj.get("message") if isinstance(obj, dict) else None
        if n > 1 and isinstance(msg, dict):
            seen.update(c.get("id") for c in msg.get("toolCalls") or [] if isinstance(c, dict))
            if msg.get("toolCallId") and msg["toolCallId"] not in seen:
                problems.append(f"line {n}: toolCallId {msg['toolCallId']!r} answers no earlier tool call")
    return problems


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
