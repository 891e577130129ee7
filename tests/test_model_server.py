"""`agentcap model serve` answered by the official SDKs (openai, anthropic), scripted and replayed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import anthropic
import httpx
import openai
import pytest
from click.testing import CliRunner

from agentcap_addons.wire.capture.records import (
    CaptureDir,
    iter_captures,
    new_request_id,
)
from agentcap_addons.wire.fake.cassette import Cassette
from agentcap_addons.wire.fake.script import load_script
from agentcap_addons.wire.fake.upstream import ReplayResponder, ScriptResponder
from agentcap_addons.wire.util.clock import rfc3339_ns
from agentcap_addons.wire.util.yamlfile import ConfigError
from agentcap_cli.harness.modelserver import ModelServer, make_responder, resolve_script
from agentcap_cli.harness.proxy import start_proxy
from agentcap_cli.main import cli
from tests.support.cli import background, read_exports, start

TOOLS_CHAT = [{"type": "function", "function": {"name": "bash", "description": "run", "parameters": {
    "type": "object", "properties": {"command": {"type": "string"}}}}}]
TOOLS_RESP = [{"type": "function", "name": "shell", "description": "run", "parameters": {
    "type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}}}]
TOOLS_ANTH = [{"name": "Bash", "description": "run", "input_schema": {
    "type": "object", "properties": {"command": {"type": "string"}}}}]


@pytest.fixture(scope="module")
def scripted():
    with ModelServer(make_responder(script="shell-then-answer")) as s:
        yield s


def oai(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


def anth(server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0)


# --------------------------------------------------------------------------- the three APIs via the SDKs


def test_openai_chat_non_stream_and_stream(scripted):
    c = oai(scripted)
    msgs = [{"role": "user", "content": "list the files"}]
    r = c.chat.completions.create(model="m", messages=msgs, tools=TOOLS_CHAT)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].message.content == "I'll look at the working directory first."
    assert call.function.name == "bash" and json.loads(call.function.arguments) == {"command": "ls -la"}
    assert r.choices[0].finish_reason == "tool_calls" and r.usage.total_tokens > 0

    text, args, usage, finish = "", "", None, None
    for ch in c.chat.completions.create(model="m", messages=msgs, tools=TOOLS_CHAT, stream=True,
                                        stream_options={"include_usage": True}):
        if ch.usage:
            usage = ch.usage
        for choice in ch.choices:
            text += choice.delta.content or ""
            for t in choice.delta.tool_calls or []:
                args += t.function.arguments or ""
            finish = choice.finish_reason or finish
    assert text == "I'll look at the working directory first." and json.loads(args) == {"command": "ls -la"}
    assert finish == "tool_calls" and usage is not None and usage.completion_tokens > 0

    # after the tool result: the scripted answer
    follow = msgs + [r.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "a.py"}]
    r2 = c.chat.completions.create(model="m", messages=follow, tools=TOOLS_CHAT)
    assert r2.choices[0].message.content.endswith("Done.") and r2.choices[0].finish_reason == "stop"


def test_openai_responses_non_stream_and_stream(scripted):
    c = oai(scripted)
    r = c.responses.create(model="gpt-x", input="list files", tools=TOOLS_RESP)
    fc = [o for o in r.output if o.type == "function_call"][0]
    assert r.output_text == "I'll look at the working directory first."
    assert fc.name == "shell" and json.loads(fc.arguments) == {"command": ["bash", "-lc", "ls -la"]}
    assert r.usage.input_tokens > 0 and r.status == "completed"
    with c.responses.stream(model="gpt-x", input="list files", tools=TOOLS_RESP) as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == final.output_text == "I'll look at the working directory first."
    assert [o.type for o in final.output] == ["message", "function_call"]
    follow = [{"role": "user", "content": "list files"},
              {"type": "function_call", "call_id": fc.call_id, "name": "shell", "arguments": fc.arguments},
              {"type": "function_call_output", "call_id": fc.call_id, "output": "a.py"}]
    assert c.responses.create(model="gpt-x", input=follow, tools=TOOLS_RESP).output_text.endswith("Done.")


def test_anthropic_messages_non_stream_and_stream(scripted):
    c = anth(scripted)
    msgs = [{"role": "user", "content": "list files"}]
    m = c.messages.create(model="claude-x", max_tokens=100, messages=msgs, tools=TOOLS_ANTH)
    tu = [b for b in m.content if b.type == "tool_use"][0]
    assert m.content[0].text == "I'll look at the working directory first."
    assert tu.name == "Bash" and tu.input == {"command": "ls -la"} and m.stop_reason == "tool_use"
    assert m.usage.input_tokens > 0 and m.usage.cache_read_input_tokens == 0
    with c.messages.stream(model="claude-x", max_tokens=100, messages=msgs, tools=TOOLS_ANTH) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "I'll look at the working directory first."
    assert final.content[1].input == {"command": "ls -la"} and final.stop_reason == "tool_use"
    follow = msgs + [{"role": "assistant", "content": [b.model_dump() for b in m.content]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tu.id, "content": "a.py"}]}]
    m2 = c.messages.create(model="claude-x", max_tokens=100, messages=follow, tools=TOOLS_ANTH)
    assert m2.content[0].text.endswith("Done.") and m2.stop_reason == "end_turn"


def test_models_list_and_unknown_routes(scripted):
    assert [m.id for m in oai(scripted).models.list()] == ["agentcap-scripted"]
    r = httpx.post(scripted.url + "/v1/embeddings", json={})
    assert r.status_code == 404 and "no route" in r.json()["error"]["message"]


def test_same_request_same_bytes_and_side_calls_get_text_only(scripted):
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS_CHAT}
    a = httpx.post(scripted.url + "/v1/chat/completions", json=body).content
    b = httpx.post(scripted.url + "/v1/chat/completions", json=body).content
    assert a == b and b"tool_calls" in a
    title = httpx.post(scripted.url + "/v1/chat/completions",
                       json={"model": "m", "messages": [{"role": "user", "content": "make a title"}]}).json()
    assert "tool_calls" not in title["choices"][0]["message"]  # no tools offered: text only


# --------------------------------------------------------------------------- scripts


def write(tmp_path, text: str):
    p = tmp_path / "s.yaml"
    p.write_text(textwrap.dedent(text))
    return p


@pytest.mark.parametrize("text,where", [
    ("replies: []\n", ":1: replies: must be a non-empty list"),
    ("replies:\n  - text: hi\n    colour: red\n", ":3: replies.0.colour: unknown key"),
    ("replies:\n  - match: {user: '(('}\n    text: x\n", ":2: replies.0.match.user: not a valid regular expression"),
    ("replies:\n  - tool_calls:\n      - arguments: {}\n", ":3: replies.0.tool_calls.0: a tool call needs a 'name'"),
    ("chunk_size: many\nreplies:\n  - text: x\n", ":1: chunk_size: must be a whole number"),
    ("replies:\n  - text: [unclosed\n", ": not valid YAML"),
    ("replies:\n  - match: {tool_result: yes please}\n    text: x\n", ":2: replies.0.match.tool_result: must be true or false"),
])
def test_malformed_scripts_name_file_line_and_key(tmp_path, text, where):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_script(p)
    assert str(e.value).startswith(str(p)) and where in str(e.value)


def test_cli_bad_script_exits_2_with_the_message(tmp_path):
    p = write(tmp_path, "replies:\n  - text: hi\n    colour: red\n")
    r = CliRunner().invoke(cli, ["model", "serve", "--script", str(p), "--port", "0"])
    assert r.exit_code == 2 and f"{p}:3: replies.0.colour: unknown key" in r.output.replace("\n", "")
    r = CliRunner().invoke(cli, ["model", "serve", "--replay", str(tmp_path / "nope"), "--port", "0"])
    assert r.exit_code == 2 and "--replay" in r.output
    r = CliRunner().invoke(cli, ["model", "serve", "--port", "0"])
    assert r.exit_code == 2 and "exactly one of --script or --replay" in r.output
    r = CliRunner().invoke(cli, ["model", "serve", "--replay", str(tmp_path), "--on-miss", "forward"])
    assert r.exit_code == 2 and "--upstream" in r.output


def test_shipped_scripts_load():
    for name in ("shell-then-answer", "write-file-then-answer"):
        s = load_script(resolve_script(name))
        assert any(r.tool_calls for r in s.replies)
        assert any(r.match == {"tool_result": True} for r in s.replies)


def test_argument_alternatives_fit_the_offered_tool_schema():
    s = ScriptResponder(load_script(resolve_script("write-file-then-answer")))

    def call(tools):
        body = {"messages": [{"role": "user", "content": "go"}], "tools": tools}
        out = json.loads(s.respond("POST", "/v1/chat/completions", json.dumps(body).encode()).body)
        fn = out["choices"][0]["message"]["tool_calls"][0]["function"]
        return fn["name"], json.loads(fn["arguments"])

    def tool(name, props, required):
        return {"type": "function", "function": {"name": name, "parameters": {
            "type": "object", "properties": {p: {"type": "string"} for p in props}, "required": required}}}

    # pi-like and opencode-like `bash`: the second also requires a description
    assert call([tool("bash", ["command"], ["command"])])[1] == {"command": "printf 'hello from agentcap\\n' > hello.txt"}
    name, args = call([tool("bash", ["command", "description"], ["command", "description"])])
    assert name == "bash" and args["description"] == "Write hello.txt"
    # a write tool only: the first alternative whose keys the schema declares
    assert call([tool("write", ["filePath", "content"], ["filePath", "content"])]) == (
        "write", {"filePath": "hello.txt", "content": "hello from agentcap\n"})
    # an agent with no tools gets the whole-file edit block (aider)
    body = {"messages": [{"role": "user", "content": "Create hello.txt"}]}
    text = json.loads(s.respond("POST", "/v1/chat/completions", json.dumps(body).encode()).body)
    assert text["choices"][0]["message"]["content"].startswith("hello.txt\n```\n")


def test_match_rules_by_user_text_and_step(tmp_path):
    p = write(tmp_path, """
        on_unmatched: error
        replies:
          - match: {user: "(?i)weather"}
            text: sunny
          - match: {step: [0, 1]}
            text: first or second
        """)
    s = ScriptResponder(load_script(p))
    ask = lambda msgs: json.loads(s.respond("POST", "/v1/chat/completions", json.dumps({"messages": msgs}).encode()).body)  # noqa: E731
    assert ask([{"role": "user", "content": "the WEATHER?"}])["choices"][0]["message"]["content"] == "sunny"
    assert ask([{"role": "user", "content": "x"}])["choices"][0]["message"]["content"] == "first or second"
    two = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "y"},
           {"role": "assistant", "content": "b"}, {"role": "user", "content": "z"}]
    miss = ask(two)
    assert miss["error"]["code"] == "agentcap_script_unmatched" and "step 2" in miss["error"]["message"]


# --------------------------------------------------------------------------- replay


def record_through_proxy(tmp_path, server, requests):
    """Send requests through a real capture proxy in front of ``server``; return the run dir."""
    run = tmp_path / "recorded"
    with start_proxy(server.url, run, events=True) as p:
        out = []
        for path, body in requests:
            out.append(httpx.post(p.base_url + path, json=body, timeout=30).content)
            rid = p.events.wait_for(event="request")["request_id"]
            p.events.wait_for(event="response", request_id=rid)
    return run, out


REQS = [
    ("/v1/chat/completions", {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS_CHAT}),
    ("/v1/responses", {"model": "m", "stream": True, "input": "hi", "tools": TOOLS_RESP}),
    ("/v1/messages", {"model": "m", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS_ANTH}),
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "plain"}]}),
]


def test_round_trip_script_capture_replay_is_byte_identical(tmp_path, scripted):
    run, live = record_through_proxy(tmp_path, scripted, REQS)
    assert len(list(iter_captures(run))) == 4
    with ModelServer(make_responder(replay=str(run))) as replay:
        again = [httpx.post(replay.url + path, json=body, timeout=30).content for path, body in REQS]
        assert again[:3] == live[:3]  # streams: byte for byte
        assert json.loads(again[3]) == json.loads(live[3])  # a JSON body: the same document
        miss = httpx.post(replay.url + REQS[0][0], json=REQS[0][1], timeout=30)  # each recording serves once
        assert miss.status_code == 404 and "served already" in miss.json()["error"]["message"]


def fake_run(tmp_path, bodies_and_answers):
    d = CaptureDir(tmp_path / "cassette" / "captures")
    for body, answer in bodies_and_answers:
        rid = new_request_id()
        d.write_request({"schema": 1, "request_id": rid, "seq": d.next_seq(), "captured_at": rfc3339_ns(),
                         "method": "POST", "path": "/v1/chat/completions", "api": "openai-chat", "body": body})
        raw = "".join(f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': part}}]})}\n\n" for part in answer)
        d.write_response({"schema": 1, "request_id": rid, "status_code": 200, "stream": True,
                          "headers": {"content-type": "text/event-stream"}, "raw": raw,
                          "chunks": [[10.0 * (i + 1), len(raw) // len(answer)] for i in range(len(answer))],
                          "timings": {"sent": 0, "first_byte": 5, "done": 50}, "served_model": "m", "error": None})
    return tmp_path / "cassette"


def test_identical_requests_replay_in_recorded_order_and_misses_name_the_path(tmp_path):
    same = {"model": "m", "messages": [{"role": "user", "content": "again"}]}
    run = fake_run(tmp_path, [(same, ["one"]), (same, ["two"]),
                              ({"model": "m", "messages": [{"role": "user", "content": "different"}]}, ["x"])])
    r = ReplayResponder(Cassette(run))
    ask = lambda body: r.respond("POST", "/v1/chat/completions", json.dumps(body).encode())  # noqa: E731
    assert b"one" in ask(same).body and b"two" in ask(same).body
    assert ask(same).status == 404
    miss = ask({"model": "m", "messages": [{"role": "user", "content": "differenT"}]})
    msg = json.loads(miss.body)["error"]["message"]
    assert miss.status == 404 and "$.messages[0].content" in msg and '"different"' in msg and '"differenT"' in msg


def test_volatile_fields_do_not_break_a_match(tmp_path):
    rec = {"model": "m", "metadata": {"user_id": "u-1"},
           "messages": [{"role": "system", "content": "Session 3f2b9a1c-0d4e-4b7a-9c1d-2e3f4a5b6c7d at 2026-11-22T01:00:00Z"},
                        {"role": "user", "content": "go"}]}
    run = fake_run(tmp_path, [(rec, ["ok"])])
    now = json.loads(json.dumps(rec))
    now["metadata"]["user_id"] = "u-2"
    now["messages"][0]["content"] = "Session 0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d at 2026-11-23T09:30:12.5Z"
    r = ReplayResponder(Cassette(run))
    assert r.respond("POST", "/v1/chat/completions", json.dumps(now).encode()).status == 200


def test_recorded_timing_and_chunk_boundaries(tmp_path):
    run = fake_run(tmp_path, [({"model": "m"}, ["a", "b", "c"])])
    fast = ReplayResponder(Cassette(run)).respond("POST", "/v1/chat/completions", b'{"model": "m"}')
    slow = ReplayResponder(Cassette(run), timing="recorded").respond("POST", "/v1/chat/completions", b'{"model": "m"}')
    assert len(fast.chunks) == 3 and fast.pauses_ms is None
    assert slow.chunks == fast.chunks and slow.pauses_ms == [10.0, 10.0, 10.0]


def test_on_miss_forward_goes_live(tmp_path, fresh_upstream):
    run = fake_run(tmp_path, [({"model": "m"}, ["x"])])
    responder = make_responder(replay=str(run), on_miss="forward")
    with ModelServer(responder, forward_to=fresh_upstream.url) as s:
        r = httpx.post(s.url + "/json/v1/chat/completions", json={"model": "other"}, timeout=30)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "hi there"
    assert fresh_upstream.received[-1].path == "/json/v1/chat/completions"


def test_replay_addon_in_mitmdump_with_capture(tmp_path, scripted):
    """`mitmdump -s capture.py -s replay.py`: answered from the recording, and captured again."""
    run, live = record_through_proxy(tmp_path, scripted, REQS[:1])
    from agentcap_cli.harness.proxy import CAPTURE_SCRIPT

    replay_script = CAPTURE_SCRIPT.parent / "replay.py"

    r, w = os.pipe()
    with background(
        [sys.executable, "-c", "import sys; from mitmproxy.tools.main import mitmdump; sys.exit(mitmdump())",
         "-s", str(CAPTURE_SCRIPT), "-s", str(replay_script), "--mode", "reverse:http://127.0.0.1:9",
         "--listen-host", "127.0.0.1", "--listen-port", "0", "--set", f"agentcap_dir={tmp_path / 'again'}",
         "--set", f"agentcap_replay={run}", "--set", f"agentcap_ready_fd={w}", "--set", "flow_detail=0"],
        pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        os.close(w)
        with os.fdopen(r) as ready:
            port = json.loads(ready.readline())["listen"][0][1]
        try:
            got = httpx.post(f"http://127.0.0.1:{port}{REQS[0][0]}", json=REQS[0][1], timeout=30)
            miss = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "new"}, timeout=30)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=30)
    assert got.content == live[0]  # the same bytes, served whole
    assert miss.status_code == 404 and "agentcap replay" in miss.json()["error"]["message"]
    caps = list(iter_captures(tmp_path / "again"))
    assert [c.response["status_code"] for c in caps] == [200, 404]


def test_cli_model_serve_answers_curl_style_and_stops_on_ctrl_c(tmp_path):
    with start("model", "serve", "--script", "examples/scripts/shell-then-answer.yaml", "--port", "0") as proc:
        try:
            env = read_exports(proc)
            r = httpx.post(env["OPENAI_BASE_URL"] + "/chat/completions",
                           json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
            assert r.json()["choices"][0]["message"]["content"] == "I'll look at the working directory first."
            m = httpx.post(env["ANTHROPIC_BASE_URL"] + "/v1/messages", json={"model": "c", "max_tokens": 9,
                           "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
            assert m.json()["content"][0]["text"] == "I'll look at the working directory first."
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_namespaced_responses_tools_are_called_by_their_flat_name(tmp_path):
    """codex lists each MCP server as a Responses `namespace` tool; a call names the tool and its namespace."""
    from agentcap_addons.wire.api.decode import decode_body, request_tools

    p = write(tmp_path, """
        replies:
          - text: "Posting."
            tool_calls:
              - name: mcp__slack__post
                arguments: {text: hi}
        """)
    body = {"model": "m", "input": "go", "tools": [
        {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
        {"type": "namespace", "name": "mcp__slack", "tools": [
            {"type": "function", "name": "post", "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}]}]}
    assert request_tools(body) == ["exec_command", "mcp__slack__post"]
    out = json.loads(ScriptResponder(load_script(p)).respond("POST", "/v1/responses", json.dumps(body).encode()).body)
    call = next(i for i in out["output"] if i["type"] == "function_call")
    assert (call["namespace"], call["name"], json.loads(call["arguments"])) == ("mcp__slack", "post", {"text": "hi"})
    decoded = decode_body("openai-responses", out)
    assert [c.name for c in decoded.tool_calls] == ["mcp__slack__post"]


def test_serve_json_ready_line_and_one_log_line_per_call():
    import json as _json
    import signal

    import httpx

    with start("model", "serve", "--script", "shell-then-answer", "--port", "0", "--json") as proc:
        try:
            ready = _json.loads(proc.stdout.readline())
            assert ready["env"]["OPENAI_BASE_URL"] == ready["base_url"] and ready["pid"] == proc.pid
            r = httpx.post(ready["base_url"] + "/chat/completions", timeout=30,
                           json={"model": "mm", "messages": [{"role": "user", "content": "hi"}],
                                 "tools": [{"type": "function", "function": {"name": "bash", "parameters": {}}}]})
            assert r.status_code == 200
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
    [line] = [x for x in err.splitlines() if x.startswith("#1 ")]
    assert line.startswith("#1 openai-chat model=mm status=200 tools=bash ")
