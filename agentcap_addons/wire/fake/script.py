"""Scripted model replies: a small YAML file of replies, chosen per request, rendered per API.

    model: scripted            # optional: the model name to report (default: the request's)
    chunk_size: 16             # optional: characters per streamed fragment
    delay_ms: 0                # optional: pause between streamed chunks
    on_unmatched: last         # or "error": what a request no reply matches gets
    replies:
      - text: "Let me look."
        tool_calls:
          - name: [bash, Bash, shell]          # the first one the request offers
            arguments: {command: "ls"}
            arguments_for: {shell: {command: [bash, -lc, ls]}}
            # a list of argument objects: the first that fits the tool's JSON schema wins
      - match: {tool_result: true}
        text: "Done."

Choosing a reply is stateless, so parallel sessions and repeated calls never disturb each other:
the first reply whose ``match`` holds wins. ``match`` keys: ``step`` (int or list: how many model
turns the conversation already holds), ``user`` (regex searched in the latest user message),
``system`` (regex in the system prompt), ``tool_result`` (the latest message is a tool result),
``tools`` (the request offers tools). A reply without ``match`` matches ``step: <its index>``.
Tool calls are left out for a request that offers no tools (agents' side calls, e.g. titles).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from agentcap_addons.wire.api.decode import (
    request_messages,
    request_tool_namespaces,
    request_tool_schemas,
    request_tools,
)
from agentcap_addons.wire.api.messages import Message
from agentcap_addons.wire.api.render import Reply, ToolCallSpec
from agentcap_addons.wire.util.errors import AgentcapError
from agentcap_addons.wire.util.yamlfile import ConfigError, check_keys, load, want

TOP_KEYS = {"model", "chunk_size", "delay_ms", "on_unmatched", "replies"}
REPLY_KEYS = {"match", "text", "reasoning", "tool_calls", "chunk_size", "delay_ms"}
MATCH_KEYS = {"step", "user", "system", "tool_result", "tools"}
CALL_KEYS = {"name", "arguments", "arguments_for"}


@dataclass
class ScriptCall:
    names: list[str]
    arguments: Any
    arguments_for: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScriptReply:
    index: int
    match: dict[str, Any]
    text: str
    reasoning: str
    tool_calls: list[ScriptCall]
    chunk_size: int
    delay_ms: float


@dataclass
class Script:
    path: str
    replies: list[ScriptReply]
    model: str | None = None
    on_unmatched: str = "last"


class NoReply(AgentcapError, LookupError):
    pass


def load_script(path: str | os.PathLike[str]) -> Script:
    """Read and check a script; any problem is a :class:`ConfigError` naming file, line and key."""
    doc = load(path)
    top = doc.data
    if not isinstance(top, dict):
        raise doc.error("", "a script is a mapping with a 'replies' list")
    check_keys(doc, top, "", TOP_KEYS)
    chunk = want(doc, top.get("chunk_size", 16), int, "chunk_size", "a whole number")
    if chunk < 1:
        raise doc.error("chunk_size", "must be at least 1")
    delay = want(doc, top.get("delay_ms", 0), (int, float), "delay_ms", "a number")
    on_unmatched = top.get("on_unmatched", "last")
    if on_unmatched not in ("last", "error"):
        raise doc.error("on_unmatched", "must be 'last' or 'error'")
    model = top.get("model")
    if model is not None:
        want(doc, model, str, "model", "a string")
    replies = top.get("replies")
    if not isinstance(replies, list) or not replies:
        raise doc.error("replies", "must be a non-empty list of replies")
    out = []
    for i, r in enumerate(replies):
        key = f"replies.{i}"
        if not isinstance(r, dict):
            raise doc.error(key, "each reply is a mapping (text, tool_calls, match …)")
        check_keys(doc, r, key, REPLY_KEYS)
        match = r.get("match") or {}
        want(doc, match, dict, f"{key}.match", "a mapping")
        check_keys(doc, match, f"{key}.match", MATCH_KEYS)
        for rk in ("user", "system"):
            if rk in match:
                try:
                    re.compile(want(doc, match[rk], str, f"{key}.match.{rk}", "a regular expression"))
                except re.error as e:
                    raise doc.error(f"{key}.match.{rk}", f"not a valid regular expression: {e}") from None
        for bk in ("tool_result", "tools"):
            if bk in match:
                want(doc, match[bk], bool, f"{key}.match.{bk}", "true or false")
        if "step" in match:
            steps = match["step"] if isinstance(match["step"], list) else [match["step"]]
            for s in steps:
                want(doc, s, int, f"{key}.match.step", "a whole number or a list of them")
        if not match:
            match = {"step": i}
        calls = []
        for j, c in enumerate(want(doc, r.get("tool_calls") or [], list, f"{key}.tool_calls", "a list")):
            ck = f"{key}.tool_calls.{j}"
            if not isinstance(c, dict) or "name" not in c:
                raise doc.error(ck, "a tool call needs a 'name'")
            check_keys(doc, c, ck, CALL_KEYS)
            names = c["name"] if isinstance(c["name"], list) else [c["name"]]
            if not names or not all(isinstance(n, str) and n for n in names):
                raise doc.error(f"{ck}.name", "must be a tool name or a list of them")
            afor = want(doc, c.get("arguments_for") or {}, dict, f"{ck}.arguments_for", "a mapping of tool name to arguments")
            calls.append(ScriptCall(names, c.get("arguments", {}), afor))
        text = want(doc, r.get("text", ""), str, f"{key}.text", "a string")
        reasoning = want(doc, r.get("reasoning", ""), str, f"{key}.reasoning", "a string")
        if not text and not calls and not reasoning:
            raise doc.error(key, "a reply needs text, reasoning or tool_calls")
        rc = want(doc, r.get("chunk_size", chunk), int, f"{key}.chunk_size", "a whole number")
        rd = want(doc, r.get("delay_ms", delay), (int, float), f"{key}.delay_ms", "a number")
        out.append(ScriptReply(i, match, text, reasoning, calls, max(1, rc), float(rd)))
    return Script(str(path), out, model, on_unmatched)


# ------------------------------------------------------------------------- choosing a reply


@dataclass
class ScriptContext:
    step: int
    user: str
    system: str
    tool_result: bool
    tools: list[str]
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    namespaces: dict[str, tuple[str, str]] = field(default_factory=dict)


def context_of(api: str, body: Any) -> ScriptContext:
    msgs: list[Message] = request_messages(api, body)
    step = 0
    prev = None
    for m in msgs:
        if m.role == "assistant" and prev != "assistant":
            step += 1
        prev = m.role
    user = next((m.content for m in reversed(msgs) if m.role == "user"), "")
    system = next((m.content for m in msgs if m.role in ("system", "developer")), "")
    return ScriptContext(step, user, system, bool(msgs) and msgs[-1].role == "tool", request_tools(body),
                   request_tool_schemas(body), request_tool_namespaces(body))


def _matches(match: dict[str, Any], ctx: ScriptContext) -> bool:
    if "step" in match:
        steps = match["step"] if isinstance(match["step"], list) else [match["step"]]
        if ctx.step not in steps:
            return False
    if "user" in match and not re.search(match["user"], ctx.user):
        return False
    if "system" in match and not re.search(match["system"], ctx.system):
        return False
    if "tool_result" in match and match["tool_result"] != ctx.tool_result:
        return False
    if "tools" in match and match["tools"] != bool(ctx.tools):
        return False
    return True


def choose(script: Script, api: str, body: Any) -> tuple[ScriptReply, ScriptContext]:
    ctx = context_of(api, body)
    for r in script.replies:
        if _matches(r.match, ctx):
            return r, ctx
    if script.on_unmatched == "last":
        return script.replies[-1], ctx
    raise NoReply(
        f"no reply of {script.path} matches this request (step {ctx.step}, tool_result={ctx.tool_result}, "
        f"latest user message {ctx.user[:80]!r})"
    )


def fits(args: Any, schema: dict[str, Any]) -> bool:
    """Whether ``args`` has every required key of ``schema`` and no key it does not declare."""
    if not isinstance(args, dict):
        return False
    props = schema.get("properties")
    required = schema.get("required") or []
    if any(k not in args for k in required):
        return False
    return not isinstance(props, dict) or not props or all(k in props for k in args)


def fit_arguments(args: Any, schema: dict[str, Any]) -> Any:
    """A list of argument objects is a list of alternatives: the first that fits the offered schema
    (two agents may name different tools alike, e.g. ``write`` with ``path`` or ``filePath``)."""
    if not isinstance(args, list):
        return args
    return next((a for a in args if fits(a, schema)), args[0] if args else {})


def to_reply(r: ScriptReply, ctx: ScriptContext) -> Reply:
    calls = []
    if ctx.tools:  # a request without tools (a title / summary side call) gets the text only
        for c in r.tool_calls:
            name = next((n for n in c.names if n in ctx.tools), c.names[0])
            args = fit_arguments(c.arguments_for.get(name, c.arguments), ctx.schemas.get(name) or {})
            text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            namespace, own = ctx.namespaces.get(name, (None, name))
            calls.append(ToolCallSpec(own, text, namespace))
    text = r.text
    if not text and not calls and not r.reasoning:
        text = "OK."  # a tool-only reply asked without tools: say something rather than nothing
    return Reply(text=text, reasoning=r.reasoning, tool_calls=calls, chunk_size=r.chunk_size, delay_ms=r.delay_ms)


def seed_of(body_bytes: bytes, reply_index: int) -> str:
    return hashlib.sha256(body_bytes + b"/%d" % reply_index).hexdigest()


__all__ = ["ConfigError", "NoReply", "Script", "choose", "load_script", "seed_of", "to_reply"]
