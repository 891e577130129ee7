"""MCP mocks fail closed: an undefined template value, a handler that never returns, a signal, a
foreign Host — none of them corrupts the state, loses the record or stops the server. Real servers,
the real `mcp` SDK client; a stuck handler is held by a socket the test owns (no sleeps)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import textwrap
import threading
from pathlib import Path

import httpx
import pytest
from mcp import Client

from mcp_mocks import HTTPMock, MockServer
from tests.support.cli import start

REPO = Path(__file__).resolve().parent.parent
SLACK = REPO / "examples" / "mocks" / "slack"

UNDEF = """\
name: {name}
strict: {strict}
tools: [{{name: post}}, {{name: tag}}, {{name: ok}}]
seed: {{messages: [], n: 0}}
responses:
  post:
    mutate:
      - append: {{path: messages, value: {{text: "{{{{ args.text }}}}", label: "re: {{{{ args.text }}}}", to: "{{{{ args.to }}}}"}}}}
      - increment: {{path: n}}
    result: {{ok: true, text: "{{{{ args.text }}}}"}}
  tag:
    mutate:
      - set: {{path: "tags.{{{{ args.tag }}}}", value: 1}}
"""


def make(tmp_path: Path, name: str, text: str, handler: str | None = None) -> Path:
    d = tmp_path / name
    d.mkdir(parents=True)
    (d / "mock.yaml").write_text(text)
    if handler is not None:
        (d / "handler.py").write_text(textwrap.dedent(handler))
    return d


def serve(dirs: list[Path], out: Path):
    """`agentcap mock serve DIRS` in the background (tests.support.cli.start: stopped when the block ends)."""
    return start("mock", "serve", *map(str, dirs), "--out", str(out))


def mock_urls(proc: subprocess.Popen, n: int) -> dict[str, str]:
    """The name → URL lines `mock serve` prints once its ``n`` mocks listen."""
    urls = {}
    for _ in range(n):
        line = proc.stdout.readline()
        assert "\t" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        name, url = line.rstrip("\n").split("\t")
        urls[name] = url
    return urls


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> str:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.communicate(timeout=30)[1]


async def calls(url: str, *todo: tuple[str, dict]) -> list:
    async with Client(url) as c:
        return [await c.call_tool(name, args) for name, args in todo]


def test_undefined_arguments_null_empty_or_strict_error_and_nothing_is_lost(tmp_path):
    lenient = make(tmp_path, "lenient", UNDEF.format(name="lenient", strict="false"))
    strict = make(tmp_path, "strict", UNDEF.format(name="strict", strict="true"))
    out = tmp_path / "mocks"
    with serve([lenient, strict], out) as proc:
        urls = mock_urls(proc, 2)
        try:
            todo = [("post", {"to": "bob"}), ("tag", {}), ("post", {"text": "hi", "to": "al"})]
            [post, tag, full] = asyncio.run(calls(urls["lenient"], *todo))
            [spost, stag, sfull] = asyncio.run(calls(urls["strict"], *todo))
            routes = {n: httpx.get(u.removesuffix("/mcp") + "/_agentcap/state") for n, u in urls.items()}
        finally:
            err = stop(proc)
    assert proc.returncode == 0, err
    # agenteval's semantics: a lone {{ undefined }} is null, inside a longer string it is empty
    assert not post.is_error and post.structured_content == {"ok": True, "text": None}
    assert tag.is_error and "empty" in tag.content[0].text  # an undefined path segment: refused
    assert not full.is_error
    # strict: true — a tool error, and the state is untouched
    assert spost.is_error and "'text'" in spost.content[0].text and stag.is_error and not sfull.is_error
    assert {n: r.status_code for n, r in routes.items()} == {"lenient": 200, "strict": 200}
    assert routes["lenient"].json() == {"messages": [{"text": None, "label": "re: ", "to": "bob"},
                                                     {"text": "hi", "label": "re: hi", "to": "al"}], "n": 2}
    assert routes["strict"].json() == {"messages": [{"text": "hi", "label": "re: hi", "to": "al"}], "n": 1}
    # --out: both state files and every call, as valid JSON
    assert json.loads((out / "lenient.state.json").read_text()) == routes["lenient"].json()
    assert json.loads((out / "strict.state.json").read_text()) == routes["strict"].json()
    recs = [json.loads(line) for line in (out / "calls.jsonl").read_text().splitlines()]
    assert sorted((r["server"], r["tool"], r["is_error"]) for r in recs) == sorted(
        [("lenient", "post", False), ("lenient", "tag", True), ("lenient", "post", False),
         ("strict", "post", True), ("strict", "tag", True), ("strict", "post", False)])


STUCK = """\
name: stuck
handler_timeout: {timeout}
tools: [{{name: hang}}, {{name: post}}]
seed: {{messages: []}}
responses:
  post:
    mutate: [append: {{path: messages, value: "{{{{ args.text }}}}"}}]
"""
STUCK_HANDLER = """
    import socket

    def tool_hang(args, ctx):
        ctx.state.data["messages"].append("from the stuck handler")
        conn = socket.create_connection(("127.0.0.1", {port}))
        conn.recv(1)           # held here until the test lets go
        conn.sendall(b"x")     # then says it is about to return
        return {{"ok": True}}
    """


class Gate:
    """A listening socket a stuck handler connects to: the test knows when it is stuck, and frees it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(30)
        self.port = self.server.getsockname()[1]
        self.conn: socket.socket | None = None

    def wait_entered(self) -> None:
        self.conn, _ = self.server.accept()
        self.conn.settimeout(30)

    def release(self) -> None:
        if self.conn is not None:
            self.conn.shutdown(socket.SHUT_WR)
            assert self.conn.recv(1) == b"x"

    def close(self) -> None:
        for s in (self.conn, self.server):
            if s is not None:
                s.close()


def test_a_handler_that_never_returns_times_out_and_the_server_keeps_answering(tmp_path):
    gate = Gate()
    d = make(tmp_path, "stuck", STUCK.format(timeout=1.5), STUCK_HANDLER.format(port=gate.port))
    mock = MockServer.load(d)
    results: dict = {}
    try:
        with HTTPMock(mock) as server:
            base = server.url.removesuffix("/mcp")
            hung = threading.Thread(target=lambda: results.update(hang=asyncio.run(calls(server.url, ("hang", {})))))
            hung.start()
            gate.wait_entered()  # the handler is running, and stuck
            state = httpx.get(base + "/_agentcap/state", timeout=1)  # answers at once, not after the timeout
            records = httpx.get(base + "/_agentcap/calls", timeout=1)
            [post] = asyncio.run(calls(server.url, ("post", {"text": "after"})))  # waits for the deadline at most
            hung.join(30)
            gate.release()
            after = httpx.get(base + "/_agentcap/state", timeout=5).json()
    finally:
        gate.close()
    assert state.status_code == 200 and state.json() == {"messages": []} and records.json() == []
    assert not hung.is_alive()
    [hang] = results["hang"]
    assert hang.is_error and "timed out" in hang.content[0].text and "handler_timeout" in hang.content[0].text
    assert not post.is_error
    assert after == {"messages": ["after"]}  # the stuck handler's change was thrown away, even once it returned
    assert [(r["tool"], r["is_error"]) for r in mock.records()] == [("hang", True), ("post", False)]


async def stuck_call(url: str) -> None:
    try:
        await calls(url, ("hang", {}))
    except BaseException:  # noqa: BLE001 — the server stops under it: the point of the test
        pass


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_mock_serve_stops_on_the_first_signal_with_a_handler_stuck_and_writes_out(tmp_path, sig):
    gate = Gate()
    d = make(tmp_path, "stuck", STUCK.format(timeout=120), STUCK_HANDLER.format(port=gate.port))
    out = tmp_path / "mocks"
    with serve([d], out) as proc:
        urls = mock_urls(proc, 1)
        hung = threading.Thread(target=lambda: asyncio.run(stuck_call(urls["stuck"])), daemon=True)
        try:
            [post] = asyncio.run(calls(urls["stuck"], ("post", {"text": "kept"})))
            hung.start()
            gate.wait_entered()
            err = stop(proc, sig)  # one signal, while a call is stuck in the handler
        finally:
            gate.close()
    assert proc.returncode == 0, err
    assert not post.is_error
    assert json.loads((out / "stuck.state.json").read_text()) == {"messages": ["kept"]}
    [rec] = [json.loads(line) for line in (out / "calls.jsonl").read_text().splitlines()]
    assert rec["tool"] == "post" and rec["args"] == {"text": "kept"}


def test_debug_routes_get_the_same_host_and_origin_checks_as_mcp():
    mock = MockServer.load(SLACK)
    with HTTPMock(mock) as server:
        base = server.url.removesuffix("/mcp")
        evil = {"host": "attacker.example"}
        got = {
            "state_evil": httpx.get(base + "/_agentcap/state", headers=evil).status_code,
            "calls_evil": httpx.get(base + "/_agentcap/calls", headers=evil).status_code,
            "reset_evil": httpx.post(base + "/_agentcap/reset", headers=evil).status_code,
            "origin_evil": httpx.get(base + "/_agentcap/state", headers={"origin": "http://attacker.example"}).status_code,
            "container": httpx.get(base + "/_agentcap/state", headers={"host": f"10.0.2.2:{server.port}"}).status_code,
            "loopback": httpx.get(base + "/_agentcap/calls").status_code,
        }
    assert got == {"state_evil": 421, "calls_evil": 421, "reset_evil": 421, "origin_evil": 403, "container": 200,
                   "loopback": 200}


def test_slack_example_refuses_unknown_and_dotted_channel_ids():
    mock = MockServer.load(SLACK)
    seed = mock.snapshot()
    with HTTPMock(mock) as server:
        got = asyncio.run(calls(server.url,
                                ("slack_post_message", {"channel_id": "C09NOPE", "text": "x"}),
                                ("slack_post_message", {"channel_id": "C02RANDOM.x", "text": "x"}),
                                ("slack_post_message", {"channel_id": "C02RANDOM.messages", "text": "x"}),
                                ("slack_post_message", {"channel_id": "C02RANDOM", "text": "x"}),
                                ("slack_post_message", {"text": "no channel"}),
                                ("slack_post_message", {"channel_id": "C01GENERAL"}),
                                ("slack_add_reaction", {"channel_id": "C02RANDOM.x", "timestamp": "1", "reaction": "x"}),
                                ("slack_list_channels", {})))
    *refused, listed = got
    assert [r.is_error for r in refused] == [True] * 7
    assert [r.content[0].text.split(":")[0] for r in refused] == [
        "channel_not_found", "channel_not_found", "channel_not_found", "is_archived", "channel_not_found", "no_text",
        "channel_not_found"]
    assert not listed.is_error and listed.structured_content["channels"] == ["general", "random"]
    assert mock.snapshot() == seed


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_mock_serve_stdio_stops_on_a_signal_with_stdin_still_open_and_writes_out(tmp_path, sig):
    out = tmp_path / "mocks"

    def rpc(msg: dict) -> dict | None:
        proc.stdin.write((json.dumps({"jsonrpc": "2.0", **msg}) + "\n").encode())
        proc.stdin.flush()
        return json.loads(proc.stdout.readline()) if "id" in msg else None

    with start("mock", "serve", "--stdio", str(SLACK), "--out", str(out), stdin=subprocess.PIPE, text=False) as proc:
        rpc({"id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                                         "clientInfo": {"name": "test", "version": "1"}}})
        rpc({"method": "notifications/initialized"})
        got = rpc({"id": 2, "method": "tools/call", "params": {"name": "slack_get_users", "arguments": {}}})
        proc.send_signal(sig)  # stdin stays open: the signal alone must end it
        rc = proc.wait(timeout=30)
    assert rc == 0 and got["result"]["isError"] is False
    [rec] = [json.loads(line) for line in (out / "calls.jsonl").read_text().splitlines()]
    assert rec["tool"] == "slack_get_users" and json.loads((out / "slack.state.json").read_text())["next_ts"] == 200
