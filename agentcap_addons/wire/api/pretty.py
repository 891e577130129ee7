"""LLM calls as readable text: a request as its message list, a response (JSON or SSE) decoded.

Used by the mitmproxy contentview and by ``agentcap inspect``'s previews. Pure: no mitmproxy import.
Lines are (style, text) pairs so each UI can colour them its own way.
"""

from __future__ import annotations

import json
from typing import Any

from agentcap_addons.wire.api.decode import (
    decode_body,
    decode_events,
    request_messages,
    request_tools,
)
from agentcap_addons.wire.api.messages import DecodedResponse, Message
from agentcap_addons.wire.api.sse import parse_sse

Line = tuple[str, str]  # (style: header | text | tool | meta | error, text)


def _wrap(style: str, text: str) -> list[Line]:
    return [(style, line) for line in (text.splitlines() or [""])]


def _args(arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            return json.dumps(json.loads(arguments), ensure_ascii=False)
        except ValueError:
            return arguments
    return json.dumps(arguments, ensure_ascii=False)


def message_lines(m: Message) -> list[Line]:
    head = f"── {m.role}" + (f" [{m.tool_call_id}]" if m.tool_call_id else "") + (f" {m.name}" if m.name else "") + " ──"
    out: list[Line] = [("header", head)]
    if m.reasoning:
        out += [("meta", "(reasoning)"), *_wrap("meta", m.reasoning)]
    if m.content:
        out += _wrap("text", m.content)
    for call in m.tool_calls:
        out.append(("tool", f"→ {call.name}({_args(call.arguments)})" + (f"  [{call.id}]" if call.id else "")))
    return out


def request_lines(api: str, body: Any) -> list[Line]:
    if not isinstance(body, dict):
        return [("error", "not a JSON object")]
    tools = request_tools(body)
    flags = [api, f"model {body.get('model')}", "stream" if body.get("stream") else "no stream"]
    if tools:
        flags.append(f"{len(tools)} tools: {', '.join(tools[:12])}{' …' if len(tools) > 12 else ''}")
    out: list[Line] = [("meta", " · ".join(flags))]
    for m in request_messages(api, body):
        out += message_lines(m)
    return out


def response_lines(r: DecodedResponse) -> list[Line]:
    u = r.usage
    usage = (f"prompt {u.prompt_tokens} / completion {u.completion_tokens}"
             + (f" (cached {u.cached_tokens})" if u.cached_tokens else "")
             + (f" (reasoning {u.reasoning_tokens})" if u.reasoning_tokens else "")) if u.prompt_tokens is not None else "no usage"
    out: list[Line] = [("meta", f"model {r.model} · finish {r.finish_reason} · {usage}")]
    if r.error:
        out.append(("error", f"error: {r.error}"))
    if r.reasoning:
        out += [("header", "── reasoning ──"), *_wrap("meta", r.reasoning)]
    if r.content:
        out += [("header", "── content ──"), *_wrap("text", r.content)]
    if r.tool_calls:
        out.append(("header", "── tool calls ──"))
        out += [("tool", f"→ {c.name}({_args(c.arguments)})" + (f"  [{c.id}]" if c.id else "")) for c in r.tool_calls]
    return out


def decode_response_bytes(api: str, data: bytes, stream: bool | None = None) -> DecodedResponse:
    """A response body (SSE or JSON) decoded; ``stream`` None: sniffed from the bytes."""
    text = data.lstrip()
    if stream is None:
        stream = not text.startswith((b"{", b"["))
    if stream:
        return decode_events(api, parse_sse(data))
    try:
        return decode_body(api, json.loads(data))
    except ValueError as exc:
        return DecodedResponse(error=f"not JSON: {exc}")


def as_text(lines: list[Line]) -> str:
    return "\n".join(text for _, text in lines)
