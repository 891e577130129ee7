"""MCP mocks: agenteval's mock.yaml and handler API, as its README documents them, read by the same
loader as agentcap's own spelling — over the real `mcp` SDK client where the agent would see it."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from mcp import Client

from agentcap_cli.main import cli
from mcp_mocks import HTTPMock, MockServer, load_spec
from tests.support.mocks import assert_rejected

# A mock written from the agenteval README: schema.json (verbatim tools/list), seed, declarative
# responses with its mutation form, and a handler.py mutating ctx.state.data.
SCHEMA = {"tools": [
    {"name": "list_channels", "description": "List channels.", "inputSchema": {"type": "object", "properties": {}}},
    {"name": "post_message", "description": "Post to #releases.",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
    {"name": "slack_send_message", "description": "Post by channel id.",
     "inputSchema": {"type": "object", "properties": {"channel_id": {"type": "string"}, "message": {"type": "string"}}}},
    {"name": "bump", "inputSchema": {"type": "object"}},
    {"name": "archive", "inputSchema": {"type": "object"}},
    {"name": "quiet", "inputSchema": {"type": "object"}},
    {"name": "raw", "inputSchema": {"type": "object"}},
    {"name": "boom", "inputSchema": {"type": "object"}},
    {"name": "refuse", "inputSchema": {"type": "object"}},
    {"name": "stamp", "inputSchema": {"type": "object"}},
    {"name": "selfref", "inputSchema": {"type": "object"}},
]}
MOCK = """\
name: slack
schema: schema.json
handler: handler.py
seed:
  channels:
    - { id: C1, name: releases }
  messages: []
  counters: {posts: 0}
  tags: [a, b]
responses:
  list_channels:
    result: { ok: true, channels: "{{ state.channels }}" }
  post_message:
    mutate:
      - append: { path: messages, value: { channel_name: releases, text: "{{ args.text }}" } }
      - increment: { path: counters.posts, by: 2 }
      - set: { path: meta.last_text, value: "{{ args.text }}" }
      - extend: { path: tags, value: "{{ [args.text, 'x'] }}" }
      - remove: { path: tags.0 }
      - {op: increment, path: counters.agentcap_form}
    result: { ok: true, ts: "{{ now }}", n: "{{ state.counters.posts }}" }
  bump:
    - match: { kind: null }
      error: kind is required
    - mutate:
        - increment: { path: "counters.{{ args.kind }}" }
  archive:
    - match: { id: C1 }
      mutate:
        - set: { path: channels.0.archived, value: true }
"""
HANDLER = '''\
import datetime


def slack_send_message(args, ctx):
    state = ctx.state.data                       # the mutable state dict
    ch = next((c for c in state["channels"] if c["id"] == args.get("channel_id")), None)
    if not ch:
        return {"ok": False, "error": "channel_not_found"}
    msg = {"channel_id": ch["id"], "channel_name": ch["name"], "text": args["message"]}
    ctx.state.mutate(lambda s: s["messages"].append(msg))
    return {"ok": True, "message": msg}


HANDLERS = {"slack_send_message": slack_send_message}


def tool_quiet(args, ctx):
    ctx.state.data["quiet"] = True               # returns None: answered {"ok": true}


def tool_raw(args, ctx):
    return {"content": [{"type": "text", "text": "already MCP content"}]}


def tool_boom(args, ctx):
    ctx.state.data["messages"].append({"text": "half done"})
    ctx.state["counters"]["posts"] += 100        # agentcap's spelling: ctx.state is the dict too
    raise RuntimeError("kaboom")


def tool_refuse(args, ctx):
    ctx.state.data = {"replaced": True}
    from mcp_mocks import ToolError
    raise ToolError("not allowed")


def tool_stamp(args, ctx):
    ctx.state.data["stamped"] = {"at": datetime.date(2026, 1, 2), "pair": (1, 2)}
    return {"when": datetime.date(2026, 1, 2)}


def tool_selfref(args, ctx):
    loop = []
    loop.append(loop)
    ctx.state.data["loop"] = loop
'''


def project(tmp_path: Path, mock: str = MOCK, handler: str | None = HANDLER, schema: object = SCHEMA) -> Path:
    d = tmp_path / "scenarios" / "slack-release-note" / "mcp" / "slack"
    d.mkdir(parents=True)
    (d / "mock.yaml").write_text(mock)
    (d / "schema.json").write_text(json.dumps(schema))
    if handler is not None:
        (d / "handler.py").write_text(handler)
    return d


def text(res) -> str:
    return res.content[0].text


async def _drive(url: str) -> dict:
    async with Client(url) as c:
        out = {"tools": [t.name for t in (await c.list_tools()).tools]}
        for name, args in [("list_channels", {}), ("post_message", {"text": "v1.2 is out"}),
                           ("slack_send_message", {"channel_id": "C1", "message": "via handler"}),
                           ("slack_send_message", {"channel_id": "C9", "message": "nowhere"}),
                           ("bump", {"kind": "deploys"}), ("bump", {}), ("archive", {"id": "C1"}), ("archive", {"id": "C2"}),
                           ("quiet", {}), ("raw", {}), ("boom", {}), ("refuse", {}), ("stamp", {}), ("selfref", {})]:
            out.setdefault(name, []).append(await c.call_tool(name, args))
        return out


def test_an_agenteval_mock_runs_unchanged_over_the_sdk(tmp_path):
    mock = MockServer.load(project(tmp_path))
    with HTTPMock(mock) as server:
        got = asyncio.run(_drive(server.url))
        state = httpx.get(server.url.removesuffix("/mcp") + "/_agentcap/state")
    assert state.status_code == 200
    s = state.json()
    assert got["tools"] == [t["name"] for t in SCHEMA["tools"]]
    [channels] = got["list_channels"]
    assert channels.structured_content == {"ok": True, "channels": [{"id": "C1", "name": "releases"}]}  # native list
    [post] = got["post_message"]
    assert not post.is_error and post.structured_content["n"] == 2 and post.structured_content["ts"].startswith("20")
    # every agenteval mutation op, and agentcap's {op, path, value} beside them in one list
    assert s["messages"][0] == {"channel_name": "releases", "text": "v1.2 is out"}
    assert s["counters"]["posts"] == 2 and s["counters"]["agentcap_form"] == 1
    assert s["meta"] == {"last_text": "v1.2 is out"} and s["tags"] == ["b", "v1.2 is out", "x"]
    # the documented handler: ctx.state.data and ctx.state.mutate(fn), a plain-dict error answer
    ok, missing = got["slack_send_message"]
    assert ok.structured_content["message"]["text"] == "via handler" and s["messages"][1]["text"] == "via handler"
    assert missing.structured_content == {"ok": False, "error": "channel_not_found"}
    # a rule without result answers {ok: true}; a missing argument matches `null`; no rule matching is an error
    deploys, no_kind = got["bump"]
    assert deploys.structured_content == {"ok": True} and s["counters"]["deploys"] == 1
    assert no_kind.is_error and text(no_kind) == "kind is required"
    c1, c2 = got["archive"]
    assert c1.structured_content == {"ok": True} and s["channels"][0]["archived"] is True
    assert c2.is_error and "no_matching_rule" in text(c2)
    # a handler returning None answers {ok: true}; one returning MCP content is sent as it is
    assert got["quiet"][0].structured_content == {"ok": True} and s["quiet"] is True
    assert text(got["raw"][0]) == "already MCP content"
    # a crash or a ToolError after changing ctx.state.data leaves the state as it was
    boom, refuse = got["boom"][0], got["refuse"][0]
    assert boom.is_error and text(boom).startswith("handler crashed: RuntimeError: kaboom (handler.py:")
    assert refuse.is_error and text(refuse) == "not allowed"
    assert len(s["messages"]) == 2 and s["counters"]["posts"] == 2 and "replaced" not in s
    # what a handler stores becomes plain JSON; a state without a JSON form is refused, unchanged
    assert s["stamped"] == {"at": "2026-01-02", "pair": [1, 2]} and got["stamp"][0].structured_content == {"when": "2026-01-02"}
    selfref = got["selfref"][0]
    assert selfref.is_error and "no JSON form" in text(selfref) and "loop" not in s
    assert [r["tool"] for r in mock.records()].count("boom") == 1  # errors are recorded too


def test_agenteval_cli_tools_and_call_on_an_agenteval_mock(tmp_path):
    d = project(tmp_path)
    r = CliRunner().invoke(cli, ["mock", "tools", str(d)])
    assert r.exit_code == 0, r.output
    assert "handler" in r.output and "rule(s)" in r.output
    r = CliRunner().invoke(cli, ["mock", "call", str(d), "post_message", "--args", '{"text": "hi"}'])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["structuredContent"]["ok"] is True  # stdout is JSON only, for jq
    assert '"text": "hi"' in r.stderr  # the state diff


def test_inline_tools_win_over_schema_as_in_agenteval(tmp_path):
    d = project(tmp_path, "name: s\nschema: schema.json\ntools: [{name: only_inline}]\n", None)
    assert load_spec(d).tool_names == ["only_inline"]
    d2 = project(tmp_path / "bare", "name: s\nschema: schema.json\n", None, schema=SCHEMA["tools"])  # a bare list
    assert load_spec(d2).tool_names == [t["name"] for t in SCHEMA["tools"]]


def test_a_path_segment_is_one_key_whatever_the_argument_holds(tmp_path):
    d = project(tmp_path, textwrap.dedent("""\
        tools: [{name: post}]
        seed: {channels: {C1: {messages: []}}}
        responses:
          post:
            mutate:
              - append: {path: "channels.{{ args.channel }}.messages", value: "{{ args.text }}"}
        """), None)
    m = MockServer.load(d)
    assert not m.call("post", {"channel": "C1", "text": "a"}).is_error
    assert not m.call("post", {"channel": "C1.messages", "text": "b"}).is_error  # a key named "C1.messages"
    out = m.call("post", {"text": "c"})  # no channel: an empty segment, refused
    assert out.is_error and "empty" in out.result
    assert m.snapshot() == {"channels": {"C1": {"messages": ["a"]}, "C1.messages": {"messages": ["b"]}}}


@pytest.mark.parametrize("yaml_text,handler,where", [
    ("tools: [{name: a}]\nresponses:\n  a:\n    mutate:\n      - push: {path: x}\n", None,
     "mock.yaml:5: responses.a.mutate.0.push: unknown mutation 'push'"),
    ("tools: [{name: a}]\nresponses:\n  a:\n    mutate:\n      - append: [1]\n", None,
     "mock.yaml:5: responses.a.mutate.0.append: append takes {path, value}"),
    ("tools: [{name: a}]\nresponses:\n  a:\n    mutate:\n      - {append: {path: x}, set: {path: y}}\n", None,
     "mock.yaml:5: responses.a.mutate.0: a mutation is '- <op>: {path, value}'"),
    ("tools: [{name: a}]\nresponses:\n  a:\n    mutate:\n      - append: {value: 1}\n", None,
     "responses.a.mutate.0.append.path: needs a dotted path"),
    ("tools: [{name: a}]\nresponses:\n  a:\n    mutate:\n      - append: {path: x, by: 2}\n", None,
     "responses.a.mutate.0.append.by: only increment takes 'by'"),
    ("tools: [{name: a}]\nresponses:\n  a:\n    mutate:\n      - set: {path: x, valu: 2}\n", None,
     "mock.yaml:5: responses.a.mutate.0.set.valu: unknown key"),
    ("tools: [{name: a}]\nresponses:\n  a:\n    mutate:\n      - set: {path: 'x..y', value: 2}\n", None,
     "responses.a.mutate.0.set.path: bad path 'x..y'"),
    ("tools: [{name: a}]\nresponses:\n  a:\n    when: 'args.x >'\n", None, "mock.yaml:4: responses.a.when: bad expression"),
    ("tools: [{name: a}]\nstrict: yes please\n", None, "mock.yaml:2: strict: must be true or false"),
    ("tools: [{name: a}]\nhandler_timeout: 0\n", None, "mock.yaml:2: handler_timeout: must be a number of seconds"),
    ("tools: [{name: a}]\n", "def tool_a(args):\n    return 1\n", "handler.py:1: tool_a: a handler is called as fn(args, ctx)"),
    ("tools: [{name: a}]\n", "HANDLERS = [print]\n", "handler.py: HANDLERS: must be a dict"),
    ("tools: [{name: a}]\n", "import os\n\nx = os.environ['NO_SUCH_VARIABLE_HERE']\n",
     "handler.py:3: handler does not import: KeyError"),
])
def test_bad_agenteval_forms_name_file_line_and_key(tmp_path, yaml_text, handler, where):
    assert_rejected(project(tmp_path, yaml_text, handler), where)
