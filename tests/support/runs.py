"""Real run directories for tests of readers (export, inspect): captures made by a real capture
proxy in front of the scripted model server, plus a run.json and a small native trace."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anthropic
import openai

from agentcap_cli.harness.modelserver import ModelServer, make_responder
from agentcap_cli.harness.proxy import start_proxy
from agentcap_cli.runs.record import RunFile, RunRecord, TaskRecord

TOOLS = [{"type": "function", "function": {"name": "bash", "parameters": {
    "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}}]


def make_run(workspace: Path, name: str, calls: list[tuple[str, str, bool]], secret: str | None = None) -> Path:
    """A run dir with real captures: calls (api, model, stream) through a real capture proxy."""
    run_dir = workspace / ".agentcap" / name
    with ModelServer(make_responder(script="shell-then-answer")) as server, \
            start_proxy(server.url, run_dir, events=True) as proxy:
        for api, model, stream in calls:
            text = f"task for {model}" + (f" with {secret}" if secret else "")
            if api == "anthropic":
                client = anthropic.Anthropic(base_url=proxy.base_url, api_key="x", max_retries=0)
                args = dict(model=model, max_tokens=100, messages=[{"role": "user", "content": text}])
                if stream:
                    with client.messages.stream(**args) as s:
                        s.until_done()
                else:
                    client.messages.create(**args)
            else:
                client = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key="x", max_retries=0)
                extra = {"stream_options": {"include_usage": True}} if stream else {}
                out = client.chat.completions.create(model=model, stream=stream, tools=TOOLS,
                                                     messages=[{"role": "user", "content": text}], **extra)
                if stream:
                    list(out)
            rid = proxy.events.wait_for(event="request")["request_id"]
            proxy.events.wait_for(event="response", request_id=rid)
    rec = RunRecord(run_id=name, kind="corpus", agent="pi", model=calls[0][1], provider="scripted",
                    upstream="embedded:scripted", label="exp", turns_per_task=1, followup="continue",
                    started_at="2026-11-22T00:00:00Z", status="done",
                    tasks=[TaskRecord("t0001", "Create hello.txt " * 30, 1, completed_turns=1)])
    RunFile(run_dir, rec).save()
    trace = run_dir / "traces" / "t0001" / ".pi" / "session.jsonl"
    trace.parent.mkdir(parents=True)
    trace.write_text('{"type": "session", "id": "abc"}\n')
    db = sqlite3.connect(run_dir / "traces" / "t0001" / "state.db")  # a real database: the gate reads it through SQLite
    db.execute("CREATE TABLE kv (k TEXT, v BLOB)")
    db.execute("INSERT INTO kv VALUES ('greeting', 'hello')")
    db.commit()
    db.close()
    return run_dir
