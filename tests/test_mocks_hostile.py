"""MCP mocks tried as a careless handler author and a hostile mock.yaml or agent would (issue 25): results
with no JSON form, BaseException from a handler, an import that never returns, names that would write
outside --out, import errors at their handler.py line, and kill -9 of `mock serve` — each over the class
of input, through the real `mcp` SDK client and the real CLI."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import textwrap
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from mcp import Client, StdioServerParameters

from agentcap_addons.wire.util.yamlfile import ConfigError
from agentcap_cli.main import cli
from mcp_mocks import HTTPMock, MockServer, load_spec
from tests.support.cli import agentcap, argv, start
from tests.support.mocks import assert_rejected

REPO = Path(__file__).resolve().parent.parent


def make(root: Path, yaml_text: str, handler: str | None = None, name: str = "m", **files: str) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "mock.yaml").write_text(textwrap.dedent(yaml_text))
    if handler is not None:
        (d / "handler.py").write_text(textwrap.dedent(handler))
    for fname, text in files.items():
        (d / fname).write_text(textwrap.dedent(text))
    return d


def strict_json(text: str | bytes) -> object:
    """``json.loads`` as RFC 8259 reads: NaN / Infinity are not JSON."""
    def refuse(const: str) -> None:
        raise ValueError(f"{const} is not JSON")
    return json.loads(text, parse_constant=refuse)


def jsonl(path: Path) -> list[dict]:
    return [strict_json(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------------------------------------- 1. results


VALUES = textwrap.dedent('''
    class Thing:
        def __str__(self):
            return "a thing"


    def value(kind):
        if kind == "bigint":
            return 10 ** 5000
        if kind in ("nan", "inf", "-inf"):
            return float(kind)
        if kind == "set":
            return {"only"}
        if kind == "frozenset":
            return frozenset(["only"])
        if kind == "object":
            return Thing()
        if kind == "bytes":
            return b"caf\\xc3\\xa9"
        if kind == "cycle":
            c = {}
            c["self"] = c
            return c


    def tool_give(args, ctx):
        v = value(args["kind"])
        return {"top": lambda: v, "dict": lambda: {"v": v}, "list": lambda: [v], "key": lambda: {v: 1}}[args["where"]]()


    def tool_keep(args, ctx):  # the same values left in the state
        ctx.state["kept"] = {"v": value(args["kind"])}


    def tool_replace(args, ctx):  # a state that is no mapping at all
        ctx.state = {"none": None, "list": [1], "int": 5, "str": "s", "tuple": ()}[args["kind"]]
    ''')
RESULTS_YAML = """
    name: results
    tools: [{name: give}, {name: keep}, {name: replace}, {name: rule}, {name: echo}]
    seed: {kept: null}
    responses:
      rule: {result: {v: "{{ args.x | float }}"}}
    """
# what has no JSON form whatever the fallback: a tool error naming where; the rest: the documented fallback
NO_FORM = {"bigint": "integer of more than", "nan": "nan", "inf": "inf", "-inf": "-inf", "cycle": "refers to itself"}
FALLBACK = {"set": ["only"], "frozenset": ["only"], "object": "a thing", "bytes": "café"}
WHERE = {"top": "result", "dict": "result.v", "list": "result.0", "key": "a key of result"}
KEY_FALLBACK = {"frozenset": "frozenset({'only'})", "object": "a thing", "bytes": "café"}  # str() of the key
UNHASHABLE = {"set", "cycle"}  # not a dict key in Python at all


def _expected(kind: str, where: str) -> object:
    v = FALLBACK[kind]
    return {"top": v, "dict": {"v": v}, "list": [v], "key": {KEY_FALLBACK.get(kind): 1}}[where]


@pytest.fixture(scope="module")
def results_mock(tmp_path_factory):
    mock = MockServer.load(make(tmp_path_factory.mktemp("results"), RESULTS_YAML, VALUES))
    with HTTPMock(mock) as server:
        yield mock, server


async def _one(url: str, tool: str, args: dict):
    async with Client(url) as c:
        return await asyncio.wait_for(c.call_tool(tool, args), 30)


def _answered_and_logged(mock: MockServer, out: Path, res) -> str:
    """The MCP text is strict JSON (or plain text), the call is in the log, and --out's log reads back."""
    text = res.content[0].text
    recorded = mock.records()[-1]["result"]
    assert text == recorded if isinstance(recorded, str) else strict_json(text) == recorded
    mock.write(out)
    lines = jsonl(out / "calls.jsonl")
    assert len(lines) == len(mock.records()) and lines[-1]["seq"] == mock.records()[-1]["seq"]
    strict_json((out / f"{mock.name}.state.json").read_text())
    return text


@pytest.mark.parametrize(("kind", "where"),  # (an unhashable value cannot be a dict key in Python: not generated)
                         [(k, w) for w in WHERE for k in [*NO_FORM, *FALLBACK] if not (w == "key" and k in UNHASHABLE)])
def test_a_handler_result_with_no_json_form_is_a_tool_error_and_the_log_stays_json(results_mock, tmp_path, kind, where):
    mock, server = results_mock
    res = asyncio.run(_one(server.url, "give", {"kind": kind, "where": where}))
    text = _answered_and_logged(mock, tmp_path, res)
    if kind in NO_FORM:
        assert res.is_error and "no JSON form" in text and NO_FORM[kind] in text, text
        assert f"{WHERE[where]}" in text and "handler crashed" not in text
        assert mock.records()[-1]["is_error"] and mock.records()[-1]["result"] == text
    else:
        assert not res.is_error, text
        want = _expected(kind, where)
        assert (text if isinstance(want, str) else strict_json(text)) == want  # text stays text


@pytest.mark.parametrize("kind", list(NO_FORM) + list(FALLBACK))
def test_a_state_left_with_no_json_form_is_a_tool_error_and_the_state_unchanged(results_mock, tmp_path, kind):
    mock, server = results_mock
    before = mock.snapshot()
    res = asyncio.run(_one(server.url, "keep", {"kind": kind}))
    _answered_and_logged(mock, tmp_path, res)
    if kind in NO_FORM:
        assert res.is_error and "left a state with no JSON form" in res.content[0].text and mock.snapshot() == before
    else:
        assert not res.is_error and mock.snapshot()["kept"] == {"v": FALLBACK[kind]}


@pytest.mark.parametrize("kind", ["none", "list", "int", "str", "tuple"])
def test_a_handler_replacing_the_state_with_no_mapping_is_a_tool_error(results_mock, tmp_path, kind):
    mock, server = results_mock
    before = mock.snapshot()
    res = asyncio.run(_one(server.url, "replace", {"kind": kind}))
    _answered_and_logged(mock, tmp_path, res)
    assert res.is_error and "as the state, not a mapping" in res.content[0].text and mock.snapshot() == before


@pytest.mark.parametrize("x", ["nan", "inf", "-inf", "1e999"])
def test_a_template_yielding_nan_or_infinity_is_a_tool_error(results_mock, tmp_path, x):
    mock, server = results_mock
    res = asyncio.run(_one(server.url, "rule", {"x": x}))
    _answered_and_logged(mock, tmp_path, res)
    assert res.is_error and "JSON has no NaN or Infinity" in res.content[0].text


YAML_PLACES = {  # where a mock.yaml may hold a YAML number JSON has not; the line and key it is refused at
    "seed": ("seed: {{x: [{c}]}}\n", 3, "seed"),
    "result": ("responses:\n  t: {{result: {{v: {c}}}}}\n", 4, "responses.t.result"),
    "match": ("responses:\n  t:\n    - match: {{v: {c}}}\n", 5, "responses.t.0.match"),
    "error": ("responses:\n  t: {{error: {c}}}\n", 4, "responses.t.error"),
    "mutation": ("responses:\n  t:\n    mutate: [set: {{path: x, value: {c}}}]\n", 5, "responses.t.mutate.0.set"),
}


@pytest.mark.parametrize("const", [".nan", ".inf", "-.inf", ".NaN", "+.Inf"])
@pytest.mark.parametrize("place", list(YAML_PLACES))
def test_a_yaml_nan_or_infinity_in_mock_yaml_is_an_error_at_its_line(tmp_path, place, const):
    text, line, key = YAML_PLACES[place]
    d = make(tmp_path, "name: m\ntools: [{name: t}]\n" + text.format(c=const))
    assert_rejected(d, f"mock.yaml:{line}: {key}: has no JSON form: ")


def _rpc(client: httpx.Client, url: str, body: str, session: str | None = None) -> httpx.Response:
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json",
               "mcp-protocol-version": "2025-06-18"}
    if session:
        headers["mcp-session-id"] = session
    return client.post(url, content=body, headers=headers, timeout=30)


@pytest.mark.parametrize("const", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("tool", ["echo", "give"])
def test_nan_an_agent_sends_never_reaches_mcp_text_and_the_record_stays_json(results_mock, tmp_path, const, tool):
    """Python's JSON reader (and so the SDK's) takes NaN / Infinity in the arguments; the mock refuses them."""
    mock, server = results_mock
    with httpx.Client() as client:
        init = _rpc(client, server.url, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        session = init.headers["mcp-session-id"]
        _rpc(client, server.url, '{"jsonrpc": "2.0", "method": "notifications/initialized"}', session)
        call = '{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "TOOL", "arguments": {"x": CONST}}}'
        got = _rpc(client, server.url, call.replace("TOOL", tool).replace("CONST", const), session)
    body = strict_json(got.text)  # the whole answer is strict JSON
    assert body["result"]["isError"] and "arguments are not JSON" in body["result"]["content"][0]["text"]
    mock.write(tmp_path)
    assert jsonl(tmp_path / "calls.jsonl")[-1]["args"]["x"] == const  # recorded as sent, as a string


# ------------------------------------------------------------------------------------ 2. BaseException

RAISES = {  # what the handler raises → what the tool error says
    "SystemExit(3)": "SystemExit: 3",
    "SystemExit()": "SystemExit",
    "KeyboardInterrupt()": "KeyboardInterrupt",
    "GeneratorExit()": "GeneratorExit",
    "BaseException('odd')": "BaseException: odd",
    "Custom('mine')": "Custom: mine",
    "Unprintable()": "Unprintable",
    "RecursionError('deep')": "RecursionError: deep",
}
CRASHY = '''
    class Custom(BaseException):
        pass


    class Unprintable(Exception):
        def __str__(self):
            raise SystemExit("not even this")


    def tool_crash(args, ctx):
        ctx.state["touched"] = True
        raise {exc}
    '''
CRASH_LINE = textwrap.dedent(CRASHY).splitlines().index("    raise {exc}") + 1
CRASH_YAML = "name: crashy\ntools: [{name: crash}, {name: fine}]\nseed: {touched: false}\n"


async def _crash_then_fine(client_arg) -> tuple:
    async with Client(client_arg) as c:
        crash = await asyncio.wait_for(c.call_tool("crash", {}), 30)
        fine = await asyncio.wait_for(c.call_tool("fine", {"after": 1}), 30)
        return crash, fine


def _check_crash(exc: str, crash, fine) -> None:
    text = crash.content[0].text
    assert crash.is_error and text.startswith(f"handler crashed: {RAISES[exc]}") and f"(handler.py:{CRASH_LINE})" in text, text
    assert not fine.is_error and strict_json(fine.content[0].text)["args"] == {"after": 1}


@pytest.mark.parametrize("exc", list(RAISES))
def test_any_base_exception_from_a_handler_is_a_tool_error_over_http(tmp_path, exc):
    mock = MockServer.load(make(tmp_path, CRASH_YAML, CRASHY.format(exc=exc)))
    with HTTPMock(mock) as server:
        crash, fine = asyncio.run(_crash_then_fine(server.url))
    _check_crash(exc, crash, fine)
    assert [(r["tool"], r["is_error"]) for r in mock.records()] == [("crash", True), ("fine", False)]
    assert mock.snapshot() == {"touched": False}  # the crash changed nothing


@pytest.mark.parametrize("exc", ["SystemExit(3)", "KeyboardInterrupt()", "GeneratorExit()", "Custom('mine')"])
def test_any_base_exception_from_a_handler_is_a_tool_error_over_stdio(tmp_path, exc):
    d = make(tmp_path, CRASH_YAML, CRASHY.format(exc=exc))
    out = tmp_path / "out"
    command, *args = argv("mock", "serve", "--stdio", str(d), "--out", str(out))
    params = StdioServerParameters(command=command, args=args, cwd=str(REPO), env=dict(os.environ))
    crash, fine = asyncio.run(asyncio.wait_for(_crash_then_fine(params), 60))
    _check_crash(exc, crash, fine)
    assert [(r["tool"], r["is_error"]) for r in jsonl(out / "calls.jsonl")] == [("crash", True), ("fine", False)]


# ------------------------------------------------------------------------------ 3. an import that hangs

HANGS = {  # the handler's module level; the line the error names
    "a Python loop": ("x = 0\nwhile True: x += 1\n", 2),
    "a sleep": ("import time\n\ntime.sleep(10 ** 6)\n", 3),
    "C code holding the GIL": ("import re\n\nre.match(r'(a+)+$', 'a' * 64 + 'b')\n", 3),
}
HANG_YAML = "name: {name}\nimport_timeout: 1\ntools: [{{name: t}}]\n"


def _hanging_project(tmp_path: Path, body: str) -> Path:
    project = tmp_path / "p"
    shutil.copytree(REPO / "examples" / "my-eval", project, ignore=shutil.ignore_patterns("reports", ".agentcap"))
    slack = project / "mcp" / "slack"
    (slack / "mock.yaml").write_text((slack / "mock.yaml").read_text() + "import_timeout: 1\n")
    (slack / "handler.py").write_text(body)
    return project


@pytest.mark.parametrize("command", ["mock tools", "mock serve", "validate"])
@pytest.mark.parametrize("hang", list(HANGS))
def test_a_handler_whose_import_never_returns_is_an_error_within_the_import_timeout(tmp_path, hang, command):
    body, line = HANGS[hang]
    if command == "validate":
        project = _hanging_project(tmp_path, body)
        argv_ = ["validate", "--root", str(project)]
        handler = project / "mcp" / "slack" / "handler.py"
    else:
        d = make(tmp_path, HANG_YAML.format(name="hangs"))
        (d / "handler.py").write_text(body)
        argv_ = [*command.split(), str(d), *(["--out", str(tmp_path / "out")] if command == "mock serve" else [])]
        handler = d / "handler.py"
    r = agentcap(*argv_, timeout=60)  # its own process group, killed when it ends
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert f"{handler}:{line}: handler does not import within 1s (import_timeout)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stdout.strip() == ""
    assert not (tmp_path / "out").exists()


def test_a_handler_that_imports_in_time_is_imported_once_per_process_with_its_side_effects(tmp_path):
    d = make(tmp_path, HANG_YAML.format(name="quick").replace("import_timeout: 1", "import_timeout: 5"),
             "import os, pathlib\npathlib.Path(os.environ['MARK']).open('a').write('x')\n"
             "def tool_t(args, ctx):\n    return 1\n")
    mark = tmp_path / "mark"
    r = agentcap("mock", "tools", str(d), "--json", timeout=60, MARK=str(mark))
    assert r.returncode == 0 and json.loads(r.stdout)["answered_by"] == "handler", r.stderr
    assert mark.read_text() == "xx"  # once in the probe, once for real: what docs/mocks.md says


# ------------------------------------------------------------------------------------------- 4. names

HOSTILE_NAMES = [
    "../../x", "../x", "..", ".", "./x", "x/..", "/tmp/abs", "a/b", "a\\b", "C:\\x", ".hidden", "-flag", "",
    "a\x00b", "x" * 65, "x" * 300, "sl\u0430ck", "\uff53lack", "s\u200black", "caf\u00e9", "a b", "abc\n", "\nabc",
    "a:b", "a*", "~", "$HOME", 5, True, ["x"], {"a": 1},
]
GOOD_NAMES = ["slack", "my-server", "s_1", "A", "_x", "9lives", "x" * 64]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
def test_a_name_that_is_not_an_identifier_is_refused_and_nothing_is_written(tmp_path, name):
    d = make(tmp_path / "in", f"tools: [{{name: t}}]\nname: {json.dumps(name)}\n")
    assert_rejected(d, "mock.yaml:2: name: ")
    before = sorted(p for p in tmp_path.rglob("*"))
    r = CliRunner().invoke(cli, ["mock", "serve", str(d), "--out", str(tmp_path / "out" / "mocks")])
    assert r.exit_code == 2 and "name:" in r.output and "Traceback" not in r.output
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written, inside or out


@pytest.mark.parametrize("dirname", [".hidden", "-flag", "a b", "sl\u0430ck", "x" * 65])
def test_a_directory_name_that_would_be_the_server_name_is_checked_too(tmp_path, dirname):
    d = make(tmp_path, "tools: [{name: t}]\n", name=dirname)
    with pytest.raises(ConfigError, match=r"mock.yaml(:\d+)?: the directory's name .* is not a server name"):
        load_spec(d)
    (d / "mock.yaml").write_text("name: fine\ntools: [{name: t}]\n")  # naming it is the way out
    assert load_spec(d).name == "fine"


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_identifier_names_load_and_write_inside_out(tmp_path, name):
    m = MockServer.load(make(tmp_path, f"name: {name}\ntools: [{{name: t}}]\n"))
    m.call("t", {})
    m.write(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(["calls.jsonl", f"{name}.state.json"])


@pytest.mark.parametrize("target", ["calls.jsonl", "m.state.json"])
def test_a_symlink_in_out_pointing_elsewhere_is_refused_not_followed(tmp_path, target):
    d = make(tmp_path, "name: m\ntools: [{name: t}]\n")
    out, outside = tmp_path / "out", tmp_path / "outside.txt"
    out.mkdir()
    outside.write_text("host file\n")
    (out / target).symlink_to(outside)
    r = CliRunner().invoke(cli, ["mock", "serve", str(d), "--out", str(out)])
    assert r.exit_code == 2 and "outside --out" in r.output, r.output
    assert outside.read_text() == "host file\n"


# ---------------------------------------------------------------------------------- 5. import errors

IMPORT_ERRORS = {  # handler.py (and a sibling), the line and the start of the message
    "SyntaxError": ({"handler.py": "import json\n\ndef tool_t(args, ctx)\n    return 1\n"}, 3, "SyntaxError: "),
    "IndentationError": ({"handler.py": "import json\n\ndef tool_t(args, ctx):\nreturn 1\n"}, 4, "IndentationError: "),
    "NameError": ({"handler.py": "import json\n\nX = undefined_name\n"}, 3, "NameError: name 'undefined_name'"),
    "ModuleNotFoundError": ({"handler.py": "import os\n\nimport slackk\n"}, 3,
                            "ModuleNotFoundError: No module named 'slackk'"),
    "ImportError": ({"handler.py": "import os\nfrom json import nope\n"}, 2, "ImportError: cannot import name 'nope'"),
    "in a library": ({"handler.py": "import json\n\n\nCFG = json.loads('{bad')\n"}, 4, "JSONDecodeError: "),
    "in a sibling": ({"handler.py": "import os\n\nimport helpers\n", "helpers.py": "import json\nX = json.nope\n"}, 3,
                     "AttributeError: "),
    "SyntaxError in a sibling": ({"handler.py": "import os\nimport helpers\n", "helpers.py": "def f(:\n    pass\n"}, 2,
                                 "SyntaxError in "),
    "SystemExit": ({"handler.py": "import sys\n\nsys.exit(0)\n"}, 3, "SystemExit: 0"),
    "KeyboardInterrupt": ({"handler.py": "\nraise KeyboardInterrupt\n"}, 2, "KeyboardInterrupt"),
}


@pytest.mark.parametrize("form", ["absolute", "relative", "dot-relative", "symlinked"])
@pytest.mark.parametrize("case", list(IMPORT_ERRORS))
def test_an_import_error_names_its_line_in_handler_py(tmp_path, monkeypatch, case, form):
    files, line, message = IMPORT_ERRORS[case]
    d = make(tmp_path, "name: m\ntools: [{name: t}]\n", **files)
    monkeypatch.chdir(tmp_path)
    target = {"absolute": str(d), "relative": "m", "dot-relative": "./m/../m"}.get(form)
    if form == "symlinked":
        (tmp_path / "link").symlink_to(d)
        target = "link"
    with pytest.raises(ConfigError) as e:
        load_spec(target)
    assert f"handler.py:{line}: handler does not import: {message}" in str(e.value), str(e.value)
    r = CliRunner().invoke(cli, ["mock", "tools", target])
    assert r.exit_code == 2 and f"handler.py:{line}: handler does not import: {message}" in r.output, r.output


# ------------------------------------------------------------------------------------------- 6. kill -9

JOURNAL_YAML = """
    name: {name}
    tools: [{{name: post}}, {{name: count}}, {{name: note}}]
    seed: {{posts: [], n: 0}}
    responses:
      post:
        mutate:
          - append: {{path: posts, value: "{{{{ args.text }}}}"}}
          - increment: {{path: n}}
        result: {{ok: true, n: "{{{{ state.n }}}}"}}
      count: {{result: "{{{{ state.n }}}}"}}
    """
JOURNAL_HANDLER = """
    def tool_note(args, ctx):
        ctx.state["note"] = args.get("text")
        return {"noted": ctx.state["note"]}
    """


async def _work(urls: dict[str, str], n: int) -> list[tuple[str, str, bool]]:
    done = []
    async with Client(urls["alpha"]) as a, Client(urls["beta"]) as b:
        for i in range(n):
            for name, c in (("alpha", a), ("beta", b)):
                tool = ("post", "count", "note")[i % 3]
                res = await asyncio.wait_for(c.call_tool(tool, {"text": f"{name}-{i}"}), 30)
                done.append((name, tool, res.is_error))
    return done


def test_kill_9_of_mock_serve_loses_no_completed_call(tmp_path):
    dirs = [make(tmp_path, JOURNAL_YAML.format(name=n), JOURNAL_HANDLER, name=n) for n in ("alpha", "beta")]
    out = tmp_path / "out"
    out.mkdir()
    (out / "calls.jsonl").write_text('{"server": "alpha", "seq": 1, "at": "0", "tool": "old run"}\n'
                                     '{"server": "other", "seq": 1, "at": "0", "tool": "kept"}\n')
    with start("mock", "serve", *map(str, dirs), "--out", str(out), "-q") as proc:
        urls = {}
        for _ in dirs:
            name, url = proc.stdout.readline().rstrip("\n").split("\t")
            urls[name] = url
        done = asyncio.run(asyncio.wait_for(_work(urls, 20), 120))
        live = {n: httpx.get(u.removesuffix("/mcp") + "/_agentcap/state", timeout=10).json() for n, u in urls.items()}
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    lines = jsonl(out / "calls.jsonl")
    assert [r["tool"] for r in lines if r["server"] == "other"] == ["kept"]  # another server's lines stay
    mine = [r for r in lines if r["server"] in urls]
    assert sorted((r["server"], r["tool"], r.get("is_error")) for r in mine) == sorted(done)  # every call, once
    for name in urls:
        assert [r["seq"] for r in mine if r["server"] == name] == list(range(1, 21))
        assert strict_json((out / f"{name}.state.json").read_text()) == live[name]  # the state after the last call
    assert live["alpha"]["n"] == 7 and live["beta"]["note"] == "beta-17"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_reset_rewrites_that_servers_lines_and_a_clean_stop_leaves_the_same_files(tmp_path):
    d = make(tmp_path, JOURNAL_YAML.format(name="alpha"), JOURNAL_HANDLER, name="alpha")
    out = tmp_path / "out"
    with start("mock", "serve", str(d), "--out", str(out), "-q") as proc:
        url = proc.stdout.readline().rstrip("\n").split("\t")[1]
        asyncio.run(_one(url, "post", {"text": "before"}))
        assert [r["args"] for r in jsonl(out / "calls.jsonl")] == [{"text": "before"}]  # written before the answer
        assert httpx.post(url.removesuffix("/mcp") + "/_agentcap/reset", timeout=10).status_code == 200
        assert jsonl(out / "calls.jsonl") == [] and strict_json((out / "alpha.state.json").read_text()) == {
            "posts": [], "n": 0}
        asyncio.run(_one(url, "post", {"text": "after"}))
        during = (out / "calls.jsonl").read_text(), (out / "alpha.state.json").read_text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    assert [r["args"] for r in jsonl(out / "calls.jsonl")] == [{"text": "after"}]
    assert (out / "calls.jsonl").read_text() == during[0] and json.loads(during[1]) == {"posts": ["after"], "n": 1}
