"""`agentcap export`'s sessions and traces layers, and its cards: interleaved proxy conversations
through a real capture proxy get their own thread ids and sessions; the sessions config reads back
through pyarrow, `datasets` and duckdb; a suite run's sessions carry cell, repeat, verdict and judge
score; failed calls are left out unless asked; native traces become session files the Hub renders;
cards parse with huggingface_hub and their load snippet runs as printed."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import duckdb
import openai
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset
from huggingface_hub import DatasetCard

from agentcap_addons.wire.api.decode import decode_response
from agentcap_addons.wire.api.sessions import chat_messages, reply_message
from agentcap_addons.wire.capture.records import iter_captures
from agentcap_cli.export.exporter import Options, Target, run_info, stage
from agentcap_cli.export.scan import Gate
from agentcap_cli.export.sessions import SCHEMA as SESSION_SCHEMA
from agentcap_cli.harness.modelserver import ModelServer, make_responder
from agentcap_cli.harness.proxy import start_proxy
from agentcap_cli.runs.record import RunFile, RunRecord, TaskRecord, TurnRecord
from agentcap_cli.sessions.schema import validate
from tests.support import cli
from tests.support.fakehub import FakeHub
from tests.support.runs import TOOLS

REPO = Path(__file__).resolve().parents[1]


def agentcap(ws: Path, *args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    return cli.agentcap(*args, cwd=cwd, workspace=ws, **env)


# -- interleaved conversations through a real proxy (power-user mode: no tasks) ---------------------

class Chat:
    """One conversation through the proxy, a call at a time (so the test decides the interleaving)."""

    def __init__(self, proxy: Any, prompt: str, api: str = "chat", tools: bool = True) -> None:
        self.proxy, self.api, self.tools = proxy, api, tools
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        self.rids: list[str] = []

    def step(self, then: str | None = None) -> None:
        if self.api == "chat":
            client = openai.OpenAI(base_url=self.proxy.base_url + "/v1", api_key="x", max_retries=0)
            extra = {"tools": TOOLS} if self.tools else {}
            out = client.chat.completions.create(model="m", messages=self.messages, **extra).choices[0].message
            self.messages.append(out.model_dump(exclude_none=True))
            for c in out.tool_calls or []:
                self.messages.append({"role": "tool", "tool_call_id": c.id, "content": "a.txt\nb.txt"})
        else:
            client = anthropic.Anthropic(base_url=self.proxy.base_url, api_key="x", max_retries=0)
            tools = [{"name": "bash", "input_schema": TOOLS[0]["function"]["parameters"]}]
            with client.messages.stream(model="m", max_tokens=100, messages=self.messages, tools=tools) as s:
                out = s.get_final_message()
            self.messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in out.content]})
            results = [{"type": "tool_result", "tool_use_id": b.id, "content": "a.txt"} for b in out.content
                       if b.type == "tool_use"]
            if results:
                self.messages.append({"role": "user", "content": results})
        rid = self.proxy.events.wait_for(event="request")["request_id"]
        self.proxy.events.wait_for(event="response", request_id=rid)
        self.rids.append(rid)
        if then:
            self.messages.append({"role": "user", "content": then})


@dataclass
class Interleaved:
    run_dir: Path
    convs: dict[str, list[str]]  # conversation → its calls' request ids, in order


@pytest.fixture(scope="module")
def interleaved(tmp_path_factory) -> Interleaved:
    ws = tmp_path_factory.mktemp("ws")
    run_dir = ws / ".agentcap" / "proxy-run"
    with ModelServer(make_responder(script="shell-then-answer")) as server, \
            start_proxy(server.url, run_dir, events=True) as proxy:
        a, b = Chat(proxy, "Fix the bug in a.py"), Chat(proxy, "Fix the bug in b.py")
        c, title = Chat(proxy, "Fix the bug in c.py", api="anthropic"), Chat(proxy, "Title for: fix a.py", tools=False)
        a.step()
        b.step()
        c.step()
        title.step()
        b.step(then="and the tests?")
        a.step(then="and the tests?")
        c.step()
        a.step()
        b.step()
    return Interleaved(run_dir, {"a": a.rids, "b": b.rids, "c": c.rids, "title": title.rids})


def staged(run_dir: Path, out: Path, gate: Gate | None = None, **options: Any):
    target = Target(run_dir, run_info(run_dir))
    return target, stage([target], out, gate=gate, options=Options(**options))


def test_interleaved_proxy_conversations_get_distinct_thread_ids(interleaved, tmp_path):
    run_dir, convs = interleaved.run_dir, interleaved.convs
    _, datasets_ = staged(run_dir, tmp_path / "out")
    rows = pq.read_table(next((tmp_path / "out" / "captures" / "data").glob("*.parquet"))).to_pylist()
    thread = {r["request_id"]: r["thread_id"] for r in rows}
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    for rids in convs.values():
        assert {thread[rid] for rid in rids} == {rids[0]}  # one thread, named by its first call
    assert len({thread[rids[0]] for rids in convs.values()}) == 4
    finish = {r["request_id"]: (r["finish_reason"], r["finish_reason_raw"]) for r in rows}
    assert finish[convs["a"][0]] == ("tool_calls", "tool_calls") and finish[convs["c"][0]] == ("tool_calls", "tool_use")
    assert finish[convs["c"][1]] == ("stop", "end_turn")

    sessions = pq.read_table(next((tmp_path / "out" / "captures" / "sessions").glob("*.parquet"))).to_pylist()
    assert sorted(s["thread_id"] for s in sessions) == sorted(rids[0] for rids in convs.values())
    caps = {c.request_id: c for c in iter_captures(run_dir)}
    for s in sessions:
        rids = next(r for r in convs.values() if r[0] == s["thread_id"])
        assert s["request_ids"] == rids and s["n_calls"] == len(rids) and s["task_id"] is None
        last = caps[rids[-1]]
        expect = chat_messages(last.request["api"], last.request["body"]) + [reply_message(decode_response(last))]
        assert s["messages"] == expect  # the last call's request plus its reply
        assert s["session_id"] == f"proxy-run/{s['thread_id']}" and s["ok"] is None


def test_sessions_read_back_with_pyarrow_datasets_and_duckdb(interleaved, tmp_path):
    run_dir, convs = interleaved.run_dir, interleaved.convs
    out = tmp_path / "out"
    staged(run_dir, out)
    [f] = (out / "captures" / "sessions").glob("*.parquet")
    assert pq.read_schema(f).equals(SESSION_SCHEMA, check_metadata=False)
    table = pq.read_table(f)
    ds = load_dataset("parquet", data_files=str(f), split="train")
    assert ds.num_rows == table.num_rows == 4 and ds.to_list() == table.to_pylist()
    a = next(r for r in ds if r["thread_id"] == convs["a"][0])
    assert [m["role"] for m in a["messages"]] == ["user", "assistant", "tool", "assistant", "user", "assistant"]
    call = a["messages"][1]["tool_calls"][0]
    assert call["type"] == "function" and json.loads(call["function"]["arguments"]) == {"command": "ls -la"}
    assert a["messages"][2]["tool_call_id"] == call["id"] and json.loads(a["tools"])[0]["function"]["name"] == "bash"
    got = duckdb.sql(f"SELECT thread_id, len(messages), n_calls, n_tool_calls FROM '{f}' ORDER BY started_at").fetchall()
    assert got[0] == (convs["a"][0], 6, 3, 1)
    assert duckdb.sql(f"SELECT count(*) FROM '{out}/captures/data/*.parquet' GROUP BY thread_id").fetchall() \
        and str(duckdb.sql(f"SELECT captured_at FROM '{out}/captures/data/*.parquet' LIMIT 1").types[0]) == \
        "TIMESTAMP WITH TIME ZONE"
    # the wire-derived traces: one session file per thread, valid Session Trace Simple Format
    files = sorted((out / "wire-traces" / "sessions" / "proxy-run").glob("*.jsonl"))
    assert len(files) == 4 and all(validate(p.read_text()) == [] for p in files)
    head = json.loads(next(p for p in files if p.name.startswith(convs["a"][0])).read_text().splitlines()[0])
    assert head["harness"] == "agentcap" and head["source"] == "wire" and head["name"] == "Fix the bug in a.py"


# -- a suite run and a corpus run with failed calls ------------------------------------------------

def write_capture(run_dir: Path, n: int, body: dict[str, Any], reply: str | None, status: int = 200,
                  **attribution: Any) -> str:
    rid = f"{n:032x}"
    cap = run_dir / "captures"
    cap.mkdir(parents=True, exist_ok=True)
    req = {"schema": 1, "request_id": rid, "seq": n, "captured_at": f"2026-11-22T00:00:{n:02d}.000000000Z",
           "method": "POST", "path": "/v1/chat/completions", "upstream_url": "http://127.0.0.1:9/v1/chat/completions",
           "api": "openai-chat", "run_id": run_dir.name, "turn": 1, "cell": None, "repeat": None,
           "headers": {}, "body": body, **attribution}
    answer = {"id": f"c{n}", "model": "m", "usage": {"prompt_tokens": 100, "completion_tokens": 10},
              "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply}}]}
    resp = {"schema": 1, "request_id": rid, "status_code": status, "headers": {}, "stream": False, "chunks": [],
            "timings": {"sent": 0.0, "first_byte": 1.0, "done": 2.0}, "served_model": "m", "error": None,
            "body": answer if status < 400 else {"error": {"message": "invalid api key"}}}
    (cap / f"{rid}.request.json").write_text(json.dumps(req))
    (cap / f"{rid}.response.json").write_text(json.dumps(resp))
    return rid


def body(*texts: str) -> dict[str, Any]:
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]
    return {"model": "m", "messages": msgs}


def test_a_suite_run_has_cell_repeat_verdict_and_judge_score(tmp_path):
    run_dir = tmp_path / ".agentcap" / "suite-x"
    for repeat in (1, 2):
        write_capture(run_dir, repeat * 10, body(f"post the note ({repeat})"), "posted", task_id="notes",
                      cell="notes", repeat=repeat)
        res = run_dir / "results" / "notes" / f"{repeat}.json"
        res.parent.mkdir(parents=True, exist_ok=True)
        res.write_text(json.dumps({"cell": "notes", "repeat": repeat, "passed": repeat == 1, "error": None,
                                   "cost_usd": 0.25, "cost_source": "harness",
                                   "judge": {"score": 0.9 if repeat == 1 else 0.2}}))
    rec = RunRecord(run_id="suite-x", kind="suite", agent="claude-code", model="m", provider="p", upstream="u",
                    label=None, turns_per_task=1, followup="continue", started_at="2026-11-22T00:00:00Z",
                    tasks=[TaskRecord("notes#1", "Post the release note", 1, completed_turns=1),
                           TaskRecord("notes#2", "Post the release note", 1, completed_turns=1)])
    RunFile(run_dir, rec).save()
    trace = run_dir / "cells" / "notes" / "2" / "traces" / ".claude" / "projects" / "-w" / "u2.jsonl"
    trace.parent.mkdir(parents=True)
    trace.write_text(json.dumps({"type": "user", "sessionId": "u2", "message": {"role": "user", "content": "x"}}) + "\n")
    out = tmp_path / "out"
    staged(run_dir, out)
    rows = sorted(pq.read_table(next((out / "captures" / "sessions").glob("*.parquet"))).to_pylist(),
                  key=lambda r: r["repeat"])
    assert [(r["session_id"], r["task_id"], r["cell"], r["repeat"], r["passed"], r["ok"], r["judge_score"],
             r["cost_usd"], r["cost_source"], r["prompt"]) for r in rows] == [
        ("suite-x/notes--1", "notes", "notes", 1, True, True, 0.9, 0.25, "harness", "Post the release note"),
        ("suite-x/notes--2", "notes", "notes", 2, False, False, 0.2, 0.25, "harness", "Post the release note")]
    [files] = (out / "claude-code-traces" / "data").glob("*.parquet")
    assert [(r["task_id"], r["repeat"]) for r in pq.read_table(files).to_pylist()] == [("notes", 2)]
    [session] = (out / "claude-code-traces" / "sessions" / "suite-x").glob("notes--2--*.jsonl")
    assert session.read_bytes() == trace.read_bytes()  # published as the agent wrote it


def test_failed_calls_are_left_out_unless_asked_and_prices_give_a_cost(tmp_path):
    run_dir = tmp_path / ".agentcap" / "corpus-x"
    write_capture(run_dir, 1, body("make it"), "made", task_id="t0001")
    write_capture(run_dir, 2, body("make it", "made", "again"), None, status=401, task_id="t0001", turn=2)
    rec = RunRecord(run_id="corpus-x", kind="corpus", agent="pi", model="m", provider="p", upstream="u", label=None,
                    turns_per_task=2, followup="continue", started_at="2026-11-22T00:00:00Z",
                    tasks=[TaskRecord("t0001", "make it", 2, completed_turns=1, turns=[
                        TurnRecord(1, "make it", 0, 1.0, 1),
                        TurnRecord(2, "again", 0, 1.0, 1, aborted_reason="upstream_error 401: invalid api key",
                                   failed_calls=1)])])
    RunFile(run_dir, rec).save()
    [row] = pq.read_table(next((staged(run_dir, tmp_path / "a", prices={"m": {"input": 1.0, "output": 2.0}})[1][0]
                                .root / "sessions").glob("*.parquet"))).to_pylist()
    assert (row["n_calls"], row["n_failed_calls"], row["turns"], row["ok"], row["aborted_reason"]) == (
        1, 1, 1, False, "upstream_error 401: invalid api key")
    assert [m["content"] for m in row["messages"]] == ["make it", "made"] and row["prompt_tokens"] == 100
    assert row["cost_usd"] == pytest.approx((100 * 1.0 + 10 * 2.0) / 1e6) and row["cost_source"] == "prices"
    [with_failed] = pq.read_table(next((staged(run_dir, tmp_path / "b", with_failed=True)[1][0].root / "sessions")
                                       .glob("*.parquet"))).to_pylist()
    assert with_failed["n_calls"] == 2 and with_failed["finish_reason"] == "error"
    assert [m["content"] for m in with_failed["messages"]] == ["make it", "made", "again"]  # no reply to a 401


# -- native traces as session files ----------------------------------------------------------------

def opencode_db(path: Path) -> None:
    path.parent.mkdir(parents=True)
    con = sqlite3.connect(path)
    con.executescript("""CREATE TABLE session (id TEXT, parent_id TEXT, title TEXT, time_created INTEGER);
        CREATE TABLE message (id TEXT, session_id TEXT, time_created INTEGER, data TEXT);
        CREATE TABLE part (id TEXT, message_id TEXT, data TEXT);""")
    con.execute("INSERT INTO session VALUES ('ses_1', NULL, 'make it', 1)")
    con.execute("INSERT INTO message VALUES ('m1', 'ses_1', 1, '{\"role\": \"user\"}')")
    con.execute("INSERT INTO message VALUES ('m2', 'ses_1', 2, '{\"role\": \"assistant\", \"modelID\": \"m\"}')")
    for pid, mid, data in [("p1", "m1", {"type": "text", "text": "make it"}), ("p2", "m2", {"type": "step-start"}),
                           ("p3", "m2", {"type": "text", "text": "made"}),
                           ("p4", "m2", {"type": "step-finish", "tokens": {"input": 100, "output": 10}})]:
        con.execute("INSERT INTO part VALUES (?, ?, ?)", (pid, mid, json.dumps(data)))
    con.commit()
    con.close()


def test_a_converted_trace_validates_and_the_check_reports_hidden_calls(tmp_path):
    ws = tmp_path / "ws"
    run_dir = ws / ".agentcap" / "oc-run"
    write_capture(run_dir, 1, {**body("title for: make it"), "tools": []}, "A title", task_id="t0001")
    write_capture(run_dir, 2, {**body("make it"), "tools": TOOLS}, "made", task_id="t0001")
    RunFile(run_dir, RunRecord(run_id="oc-run", kind="corpus", agent="opencode", model="m", provider="p", upstream="u",
                               label=None, turns_per_task=1, followup="continue", started_at="2026-11-22T00:00:00Z",
                               tasks=[TaskRecord("t0001", "make it", 1, completed_turns=1)])).save()
    opencode_db(run_dir / "traces" / "t0001" / ".local" / "share" / "opencode" / "opencode.db")
    out = tmp_path / "out"
    r = agentcap(ws, "export", "oc-run", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "trace check: oc-run/t0001: calls: trace 1, wire 2; prompt tokens: trace 100, wire 200" in r.stderr
    [session] = (out / "opencode-traces" / "sessions" / "oc-run").glob("t0001--*.jsonl")
    text = session.read_text()
    assert validate(text) == []
    head, *lines = [json.loads(x) for x in text.splitlines()]
    assert head["harness"] == "opencode" and head["source"] == "native" and head["id"] == "ses_1"
    assert [x["message"]["content"][0]["text"] for x in lines if x["type"] == "message"] == ["make it", "made"]
    [row] = pq.read_table(next((out / "captures" / "sessions").glob("*.parquet"))).to_pylist()
    assert row["trace_diffs"] == ["calls: trace 1, wire 2", "prompt tokens: trace 100, wire 200",
                                  "completion tokens: trace 10, wire 20"]
    assert row["n_threads"] == 2 and [m["content"] for m in row["messages"]] == ["make it", "made"]  # not the title


# -- cards -----------------------------------------------------------------------------------------

def front(card: str) -> dict[str, Any]:
    return DatasetCard(card).data.to_dict()


def test_cards_parse_name_the_license_and_describe_every_export(interleaved, tmp_path):
    run_dir = interleaved.run_dir
    ws = run_dir.parent.parent
    out = tmp_path / "out"
    r = agentcap(ws, "export", "proxy-run", "--out", str(out), "--license", "other", "--license-name", "my-terms",
                 "--license-link", "https://example.com/terms")
    assert r.returncode == 0, r.stderr
    card = (out / "captures" / "README.md").read_text()
    data = front(card)
    assert (data["license"], data["license_name"], data["license_link"]) == ("other", "my-terms",
                                                                             "https://example.com/terms")
    assert data["size_categories"] == ["n<1K"]
    assert [c["config_name"] for c in data["configs"]] == ["default", "sessions"]
    api_row = next(line for line in card.splitlines() if line.startswith("| `api` |"))
    assert len(re.split(r"(?<!\\)\|", api_row)) == 5  # the values' | are escaped: three cells
    assert "exactly as sent" not in card and "re-serialised" in card
    wire = front((out / "wire-traces" / "README.md").read_text())
    assert [(c["config_name"], c["data_files"][0]["path"]) for c in wire["configs"]] == [
        ("default", "sessions/**/*.jsonl")]  # one format per dataset: the parquet rows are no config

    # the snippet loads, as printed, from the workspace root
    code = next(b for b in re.findall(r"```python\n(.*?)```", card, re.S) if "load_dataset" in b)
    probe = code + "\nprint(calls.num_rows, sessions.num_rows)\n"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ws, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["9", "4"]

    # a second run into the same directory: the card describes both, from every file's footer
    other = ws / ".agentcap" / "proxy-run-2"
    write_capture(other, 1, body("hello"), "hi")
    r2 = agentcap(ws, "export", "proxy-run-2", "--out", str(out), "--license", "mit")
    assert r2.returncode == 0, r2.stderr
    card = (out / "captures" / "README.md").read_text()
    assert front(card)["license"] == "mit" and "license_name" not in front(card)
    assert "all exports): 10 calls, 5 sessions." in card and "- runs: 2," in card
    assert card.count("calls, ") >= 3  # provenance plus two export log lines


@pytest.mark.parametrize("args,expect", [
    (["--license", "Not A License"], "is not a license id"),
    (["--license", "other"], "--license other needs --license-name and --license-link"),
    (["--license", "mit", "--license-name", "x"], "go with --license other"),
    (["--prices", "{tmp}/prices.yaml"], "prices.yaml:2: m.output: must be {input, output, cached_input}"),
])
def test_bad_license_or_prices_exit_2(interleaved, tmp_path, args, expect):
    (tmp_path / "prices.yaml").write_text("m:\n  output: lots\n")
    ws = interleaved.run_dir.parent.parent
    r = agentcap(ws, "export", "proxy-run", "--out", str(tmp_path / "o"), *[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2 and expect in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_push_cards_validate_and_list_the_traces(interleaved, tmp_path):
    run_dir = interleaved.run_dir
    with FakeHub() as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_" + "t" * 34, "HF_HOME": str(tmp_path / "hf")}
        r = agentcap(run_dir.parent.parent, "export", "proxy-run", "--push", "me/demo", "--license", "cc-by-4.0", **env)
        assert r.returncode == 0, r.stderr
        assert sorted(hub.repos) == ["me/demo-captures", "me/demo-wire-traces"]
        card = hub.repos["me/demo-captures"].files["README.md"].decode()
        assert front(card)["license"] == "cc-by-4.0"
        assert 'load_dataset("me/demo-captures", "sessions", split="train")' in card and "`me/demo-wire-traces`" in card
        wire = hub.repos["me/demo-wire-traces"].files
        assert sum(p.startswith("sessions/proxy-run/") for p in wire) == 4
        assert all(validate(v.decode()) == [] for p, v in wire.items() if p.endswith(".jsonl"))
