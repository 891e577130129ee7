"""Decoders for the three APIs, on streams written after the providers' published formats."""

import gzip
import json

from agentcap_addons.wire.api.decode import (
    decode_request,
    decode_response,
    request_tools,
    sniff_model,
)
from agentcap_addons.wire.api.sse import parse_sse
from agentcap_addons.wire.capture.records import Capture


def sse(*objs, done=True, event_names=False) -> str:
    parts = []
    for o in objs:
        if event_names:
            parts.append(f"event: {o['type']}\ndata: {json.dumps(o)}\n\n")
        else:
            parts.append(f"data: {json.dumps(o)}\n\n")
    if done:
        parts.append("data: [DONE]\n\n")
    return "".join(parts)


def cap(api, raw=None, body=None, req=None, headers=None, raw_b64=None):
    resp = {"request_id": "r", "status_code": 200, "headers": headers or {}, "stream": body is None, "error": None}
    if raw is not None:
        resp["raw"] = raw
    if raw_b64 is not None:
        resp["raw_b64"] = raw_b64
    if body is not None:
        resp["body"] = body
    return Capture({"request_id": "r", "api": api, "body": req or {}}, resp)


def chunk(delta, finish=None, **extra):
    return {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


CHAT_TOOL_STREAM = sse(
    chunk({"role": "assistant", "content": None}),
    chunk({"reasoning_content": "think "}),
    chunk({"reasoning_content": "more"}),
    chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "read", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"pa"}}]}),
    chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "th\": \"a.py\"}"}}]}),
    chunk({}, finish="tool_calls"),
    {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-x", "choices": [],
     "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
               "prompt_tokens_details": {"cached_tokens": 64},
               "completion_tokens_details": {"reasoning_tokens": 12}}},
)


def test_chat_stream_tool_call_fragments_merged_by_index():
    r = decode_response(cap("openai-chat", raw=CHAT_TOOL_STREAM))
    assert r.model == "gpt-x"
    assert r.reasoning == "think more"
    assert [(t.id, t.name, t.arguments) for t in r.tool_calls] == [
        ("call_a", "read", '{"path": "a.py"}'),
        ("call_b", "ls", "{}"),
    ]
    assert r.tool_calls[0].parsed_arguments() == {"path": "a.py"}
    assert r.finish_reason == "tool_calls"
    u = r.usage
    assert (u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.reasoning_tokens) == (100, 20, 64, 12)


def test_chat_stream_text_and_gzip_content_encoding():
    raw = sse(chunk({"content": "Hel"}), chunk({"content": "lo"}), chunk({}, finish="stop")).encode()
    import base64

    c = cap("openai-chat", raw_b64=base64.b64encode(gzip.compress(raw)).decode(), headers={"content-encoding": "gzip"})
    r = decode_response(c)
    assert (r.content, r.finish_reason) == ("Hello", "stop")


def test_chat_non_stream():
    body = {"id": "x", "model": "m1", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "ok", "reasoning_content": "hmm",
        "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3}}
    r = decode_response(cap("openai-chat", body=body))
    assert (r.model, r.content, r.reasoning, r.finish_reason) == ("m1", "ok", "hmm", "tool_calls")
    assert r.tool_calls[0].name == "f" and r.usage.total_tokens == 8


def test_chat_request_messages_and_tools():
    req = {"model": "m", "tools": [{"type": "function", "function": {"name": "bash"}}], "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "out"},
    ]}
    msgs = decode_request(cap("openai-chat", req=req, body={}))
    assert [m.role for m in msgs] == ["system", "user", "assistant", "tool"]
    assert msgs[1].content == "look\n[image]"
    assert msgs[2].tool_calls[0].name == "bash" and msgs[3].tool_call_id == "t1"
    assert request_tools(req) == ["bash"]


RESP = {"id": "resp_1", "object": "response", "model": "gpt-5", "status": "in_progress", "output": []}
FC = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "shell", "arguments": ""}
MSG = {"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]}
RESPONSES_EVENTS = [
    {"type": "response.created", "sequence_number": 0, "response": RESP},
    {"type": "response.output_item.added", "output_index": 0, "item": {"id": "rs_1", "type": "reasoning", "summary": []}},
    {"type": "response.reasoning_summary_text.delta", "output_index": 0, "delta": "plan"},
    {"type": "response.output_item.added", "output_index": 1, "item": FC},
    {"type": "response.function_call_arguments.delta", "output_index": 1, "item_id": "fc_1", "delta": "{\"cmd\":"},
    {"type": "response.function_call_arguments.delta", "output_index": 1, "item_id": "fc_1", "delta": "\"ls\"}"},
    {"type": "response.output_item.added", "output_index": 2, "item": dict(MSG, content=[])},
    {"type": "response.output_text.delta", "output_index": 2, "content_index": 0, "delta": "Do"},
    {"type": "response.output_text.delta", "output_index": 2, "content_index": 0, "delta": "ne."},
]
COMPLETED = {"type": "response.completed", "response": dict(
    RESP, status="completed",
    output=[{"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "plan"}]},
            dict(FC, arguments="{\"cmd\":\"ls\"}"), MSG],
    usage={"input_tokens": 50, "input_tokens_details": {"cached_tokens": 10},
           "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 4}, "total_tokens": 59})}


def test_responses_stream_completed():
    raw = sse(*RESPONSES_EVENTS, COMPLETED, done=False, event_names=True)
    r = decode_response(cap("openai-responses", raw=raw))
    assert (r.id, r.model, r.content, r.reasoning, r.finish_reason) == ("resp_1", "gpt-5", "Done.", "plan", "completed")
    assert [(t.id, t.name, t.arguments) for t in r.tool_calls] == [("call_1", "shell", '{"cmd":"ls"}')]
    u = r.usage
    assert (u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.reasoning_tokens) == (50, 9, 10, 4)


def test_responses_stream_cut_short_uses_deltas():
    raw = sse(*RESPONSES_EVENTS, done=False, event_names=True)
    r = decode_response(cap("openai-responses", raw=raw))
    assert r.content == "Done." and r.tool_calls[0].arguments == '{"cmd":"ls"}'
    assert r.finish_reason is None and r.usage.prompt_tokens is None


def test_responses_incomplete_reason_and_request_items():
    body = dict(COMPLETED["response"], status="incomplete", incomplete_details={"reason": "max_output_tokens"})
    assert decode_response(cap("openai-responses", body=body)).finish_reason == "max_output_tokens"
    req = {"instructions": "be brief", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "files"},
    ]}
    msgs = decode_request(cap("openai-responses", req=req, body={}))
    assert [(m.role, m.content) for m in msgs] == [("system", "be brief"), ("user", "hi"), ("assistant", ""), ("tool", "files")]
    assert msgs[2].tool_calls[0].id == "c1" and msgs[3].tool_call_id == "c1"


ANTHROPIC_EVENTS = [
    {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                                          "content": [], "stop_reason": None,
                                          "usage": {"input_tokens": 20, "cache_read_input_tokens": 100,
                                                    "cache_creation_input_tokens": 5, "output_tokens": 1}}},
    {"type": "ping"},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "see."}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "abc"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Reading "}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "it."}},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"file_path\": \"/a"}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ".py\"}"}},
    {"type": "content_block_stop", "index": 2},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 42}},
    {"type": "message_stop"},
]


def test_anthropic_stream():
    raw = sse(*ANTHROPIC_EVENTS, done=False, event_names=True)
    r = decode_response(cap("anthropic-messages", raw=raw))
    assert (r.id, r.model, r.reasoning, r.content, r.finish_reason) == ("msg_1", "claude-x", "Let me see.", "Reading it.", "tool_use")
    assert [(t.id, t.name, t.parsed_arguments()) for t in r.tool_calls] == [("toolu_1", "Read", {"file_path": "/a.py"})]
    u = r.usage
    assert (u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.cache_creation_tokens) == (125, 42, 100, 5)


def test_anthropic_error_event_and_non_stream():
    raw = sse(ANTHROPIC_EVENTS[0], {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
              done=False, event_names=True)
    assert decode_response(cap("anthropic-messages", raw=raw)).error == "Overloaded"
    body = {"id": "m", "model": "c", "type": "message", "role": "assistant", "stop_reason": "end_turn",
            "content": [{"type": "text", "text": "hi"}], "usage": {"input_tokens": 3, "output_tokens": 1}}
    r = decode_response(cap("anthropic-messages", body=body))
    assert (r.content, r.finish_reason, r.usage.prompt_tokens) == ("hi", "end_turn", 3)


def test_anthropic_request_blocks():
    req = {"system": [{"type": "text", "text": "You are Claude Code."}], "messages": [
        {"role": "user", "content": "fix it"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                          {"type": "tool_use", "id": "tu1", "name": "Bash", "input": {"command": "ls"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": [{"type": "text", "text": "a.py"}]},
                                     {"type": "text", "text": "go on"}]},
    ]}
    msgs = decode_request(cap("anthropic-messages", req=req, body={}))
    assert [(m.role, m.content) for m in msgs] == [
        ("system", "You are Claude Code."), ("user", "fix it"), ("assistant", ""), ("tool", "a.py"), ("user", "go on")]
    assert msgs[2].reasoning == "hm" and msgs[2].tool_calls[0].parsed_arguments() == {"command": "ls"}


def test_sniff_model_finds_the_served_model_in_each_api():
    assert sniff_model(sse(*ANTHROPIC_EVENTS, done=False, event_names=True).encode()) == "claude-x"
    assert sniff_model(sse(*RESPONSES_EVENTS, done=False, event_names=True).encode()) == "gpt-5"
    assert sniff_model(CHAT_TOOL_STREAM.encode()) == "gpt-x"
    assert sniff_model(b'data: {"model": "org/m\\"q\\"", "x": 1}') == 'org/m"q"'
    assert sniff_model(b"data: {}") is None


def test_truncated_tool_arguments_stay_visible():
    raw = sse(chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "w", "arguments": "{\"a\": 1"}}]}), done=False)
    r = decode_response(cap("openai-chat", raw=raw))
    assert r.tool_calls[0].parsed_arguments() == '{"a": 1'
    assert len(parse_sse(raw)) == 1
