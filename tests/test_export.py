"""`agentcap export`: parquet read back by datasets / duckdb / pyarrow, the scan gate, the Hub push
(against a local stand-in for HF_ENDPOINT), re-exports, bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from datasets import load_dataset

from agentcap_addons.wire.capture.records import iter_captures
from agentcap_addons.wire.util.clock import parse_rfc3339_ns
from agentcap_cli.export.captures import SCHEMA, read_footer
from agentcap_cli.export.cards import CardInfo, update
from agentcap_cli.main import cli
from tests.support import cli as launch
from tests.support.fakehub import FakeHub
from tests.support.runs import make_run

REPO = Path(__file__).resolve().parents[1]
@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("ws")
    make_run(ws, "pi-scripted-1", [("chat", "model-a", True), ("chat", "model-a", False), ("anthropic", "model-a", True),
                                   ("chat", "model-b", True)])
    return ws


def agentcap(workspace: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return launch.agentcap(*args, workspace=workspace, **env)


def test_parquet_reads_back_equal_to_the_capture_files(workspace, tmp_path):
    out = tmp_path / "out"
    r = agentcap(workspace, "export", "pi-scripted-1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    files = sorted((out / "captures" / "data").glob("*.parquet"))
    # a run with two models: one file per model, each saying its model in the footer
    assert [read_footer(f)["model"] for f in files] == ["model-a", "model-b"]
    assert [line for line in r.stdout.splitlines() if "/captures/data/" in line] == [str(f) for f in files]
    caps = list(iter_captures(workspace / ".agentcap" / "pi-scripted-1"))
    table = pq.read_table(files[0])
    assert table.schema.equals(SCHEMA, check_metadata=False)
    rows = table.to_pylist()
    expect = [c for c in caps if c.request["body"]["model"] == "model-a"]
    assert [r["seq"] for r in rows] == [c.request["seq"] for c in expect] == sorted(r["seq"] for r in rows)
    for row, cap in zip(rows, expect):
        assert row["request_id"] == cap.request["request_id"]
        assert json.loads(row["request"]) == cap.request["body"]
        assert row["response"] == cap.response_bytes().decode()
        stamp = row["captured_at"]
        assert stamp.tzinfo is not None and round(stamp.timestamp() * 1e6) == parse_rfc3339_ns(
            cap.request["captured_at"]) // 1000
        assert row["status_code"] == 200 and row["agent"] == "pi" and row["label"] == "exp"
        assert row["api"] == cap.request["api"] and row["stream"] == cap.response["stream"]
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0 and row["ttft_ms"] >= 0
    assert [r["n_tool_calls"] for r in rows][:1] == [1] and rows[0]["finish_reason"] == "tool_calls"
    meta = read_footer(files[0])
    assert meta["agent"] == "pi" and meta["rows"] == 3 and meta["tasks"][0]["id"] == "t0001"
    assert len(meta["tasks"][0]["prompt"]) == 200

    ds = load_dataset("parquet", data_files=str(out / "captures" / "data" / "*.parquet"), split="train")
    assert ds.num_rows == len(caps) and str(ds.features["captured_at"].dtype) == "timestamp[us, tz=UTC]"
    counts = duckdb.sql(f"SELECT model, count(*), sum(n_tool_calls) FROM '{out}/captures/data/*.parquet' "
                        "GROUP BY model ORDER BY model").fetchall()
    assert counts == [("model-a", 3, 2), ("model-b", 1, 1)]  # the chat calls offered tools, messages did not

    traces = pq.read_table(next((out / "pi-traces" / "data").glob("*.parquet"))).to_pylist()
    assert {(t["task_id"], t["path"], t["format"]) for t in traces} == {
        ("t0001", ".pi/session.jsonl", "jsonl"), ("t0001", "state.db", "sqlite")}
    db = next(t for t in traces if t["format"] == "sqlite")
    assert db["text"] is None and db["data"] == (workspace / ".agentcap" / "pi-scripted-1" / "traces" / "t0001" /
                                                 "state.db").read_bytes()

    card = (out / "captures" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["configs"][0]["data_files"][0]["path"] == "data/*.parquet" and "agentcap" in front["tags"]
    assert "apply_chat_template" in card and "load_dataset" in card and "| `ttft_ms` |" in card


def test_re_export_adds_files_and_overwrites_none(workspace, tmp_path):
    out = tmp_path / "out"
    assert agentcap(workspace, "export", "--all", "--out", str(out)).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*.parquet")}
    again = agentcap(workspace, "export", "--all", "--out", str(out))
    assert again.returncode == 0 and "already exported" in again.stderr
    assert {p: p.read_bytes() for p in out.rglob("*.parquet")} == before
    make_run(workspace, "pi-scripted-2", [("chat", "model-a", True)])
    try:
        third = agentcap(workspace, "export", "--all", "--out", str(out))
        assert third.returncode == 0
        after = {p: p.read_bytes() for p in out.rglob("*.parquet")}
        assert set(before) < set(after) and all(after[p] == b for p, b in before.items())
        # its calls, its sessions, its traces and its wire-derived traces
        assert sorted(p.relative_to(out).parts[0] + "/" + p.parent.name for p in after if "pi-scripted-2" in p.name) \
            == ["captures/data", "captures/sessions", "pi-traces/data", "wire-traces/data"]
        assert (out / "captures" / "README.md").read_text().count("- 20") == 2  # the two exports that added files logged, not the one in between
    finally:
        import shutil

        shutil.rmtree(workspace / ".agentcap" / "pi-scripted-2")


def test_push_to_a_hub_stand_in(workspace, tmp_path):
    with FakeHub() as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_" + "t" * 34, "HF_HOME": str(tmp_path / "hf")}
        dry = agentcap(workspace, "export", "pi-scripted-1", "--push", "hf://datasets/me/agentcap-demo", "--dry-run",
                       "--no-scan", **env)
        assert dry.returncode == 0, dry.stderr
        assert "repo me/agentcap-demo-captures (dataset" in dry.stdout and "repo me/agentcap-demo-pi-traces" in dry.stdout
        assert "collection me/agentcap-demo " in dry.stdout
        assert hub.requests == []  # a dry run sends nothing
        r = agentcap(workspace, "export", "pi-scripted-1", "--push", "me/agentcap-demo", **env)
        assert r.returncode == 0, r.stderr
        # as the seed names them, plus the sessions rebuilt from the wire
        assert sorted(hub.repos) == ["me/agentcap-demo-captures", "me/agentcap-demo-pi-traces",
                                     "me/agentcap-demo-wire-traces"]
        caps, traces = hub.repos["me/agentcap-demo-captures"], hub.repos["me/agentcap-demo-pi-traces"]
        assert caps.private and traces.private
        assert [len(caps.commits), len(traces.commits)] == [1, 1]  # one commit per export and repo
        data = sorted(p for p in caps.files if p.startswith("data/pi-scripted-1--"))
        sessions = sorted(p for p in caps.files if p.startswith("sessions/pi-scripted-1--"))
        assert len(data) == 2 and len(sessions) == 1  # one file per model; the sessions config
        assert sorted(caps.files) == ["README.md", *data, *sessions]
        assert caps.commits[0]["paths"] == ["README.md", *data, *sessions]
        posted = [(m, p) for m, p, _ in hub.requests if p.startswith("/api/collections")]
        assert posted[0] == ("POST", "/api/collections")
        col = next(iter(hub.collections.values()))
        assert col["title"] == "agentcap-demo" and col["private"]
        assert [i["id"] for i in col["items"]] == ["me/agentcap-demo-captures", "me/agentcap-demo-pi-traces",
                                                   "me/agentcap-demo-wire-traces"]

        # the owner edits the card on the Hub; a later export with new data keeps the edit
        card = caps.files["README.md"].decode().replace("# agentcap-demo-captures\n",
                                                        "# agentcap-demo-captures\n\nMy own words.\n")
        caps.files["README.md"] = card.encode()
        make_run(workspace, "pi-scripted-3", [("chat", "model-a", False)])
        try:
            before = dict(caps.files)
            r2 = agentcap(workspace, "export", "pi-scripted-3", "--push", "me/agentcap-demo", **env)
            assert r2.returncode == 0, r2.stderr
        finally:
            import shutil

            shutil.rmtree(workspace / ".agentcap" / "pi-scripted-3")
        assert len(caps.commits) == 2 and all(caps.files[p] == b for p, b in before.items() if p != "README.md")
        assert sorted(p for p in caps.commits[1]["paths"] if p != "README.md") == sorted(
            p for p in caps.files if "pi-scripted-3" in p)
        new_card = caps.files["README.md"].decode()
        assert "My own words." in new_card and new_card.count("<!-- agentcap:begin -->") == 1
        assert new_card.count(" sessions from ") == 2  # the export log grew by one line
        # what the card says about the data comes from every file in the repo, read from their footers
        assert "all exports): 5 calls, 5 sessions." in new_card and "- runs: 2," in new_card
        assert any(path.endswith(".parquet") and "pi-scripted-1" in path for path, _, _ in hub.ranged)


def test_a_planted_token_blocks_the_push_and_nothing_is_sent(tmp_path):
    ws = tmp_path / "ws"
    make_run(ws, "leaky", [("chat", "model-a", False)], secret="hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz01234567")
    with FakeHub() as hub:
        r = agentcap(ws, "export", "leaky", "--push", "me/x", HF_ENDPOINT=hub.url, HF_TOKEN="hf_" + "t" * 34)
        assert r.returncode == 1
        assert "push blocked" in r.stderr and "HuggingFace token hf_A…****" in r.stderr
        assert "AbCdEfGhIjKlMnOp" not in r.stderr + r.stdout  # masked
        assert hub.requests == []
    scan = json.loads((ws / ".agentcap" / "leaky" / "scan.json").read_text())
    assert scan["findings"] and scan["findings"][0]["file"].startswith("captures/")
    assert scan["findings"][0]["where"].startswith("$.body.messages[0].content")
    # --out still works and warns
    out = agentcap(ws, "export", "leaky", "--out", str(tmp_path / "o"))
    assert out.returncode == 0 and "possible secret" in out.stderr


@pytest.mark.parametrize("args,expect", [
    (["export", "nope", "--out", "{tmp}/o"], "nope: not a run directory"),
    (["export", "--all", "--push", "not a repo"], "is not OWNER/BASE"),
    (["export", "--all"], "exactly one of --out DIR or --push"),
    (["export", "--all", "--out", "{tmp}/o", "--dry-run"], "--dry-run goes with --push"),
])
def test_bad_targets_exit_2(workspace, tmp_path, monkeypatch, args, expect):
    monkeypatch.setenv("AGENTCAP_WORKSPACE", str(workspace))
    r = CliRunner().invoke(cli, [a.format(tmp=tmp_path) for a in args])
    assert r.exit_code == 2 and expect in r.output
    assert not (tmp_path / "o").exists()


def test_card_update_keeps_user_edits():
    info = CardInfo(repo="me/x", kind="captures", agentcap_version="0.1", agents=["pi"], runs=["r1"], calls=3,
                    exported=["r1"], exported_rows="3 calls", exported_at="2026-11-22 00:00 UTC")
    first = update(None, info)
    assert "license:" not in first.split("---")[1]  # none given: none claimed
    edited = first.replace("pretty_name:", "license: mit\npretty_name:").replace("# x\n", "# x\n\nHand-written intro.\n")
    second = update(edited, CardInfo(**{**info.__dict__, "exported": ["r2"], "exported_rows": "5 calls"}))
    assert "license: mit" in second and "Hand-written intro." in second
    assert second.count("<!-- agentcap:begin -->") == 1 and "3 calls from 1 run(s) (r1)" in second
    assert "5 calls from 1 run(s) (r2)" in second
