"""Sessions and traces of real agents: `agentcap run` (pi, claude-code, codex, opencode in podman, two
turns each, against the embedded scripted model), then `agentcap export`. Each session's messages are
its last call's request plus the final reply, in the chat shape, whatever API the agent spoke; a
mixed export pushed to the Hub stand-in gives the datasets docs/export.md describes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

from agentcap_addons.wire.api.decode import decode_response
from agentcap_addons.wire.api.sessions import chat_messages, reply_message
from agentcap_addons.wire.capture.records import iter_captures
from agentcap_cli.export.exporter import Target, run_info, stage
from agentcap_cli.export.scan import Gate
from agentcap_cli.sessions.schema import validate
from tests.support.cli import agentcap
from tests.support.fakehub import FakeHub

pytestmark = [pytest.mark.slow, pytest.mark.podman]

AGENTS = ["pi", "claude-code", "codex", "opencode"]
PROMPT = "Create hello.txt with a greeting."


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One two-turn run per agent: agent → run dir."""
    ws = tmp_path_factory.mktemp("ws")
    (ws / "tasks.txt").write_text(PROMPT + "\n")
    r = agentcap("run", "--agent", ",".join(AGENTS), "--tasks", str(ws / "tasks.txt"), "--turns", "2", workspace=ws,
                 timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    dirs = [Path(line) for line in r.stdout.splitlines() if line.strip()]
    return {json.loads((d / "run.json").read_text())["agent"]: d for d in dirs}


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("agent", ["pi", "claude-code", "codex"])
def test_a_session_is_the_last_call_plus_the_final_reply(runs, agent, tmp_path):
    run_dir = runs[agent]
    target = Target(run_dir, run_info(run_dir))
    [captures] = [s for s in stage([target], tmp_path, gate=Gate()) if s.kind == "captures"]
    [row] = pq.read_table(next((captures.root / "sessions").glob("*.parquet"))).to_pylist()
    caps = sorted(iter_captures(run_dir), key=lambda c: c.seq)
    last = caps[-1]
    expect = chat_messages(last.request["api"], last.request["body"]) + [reply_message(decode_response(last))]
    assert row["messages"] == expect
    # and what that means, independently of the mapping: the prompt, the scripted tool call and its
    # result, both turns, the final reply
    said = [(m["role"], m["content"]) for m in row["messages"]]
    assert any(role == "user" and PROMPT in text for role, text in said)
    [call] = [c for m in row["messages"] for c in m["tool_calls"] or []]
    assert "ls -la" in call["function"]["arguments"] and call["type"] == "function"
    assert any(m["role"] == "tool" and m["tool_call_id"] == call["id"] for m in row["messages"])
    assert said[-1] == ("assistant", "Nothing more to do.") and row["finish_reason"] == "stop"
    assert (row["turns"], row["n_calls"], row["n_tool_calls"], row["ok"]) == (2, len(caps), 1, True)
    assert row["api"] == {"pi": "openai-chat", "claude-code": "anthropic-messages", "codex": "openai-responses"}[agent]
    assert row["trace_diffs"] == []  # these agents' own traces agree with the wire
    assert json.loads(row["tools"]) and row["request_ids"] == [c.request_id for c in caps]


@pytest.mark.timeout(1500)
def test_a_mixed_export_pushed_to_the_hub(runs, tmp_path):
    mixed = [runs["pi"], runs["claude-code"], runs["opencode"]]
    ws = mixed[0].parent.parent
    with FakeHub() as hub:
        r = agentcap("export", *map(str, mixed), "--push", "me/agents", "--license", "apache-2.0", workspace=ws,
                     timeout=600, HF_ENDPOINT=hub.url, HF_TOKEN="hf_" + "t" * 34, HF_HOME=str(tmp_path / "hf"))
        assert r.returncode == 0, r.stderr
        names = ["captures", "claude-code-traces", "opencode-traces", "pi-traces", "wire-traces"]
        assert sorted(hub.repos) == [f"me/agents-{n}" for n in names]
        assert sorted(i["id"] for i in next(iter(hub.collections.values()))["items"]) == sorted(hub.repos)
        files = {n: hub.repos[f"me/agents-{n}"].files for n in names}
        cards = {n: DatasetCard(f["README.md"].decode()).data.to_dict() for n, f in files.items()}
        assert all(c["license"] == "apache-2.0" for c in cards.values())

        # calls and sessions
        assert sum(p.startswith("data/") for p in files["captures"]) == 3
        assert sum(p.startswith("sessions/") for p in files["captures"]) == 3
        assert [c["config_name"] for c in cards["captures"]["configs"]] == ["default", "sessions"]

        # the agents' own traces: pi and claude-code as they wrote them, opencode converted
        for agent in ("pi", "claude-code"):
            [native] = [p for p in (runs[agent] / "traces").rglob("*.jsonl")]
            [(path, data)] = [(p, v) for p, v in files[f"{agent}-traces"].items() if p.endswith(".jsonl")]
            assert path.startswith(f"sessions/{runs[agent].name}/t0001--") and data == native.read_bytes()
            assert cards[f"{agent}-traces"]["configs"][0] == {"config_name": "default", "data_files": [
                {"split": "train", "path": "sessions/**/*.jsonl"}]}
        first = json.loads(next(v for p, v in files["pi-traces"].items() if p.endswith(".jsonl")).splitlines()[0])
        assert first["type"] == "session" and "version" in first  # Pi's own header: the Hub detects it
        [sts] = [v.decode() for p, v in files["opencode-traces"].items() if p.endswith(".jsonl")]
        assert validate(sts) == [] and json.loads(sts.splitlines()[0])["harness"] == "opencode"
        assert "trace check: " + runs["opencode"].name + "/t0001: calls: trace" in r.stderr

        # the sessions as the wire saw them, for every agent
        wire = [v.decode() for p, v in files["wire-traces"].items() if p.endswith(".jsonl")]
        assert len(wire) == 3 and all(validate(t) == [] for t in wire)
        assert {json.loads(t.splitlines()[0])["agent"] for t in wire} == {"pi", "claude-code", "opencode"}
