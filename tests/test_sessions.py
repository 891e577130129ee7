"""Sessions from the wire, without podman or a proxy: the chat shape of the three APIs, finish
reasons, threads on interleaved conversations, sessions rebuilt across turns, the Session Trace
Simple Format and its schema, and each agent's native trace read into the same shape."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agentcap_addons.wire.api.messages import DecodedResponse, ToolCall
from agentcap_addons.wire.api.sessions import (
    CallInfo,
    Loaded,
    Segment,
    ThreadTracker,
    chat_messages,
    chat_tools,
    continues,
    fingerprint,
    normalise_finish,
    rebuild,
    reply_message,
    request_fingerprints,
)
from agentcap_cli.sessions.native import read_native
from agentcap_cli.sessions.schema import SCHEMA, Counts, compare, sts_text, validate
from agentcap_cli.sessions.stores import hermes_export


def m(role: str, content: str = "", calls: list[dict[str, Any]] | None = None, tool_call_id: str | None = None,
      reasoning: str | None = None, name: str | None = None) -> dict[str, Any]:
    return {"role": role, "content": content, "reasoning_content": reasoning, "tool_calls": calls,
            "tool_call_id": tool_call_id, "name": name}


def tc(id_: str, name: str, args: str) -> dict[str, Any]:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}


# -- the chat shape ----------------------------------------------------------------------------------

def test_chat_completions_map_to_themselves():
    body = {"model": "x", "messages": [
        {"role": "system", "content": "be brief"}, {"role": "developer", "content": "dev note"},
        {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:"}}]},
        {"role": "assistant", "content": None, "reasoning_content": "hmm",
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{\"cmd\": \"ls\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a.txt"}]}
    assert chat_messages("openai-chat", body) == [
        m("system", "be brief"), m("system", "dev note"), m("user", "look\n[image]"),
        m("assistant", "", [tc("c1", "bash", "{\"cmd\": \"ls\"}")], reasoning="hmm"), m("tool", "a.txt", tool_call_id="c1")]


def test_responses_items_map_field_by_field():
    body = {"model": "x", "instructions": "you are codex", "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix it"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}], "encrypted_content": "xx"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "looking"}]},
        {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}"},
        {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
        {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "c2", "output": "ok"}],
        "tools": [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
                  {"type": "namespace", "name": "mcp__slack", "tools": [{"name": "post", "description": "d"}]},
                  {"type": "web_search"}]}
    assert chat_messages("openai-responses", body) == [
        m("system", "you are codex"), m("system", "rules"), m("user", "fix it"),
        m("assistant", "looking", [tc("c1", "exec_command", "{\"cmd\":\"ls\"}")], reasoning="think"),
        m("tool", "a.txt", tool_call_id="c1"),
        m("assistant", "", [tc("c2", "apply_patch", "*** Begin Patch")]), m("tool", "ok", tool_call_id="c2")]
    assert chat_tools(body) == [
        {"type": "function", "function": {"name": "exec_command", "description": None, "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "mcp__slack__post", "description": "d"}}]


def test_anthropic_blocks_map_field_by_field():
    body = {"model": "x", "system": [{"type": "text", "text": "you are claude", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "plan", "signature": "s"},
                                                  {"type": "text", "text": "let me look"},
                                                  {"type": "tool_use", "id": "tu1", "name": "Bash", "input": {"command": "ls"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "a.txt"},
                                             {"type": "text", "text": "and now?"}]}],
            "tools": [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]}
    assert chat_messages("anthropic-messages", body) == [
        m("system", "you are claude"), m("user", "hi"),
        m("assistant", "let me look", [tc("tu1", "Bash", "{\"command\": \"ls\"}")], reasoning="plan"),
        m("tool", "a.txt", tool_call_id="tu1"), m("user", "and now?")]
    assert chat_tools(body)[0]["function"] == {"name": "Bash", "description": "run", "parameters": {"type": "object"}}


def test_a_reply_is_an_assistant_message():
    r = DecodedResponse(content="done", reasoning="r", tool_calls=[ToolCall("c9", "bash", "{}")])
    assert reply_message(r) == m("assistant", "done", [tc("c9", "bash", "{}")], reasoning="r")


@pytest.mark.parametrize("raw,calls,failed,expect", [
    ("stop", 0, False, "stop"), ("stop", 2, False, "tool_calls"), ("tool_calls", 1, False, "tool_calls"),
    ("length", 0, False, "length"), ("content_filter", 0, False, "content_filter"), ("end_turn", 0, False, "stop"),
    ("tool_use", 1, False, "tool_calls"), ("max_tokens", 0, False, "length"), ("refusal", 0, False, "content_filter"),
    ("stop_sequence", 0, False, "stop"), ("completed", 0, False, "stop"), ("completed", 1, False, "tool_calls"),
    ("max_output_tokens", 0, False, "length"), ("failed", 0, False, "error"), ("stop", 0, True, "error"),
    (None, 0, True, "error"), ("whatever", 0, False, None), (None, 0, False, None),
])
def test_finish_reasons_are_normalised(raw, calls, failed, expect):
    assert normalise_finish(raw, calls, failed) == expect


# -- threads -----------------------------------------------------------------------------------------

def chat_body(*msgs: dict[str, Any]) -> dict[str, Any]:
    return {"model": "x", "messages": list(msgs)}


def conversation(prompt: str, call_id: str) -> list[dict[str, Any]]:
    """The request bodies of a three-call conversation: prompt, tool call, tool result, answer."""
    sys_, user = {"role": "system", "content": "you are an agent"}, {"role": "user", "content": prompt}
    asked = {"role": "assistant", "content": "", "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "bash", "arguments": "{}"}}]}
    result = {"role": "tool", "tool_call_id": call_id, "content": "out"}
    done = {"role": "assistant", "content": "done"}
    return [chat_body(sys_, user), chat_body(sys_, user, asked, result),
            chat_body(sys_, user, asked, result, done, {"role": "user", "content": "and?"})]


def test_interleaved_conversations_get_their_own_threads():
    a, b = conversation("fix a", "ca"), conversation("fix b", "cb")
    same = conversation("fix a", "cz")  # the same start as a, run side by side
    order = [("a0", a[0]), ("b0", b[0]), ("z0", same[0]), ("title", chat_body({"role": "user", "content": "title?"})),
             ("b1", b[1]), ("a1", a[1]), ("z1", same[1]), ("a2", a[2]), ("b2", b[2]), ("z2", same[2])]
    t = ThreadTracker()
    got = {}
    for rid, body in order:
        # each call's reply is what the next call of its conversation repeats (export passes it the same way)
        nxt = next((b for r, b in order if r[0] == rid[0] and r[1:].isdigit() and rid[1:].isdigit()
                    and int(r[1:]) == int(rid[1:]) + 1), None)
        reply = fingerprint(chat_messages("openai-chat", nxt)[len(body["messages"])]) if nxt else None
        got[rid] = t.assign(None, rid, request_fingerprints("openai-chat", body), True, reply)[0]
    assert got == {"a0": "a0", "a1": "a0", "a2": "a0", "b0": "b0", "b1": "b0", "b2": "b0",
                                              "z0": "z0", "z1": "z0", "z2": "z0", "title": "title"}


def test_a_retry_after_a_failure_stays_in_the_thread_and_tasks_never_share_one():
    a = conversation("fix a", "ca")
    t = ThreadTracker()
    fps = [request_fingerprints("openai-chat", b) for b in a]
    assert t.assign("t1", "r1", fps[0], False)[0] == "r1"
    assert t.assign("t1", "r2", fps[0], True)[0] == "r1"  # the retry of a failed call
    assert t.assign("t2", "r3", fps[1], True)[0] == "r3"  # another task: another thread
    assert t.assign("t1", "r4", fps[1], True) == ("r1", 4)


def test_memory_is_bounded_a_long_idle_conversation_starts_anew():
    t = ThreadTracker(limit=2)
    a, b, c = (conversation(p, f"c{p}") for p in ("fix a", "fix b", "fix c"))
    fp = lambda body: request_fingerprints("openai-chat", body)  # noqa: E731
    assert [t.assign(None, r, fp(x[0]), True)[0] for r, x in (("a0", a), ("b0", b))] == ["a0", "b0"]
    assert t.assign(None, "b1", fp(b[1]), True)[0] == "b0"
    assert t.assign(None, "c0", fp(c[0]), True)[0] == "c0"  # a, idle longest, is forgotten
    assert t.assign(None, "a1", fp(a[1]), True)[0] == "a1" and t.assign(None, "c1", fp(c[1]), True)[0] == "c0"
    assert len(t._recent) == 2 and sum(map(len, t._index.values())) == 2


def test_a_previous_response_id_continues_that_call():
    t = ThreadTracker()
    first = request_fingerprints("openai-responses", {"input": [{"type": "message", "role": "user", "content": "go"}]})
    assert t.assign(None, "r1", first, True, reply=11, response_id="resp_1") == ("r1", 1)
    more = request_fingerprints("openai-responses", {"input": [{"type": "function_call_output", "call_id": "c",
                                                               "output": "x"}], "previous_response_id": "resp_1"})
    assert t.assign(None, "r2", more, True, response_id="resp_2", previous_response_id="resp_1") == ("r1", 3)


# -- sessions ---------------------------------------------------------------------------------------

def loader(bodies: dict[str, dict[str, Any]], replies: dict[str, dict[str, Any] | None]):
    return lambda rid: Loaded(chat_messages("openai-chat", bodies[rid]), replies.get(rid), chat_tools(bodies[rid]))


def info(rid: str, seq: int, turn: int, thread: str, n: int, ok: bool = True, **kw: Any) -> CallInfo:
    return CallInfo(rid, seq, thread, turn, ok, task_id="t1", n_messages=n, captured_us=seq * 1_000_000,
                    duration_ms=500, model="x", **kw)


def test_a_session_is_the_last_call_of_the_last_turn_plus_its_reply():
    a = conversation("fix a", "ca")
    title = chat_body({"role": "user", "content": "title for: fix a"})
    bodies = {"r1": a[0], "t": title, "r2": a[1], "r3": a[2]}
    replies = {"r1": m("assistant", "", [tc("ca", "bash", "{}")]), "t": m("assistant", "A title"),
               "r2": m("assistant", "done"), "r3": m("assistant", "all good")}
    calls = [info("r1", 1, 1, "r1", 2), info("t", 2, 1, "t", 1), info("r2", 3, 1, "r1", 4), info("r3", 4, 2, "r1", 6)]
    s = rebuild(calls, loader(bodies, replies))
    assert s.messages == [*chat_messages("openai-chat", a[2]), replies["r3"]]
    assert [c.request_id for c in s.final] == ["r2", "r3"] and s.threads == 2 and len(s.segments) == 1
    assert [c.request_id for c in s.calls] == ["r1", "t", "r2", "r3"]  # side calls count (tokens, n_calls)


def test_failed_calls_are_left_out_unless_asked_and_fresh_turns_add_a_context():
    a, b = conversation("fix a", "ca"), conversation("turn two, afresh", "cb")
    bodies = {"r1": a[0], "r2": a[1], "r3": b[0], "r4": b[1]}
    replies = {"r1": m("assistant", "", [tc("ca", "bash", "{}")]), "r2": m("assistant", "done"),
               "r3": m("assistant", "", [tc("cb", "bash", "{}")]), "r4": None}
    calls = [info("r1", 1, 1, "r1", 2), info("r2", 2, 1, "r1", 4), info("r3", 3, 2, "r3", 2),
             info("r4", 4, 2, "r3", 4, ok=False)]
    s = rebuild(calls, loader(bodies, replies))
    assert len(s.segments) == 2 and [c.request_id for c in s.calls] == ["r1", "r2", "r3"]
    assert s.messages == [*chat_messages("openai-chat", a[1]), replies["r2"], *chat_messages("openai-chat", b[0]),
                          replies["r3"]]
    with_failed = rebuild(calls, loader(bodies, replies), with_failed=True)
    assert with_failed.messages[-4:] == chat_messages("openai-chat", b[1])  # its request, no reply


def test_a_rewritten_history_still_continues_the_session():
    first = [m("system", "s"), m("user", "do it\n<reminder>date</reminder>")]
    reply = m("assistant", "did it")
    rewritten = [m("system", "s"), m("user", "do it"), m("assistant", " did it "), m("user", "<reminder>date</reminder>"),
                 m("user", "go on")]
    seg = Segment([*first, reply], [], sent=2)
    assert continues(seg, rewritten) == 2  # the reminder moved out: the same messages, one text cut
    moved = [m("system", "s"), m("user", "example"), m("assistant", "ok"), m("user", "do it"), reply, m("user", "go on")]
    assert continues(seg, moved) == 1  # rearranged: the last reply is there, with more after it
    assert continues(seg, [m("system", "s"), m("user", "another task"), reply]) == 0


# -- the Session Trace Simple Format -----------------------------------------------------------------

def test_sts_files_validate_and_bad_ones_do_not():
    text = sts_text({"harness": "opencode", "id": "s1", "name": "fix it", "run_id": "r", "task_id": None},
                    [m("system", "s"), m("user", "fix it"), {**m("assistant", "", [tc("c1", "bash", "{}")],
                                                                 reasoning="hm"), "timestamp": 1700000000000, "model": "x"},
                     m("tool", "out", tool_call_id="c1"), m("developer", "becomes system")])
    assert validate(text) == []
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0] == {"type": "session", "harness": "opencode", "id": "s1", "name": "fix it", "run_id": "r"}
    assert lines[3]["message"] == {"role": "assistant", "content": "", "reasoningContent": "hm", "model": "x",
                                   "toolCalls": [{"id": "c1", "function": {"name": "bash", "arguments": "{}"}}],
                                   "timestamp": 1700000000000}
    assert lines[5]["message"]["role"] == "system"
    bad = text.replace('"toolCallId": "c1"', '"toolCallId": "c7"').replace('"role": "user"', '"role": "human"')
    problems = validate(bad)
    assert any("toolCallId 'c7' answers no earlier tool call" in p for p in problems)
    assert any(p.startswith("line 3: message/role") for p in problems)
    assert validate('{"type": "message", "message": {"role": "user", "content": "x"}}\n')[0].startswith("line 1:")
    assert SCHEMA["oneOf"][1]["properties"]["message"]["additionalProperties"] is False


def test_compare_reports_only_what_both_sides_count():
    assert compare(Counts(2, 1, 100, None), Counts(4, 1, 180, 9)) == ["calls: trace 2, wire 4",
                                                                       "prompt tokens: trace 100, wire 180"]
    assert compare(Counts(3, 1, 5, 5), Counts(3, 1, 5, 5)) == []


# -- native traces --------------------------------------------------------------------------------

def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_pi_claude_and_codex_sessions_are_read(tmp_path):
    pi = tmp_path / "pi"
    write_jsonl(pi / ".pi/agent/sessions/--w--/2026_x.jsonl", [
        {"type": "session", "version": 3, "id": "p1", "cwd": "/w"},
        {"type": "message", "message": {"role": "user", "content": [{"type": "text", "text": "go"}], "timestamp": 1}},
        {"type": "message", "message": {"role": "assistant", "model": "x", "timestamp": 2, "content": [
            {"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "ok"},
            {"type": "toolCall", "id": "c1", "name": "bash", "arguments": {"command": "ls"}}],
            "usage": {"input": 10, "output": 5, "cacheRead": 90, "cacheWrite": 0}}},
        {"type": "message", "message": {"role": "toolResult", "toolCallId": "c1", "toolName": "bash",
                                        "content": [{"type": "text", "text": "a.txt"}]}}])
    s = read_native("pi", pi)
    assert s.id == "p1" and s.counts == Counts(1, 1, 100, 5)
    assert [(x["role"], x["content"], x["tool_call_id"]) for x in s.messages] == [
        ("user", "go", None), ("assistant", "ok", None), ("tool", "a.txt", "c1")]
    assert s.messages[1]["tool_calls"] == [tc("c1", "bash", "{\"command\": \"ls\"}")]

    claude = tmp_path / "claude"
    usage = {"input_tokens": 3, "cache_read_input_tokens": 7, "cache_creation_input_tokens": 0, "output_tokens": 4}
    write_jsonl(claude / ".claude/projects/-w/u1.jsonl", [
        {"type": "user", "sessionId": "u1", "message": {"role": "user", "content": "go"}},
        {"type": "assistant", "message": {"id": "m1", "model": "x", "content": [{"type": "text", "text": "ok"}],
                                          "usage": usage}},
        {"type": "assistant", "message": {"id": "m1", "model": "x", "usage": usage, "content": [
            {"type": "tool_use", "id": "tu1", "name": "Bash", "input": {"command": "ls"}}]}},
        {"type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "tu1", "content": "a.txt"}]}},
        {"type": "assistant", "message": {"id": "m2", "model": "x", "usage": usage,
                                          "content": [{"type": "text", "text": "done"}]}}])
    s = read_native("claude-code", claude)
    assert s.id == "u1" and s.counts == Counts(2, 1, 20, 8)
    assert [(x["role"], x["content"]) for x in s.messages] == [("user", "go"), ("assistant", "ok"), ("tool", "a.txt"),
                                                               ("assistant", "done")]

    codex = tmp_path / "codex"
    write_jsonl(codex / ".codex/sessions/2026/11/30/rollout-x.jsonl", [
        {"type": "session_meta", "payload": {"id": "cx1"}},
        {"type": "turn_context", "payload": {"model": "gpt"}},
        {"type": "response_item", "payload": {"type": "message", "role": "user",
                                              "content": [{"type": "input_text", "text": "go"}]}},
        {"type": "response_item", "payload": {"type": "message", "role": "assistant",
                                              "content": [{"type": "output_text", "text": "looking"}]}},
        {"type": "response_item", "payload": {"type": "function_call", "call_id": "c1", "name": "exec_command",
                                              "arguments": "{}"}},
        {"type": "token_usage_record", "payload": {"usage": {"input_tokens": 50, "output_tokens": 6}}},
        {"type": "response_item", "payload": {"type": "function_call_output", "call_id": "c1", "output": "a"}}])
    s = read_native("codex", codex)
    assert s.id == "cx1" and s.counts == Counts(1, 1, 50, 6)
    assert [(x["role"], x["content"], bool(x["tool_calls"])) for x in s.messages] == [
        ("user", "go", False), ("assistant", "looking", True), ("tool", "a", False)]


def test_qwen_mini_swe_and_aider_traces_are_read(tmp_path):
    qwen = tmp_path / "qwen"
    write_jsonl(qwen / ".qwen/projects/-w/chats/q1.jsonl", [
        {"type": "user", "sessionId": "q1", "message": {"role": "user", "parts": [{"text": "go"}]}},
        {"type": "assistant", "model": "x", "message": {"role": "model", "parts": [
            {"text": "hm", "thought": True}, {"text": "ok"},
            {"functionCall": {"id": "c1", "name": "run_shell_command", "args": {"command": "ls"}}}]},
         "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 5, "thoughtsTokenCount": 2}},
        {"type": "tool_result", "message": {"role": "user", "parts": [
            {"functionResponse": {"id": "c1", "name": "run_shell_command", "response": {"output": "a.txt"}}}]}}])
    s = read_native("qwen-code", qwen)
    assert s.counts == Counts(1, 1, 40, 7)
    assert [(x["role"], x["content"], x["reasoning_content"]) for x in s.messages] == [
        ("user", "go", None), ("assistant", "ok", "hm"), ("tool", "a.txt", None)]

    mini = tmp_path / "mini"
    response = {"model": "x", "usage": {"prompt_tokens": 30, "completion_tokens": 3},
                "choices": [{"message": {"role": "assistant", "content": "no tool call"}}]}
    (mini / ".mini").mkdir(parents=True)
    (mini / ".mini/trajectory_turn_01.json").write_text(json.dumps({"info": {"model_stats": {"api_calls": 2}}, "messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "go"},
        {"role": "assistant", "content": "looking", "tool_calls": [tc("c1", "bash", "{}")],
         "extra": {"response": {**response, "choices": [{"message": {"role": "assistant", "content": "looking"}}]}}},
        {"role": "tool", "tool_call_id": "c1", "content": "a.txt"},
        {"role": "user", "content": "Tool call error: no tool calls", "extra": {"response": response}},
        {"role": "exit", "content": "RepeatedFormatError"}]}))
    s = read_native("mini-swe-agent", mini)
    assert s.counts == Counts(2, 1, 60, 6)
    assert [(x["role"], x["content"]) for x in s.messages] == [
        ("system", "s"), ("user", "go"), ("assistant", "looking"), ("tool", "a.txt"),
        ("assistant", "no tool call"), ("user", "Tool call error: no tool calls")]  # the rejected reply comes back

    aider = tmp_path / "aider"
    (aider / ".aider").mkdir(parents=True)
    (aider / ".aider/chat.history.md").write_text(
        "\n# aider chat started at 2026-11-30 16:55:38\n\n> Aider v0.86.2  \n> Model: x  \n\n"
        "#### Create hello.txt  \n#### with a greeting.  \n\nhello.txt\n```\nhi\n```\n\n> Applied edit to hello.txt  \n"
        "> Tokens: 1.2k sent, 5 received. Cost: $0.01 message, $0.01 session.  \n")
    s = read_native("aider", aider)
    assert s.counts == Counts(1, 0, 1200, 5)
    assert [(x["role"], x["content"]) for x in s.messages] == [
        ("user", "Create hello.txt\nwith a greeting."), ("assistant", "hello.txt\n```\nhi\n```"),
        ("system", "Applied edit to hello.txt")]


def test_opencode_and_hermes_databases_are_read(tmp_path):
    oc = tmp_path / "oc" / ".local/share/opencode"
    oc.mkdir(parents=True)
    con = sqlite3.connect(oc / "opencode.db")
    con.executescript("""CREATE TABLE session (id TEXT, parent_id TEXT, title TEXT, time_created INTEGER);
        CREATE TABLE message (id TEXT, session_id TEXT, time_created INTEGER, data TEXT);
        CREATE TABLE part (id TEXT, message_id TEXT, data TEXT);""")
    con.execute("INSERT INTO session VALUES ('s1', NULL, 'a title', 1)")
    con.execute("INSERT INTO message VALUES ('m1', 's1', 1, ?)", (json.dumps({"role": "user"}),))
    con.execute("INSERT INTO message VALUES ('m2', 's1', 2, ?)", (json.dumps({"role": "assistant", "modelID": "x"}),))
    parts = [("p1", "m1", {"type": "text", "text": "go"}), ("p2", "m2", {"type": "step-start"}),
             ("p3", "m2", {"type": "text", "text": "looking"}),
             ("p4", "m2", {"type": "tool", "tool": "bash", "callID": "c1",
                           "state": {"status": "completed", "input": {"command": "ls"}, "output": "a.txt"}}),
             ("p5", "m2", {"type": "step-finish", "tokens": {"input": 10, "output": 2, "reasoning": 1,
                                                             "cache": {"read": 5, "write": 0}}}),
             ("p6", "m2", {"type": "step-start"}), ("p7", "m2", {"type": "text", "text": "done"}),
             ("p8", "m2", {"type": "step-finish", "tokens": {"input": 20, "output": 3, "cache": {}}})]
    con.executemany("INSERT INTO part VALUES (?, ?, ?)", [(a, b, json.dumps(c)) for a, b, c in parts])
    con.commit()
    con.close()
    s = read_native("opencode", tmp_path / "oc")
    assert s.id == "s1" and s.title == "a title" and s.counts == Counts(2, 1, 35, 6)
    assert [(x["role"], x["content"]) for x in s.messages] == [("user", "go"), ("assistant", "looking"),
                                                               ("tool", "a.txt"), ("assistant", "done")]

    home = tmp_path / "h" / ".hermes"
    home.mkdir(parents=True)
    con = sqlite3.connect(home / "state.db")
    con.executescript("""CREATE TABLE sessions (id TEXT, source TEXT, model TEXT, title TEXT, parent_session_id TEXT,
            started_at REAL, api_call_count INTEGER, input_tokens INTEGER, output_tokens INTEGER,
            cache_read_tokens INTEGER, cache_write_tokens INTEGER, system_prompt TEXT);
        CREATE TABLE messages (id INTEGER PRIMARY KEY, session_id TEXT, role TEXT, content TEXT, tool_call_id TEXT,
            tool_calls TEXT, tool_name TEXT, timestamp REAL, reasoning TEXT, reasoning_content TEXT,
            active INTEGER DEFAULT 1);""")
    con.execute("INSERT INTO sessions VALUES ('h1', 'cli', 'x', NULL, NULL, 1.5, 2, 30, 4, 0, 0, 'you are hermes')")
    con.executemany("INSERT INTO messages (session_id, role, content, tool_call_id, tool_calls, tool_name, timestamp) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", [
                        ("h1", "user", "go", None, None, None, 1.6),
                        ("h1", "assistant", "looking", None, json.dumps([tc("c1", "terminal", "{}")]), None, 1.7),
                        ("h1", "tool", "\x00json:{\"output\": \"a.txt\"}", "c1", None, "terminal", 1.8)])
    con.commit()
    con.close()
    s = read_native("hermes", tmp_path / "h")
    assert s.id == "h1" and s.counts == Counts(2, 1, 30, 4)
    [line] = hermes_export(tmp_path / "h").decode().splitlines()
    exported = json.loads(line)  # the shape `hermes sessions export` writes
    assert exported["id"] == "h1" and exported["source"] == "cli" and exported["system_prompt"] == "you are hermes"
    assert [x["role"] for x in exported["messages"]] == ["user", "assistant", "tool"]
    assert exported["messages"][1]["tool_calls"][0]["id"] == "c1" and exported["messages"][2]["content"] == {
        "output": "a.txt"}


def test_a_database_is_read_with_its_write_ahead_log_and_left_untouched(tmp_path):
    live = tmp_path / "live" / ".local/share/opencode"
    live.mkdir(parents=True)
    con = sqlite3.connect(live / "opencode.db")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")  # what was written stays in the -wal file, as in a live agent
    con.executescript("""CREATE TABLE session (id TEXT, parent_id TEXT, title TEXT, time_created INTEGER);
        CREATE TABLE message (id TEXT, session_id TEXT, time_created INTEGER, data TEXT);
        CREATE TABLE part (id TEXT, message_id TEXT, data TEXT);
        INSERT INTO session VALUES ('s1', NULL, 't', 1);
        INSERT INTO message VALUES ('m1', 's1', 1, '{"role": "user"}');
        INSERT INTO part VALUES ('p1', 'm1', '{"type": "text", "text": "only in the log"}');""")
    con.commit()
    copy = tmp_path / "trace" / ".local/share/opencode"
    copy.mkdir(parents=True)
    for name in ("opencode.db", "opencode.db-wal"):
        (copy / name).write_bytes((live / name).read_bytes())
    con.close()
    before = sorted(p.name for p in copy.iterdir())
    s = read_native("opencode", tmp_path / "trace")
    assert s is not None and [m["content"] for m in s.messages] == ["only in the log"]
    assert sorted(p.name for p in copy.iterdir()) == before  # no -shm left beside the trace


def test_unreadable_traces_give_none(tmp_path):
    (tmp_path / ".local/share/opencode").mkdir(parents=True)
    (tmp_path / ".local/share/opencode/opencode.db").write_bytes(b"not sqlite")
    assert read_native("opencode", tmp_path) is None
    assert read_native("nobody", tmp_path) is None and read_native("pi", tmp_path / "missing") is None
