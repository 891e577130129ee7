"""Render one model reply (text, reasoning, tool calls) as each API puts it on the wire.

Used by the scripted upstream: the same :class:`Reply` becomes an OpenAI chat completion, a
Responses API response or an Anthropic message, streamed (SSE chunks) or not, in the shapes the
official SDKs parse. Everything is a function of the reply and a seed string, so the same request
always gets the same bytes (ids are hashes, ``created`` is fixed, token counts are estimates).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from agentcap_addons.wire.capture.policy import API_ANTHROPIC, API_OPENAI_RESPONSES

CREATED = 1_767_225_600  # 2026-01-01T00:00:00Z: fixed, so responses are byte-identical


@dataclass
class ToolCallSpec:
    name: str
    arguments: str  # JSON text, sent as is (and in fragments when streamed)
    namespace: str | None = None  # Responses API: the tool sits in this namespace (``name`` is its own)


@dataclass
class Reply:
    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    chunk_size: int = 16  # characters per streamed text / argument fragment
    delay_ms: float = 0.0  # pause between streamed chunks


@dataclass
class Rendered:
    """A response ready to send: status, type, body chunks, and how to pace them."""

    status: int
    content_type: str
    chunks: list[bytes]  # one element for a non-streamed body
    delay_ms: float = 0.0  # the same pause between every two chunks
    pauses_ms: list[float] | None = None  # or one pause before each chunk (recorded timing)
    headers: dict[str, str] = field(default_factory=dict)  # extra headers (content-encoding …)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def _id(seed: str, kind: str, n: int = 24) -> str:
    return hashlib.sha256(f"{seed}/{kind}".encode()).hexdigest()[:n]


def _frags(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def estimate_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def _j(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def render(api: str, reply: Reply, request: dict[str, Any], seed: str, model: str | None = None) -> Rendered:
    """The response to ``request`` (its parsed body) for ``api``; streamed when the request asked."""
    model = model or str(request.get("model") or "agentcap-scripted")
    prompt_tokens = estimate_tokens(_j(request.get("messages") or request.get("input") or ""))
    out_text = reply.text + reply.reasoning + "".join(t.arguments for t in reply.tool_calls)
    usage = (prompt_tokens, estimate_tokens(out_text) if out_text else 1)
    stream = bool(request.get("stream"))
    if api == API_OPENAI_RESPONSES:
        return _responses(reply, request, seed, model, usage, stream)
    if api == API_ANTHROPIC:
        return _anthropic(reply, seed, model, usage, stream)
    return _chat(reply, request, seed, model, usage, stream)


def _json(obj: Any) -> Rendered:
    return Rendered(200, "application/json", [_j(obj).encode()])


def _sse(events: list[tuple[str | None, Any]], delay_ms: float, done: bool = False) -> Rendered:
    chunks = []
    for name, obj in events:
        head = f"event: {name}\n" if name else ""
        chunks.append(f"{head}data: {_j(obj)}\n\n".encode())
    if done:
        chunks.append(b"data: [DONE]\n\n")
    return Rendered(200, "text/event-stream", chunks, delay_ms)


# ------------------------------------------------------------------------- chat completions


def _chat(reply: Reply, request: dict[str, Any], seed: str, model: str, usage: tuple[int, int], stream: bool) -> Rendered:
    cid = "chatcmpl-" + _id(seed, "chat")
    calls: list[dict[str, Any]] = [{"id": "call_" + _id(seed, f"call{i}"), "type": "function",
              "function": {"name": t.name, "arguments": t.arguments}} for i, t in enumerate(reply.tool_calls)]
    finish = "tool_calls" if calls else "stop"
    u = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": usage[0] + usage[1]}
    if not stream:
        msg: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.reasoning:
            msg["reasoning_content"] = reply.reasoning
        if calls:
            msg["tool_calls"] = calls
        return _json({"id": cid, "object": "chat.completion", "created": CREATED, "model": model,
                      "choices": [{"index": 0, "message": msg, "finish_reason": finish, "logprobs": None}],
                      "usage": u})

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> tuple[str | None, Any]:
        return None, {"id": cid, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                      "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}

    events: list[tuple[str | None, Any]] = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"reasoning_content": f}) for f in _frags(reply.reasoning, reply.chunk_size)] if reply.reasoning else []
    events += [chunk({"content": f}) for f in _frags(reply.text, reply.chunk_size)] if reply.text else []
    for i, c in enumerate(calls):
        head = {"index": i, "id": c["id"], "type": "function", "function": {"name": c["function"]["name"], "arguments": ""}}
        events.append(chunk({"tool_calls": [head]}))
        for f in _frags(c["function"]["arguments"], reply.chunk_size):
            events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": f}}]}))
    events.append(chunk({}, finish))
    if (request.get("stream_options") or {}).get("include_usage"):
        events.append((None, {"id": cid, "object": "chat.completion.chunk", "created": CREATED, "model": model,
                              "choices": [], "usage": u}))
    return _sse(events, reply.delay_ms, done=True)


# ------------------------------------------------------------------------- Responses API


def _responses(reply: Reply, request: dict[str, Any], seed: str, model: str, usage: tuple[int, int], stream: bool) -> Rendered:
    rid = "resp_" + _id(seed, "resp")
    items: list[dict[str, Any]] = []
    if reply.reasoning:
        items.append({"id": "rs_" + _id(seed, "rs"), "type": "reasoning",
                      "summary": [{"type": "summary_text", "text": reply.reasoning}]})
    if reply.text:
        items.append({"id": "msg_" + _id(seed, "msg"), "type": "message", "status": "completed", "role": "assistant",
                      "content": [{"type": "output_text", "text": reply.text, "annotations": []}]})
    for i, t in enumerate(reply.tool_calls):
        item = {"id": "fc_" + _id(seed, f"fc{i}"), "type": "function_call", "status": "completed",
                "call_id": "call_" + _id(seed, f"call{i}"), "name": t.name, "arguments": t.arguments}
        if t.namespace:
            item["namespace"] = t.namespace
        items.append(item)
    u = {"input_tokens": usage[0], "input_tokens_details": {"cached_tokens": 0},
         "output_tokens": usage[1], "output_tokens_details": {"reasoning_tokens": 0},
         "total_tokens": usage[0] + usage[1]}
    base = {"id": rid, "object": "response", "created_at": CREATED, "model": model,
            "instructions": request.get("instructions"), "tools": request.get("tools") or [],
            "parallel_tool_calls": True, "tool_choice": request.get("tool_choice") or "auto"}
    final = {**base, "status": "completed", "output": items, "usage": u, "error": None, "incomplete_details": None}
    if not stream:
        return _json(final)
    seq = 0
    events: list[tuple[str | None, Any]] = []

    def ev(kind: str, **fields: Any) -> None:
        nonlocal seq
        events.append((kind, {"type": kind, "sequence_number": seq, **fields}))
        seq += 1

    ev("response.created", response={**base, "status": "in_progress", "output": [], "usage": None})
    ev("response.in_progress", response={**base, "status": "in_progress", "output": [], "usage": None})
    for idx, item in enumerate(items):
        kind = item["type"]
        if kind == "message":
            ev("response.output_item.added", output_index=idx, item={**item, "status": "in_progress", "content": []})
            part = {"type": "output_text", "text": "", "annotations": []}
            ev("response.content_part.added", item_id=item["id"], output_index=idx, content_index=0, part=part)
            for f in _frags(reply.text, reply.chunk_size):
                ev("response.output_text.delta", item_id=item["id"], output_index=idx, content_index=0, delta=f)
            ev("response.output_text.done", item_id=item["id"], output_index=idx, content_index=0, text=reply.text)
            ev("response.content_part.done", item_id=item["id"], output_index=idx, content_index=0,
               part=item["content"][0])
        elif kind == "function_call":
            ev("response.output_item.added", output_index=idx, item={**item, "status": "in_progress", "arguments": ""})
            for f in _frags(item["arguments"], reply.chunk_size):
                ev("response.function_call_arguments.delta", item_id=item["id"], output_index=idx, delta=f)
            ev("response.function_call_arguments.done", item_id=item["id"], output_index=idx,
               arguments=item["arguments"])
        else:
            ev("response.output_item.added", output_index=idx, item={**item, "summary": []})
        ev("response.output_item.done", output_index=idx, item=item)
    ev("response.completed", response=final)
    return _sse(events, reply.delay_ms)


# ------------------------------------------------------------------------- Anthropic Messages


def _anthropic(reply: Reply, seed: str, model: str, usage: tuple[int, int], stream: bool) -> Rendered:
    mid = "msg_" + _id(seed, "msg")
    blocks: list[dict[str, Any]] = []
    if reply.reasoning:
        blocks.append({"type": "thinking", "thinking": reply.reasoning, "signature": _id(seed, "sig", 32)})
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    for i, t in enumerate(reply.tool_calls):
        try:
            inp = json.loads(t.arguments) if t.arguments else {}
        except ValueError:
            inp = {}
        blocks.append({"type": "tool_use", "id": "toolu_" + _id(seed, f"call{i}"), "name": t.name, "input": inp})
    stop = "tool_use" if reply.tool_calls else "end_turn"
    u = {"input_tokens": usage[0], "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
         "output_tokens": usage[1]}
    msg = {"id": mid, "type": "message", "role": "assistant", "model": model, "content": blocks,
           "stop_reason": stop, "stop_sequence": None, "usage": u}
    if not stream:
        return _json(msg)
    events: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": {**msg, "content": [], "stop_reason": None,
                                                                 "usage": {**u, "output_tokens": 1}}}),
    ]
    for i, b in enumerate(blocks):
        kind = b["type"]
        if kind == "text":
            events.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                   "content_block": {"type": "text", "text": ""}}))
            for f in _frags(b["text"], reply.chunk_size):
                events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                       "delta": {"type": "text_delta", "text": f}}))
        elif kind == "thinking":
            events.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                   "content_block": {"type": "thinking", "thinking": "", "signature": ""}}))
            for f in _frags(b["thinking"], reply.chunk_size):
                events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                       "delta": {"type": "thinking_delta", "thinking": f}}))
            events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                   "delta": {"type": "signature_delta", "signature": b["signature"]}}))
        else:
            events.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                   "content_block": {**b, "input": {}}}))
            for f in _frags(_j(b["input"]), reply.chunk_size):
                events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                       "delta": {"type": "input_json_delta", "partial_json": f}}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": {"output_tokens": usage[1]}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return _sse(events, reply.delay_ms)


def error_body(api: str, status: int, message: str, kind: str) -> Rendered:
    """An error in the API's own shape, so SDKs raise it with ``message`` readable."""
    if api == API_ANTHROPIC:
        body = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": kind, "code": kind, "param": None}}
    return Rendered(status, "application/json", [_j(body).encode()])


def models_list(models: list[str]) -> Rendered:
    return _json({"object": "list", "data": [{"id": m, "object": "model", "created": CREATED, "owned_by": "agentcap"}
                                             for m in models]})
