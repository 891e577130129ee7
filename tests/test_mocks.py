"""MCP mocks: templating, state, dispatch, recording — and the official `mcp` SDK on both sides."""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from mcp import Client, StdioServerParameters

from agentcap_cli.main import cli
from mcp_mocks import HTTPMock, MockServer, templating
from mcp_mocks import state as statelib
from tests.support.cli import argv, start
from tests.support.mocks import assert_rejected

REPO = Path(__file__).resolve().parent.parent
SLACK = REPO / "examples" / "mocks" / "slack"


def make(tmp_path: Path, yaml_text: str, handler: str | None = None, name: str = "m") -> Path:
    d = tmp_path / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "mock.yaml").write_text(textwrap.dedent(yaml_text))
    if handler is not None:
        (d / "handler.py").write_text(textwrap.dedent(handler))
    return d


BASIC = """
    name: basic
    tools:
      - {name: add, inputSchema: {type: object}}
      - {name: note, inputSchema: {type: object}}
      - {name: escape, inputSchema: {type: object}}
      - {name: echoed, inputSchema: {type: object}}
      - {name: boom, inputSchema: {type: object}}
      - {name: deep, inputSchema: {type: object}}
      - {name: half, inputSchema: {type: object}}
    seed: {notes: [], count: 0, box: {items: [{text: a}]}}
    responses:
      add: {result: "{{ args.a + args.b }}"}
      note:
        - match: {text: "bad"}
          error: "no bad notes"
        - match: {text: "{{ state.box['items'][0].text }}"}
          result: {matched_template: true}
        - mutate:
            - {op: append, path: notes, value: "{{ args.text }}"}
            - {op: increment, path: count}
            - {op: set, path: box.items.0.text, value: "{{ args.text }}"}
            - {op: set, path: new.nested.key, value: "{{ [1, 2] }}"}
          result: {n: "{{ state.count }}", label: "{{ args.text }}-{{ state.count }}", list: "{{ state.notes }}"}
      escape: {result: "{{ ''.__class__.__mro__ }}"}
      deep:
        mutate: [{op: append, path: count.x, value: 1}]
        result: never
      half:
        mutate:
          - {op: append, path: notes, value: first}
          - {op: set, path: fresh.key, value: 1}
          - {op: increment, path: count}
          - {op: remove, path: box.items.0}
          - {op: append, path: count.x, value: 1}
        result: never
    """
HANDLER = """
    def tool_boom(args, ctx):
        raise RuntimeError("kaboom")
    """


@pytest.fixture
def basic(tmp_path):
    return MockServer.load(make(tmp_path, BASIC, HANDLER))


def test_templates_keep_native_types_and_mixed_text_is_a_string():
    ctx = {"args": {"a": 2, "b": 3, "xs": [1, 2]}, "state": {}, "now": "t", "uuid": "u"}
    assert templating.render("{{ args.a + args.b }}", ctx) == 5
    assert templating.render("{{ args.xs }}", ctx) == [1, 2]
    assert templating.render(" {{ args.a > 1 }} ", ctx) is True
    assert templating.render("{{ args.a }}-{{ args.b }}", ctx) == "2-3"  # two expressions: a string
    assert templating.render("n={{ args.a }}", ctx) == "n=2"
    assert templating.render({"k": ["{{ args.b }}"]}, ctx) == {"k": [3]}
    with pytest.raises(templating.TemplateError, match="sandbox"):
        templating.render("{{ ''.__class__.__mro__ }}", ctx)
    with pytest.raises(templating.TemplateError, match="sandbox"):
        templating.render("{{ args.__class__.__init__.__globals__ }}", ctx)
    with pytest.raises(templating.TemplateError):
        templating.render("{{ args.missing.deeper }}", ctx)
    # undefined, as agenteval: null alone, empty in a longer string; strict makes both an error
    assert templating.render("{{ args.missing }}", ctx) is None and templating.render("a{{ args.missing }}b", ctx) == "ab"
    assert templating.render({"k": "{{ [args.missing] }}"}, ctx) == {"k": [None]}
    for text in ("{{ args.missing }}", "a{{ args.missing }}b", "{{ [args.missing] }}"):
        with pytest.raises(templating.TemplateError, match="missing"):
            templating.render(text, ctx, strict=True)
    # whatever a template yields is plain JSON, sharing nothing with the state
    state = {"d": {"x": [1]}}
    got = templating.render("{{ state.d }}", {**ctx, "state": state})
    assert got == {"x": [1]} and got["x"] is not state["d"]["x"]
    assert templating.render("{{ state.d.items() }}", {**ctx, "state": state}) == [["x", [1]]]
    assert templating.render("{{ (1, 2) }}", ctx) == [1, 2] and templating.render("{{ {1: 2} }}", ctx) == {"1": 2}


def test_state_paths_and_mutations():
    doc = {"a": {"list": [{"t": 1}]}, "n": 1}
    statelib.mutate(doc, "set", "a.list.0.t", 2)
    statelib.mutate(doc, "append", "a.list", {"t": 3})
    statelib.mutate(doc, "extend", "made.on.the.way", [1, 2])  # missing dict segments are created
    statelib.mutate(doc, "increment", "n", 5)
    statelib.mutate(doc, "increment", "fresh")
    statelib.mutate(doc, "remove", "a.list.0")
    assert doc == {"a": {"list": [{"t": 3}]}, "n": 6, "made": {"on": {"the": {"way": [1, 2]}}}, "fresh": 1}
    assert statelib.get(doc, "a.list.-1.t") == 3
    for op, path, val, msg in [("append", "n", 1, "cannot append to a int"), ("set", "a.list.9", 1, "out of range"),
                               ("set", "a.list.x", 1, "not a list index"), ("set", "n.deeper", 1, "cannot look inside"),
                               ("remove", "nokey", None, "no key"), ("explode", "n", 1, "unknown mutation")]:
        with pytest.raises(statelib.PathError, match=msg):
            statelib.mutate(doc, op, path, val)


def test_dispatch_rules_handler_fallback_errors_and_records(basic):
    assert basic.call("add", {"a": 2, "b": 40}).result == 42
    r = basic.call("note", {"text": "hi"})
    assert r.result == {"n": 1, "label": "hi-1", "list": ["hi"]} and not r.is_error
    assert basic.state["box"]["items"][0]["text"] == "hi" and basic.state["new"] == {"nested": {"key": [1, 2]}}
    assert basic.call("note", {"text": "hi"}).result == {"matched_template": True}  # match value was a template
    assert basic.call("note", {"text": "bad"}).result == "no bad notes" and basic.calls[-1].is_error
    esc = basic.call("escape", {})
    assert esc.is_error and "sandbox" in esc.result  # refused safely, answered as a tool error
    deep = basic.call("deep", {})
    assert deep.is_error and "count.x" in deep.result and basic.state["count"] == 1  # state untouched
    before = json.loads(json.dumps(basic.state))
    half = basic.call("half", {})  # four mutations succeed, the fifth cannot: all are rolled back
    assert half.is_error and basic.state == before
    boom = basic.call("boom", {})
    assert boom.is_error and "handler crashed: RuntimeError: kaboom" in boom.result
    assert basic.call("echoed", {"x": 1}).result == {"ok": True, "tool": "echoed", "args": {"x": 1}}
    unknown = basic.call("nope", {})
    assert unknown.is_error and "unknown tool" in unknown.result
    recs = basic.records()
    assert [r["tool"] for r in recs] == ["add", "note", "note", "note", "escape", "deep", "half", "boom", "echoed", "nope"]
    assert [r["seq"] for r in recs] == list(range(1, 11))
    assert set(recs[0]) >= {"seq", "at", "server", "tool", "args", "result", "is_error", "duration_ms"}
    assert recs[-1]["is_error"] and recs[0]["server"] == "basic"


def test_reset_write_and_seed_is_never_mutated(basic, tmp_path):
    basic.call("note", {"text": "x"})
    basic.write(tmp_path / "out")
    other = MockServer.load(make(tmp_path, BASIC.replace("name: basic", "name: other"), HANDLER, name="o"))
    other.call("add", {"a": 1, "b": 1})
    other.write(tmp_path / "out")
    basic.write(tmp_path / "out")  # rewriting one server keeps the other's lines
    lines = [json.loads(x) for x in (tmp_path / "out" / "calls.jsonl").read_text().splitlines()]
    assert sorted(r["server"] for r in lines) == ["basic", "other"]
    assert json.loads((tmp_path / "out" / "basic.state.json").read_text())["notes"] == ["x"]
    basic.reset()
    assert basic.state["notes"] == [] and basic.calls == [] and basic.spec.seed["notes"] == []


def test_faults_are_seeded(tmp_path):
    text = textwrap.dedent(BASIC) + "fault_seed: 7\nfaults: {add: {error_rate: 0.5}}\n"
    runs = []
    for _ in range(2):
        m = MockServer.load(make(tmp_path, text, HANDLER))
        runs.append([m.call("add", {"a": 1, "b": 1}).is_error for _ in range(40)])
    assert runs[0] == runs[1] and 5 < sum(runs[0]) < 35
    assert all(r["fault"] for r in m.records() if r["is_error"])


@pytest.mark.parametrize("yaml_text,handler,where", [
    ("tools: [{name: a}]\nresponses: {b: {result: 1}}\n", None, "mock.yaml:2: responses.b: no such tool in the schema"),
    ("tools: [{name: a}]\nresponses:\n  a:\n    mutate: [{op: explode, path: x}]\n", None,
     "mock.yaml:4: responses.a.mutate.0.op: unknown mutation 'explode'"),
    ("tools: [{name: a}]\nresponses:\n  a: {result: '{{ args. }}'}\n", None, "mock.yaml:3: responses.a.result: bad template"),
    ("tools: [{name: a}]\n", "def tool_a(args, ctx)\n    return 1\n", "handler.py:1: handler does not import: SyntaxError"),
    ("tools: [{name: a}]\n", "import no_such_module_here\n", "handler.py:1: handler does not import: ModuleNotFoundError"),
    ("tools: [{name: a}]\n", "HANDLERS = {'zzz': print}\n", "handler.py:1: HANDLERS.zzz: no tool 'zzz' in the schema"),
    ("schema: nope.json\n", None, "mock.yaml:1: schema: "),
    ("tools: [{name: a}]\ncolour: red\n", None, "mock.yaml:2: colour: unknown key"),
    ("tools: [{name: a}]\nfaults: {a: {error_rate: 2}}\n", None, "faults.a.error_rate: must be a number from 0 to 1"),
])
def test_bad_mock_yaml_names_file_line_and_key(tmp_path, yaml_text, handler, where):
    assert_rejected(make(tmp_path, yaml_text, handler), where)


async def _session_calls(url: str, mode: str) -> dict:
    async with Client(url, mode=mode) as s:
            init = s.server_info
            tools = await s.list_tools()
            post = await s.call_tool("slack_post_message", {"channel_id": "C01GENERAL", "text": "deploy done"})
            archived = await s.call_tool("slack_post_message", {"channel_id": "C02RANDOM", "text": "x"})
            ts = post.structured_content["ts"]
            react = await s.call_tool("slack_add_reaction", {"channel_id": "C01GENERAL", "timestamp": ts, "reaction": "tada"})
            missing = await s.call_tool("slack_add_reaction", {"channel_id": "C01GENERAL", "timestamp": "0", "reaction": "x"})
            unknown = await s.call_tool("slack_delete_everything", {})
            return {"init": init, "tools": tools, "post": post, "archived": archived, "react": react,
                    "missing": missing, "unknown": unknown}


@pytest.mark.parametrize("mode", ["legacy", "auto"])  # the initialize handshake agents speak; mcp 2's default
def test_slack_mock_over_streamable_http_with_the_sdk_client(mode):
    mock = MockServer.load(SLACK)
    with HTTPMock(mock) as server:
        got = asyncio.run(_session_calls(server.url, mode))
        base = server.url.removesuffix("/mcp")
        side_state = httpx.get(base + "/_agentcap/state").json()
        side_calls = httpx.get(base + "/_agentcap/calls").json()
        # a container reaches the host as 10.0.2.2: allowed by the DNS-rebinding protection; others are not
        ok = httpx.post(server.url, headers={"host": f"10.0.2.2:{server.port}", "accept": "application/json, text/event-stream"},
                        json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        evil = httpx.post(server.url, headers={"host": "attacker.example", "accept": "application/json, text/event-stream"},
                          json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert got["init"].name == "slack"
    listed = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in got["tools"].tools]
    assert listed == json.loads((SLACK / "tools.json").read_text())["tools"]  # verbatim
    assert not got["post"].is_error and got["post"].structured_content["channel"] == "C01GENERAL"
    assert got["archived"].is_error and "is_archived" in got["archived"].content[0].text
    assert not got["react"].is_error
    assert got["missing"].is_error and "message_not_found" in got["missing"].content[0].text
    assert got["unknown"].is_error and "unknown tool" in got["unknown"].content[0].text
    msgs = side_state["channels"]["C01GENERAL"]["messages"]
    assert msgs[-1]["text"] == "deploy done" and msgs[-1]["reactions"] == ["tada"]
    assert [c["tool"] for c in side_calls] == ["slack_post_message", "slack_post_message", "slack_add_reaction",
                                              "slack_add_reaction", "slack_delete_everything"]
    assert ok.status_code != 421 and evil.status_code == 421


def test_stdio_with_the_sdk_client_writes_state_and_calls(tmp_path):
    command, *args = argv("mock", "serve", "--stdio", str(SLACK), "--out", str(tmp_path / "mocks"))
    params = StdioServerParameters(command=command, args=args, cwd=str(REPO), env=dict(os.environ))

    async def go():
        async with Client(params) as s:
                assert len((await s.list_tools()).tools) == 6
                r = await s.call_tool("slack_post_message", {"channel_id": "C01GENERAL", "text": "via stdio"})
                assert not r.is_error

    asyncio.run(go())
    state = json.loads((tmp_path / "mocks" / "slack.state.json").read_text())
    assert state["channels"]["C01GENERAL"]["messages"][-1]["text"] == "via stdio"
    [rec] = [json.loads(x) for x in (tmp_path / "mocks" / "calls.jsonl").read_text().splitlines()]
    assert rec["tool"] == "slack_post_message" and rec["is_error"] is False


def test_cli_mock_call_prints_json_on_stdout_and_the_state_diff_on_stderr():
    r = CliRunner().invoke(cli, ["mock", "call", str(SLACK), "slack_post_message", "--args",
                                 '{"channel_id": "C01GENERAL", "text": "hi"}'])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["isError"] is False  # only JSON on stdout: `| jq` works
    assert '+          "text": "hi",' in r.stderr
    r = CliRunner().invoke(cli, ["mock", "call", str(SLACK), "slack_get_users"])
    assert r.exit_code == 0 and json.loads(r.stdout)["structuredContent"]["ok"] and "# state unchanged" in r.stderr
    r = CliRunner().invoke(cli, ["mock", "call", str(SLACK), "slack_post_message", "--args", "{nope"])
    assert r.exit_code == 2 and "--args" in r.output


def test_cli_mock_serve_over_http_then_ctrl_c_writes_out(tmp_path):
    import signal

    with start("mock", "serve", str(SLACK), "--port", "0", "--out", str(tmp_path / "mocks")) as proc:
        try:
            name, url = proc.stdout.readline().rstrip("\n").split("\t")
            assert name == "slack" and url.endswith("/mcp")

            async def go():
                async with Client(url) as s:
                    return await s.call_tool("slack_get_users", {})

            res = asyncio.run(go())
            assert [u["name"] for u in res.structured_content["members"]] == ["alice", "bob", "agent"]
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    [rec] = [json.loads(x) for x in (tmp_path / "mocks" / "calls.jsonl").read_text().splitlines()]
    assert rec["tool"] == "slack_get_users" and (tmp_path / "mocks" / "slack.state.json").exists()
    assert [x for x in err.splitlines() if x.startswith("slack #1 slack_get_users ok ")]  # one line per call
