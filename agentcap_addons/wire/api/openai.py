"""Decoders for OpenAI chat completions and the Responses API, streamed and not."""

from __future__ import annotations

import json
from typing import Any

from agentcap_addons.wire.api.messages import (
    DecodedResponse,
    Message,
    ToolCall,
    Usage,
    as_int,
    qualified_name,
    text_of,
)
from agentcap_addons.wire.api.sse import SSEEvent
from agentcap_addons.wire.util.jsonio import fast_loads


def _events_json(events: list[SSEEvent]) -> list[dict[str, Any]]:
    out = []
    for ev in events:
        if ev.data.strip() == "[DONE]":
            continue
        try:
            obj = fast_loads(ev.data)
        except ValueError:
            continue
        if isinstance(obj, dict):
            if "type" not in obj and ev.event != "message":
                obj = {"type": ev.event, **obj}
            out.append(obj)
    return out


# ---------------------------------------------------------------- chat completions


def chat_request_messages(body: dict[str, Any]) -> list[Message]:
    out: list[Message] = []
    for m in body.get("messages") or []:
        if not isinstance(m, dict):
            continue
        calls = [
            ToolCall(
                id=c.get("id"),
                name=(c.get("function") or {}).get("name"),
                arguments=(c.get("function") or {}).get("arguments") or "",
                index=i,
            )
            for i, c in enumerate(m.get("tool_calls") or [])
            if isinstance(c, dict)
        ]
        out.append(
            Message(
                role=str(m.get("role") or ""),
                content=text_of(m.get("content")),
                reasoning=m.get("reasoning_content") or m.get("reasoning") or None,
                tool_calls=calls,
                tool_call_id=m.get("tool_call_id"),
                name=m.get("name"),
            )
        )
    return out


def chat_usage(u: Any) -> Usage:
    if not isinstance(u, dict):
        return Usage()
    pd = u.get("prompt_tokens_details") or {}
    cd = u.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=as_int(u.get("prompt_tokens")),
        completion_tokens=as_int(u.get("completion_tokens")),
        cached_tokens=as_int(pd.get("cached_tokens")),
        reasoning_tokens=as_int(cd.get("reasoning_tokens")),
    )


def chat_response(body: Any) -> DecodedResponse:
    r = DecodedResponse()
    if not isinstance(body, dict):
        return r
    r.id, r.model = body.get("id"), body.get("model")
    if "error" in body:
        r.error = _error_text(body["error"])
    choices = body.get("choices") or []
    if choices and isinstance(choices[0], dict):
        c = choices[0]
        msg = c.get("message") or {}
        r.content = text_of(msg.get("content"))
        r.reasoning = msg.get("reasoning_content") or msg.get("reasoning") or ""
        r.tool_calls = [
            ToolCall(
                id=t.get("id"),
                name=(t.get("function") or {}).get("name"),
                arguments=(t.get("function") or {}).get("arguments") or "",
                index=i,
            )
            for i, t in enumerate(msg.get("tool_calls") or [])
        ]
        r.finish_reason = c.get("finish_reason")
        if r.finish_reason is None and "text" in c:  # legacy /v1/completions
            r.content = c.get("text") or ""
        elif "text" in c and not r.content:
            r.content = c.get("text") or ""
    r.usage = chat_usage(body.get("usage"))
    return r


def chat_stream(events: list[SSEEvent]) -> DecodedResponse:
    """Merge ``delta`` chunks of choice 0; tool call argument fragments are joined by ``index``."""
    r = DecodedResponse(events=len(events))
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, ToolCall] = {}
    for obj in _events_json(events):
        if "error" in obj:
            r.error = _error_text(obj["error"])
        r.id = r.id or obj.get("id")
        r.model = r.model or obj.get("model")
        if obj.get("usage"):
            r.usage = chat_usage(obj["usage"])
        for ch in obj.get("choices") or []:
            if not isinstance(ch, dict) or (ch.get("index") or 0) != 0:
                continue
            d = ch.get("delta") or {}
            if "text" in ch and isinstance(ch["text"], str):  # legacy completions stream
                content.append(ch["text"])
            if isinstance(d.get("content"), str):
                content.append(d["content"])
            rc = d.get("reasoning_content") or d.get("reasoning")
            if isinstance(rc, str):
                reasoning.append(rc)
            for t in d.get("tool_calls") or []:
                idx = t.get("index", len(calls))
                call = calls.setdefault(idx, ToolCall(id=None, name=None, index=idx))
                if t.get("id"):
                    call.id = t["id"]
                fn = t.get("function") or {}
                name = fn.get("name")
                if name and name != call.name:
                    # most servers send the name once; a few repeat it, a few split it
                    call.name = (call.name or "") + name
                if fn.get("arguments"):
                    call.arguments += fn["arguments"]
            if ch.get("finish_reason"):
                r.finish_reason = ch["finish_reason"]
    r.content = "".join(content)
    r.reasoning = "".join(reasoning)
    r.tool_calls = [calls[k] for k in sorted(calls)]
    return r


# ---------------------------------------------------------------- Responses API


def responses_request_messages(body: dict[str, Any]) -> list[Message]:
    out: list[Message] = []
    if body.get("instructions"):
        out.append(Message(role="system", content=text_of(body["instructions"])))
    items = body.get("input")
    if isinstance(items, str):
        return out + [Message(role="user", content=items)]
    for it in items or []:
        if not isinstance(it, dict):
            continue
        kind = it.get("type") or ("message" if "role" in it else None)
        if kind == "message":
            out.append(Message(role=str(it.get("role") or ""), content=text_of(it.get("content"))))
        elif kind == "function_call" or kind == "custom_tool_call":
            call = ToolCall(
                id=it.get("call_id") or it.get("id"),
                name=_call_name(it),
                arguments=it.get("arguments") or it.get("input") or "",
            )
            if out and out[-1].role == "assistant" and not out[-1].tool_call_id:
                call.index = len(out[-1].tool_calls)
                out[-1].tool_calls.append(call)
            else:
                out.append(Message(role="assistant", tool_calls=[call]))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            out.append(
                Message(role="tool", content=text_of(it.get("output")), tool_call_id=it.get("call_id"))
            )
        elif kind == "reasoning":
            text = text_of(it.get("summary")) or text_of(it.get("content"))
            out.append(Message(role="assistant", reasoning=text or None))
    return out


def responses_usage(u: Any) -> Usage:
    if not isinstance(u, dict):
        return Usage()
    return Usage(
        prompt_tokens=as_int(u.get("input_tokens")),
        completion_tokens=as_int(u.get("output_tokens")),
        cached_tokens=as_int((u.get("input_tokens_details") or {}).get("cached_tokens")),
        reasoning_tokens=as_int((u.get("output_tokens_details") or {}).get("reasoning_tokens")),
    )


def _responses_finish(resp: dict[str, Any]) -> str | None:
    status = resp.get("status")
    if status == "incomplete":
        return (resp.get("incomplete_details") or {}).get("reason") or "incomplete"
    return status


def _apply_output_items(r: DecodedResponse, items: list[Any]) -> None:
    content: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for it in items:
        if not isinstance(it, dict):
            continue
        kind = it.get("type")
        if kind == "message":
            content.append(text_of(it.get("content")))
        elif kind == "reasoning":
            reasoning.append(text_of(it.get("summary")) or text_of(it.get("content")))
        elif kind in ("function_call", "custom_tool_call"):
            calls.append(
                ToolCall(
                    id=it.get("call_id") or it.get("id"),
                    name=_call_name(it),
                    arguments=it.get("arguments") or it.get("input") or "",
                    index=len(calls),
                )
            )
    r.content = "".join(content)
    r.reasoning = "".join(reasoning)
    r.tool_calls = calls


def responses_response(body: Any) -> DecodedResponse:
    r = DecodedResponse()
    if not isinstance(body, dict):
        return r
    r.id, r.model = body.get("id"), body.get("model")
    if body.get("error"):
        r.error = _error_text(body["error"])
    _apply_output_items(r, body.get("output") or [])
    r.finish_reason = _responses_finish(body)
    r.usage = responses_usage(body.get("usage"))
    return r


_FINAL = ("response.completed", "response.incomplete", "response.failed", "response.done")


def responses_stream(events: list[SSEEvent]) -> DecodedResponse:
    """From the final ``response.completed`` (or incomplete / failed) when it arrived, else from
    the deltas seen so far (a stream cut short)."""
    objs = _events_json(events)
    r = DecodedResponse(events=len(events))
    final: dict[str, Any] | None = None
    items: dict[int, dict[str, Any]] = {}
    text: list[str] = []
    reasoning: list[str] = []
    args: dict[int, list[str]] = {}
    for obj in objs:
        t = obj.get("type")
        resp = obj.get("response")
        if isinstance(resp, dict):
            r.id = r.id or resp.get("id")
            r.model = r.model or resp.get("model")
            if t in _FINAL:
                final = resp
        if t == "error" or (t == "response.failed" and isinstance(resp, dict) and resp.get("error")):
            r.error = _error_text(obj.get("error") or (resp or {}).get("error") or obj)
        elif t == "response.output_item.added" or t == "response.output_item.done":
            items[int(obj.get("output_index") or 0)] = dict(obj.get("item") or {})
        elif t == "response.output_text.delta":
            text.append(obj.get("delta") or "")
        elif t in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            reasoning.append(obj.get("delta") or "")
        elif t == "response.function_call_arguments.delta":
            args.setdefault(int(obj.get("output_index") or 0), []).append(obj.get("delta") or "")
    if final is not None and final.get("output"):
        _apply_output_items(r, final["output"])
    else:
        calls: list[ToolCall] = []
        for idx in sorted(items):
            it = items[idx]
            if it.get("type") in ("function_call", "custom_tool_call"):
                a = it.get("arguments") or "".join(args.get(idx, []))
                calls.append(
                    ToolCall(id=it.get("call_id") or it.get("id"), name=_call_name(it), arguments=a, index=len(calls))
                )
        r.tool_calls = calls
        r.content = "".join(text)
        r.reasoning = "".join(reasoning)
    if final is not None:
        r.finish_reason = _responses_finish(final)
        r.usage = responses_usage(final.get("usage"))
    return r


def _error_text(err: Any) -> str:
    if isinstance(err, dict):
        return str(err.get("message") or err.get("type") or json.dumps(err))
    return str(err)


def _call_name(item: dict[str, Any]) -> str | None:
    """A Responses call item's tool name, qualified by its namespace when it has one."""
    name = item.get("name")
    return qualified_name(item.get("namespace"), name) if name else name
