"""Every dataset an export writes loads the ways its consumers load it: `datasets.load_dataset(dir)`,
each config its card declares, the card's own snippet, and the same over hf:// from the Hub
stand-in — and the session files keep their tool calls, tool result ids and the tools the agent was
offered through that path (`datasets` + `teich`, as the card says).

The runs are generated over agent kinds: each speaks its API (chat completions, Anthropic Messages,
Responses) through a real capture proxy to the scripted model server (a shell tool call, its
result, an answer), and leaves its own trace with a tool call in its own format (pi, claude-code,
codex byte for byte; opencode's SQLite and qwen-code's JSONL converted). One mixed export of them
all, to a directory and to the Hub stand-in."""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from datasets import load_dataset
from huggingface_hub import DatasetCard

from agentcap_addons.wire.api.sessions import chat_tools
from agentcap_addons.wire.capture.records import iter_captures
from agentcap_addons.wire.capture.registry import Attribution, KeyRegistry, new_key
from agentcap_cli.harness.modelserver import ModelServer, make_responder
from agentcap_cli.harness.proxy import start_proxy
from agentcap_cli.runs.record import RunFile, RunRecord, TaskRecord
from tests.support.cli import agentcap
from tests.support.fakehub import FakeHub

PROMPT = "Create hello.txt with a greeting."
SHELL_PARAMS = {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}
NOTES_PARAMS = {"type": "object", "properties": {"topic": {"type": "string"}}}


# -- the agent kinds: the API each speaks, its shell tool, its own trace -----------------------------

def _jsonl(path: Path, lines: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def pi_trace(d: Path) -> None:
    _jsonl(d / ".pi/agent/sessions/--w--/2026-11-22_s1.jsonl", [
        {"type": "session", "version": 3, "id": "s1", "timestamp": "2026-11-22T00:00:00.000Z", "cwd": "/workspace"},
        {"type": "message", "id": "a1", "parentId": None, "timestamp": "2026-11-22T00:00:01.000Z",
         "message": {"role": "user", "content": [{"type": "text", "text": PROMPT}], "timestamp": 1}},
        {"type": "message", "id": "a2", "parentId": "a1", "timestamp": "2026-11-22T00:00:02.000Z",
         "message": {"role": "assistant", "model": "m", "timestamp": 2, "content": [
             {"type": "toolCall", "id": "pc1", "name": "bash", "arguments": {"command": "ls -la"}}],
             "usage": {"input": 10, "output": 5}}},
        {"type": "message", "id": "a3", "parentId": "a2", "timestamp": "2026-11-22T00:00:03.000Z",
         "message": {"role": "toolResult", "toolCallId": "pc1", "toolName": "bash",
                     "content": [{"type": "text", "text": "a.txt"}], "isError": False, "timestamp": 3}},
        {"type": "message", "id": "a4", "parentId": "a3", "timestamp": "2026-11-22T00:00:04.000Z",
         "message": {"role": "assistant", "model": "m", "timestamp": 4, "content": [{"type": "text", "text": "Done."}],
                     "usage": {"input": 20, "output": 2}}}])


def claude_trace(d: Path) -> None:
    base = {"sessionId": "u1", "cwd": "/workspace", "timestamp": "2026-11-22T00:00:01.000Z"}
    _jsonl(d / ".claude/projects/-workspace/u1.jsonl", [
        {**base, "type": "user", "uuid": "1", "message": {"role": "user", "content": PROMPT}},
        {**base, "type": "assistant", "uuid": "2", "message": {"id": "m1", "role": "assistant", "model": "m", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls -la"}}]}},
        {**base, "type": "user", "uuid": "3", "message": {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"}]}},
        {**base, "type": "assistant", "uuid": "4", "message": {"id": "m2", "role": "assistant", "model": "m",
                                                              "content": [{"type": "text", "text": "Done."}]}}])


def codex_trace(d: Path) -> None:
    at = {"timestamp": "2026-11-22T00:00:01.000Z"}
    _jsonl(d / ".codex/sessions/2026/11/22/rollout-x.jsonl", [
        {**at, "type": "session_meta", "payload": {"id": "cx1", "cwd": "/workspace"}},
        {**at, "type": "turn_context", "payload": {"model": "m"}},
        {**at, "type": "event_msg", "payload": {"type": "user_message", "message": PROMPT}},
        {**at, "type": "response_item", "payload": {"type": "message", "role": "user",
                                                    "content": [{"type": "input_text", "text": PROMPT}]}},
        {**at, "type": "response_item", "payload": {"type": "function_call", "call_id": "cc1", "name": "exec_command",
                                                    "arguments": "{\"cmd\": \"ls -la\"}"}},
        {**at, "type": "response_item", "payload": {"type": "function_call_output", "call_id": "cc1", "output": "a.txt"}},
        {**at, "type": "response_item", "payload": {"type": "message", "role": "assistant",
                                                    "content": [{"type": "output_text", "text": "Done."}]}}])


def opencode_trace(d: Path) -> None:
    db = d / ".local/share/opencode/opencode.db"
    db.parent.mkdir(parents=True)
    con = sqlite3.connect(db)
    con.executescript("""CREATE TABLE session (id TEXT, parent_id TEXT, title TEXT, time_created INTEGER);
        CREATE TABLE message (id TEXT, session_id TEXT, time_created INTEGER, data TEXT);
        CREATE TABLE part (id TEXT, message_id TEXT, data TEXT);""")
    con.execute("INSERT INTO session VALUES ('ses_1', NULL, 'hello', 1)")
    con.execute("INSERT INTO message VALUES ('m1', 'ses_1', 1, ?)", (json.dumps({"role": "user"}),))
    con.execute("INSERT INTO message VALUES ('m2', 'ses_1', 2, ?)", (json.dumps({"role": "assistant", "modelID": "m"}),))
    parts = [("p1", "m1", {"type": "text", "text": PROMPT}), ("p2", "m2", {"type": "step-start"}),
             ("p3", "m2", {"type": "tool", "tool": "bash", "callID": "oc1",
                           "state": {"status": "completed", "input": {"command": "ls -la"}, "output": "a.txt"}}),
             ("p4", "m2", {"type": "step-finish", "tokens": {"input": 10, "output": 2}}),
             ("p5", "m2", {"type": "step-start"}), ("p6", "m2", {"type": "text", "text": "Done."}),
             ("p7", "m2", {"type": "step-finish", "tokens": {"input": 20, "output": 3}})]
    con.executemany("INSERT INTO part VALUES (?, ?, ?)", [(a, b, json.dumps(c)) for a, b, c in parts])
    con.commit()
    con.close()


def qwen_trace(d: Path) -> None:
    _jsonl(d / ".qwen/projects/-workspace/chats/q1.jsonl", [
        {"type": "user", "sessionId": "q1", "message": {"role": "user", "parts": [{"text": PROMPT}]}},
        {"type": "assistant", "model": "m", "message": {"role": "model", "parts": [
            {"functionCall": {"id": "qc1", "name": "run_shell_command", "args": {"command": "ls -la"}}}]}},
        {"type": "tool_result", "message": {"role": "user", "parts": [
            {"functionResponse": {"id": "qc1", "name": "run_shell_command", "response": {"output": "a.txt"}}}]}},
        {"type": "assistant", "model": "m", "message": {"role": "model", "parts": [{"text": "Done."}]}}])


@dataclass(frozen=True)
class Kind:
    api: str  # chat | anthropic | responses
    shell: str  # the name of the shell tool it offers (the scripted model calls it)
    trace: Callable[[Path], None]


KINDS = {"pi": Kind("chat", "bash", pi_trace), "claude-code": Kind("anthropic", "Bash", claude_trace),
         "codex": Kind("responses", "exec_command", codex_trace), "opencode": Kind("chat", "bash", opencode_trace),
         "qwen-code": Kind("chat", "run_shell_command", qwen_trace)}
DATASETS = ["captures", "wire-traces", *(f"{a}-traces" for a in KINDS)]


def offered(api: str, shell: str) -> list[dict[str, Any]]:
    """Two tools in the API's own shape: the shell the model calls, and one it never calls."""
    tools = [(shell, "Run a shell command.", SHELL_PARAMS), ("read_notes", "Read the project notes.", NOTES_PARAMS)]
    if api == "anthropic":
        return [{"name": n, "description": d, "input_schema": p} for n, d, p in tools]
    if api == "responses":
        return [{"type": "function", "name": n, "description": d, "parameters": p} for n, d, p in tools]
    return [{"type": "function", "function": {"name": n, "description": d, "parameters": p}} for n, d, p in tools]


def converse(api: str, base_url: str, key: str, tools: list[dict[str, Any]]) -> None:
    """The prompt, the scripted shell call, its result, the answer: two calls."""
    if api == "anthropic":
        client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0)
        msgs: list[dict[str, Any]] = [{"role": "user", "content": PROMPT}]
        out = client.messages.create(model="m", max_tokens=100, messages=msgs, tools=tools)
        msgs.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in out.content]})
        msgs.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": b.id, "content": "a.txt"}
                                                 for b in out.content if b.type == "tool_use"]})
        client.messages.create(model="m", max_tokens=100, messages=msgs, tools=tools)
        return
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)
    if api == "responses":
        items: list[dict[str, Any]] = [{"role": "user", "content": PROMPT}]
        r = client.responses.create(model="m", input=items, tools=tools)
        items += [o.model_dump(exclude_none=True) for o in r.output]
        items += [{"type": "function_call_output", "call_id": o.call_id, "output": "a.txt"} for o in r.output
                  if o.type == "function_call"]
        client.responses.create(model="m", input=items, tools=tools)
        return
    chat: list[dict[str, Any]] = [{"role": "user", "content": PROMPT}]
    m = client.chat.completions.create(model="m", messages=chat, tools=tools).choices[0].message
    chat.append(m.model_dump(exclude_none=True))
    chat += [{"role": "tool", "tool_call_id": c.id, "content": "a.txt"} for c in m.tool_calls or []]
    client.chat.completions.create(model="m", messages=chat, tools=tools)


def record(ws: Path, agent: str, kind: Kind) -> Path:
    """A corpus run of one task: its calls through a real capture proxy (a per-turn key attributes
    them to the task), its run.json and the agent's own trace."""
    run_dir = ws / ".agentcap" / f"{agent}-run"
    keys, key = ws / f".keys-{agent}", new_key()
    KeyRegistry(keys).register(key, Attribution(run_id=run_dir.name, task_id="t0001", turn=1))
    with ModelServer(make_responder(script="shell-then-answer")) as server, \
            start_proxy(server.url, run_dir, keys_dir=keys, upstream_key_env="UPSTREAM_KEY",
                        env={**os.environ, "UPSTREAM_KEY": "sk-upstream"}) as proxy:
        converse(kind.api, proxy.base_url, key, offered(kind.api, kind.shell))
    assert len(list(iter_captures(run_dir))) == 2
    RunFile(run_dir, RunRecord(run_id=run_dir.name, kind="corpus", agent=agent, model="m", provider="scripted",
                               upstream="embedded:scripted", label=None, turns_per_task=1, followup="continue",
                               started_at="2026-11-22T00:00:00Z", status="done",
                               tasks=[TaskRecord("t0001", PROMPT, 1, completed_turns=1)])).save()
    kind.trace(run_dir / "traces" / "t0001")
    return run_dir


@dataclass
class Export:
    ws: Path
    runs: dict[str, Path]
    out: Path  # --out DIR
    hub: FakeHub
    env: dict[str, str]  # the Hub stand-in, for a child process
    base: str = "me/mixed"


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Export:
    ws = tmp_path_factory.mktemp("ws")
    runs = {agent: record(ws, agent, kind) for agent, kind in KINDS.items()}
    out = ws / "datasets"
    r = agentcap("export", "--all", "--out", str(out), workspace=ws, timeout=600)
    assert r.returncode == 0, r.stderr
    with FakeHub() as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_" + "t" * 34, "HF_HOME": str(ws / "hf"),
               "HF_HUB_DISABLE_XET": "1"}
        r = agentcap("export", "--all", "--push", "me/mixed", workspace=ws, timeout=600, **env)
        assert r.returncode == 0, r.stderr
        assert sorted(hub.repos) == sorted(f"me/mixed-{n}" for n in DATASETS)
        yield Export(ws, runs, out, hub, env)


def card_configs(readme: str) -> list[str]:
    return [c["config_name"] for c in DatasetCard(readme).data.to_dict()["configs"]]


def offered_chat(run_dir: Path) -> list[dict[str, Any]]:
    """The tools the run's last call offered, in the chat shape (what the sessions row holds)."""
    last = max(iter_captures(run_dir), key=lambda c: c.seq)
    return chat_tools(last.request["body"])


def tool_calls_of(row: dict[str, Any]) -> list[tuple[str, str]]:
    """(tool call id, name) of every call in a loaded row's messages, whatever config it came from."""
    messages = row["messages"] if isinstance(row.get("messages"), list) else []
    return [(c["id"], c["function"]["name"]) for m in messages for c in m.get("tool_calls") or []]


def result_ids_of(row: dict[str, Any]) -> list[str]:
    return [m["tool_call_id"] for m in row.get("messages") or [] if m.get("role") == "tool"]


def check_row(dataset: str, config: str, row: dict[str, Any], export: Export) -> None:
    """What a loaded row must keep: a call row its call; a file row its bytes; a session (captures'
    sessions config, any session file) its tool calls, each answered by a result with its id, and
    the tools: every tool the agent was offered, as offered (rebuilt from the wire), or every tool
    it called (an agent's own trace, which does not record what it was offered)."""
    if dataset == "captures" and config == "default":
        assert row["request"] and row["n_tool_calls"] in (0, 1)
        return
    if "data" in row and "size" in row:  # a trace file as a row
        assert row["size"] == len(row["data"]) and row["agent"] in KINDS
        return
    calls = tool_calls_of(row)
    assert calls, (dataset, config, row.get("session_id"))
    assert {i for i, _ in calls} <= set(result_ids_of(row)), (dataset, config)
    tools = json.loads(row["tools"]) if isinstance(row["tools"], str) else row["tools"]
    got = {t["function"]["name"]: t["function"] for t in tools}
    if dataset in ("captures", "wire-traces"):
        agent = row["session_id"].split("/")[0].removesuffix("-run")
        for t in offered_chat(export.runs[agent]):
            f = t["function"]
            assert (got[f["name"]]["parameters"], got[f["name"]].get("description")) == (
                f["parameters"], f.get("description")), (dataset, agent, f["name"])
    else:
        assert {n for _, n in calls} <= set(got), (dataset, sorted(got))


# -- the tests ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", DATASETS)
def test_every_declared_config_loads_from_the_directory(export, dataset, tmp_path):
    root = export.out / dataset
    configs = card_configs((root / "README.md").read_text())
    assert configs and configs[0] == "default"
    whole = load_dataset(str(root), split="train", cache_dir=str(tmp_path / "c0"))  # the directory, as it is
    assert whole.num_rows > 0
    for i, config in enumerate(configs):
        ds = load_dataset(str(root), config, split="train", cache_dir=str(tmp_path / f"c{i + 1}"))
        assert ds.num_rows > 0, config
        for row in ds:
            check_row(dataset, config, row, export)


def snippet(readme: str) -> str:
    [code] = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "load_dataset" in b]
    return code


def run_snippet(code: str, names: list[str], cwd: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """The card's code as printed, in a fresh interpreter, then the first row of each name it binds."""
    probe = (f"{code}\nimport base64, json\nrows = {{n: globals()[n][0] for n in {names!r}}}\n"
             "print(json.dumps(rows, default=lambda v: {'$b64': base64.b64encode(v).decode()} if isinstance(v, bytes)"
             " else str(v)))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_DATASETS_CACHE": str(cwd / "cache"), **env})
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.splitlines()[-1], object_hook=lambda d: base64.b64decode(d["$b64"]) if "$b64" in d else d)
    return list(rows.values())


def bound(code: str) -> list[str]:
    return re.findall(r"^(\w+) = load_dataset\(", code, re.M)


@pytest.mark.parametrize("dataset", DATASETS)
def test_the_cards_snippet_runs_as_printed(export, dataset, tmp_path):
    code = snippet((export.out / dataset / "README.md").read_text())
    names = bound(code)
    assert names
    rows = run_snippet(code, names, tmp_path, {})
    for name, row in zip(names, rows):
        check_row(dataset, "default" if name in ("calls", "sessions") and dataset != "captures" or name == "calls"
                  else name, row, export)


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_declared_config_loads_from_the_hub(export, dataset, tmp_path):
    repo = f"{export.base}-{dataset}"
    readme = export.hub.repos[repo].files["README.md"].decode()
    configs = card_configs(readme)
    code = "from datasets import load_dataset\n" + "\n".join(
        f"{c} = load_dataset({repo!r}, {c!r}, split='train')" for c in configs)
    rows = run_snippet(code, configs, tmp_path, export.env)
    for config, row in zip(configs, rows):
        check_row(dataset, config, row, export)
    # and the pushed card's own snippet, by repo id
    code = snippet(readme)
    names = bound(code)
    for name, row in zip(names, run_snippet(code, names, tmp_path, export.env)):
        check_row(dataset, "default" if name in ("calls", "sessions") and dataset != "captures" or name == "calls"
                  else name, row, export)
