"""Decoders for the Anthropic Messages API, streamed and not."""

from __future__ import annotations

import json
from typing import Any

from agentcap_addons.wire.api.messages import (
    DecodedResponse,
    Message,
    ToolCall,
    Usage,
    as_int,
    text_of,
)
from agentcap_addons.wire.api.sse import SSEEvent
from agentcap_addons.wire.util.jsonio import fast_loads


def request_messages(body: dict[str, Any]) -> list[Message]:
    out: list[Message] = []
    if body.get("system"):
        out.append(Message(role="system", content=text_of(body["system"])))
    for m in body.get("messages") or []:
        if not isinstance(m, dict):
            continue
        role = str(m.get("role") or "")
        content = m.get("content")
        if isinstance(content, str):
            out.append(Message(role=role, content=content))
            continue
        msg = Message(role=role)
        texts: list[str] = []
        thinking: list[str] = []
        for block in content or []:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "tool_result":
                # a tool result is its own message in the normalised view, linked by id
                out.append(
                    Message(role="tool", content=text_of(block.get("content")), tool_call_id=block.get("tool_use_id"))
                )
            elif kind in ("tool_use", "server_tool_use"):
                msg.tool_calls.append(
                    ToolCall(
                        id=block.get("id"),
                        name=block.get("name"),
                        arguments=json.dumps(block.get("input") or {}, ensure_ascii=False),
                        index=len(msg.tool_calls),
                    )
                )
            elif kind == "thinking":
                thinking.append(block.get("thinking") or "")
            elif kind == "redacted_thinking":
                thinking.append("[redacted thinking]")
            else:
                texts.append(text_of([block]))
        msg.content = "\n".join(t for t in texts if t)
        msg.reasoning = "".join(thinking) or None
        if msg.content or msg.tool_calls or msg.reasoning:
            out.append(msg)
    return out


def usage(u: Any) -> Usage:
    if not isinstance(u, dict):
        return Usage()
    inp = as_int(u.get("input_tokens"))
    read = as_int(u.get("cache_read_input_tokens"))
    created = as_int(u.get("cache_creation_input_tokens"))
    prompt = None if inp is None else inp + (read or 0) + (created or 0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=as_int(u.get("output_tokens")),
        cached_tokens=read,
        cache_creation_tokens=created,
    )


def _merge_usage(base: Usage, newer: Usage) -> Usage:
    """``message_delta`` usage is cumulative and may carry only ``output_tokens``."""
    return Usage(
        prompt_tokens=newer.prompt_tokens if newer.prompt_tokens is not None else base.prompt_tokens,
        completion_tokens=newer.completion_tokens
        if newer.completion_tokens is not None
        else base.completion_tokens,
        cached_tokens=newer.cached_tokens if newer.cached_tokens is not None else base.cached_tokens,
        cache_creation_tokens=newer.cache_creation_tokens
        if newer.cache_creation_tokens is not None
        else base.cache_creation_tokens,
    )


def _apply_blocks(r: DecodedResponse, blocks: list[Any]) -> None:
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[ToolCall] = []
    for b in blocks:
        if not isinstance(b, dict):
            continue
        kind = b.get("type")
        if kind == "text":
            texts.append(b.get("text") or "")
        elif kind == "thinking":
            thinking.append(b.get("thinking") or "")
        elif kind in ("tool_use", "server_tool_use"):
            inp = b.get("input")
            arguments = inp if isinstance(inp, str) else json.dumps(inp or {}, ensure_ascii=False)
            calls.append(ToolCall(id=b.get("id"), name=b.get("name"), arguments=arguments, index=len(calls)))
    r.content, r.reasoning, r.tool_calls = "".join(texts), "".join(thinking), calls


def response(body: Any) -> DecodedResponse:
    r = DecodedResponse()
    if not isinstance(body, dict):
        return r
    if body.get("type") == "error" or "error" in body:
        r.error = text_of((body.get("error") or {}).get("message")) or json.dumps(body.get("error"))
    r.id, r.model = body.get("id"), body.get("model")
    _apply_blocks(r, body.get("content") or [])
    r.finish_reason = body.get("stop_reason")
    r.usage = usage(body.get("usage"))
    return r


def stream(events: list[SSEEvent]) -> DecodedResponse:
    """Blocks are rebuilt by ``index``; ``input_json_delta`` fragments are joined into the tool
    call's arguments string exactly as sent (so a cut-off stream shows the partial JSON)."""
    r = DecodedResponse(events=len(events))
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, list[str]] = {}
    for ev in events:
        try:
            obj = fast_loads(ev.data)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        t = obj.get("type") or ev.event
        if t == "message_start":
            msg = obj.get("message") or {}
            r.id, r.model = msg.get("id"), msg.get("model")
            r.usage = usage(msg.get("usage"))
        elif t == "content_block_start":
            blocks[int(obj.get("index") or 0)] = dict(obj.get("content_block") or {})
        elif t == "content_block_delta":
            i = int(obj.get("index") or 0)
            b = blocks.setdefault(i, {"type": "text", "text": ""})
            d = obj.get("delta") or {}
            dt = d.get("type")
            if dt == "text_delta":
                b["text"] = (b.get("text") or "") + (d.get("text") or "")
            elif dt == "thinking_delta":
                b["thinking"] = (b.get("thinking") or "") + (d.get("thinking") or "")
            elif dt == "input_json_delta":
                partial.setdefault(i, []).append(d.get("partial_json") or "")
        elif t == "message_delta":
            d = obj.get("delta") or {}
            if d.get("stop_reason"):
                r.finish_reason = d["stop_reason"]
            if obj.get("usage"):
                r.usage = _merge_usage(r.usage, usage(obj["usage"]))
        elif t == "error":
            err = obj.get("error") or {}
            r.error = str(err.get("message") or err.get("type") or "error")
    for i, frags in partial.items():
        if i in blocks:
            blocks[i]["input"] = "".join(frags)
    _apply_blocks(r, [blocks[i] for i in sorted(blocks)])
    return r
