"""agenteval's console lines and the reports, through real pipes: ``agenteval run -v`` prints
``scenario …`` once per cell, ``trial i/N`` with N the repeats and ``suite: …`` on stdout (logs on
stderr); a run stopped at its max turns, by its timeout, or a mock handler past its handler_timeout
is named as such in the console, results.json, junit.xml and report.md; report.md lists the
``required: false`` failures of a passing run. No podman: a plugin provider runs a small agent loop on
the host (a subprocess, as agenteval's claude provider runs the CLI) against agentcap's proxy and
scripted model, calling the MCP mocks with the real mcp SDK client.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from agentcap_cli.suite.runner import hit_max_turns, plugin_stop

PROVIDER = '''
import json
import subprocess
import sys
from pathlib import Path

from agenteval.providers.base import Provider, ProviderRunOutput
from agenteval.providers.registry import register

LOOP = Path(__file__).with_name("agent_loop.py")


class LoopProvider(Provider):
    """Runs agent_loop.py as a CLI, as agenteval's claude provider runs claude: a timeout raises."""

    name = "loop"

    def install(self, *, agent_dir, workspace, mock_endpoints):
        self.mocks = dict(mock_endpoints)

    def run(self, *, prompt, workspace, model, timeout, max_turns, env):
        cfg = {"prompt": prompt, "model": model, "max_turns": max_turns, "mocks": self.mocks}
        p = subprocess.run([sys.executable, str(LOOP)], input=json.dumps(cfg), capture_output=True, text=True,
                           env=env, cwd=workspace, timeout=timeout)
        out = json.loads(p.stdout or "{}")
        return ProviderRunOutput(final_output=out.get("final", ""), num_turns=out.get("turns", 0),
                                 exit_code=p.returncode, error=f"agent exited with {p.returncode}: {p.stderr[-300:]}"
                                 if p.returncode else None, total_cost_usd=0.01)


register(LoopProvider)
'''

AGENT_LOOP = '''
"""A minimal tool-calling agent: OpenAI chat against $OPENAI_BASE_URL, tools from the MCP mocks; exits
1 when it used every turn it was given (as claude -p does at --max-turns)."""
import asyncio
import json
import os
import sys
from contextlib import AsyncExitStack

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def main(cfg):
    base, key = os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"]
    tools, where = [], {}
    async with AsyncExitStack() as stack:
        for url in cfg["mocks"].values():
            read, write = await stack.enter_async_context(streamable_http_client(url))
            session = await stack.enter_async_context(ClientSession(read, write))
            await session.initialize()
            for t in (await session.list_tools()).tools:
                tools.append({"type": "function", "function": {"name": t.name, "description": t.description or "",
                                                               "parameters": t.input_schema}})
                where[t.name] = session
        messages = [{"role": "user", "content": cfg["prompt"]}]
        async with httpx.AsyncClient(timeout=60) as http:
            for turn in range(1, cfg["max_turns"] + 1):
                r = await http.post(base + "/chat/completions", headers={"authorization": f"Bearer {key}"},
                                    json={"model": cfg["model"], "messages": messages, "tools": tools})
                r.raise_for_status()
                msg = r.json()["choices"][0]["message"]
                calls = msg.get("tool_calls") or []
                if not calls:
                    return {"final": msg.get("content") or "", "turns": turn}, 0
                messages.append({"role": "assistant", "content": msg.get("content"), "tool_calls": calls})
                for c in calls:
                    name = c["function"]["name"]
                    res = await where[name].call_tool(name, json.loads(c["function"]["arguments"] or "{}"))
                    text = "".join(getattr(b, "text", "") for b in res.content)
                    messages.append({"role": "tool", "tool_call_id": c["id"], "content": text})
    return {"final": "", "turns": cfg["max_turns"]}, 1


out, code = asyncio.run(main(json.loads(sys.stdin.read())))
print(json.dumps(out))
sys.exit(code)
'''

MODEL = '''
model: scripted
replies:
  - match: {user: LOOP}
    text: again
    tool_calls: [{name: post_message, arguments: {text: again}}]
  - match: {tool_result: true}
    text: "Done: posted hello."
  - match: {user: SLOW}
    text: waiting
    tool_calls: [{name: slow_tool, arguments: {seconds: 3}}]
  - match: {user: HANG}
    text: waiting
    tool_calls: [{name: slow_tool, arguments: {seconds: 2}}]
  - match: {step: 0}
    text: Posting.
    tool_calls: [{name: post_message, arguments: {text: hello}}]
'''

TOOLS = '''
tools:
- name: post_message
  description: Post a message.
  inputSchema: {type: object, properties: {text: {type: string}}, required: [text]}
- name: slow_tool
  description: Takes its time.
  inputSchema: {type: object, properties: {seconds: {type: number}}}
handler: handler.py
responses:
  post_message:
    mutate: [{append: {path: messages, value: "{{ args.text }}"}}]
    result: {ok: true}
seed: {messages: []}
'''

HANDLER = "import time\n\n\ndef tool_slow_tool(args, ctx):\n    time.sleep(float(args['seconds']))\n    return {'ok': True}\n"

POSTED = "{kind: tool_called, server: %s, tool: post_message, min_count: 1}"
# scenario id → (prompt, its mock, run: block, assertions, expected: (passes, stop, handler timeout, warned))
SCENARIOS = {
    "ok": ("post hello", "demo", {}, [POSTED % "demo", "{kind: output_contains, values: [posted]}"],
           (True, None, False, False)),
    "bad": ("post hello", "demo", {}, ["{kind: output_contains, values: [NEVER]}"], (False, None, False, False)),
    "soft": ("post hello", "demo", {}, [POSTED % "demo", "{kind: output_contains, values: [NEVER], required: false}"],
             (True, None, False, True)),
    "loop": ("LOOP", "demo", {"max_turns": 3}, [POSTED % "demo"], (False, "max_turns", False, False)),
    "slow": ("SLOW", "slowmock", {"timeout_seconds": 1}, ["{kind: output_contains, values: [posted]}"],
             (False, "timeout", False, False)),
    "hang": ("HANG", "demo", {}, ["{kind: output_contains, values: [posted]}"], (True, None, True, True)),
}
AGENTEVAL = [sys.executable, "-c", "from agentcap_cli.main import agenteval_main; agenteval_main()"]


def make_project(root: Path) -> Path:
    (root / "providers").mkdir(parents=True)
    (root / "providers" / "__init__.py").write_text("")
    (root / "providers" / "loop.py").write_text(PROVIDER)
    (root / "providers" / "agent_loop.py").write_text(AGENT_LOOP)
    (root / "model.yaml").write_text(MODEL)
    (root / "agenteval.yaml").write_text("provider: loop\nmodels: [m1]\nrepeats: 1\nplugins: [providers.loop]\n"
                                         "upstream: {script: model.yaml}\n")
    (root / "agents" / "bot").mkdir(parents=True)
    (root / "agents" / "bot" / "capabilities.yaml").write_text("providers: [claude-code]\n")
    for sid, (prompt, mock, run, checks, _) in SCENARIOS.items():
        d = root / "scenarios" / sid
        m = d / "mcp" / mock
        m.mkdir(parents=True)
        timeout = 0.3 if mock == "demo" else 30
        (m / "mock.yaml").write_text(f"name: {mock}\nhandler_timeout: {timeout}\n" + TOOLS)
        (m / "handler.py").write_text(HANDLER)
        (d / "scenario.yaml").write_text(f"id: {sid}\nagent: bot\nprompt: {prompt}\nmcp: [{mock}]\n"
                                         f"run: {json.dumps(run)}\nassertions:\n" + "".join(f"- {c}\n" for c in checks))
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("console") / "eval")


def run(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_", "AGENTCAP_"))}
    env.update(AGENTCAP_WORKSPACE=str(project), COLUMNS="300")
    # stdout and stderr are two real pipes: what a `| tee log` or `> log` would keep is stdout alone
    return subprocess.run(AGENTEVAL + ["run", "--root", str(project), "-v", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def blocks(stdout: str) -> dict[str, list[str]]:
    """The trial lines under each scenario line, in the order printed; a second header is an error."""
    out: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        if m := re.fullmatch(r"scenario '([^']+)' provider=loop model=m1", line):
            assert m[1] not in out, f"the scenario line of {m[1]} is printed twice:\n{stdout}"
            current = out.setdefault(m[1], [])
        elif line.startswith("  trial "):
            assert current is not None, line
            current.append(line)
    return out


@pytest.mark.timeout(400)
@pytest.mark.parametrize("repeats", [1, 3])
@pytest.mark.parametrize("selection", ["all", "passing"])
def test_console_lines_and_reports_name_what_happened(project: Path, tmp_path: Path, repeats: int, selection: str):
    chosen = [s for s, spec in SCENARIOS.items() if selection == "all" or spec[4][0]]
    reports = tmp_path / "reports"
    r = run(project, "--repeat", str(repeats), "--report-dir", str(reports), "-k", " or ".join(chosen))
    suite_pass = all(SCENARIOS[s][4][0] for s in chosen)
    assert r.returncode == (0 if suite_pass else 1), r.stderr[-3000:]
    # stdout: agenteval's lines, then the reports dir; stderr: none of them
    out = r.stdout.splitlines()
    n_pass = sum(repeats for s in chosen if SCENARIOS[s][4][0])
    assert out[-2:] == [f"suite: {n_pass}/{repeats * len(chosen)} runs passed -> {'PASS' if suite_pass else 'FAIL'}",
                        str(reports)], r.stdout
    assert not re.search(r"^(suite: |scenario '|\s*trial \d+/\d+:)", r.stderr, re.M), r.stderr
    printed = blocks(r.stdout)
    assert sorted(printed) == sorted(chosen)
    results = json.loads((reports / "results.json").read_text())
    cases = {c.get("name"): c for c in ET.fromstring((reports / "junit.xml").read_bytes()).iter("testcase")}
    md = (reports / "report.md").read_text()
    assert "exited with" not in r.stdout + json.dumps(results) + md
    for sid in chosen:
        passes, stop, handler_timeout, warned = SCENARIOS[sid][4]
        lines = printed[sid]
        assert [re.match(r"  trial (\d+)/(\d+): (\w+)", x).groups() for x in lines] == \
            [(str(i), str(repeats), "PASS" if passes else "FAIL") for i in range(1, repeats + 1)], lines
        for i, line in enumerate(lines, 1):
            rec = next(x for x in results["records"] if x["cell"] == sid and x["repeat"] == i)
            case = cases[f"{sid}#{i}"]
            props = {p.get("name"): p.get("value") for p in case.iter("property")}
            failure = case.find("failure")
            assert rec["passed"] is passes and rec["stop"] == stop
            assert (failure is not None) is (not passes)
            if stop == "max_turns":
                assert "max_turns: provider loop: max turns reached (max_turns 3)" in line
                assert "max turns reached (max_turns 3)" in rec["error"]
                assert failure is not None and failure.get("type") == "MaxTurnsReached" and props["stop"] == "max_turns"
                assert "- run: provider loop: max turns reached (max_turns 3)" in md
            elif stop == "timeout":
                assert "timeout: provider loop: timed out after 1 s" in line
                assert failure is not None and failure.get("type") == "Timeout" and props["stop"] == "timeout"
                assert "- run: provider loop: timed out after 1 s" in md
            else:
                assert "stop" not in props and "max turns" not in line and "timed out after" not in line
            assert ("handler_timeout=[demo.slow_tool]" in line) is handler_timeout
            assert bool(rec["handler_timeouts"]) is handler_timeout
            err = case.find("system-err")
            notes = err.text if err is not None else ""
            assert ("handler timeout: demo.slow_tool: handler timed out" in notes) is handler_timeout
            assert ("(optional) output_contains" in notes) is (sid == "soft")
            warning = re.compile(rf"^- \*\*{sid}#{i}\*\*: ", re.M)
            assert bool(warning.search(md.split("### Warnings", 1)[-1] if "### Warnings" in md else "")) is warned
    assert ("✅ passed" in md) is suite_pass


@pytest.mark.parametrize("line", ["JUSTAKEY", "export FOO", "sk-ant-secret-token-123"])
@pytest.mark.parametrize("at", [1, 3])
def test_a_dotenv_line_without_equals_is_a_warning_naming_file_line(tmp_path: Path, line: str, at: int):
    root = make_project(tmp_path / "eval")
    lines = ["# keys", "A=1", "B='two'"]
    lines.insert(at - 1, line)
    (root / ".env").write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTCAP_", "A", "B"))}
    r = subprocess.run(AGENTEVAL + ["validate", "--root", str(root)], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"warning: {root / '.env'}:{at}: not KEY=VALUE" in r.stderr
    assert line not in r.stderr + r.stdout  # the line itself may be a secret
    assert r.stderr.count("warning:") == 1 and "warning" not in r.stdout


@pytest.mark.parametrize("form", ["object", "stream"])
@pytest.mark.parametrize("subtype", ["error_max_turns", "success", "error_during_execution", None])
def test_claudes_result_json_names_a_max_turns_stop(tmp_path: Path, form: str, subtype: str | None):
    result = {"type": "result", "is_error": subtype != "success", "num_turns": 3, "result": "x"}
    if subtype:
        result["subtype"] = subtype
    doc = result if form == "object" else [{"type": "system"}, {"type": "assistant"}, result]
    out = tmp_path / "turn_01.out"
    out.write_text("some log line\n" + json.dumps(doc) + "\n")
    assert hit_max_turns(out) is (subtype == "error_max_turns")
    assert hit_max_turns(tmp_path / "missing.out") is False


@pytest.mark.parametrize("turns", [2, 3])
@pytest.mark.parametrize("exit_code,error", [(0, None), (1, "agent exited with 1"), (None, "timed out after 3s")])
@pytest.mark.parametrize("raw", [{}, {"subtype": "error_max_turns"}])
def test_a_plugin_runs_stop_is_read_from_its_output(turns: int, exit_code: int | None, error: str | None, raw: dict):
    out = SimpleNamespace(num_turns=turns, exit_code=exit_code, error=error, raw=raw)
    failed = bool(error) or exit_code not in (None, 0)
    want = "max_turns" if raw or (failed and turns >= 3) else "timeout" if error and "timed out" in error else None
    assert plugin_stop(out, 3) == want


def test_piped_stdout_keeps_the_lines_while_stderr_is_a_terminal(project: Path, tmp_path: Path):
    """``agenteval run -v | tee log`` on a terminal: rich's live bar on the stderr terminal redirects
    ``sys.stdout`` while it runs (a rich console sees through that proxy); agenteval's lines still reach
    the pipe, none of them the terminal."""
    import pty
    import threading

    master, slave = pty.openpty()
    seen: list[bytes] = []
    reader = threading.Thread(target=lambda: _drain(master, seen), daemon=True)
    reader.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_", "AGENTCAP_"))}
    env.update(AGENTCAP_WORKSPACE=str(project), TERM="xterm", COLUMNS="200")
    try:
        r = subprocess.run(AGENTEVAL + ["run", "--root", str(project), "-v", "--repeat", "2", "-k", "ok",
                                        "--report-dir", str(tmp_path / "reports")],
                           env=env, stdout=subprocess.PIPE, stderr=slave, text=True, timeout=300)
    finally:
        os.close(slave)
        reader.join(timeout=10)
        os.close(master)
    terminal = b"".join(seen).decode(errors="replace")
    assert r.returncode == 0, terminal[-3000:]
    lines = r.stdout.splitlines()
    assert lines[0] == "scenario 'ok' provider=loop model=m1" and len(lines) == 5, r.stdout
    assert all(re.match(rf"  trial {i}/2: PASS \$0\.0100 turns=2 ", lines[i]) for i in (1, 2)), r.stdout
    assert lines[3:] == ["suite: 2/2 runs passed -> PASS", str(tmp_path / "reports")]
    assert "repeats" in terminal  # the live bar ran on the terminal
    assert "suite: " not in terminal and "trial 1/2" not in terminal


def _drain(fd: int, into: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the slave side closed
            return
        if not chunk:
            return
        into.append(chunk)
