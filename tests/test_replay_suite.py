"""Record once, test forever — for real: agents in their containers, the capture proxy with the replay
addon, cassettes in the project, no upstream reachable while replaying.

* determinism: a suite recorded once (pi, claude-code, codex) and replayed twice gives the same verdicts
  and the same requests (after the matcher's normalisation), with the upstream unreachable;
* the shipped example replays offline, and a changed prompt is a drift verdict naming the path;
* --on-drift live / record, --record-mode new, fewer recordings than repeats, a secret refused;
* `agentcap run --replay` of a pi run: zero drift, then a changed prompt drifts.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from junitparser import JUnitXml

from agentcap_addons.wire.capture.records import iter_captures
from agentcap_addons.wire.fake.cassette import DEFAULT_IGNORE, normalise
from agentcap_addons.wire.fake.cassettedir import run_subs
from agentcap_cli.harness.modelserver import ModelServer, make_responder
from tests.conftest import closed_port
from tests.support import cli

pytestmark = [pytest.mark.slow, pytest.mark.podman]

REPO = Path(__file__).resolve().parents[1]
PROJECT = REPO / "tests" / "support" / "replay-project"
EXAMPLE = REPO / "examples" / "my-eval"


def agentcap(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    """`agentcap ARGS`, none of this shell's AGENTCAP_* settings inherited."""
    return cli.agentcap(*args, cwd=cwd, clean=("AGENTCAP_",), timeout=800, **env)


def unreachable(project: Path) -> None:
    """No upstream for the agents nor the judge: nothing listens at either address."""
    cfg = project / "agentcap.yaml"
    url = f"http://127.0.0.1:{closed_port()}/v1"
    text = re.sub(r"(?m)^upstream: .*$", f"upstream: {{url: {url}}}", cfg.read_text())
    cfg.write_text(re.sub(r"(?m)^judge: .*$", f"judge: {{upstream: {{url: {url}}}}}", text))


def results(r: subprocess.CompletedProcess) -> dict:
    return json.loads((Path(r.stdout.strip().splitlines()[-1]) / "results.json").read_text())


def requests_of(run_dir: Path) -> dict[tuple[str, int], list]:
    """Each repeat's request bodies in call order, normalised as the matcher does (the run's own values too)."""
    subs = run_subs(run_dir, run_dir.name)
    out: dict[tuple[str, int], list] = {}
    for c in sorted(iter_captures(run_dir / "captures"), key=lambda c: c.seq):
        out.setdefault((c.request["cell"], c.request["repeat"]), []).append(
            (c.request["path"], normalise(c.request["body"], frozenset(DEFAULT_IGNORE), subs=subs)))
    return out


def verdicts(res: dict) -> dict:
    return {(r["cell"], r["repeat"]): (r["verdict"], r["passed"], [a["passed"] for a in r["assertions"]],
                                       (r["judge"] or {}).get("score")) for r in res["records"]}


@pytest.mark.timeout(900)
def test_a_replayed_suite_is_deterministic_for_pi_claude_code_and_codex(tmp_path):
    project = tmp_path / "p"
    shutil.copytree(PROJECT, project)
    env = {"AGENTCAP_WORKSPACE": str(tmp_path)}
    rec = agentcap("test", "--root", str(project), "--record-mode", "once", "-j", "2", **env)
    assert rec.returncode == 0, rec.stderr[-3000:]
    recorded = results(rec)
    assert {r["cassette"]["use"] for r in recorded["records"]} == {"recorded"}
    assert sorted(p.name for p in (project / "cassettes").iterdir()) == ["claude-hello", "codex-hello", "pi-hello"]
    unreachable(project)
    runs = []
    for _ in range(2):
        r = agentcap("test", "--root", str(project), "-j", "2", **env, AGENTCAP_RECORD_MODE="once")
        assert r.returncode == 0, r.stderr[-3000:]
        runs.append(results(r))
    a, b = runs
    assert a["cassettes"]["offline"] and verdicts(a) == verdicts(b) == verdicts(recorded)
    assert all(r["cassette"]["use"] == "replayed" and r["drift"] is None for r in a["records"] + b["records"])
    assert next(r for r in a["records"] if r["cell"] == "pi-hello")["judge"]["replayed"]
    req_a, req_b = requests_of(Path(a["run_dir"])), requests_of(Path(b["run_dir"]))
    assert set(req_a) == {("pi-hello", 1), ("claude-hello", 1), ("codex-hello", 1)}
    assert req_a == req_b == requests_of(Path(recorded["run_dir"]))
    # the served calls were captured like live ones (usage read from them)
    assert all(r["tokens"] > 0 for r in a["records"])


@pytest.mark.timeout(900)
def test_the_example_replays_offline_and_a_changed_prompt_is_drift(tmp_path):
    project = tmp_path / "my-eval"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("reports", ".agentcap"))
    unreachable(project)
    env = {"AGENTCAP_WORKSPACE": str(tmp_path)}
    ok = agentcap("test", "--root", str(project), "--record-mode", "once", "-j", "2", **env)
    assert ok.returncode == 0, ok.stderr[-3000:]
    res = results(ok)
    assert res["passed"] and res["cassettes"]["offline"] and len(res["records"]) == 4
    notes = next(r for r in res["records"] if r["cell"] == "release-notes")
    assert notes["judge"]["score"] == 0.9 and notes["judge"]["replayed"]
    scenario = project / "scenarios" / "release-notes" / "scenario.yaml"
    scenario.write_text(scenario.read_text().replace("#releases channel.", "#releases channel now."))
    bad = agentcap("test", "--root", str(project), "--record-mode", "once", "-k", "release-notes", **env)
    assert bad.returncode == 1, bad.stderr[-3000:]
    [rec] = results(bad)["records"]
    drift = rec["drift"]
    assert rec["verdict"] == "drift" and not rec["passed"] and drift["call_seq"] == 1 and drift["turn"] == 1
    assert re.fullmatch(r"\$\.messages\[\d+\]\.content(\[\d+\]\.text)?", drift["path"]), drift
    assert drift["got"].endswith("to the #releases channel now.") and "now" not in drift["recorded"]
    assert f"release-notes#1: drift: call 1 (turn 1) drifted at {drift['path']}" in bad.stderr
    reports = project / "reports"
    [case] = [c for s in JUnitXml.fromfile(str(reports / "junit.xml")) for c in s]
    assert case.result[0].type == "Drift" and drift["path"] in case.result[0].message
    md = (reports / "report.md").read_text()
    assert "### Drift" in md and f"`{drift['path']}`" in md and "(1 drifted)" in md


@pytest.mark.timeout(900)
def test_on_drift_live_and_record_new_episodes_and_missing_recordings(tmp_path):
    project = tmp_path / "p"
    shutil.copytree(PROJECT, project)
    env = {"AGENTCAP_WORKSPACE": str(tmp_path)}
    pi = ("-k", "pi-hello")
    assert agentcap("test", "--root", str(project), "--record-mode", "once", *pi, **env).returncode == 0
    tape = project / "cassettes" / "pi-hello" / "pi-hello"
    before = {p.name: p.read_bytes() for p in (tape / "1").iterdir()}
    scenario = project / "scenarios" / "pi-hello" / "scenario.yaml"
    scenario.write_text(scenario.read_text().replace("a friendly greeting", "a warm greeting"))
    # live: the drift is noted, the repeat goes on against the upstream, its checks decide; nothing written
    live = agentcap("test", "--root", str(project), "--record-mode", "once", "--on-drift", "live", *pi, **env)
    assert live.returncode == 0, live.stderr[-3000:]
    [r] = results(live)["records"]
    assert r["verdict"] == "passed" and r["drift"]["path"].startswith("$.messages[") and r["cassette"]["went_live"]
    assert "drifted, went live" in live.stderr and {p.name: p.read_bytes() for p in (tape / "1").iterdir()} == before
    # record: the same, and the repeat becomes the cassette; replayed next, nothing drifts
    rec = agentcap("test", "--root", str(project), "--record-mode", "once", "--on-drift", "record", *pi, **env)
    assert rec.returncode == 0 and results(rec)["records"][0]["cassette"]["use"] == "re-recorded"
    assert (tape / "1" / "001.json").read_bytes() != before["001.json"]
    again = agentcap("test", "--root", str(project), "--record-mode", "once", *pi, **env)
    assert again.returncode == 0 and results(again)["records"][0]["drift"] is None
    # new (vcrpy's new_episodes): a call the cassette lacks goes live and is added after the recorded ones
    (tape / "1" / "002.json").unlink()
    new = agentcap("test", "--root", str(project), "--record-mode", "new_episodes", *pi, **env)
    assert new.returncode == 0, new.stderr[-3000:]
    assert results(new)["records"][0]["cassette"] == {"use": "extended", "dir": "cassettes/pi-hello/pi-hello/1",
                                                      "new_calls": 1, "written": True}
    assert sorted(p.name for p in (tape / "1").iterdir()) == ["001.json", "002.json", "cassette.json"]
    # two repeats, one recording: said, and repeat 2 runs live and is recorded (never repeat 1 reused)
    two = agentcap("test", "--root", str(project), "--record-mode", "once", "--repeat", "2", *pi, **env)
    assert two.returncode == 0, two.stderr[-3000:]
    res = results(two)
    assert [r["cassette"]["use"] for r in sorted(res["records"], key=lambda r: r["repeat"])] == ["replayed",
                                                                                                "recorded"]
    assert res["cassettes"]["notes"] == ["pi-hello: 1 recording(s) for 2 repeat(s); repeat(s) 2 ran live and were "
                                         "recorded"]
    assert "1 recording(s) for 2 repeat(s)" in two.stderr and (tape / "2" / "001.json").is_file()


@pytest.mark.timeout(900)
def test_the_claude_cli_judge_is_replayed_from_its_recorded_calls(tmp_path):
    project = tmp_path / "p"
    shutil.copytree(PROJECT, project)
    cfg = project / "agentcap.yaml"
    cfg.write_text(re.sub(r"(?m)^judge: .*$", "judge: {backend: claude-cli}", cfg.read_text()))
    scenario = project / "scenarios" / "claude-hello" / "scenario.yaml"
    scenario.write_text(scenario.read_text() + 'judge: {rubric: "hello.txt holds a greeting.", min_score: 0.5}\n')
    env = {"AGENTCAP_WORKSPACE": str(tmp_path)}
    k = ("-k", "claude-hello")
    rec = agentcap("test", "--root", str(project), "--record-mode", "once", *k, **env)
    assert rec.returncode == 0, rec.stderr[-3000:]
    tape = project / "cassettes" / "claude-hello" / "claude-hello" / "1"
    assert (tape / "judge" / "001.json").is_file()
    assert json.loads((tape / "cassette.json").read_text())["judge"] == {"backend": "claude-cli"}
    unreachable(project)
    cfg.write_text(re.sub(r"(?m)^judge: .*$", "judge: {backend: claude-cli}", cfg.read_text()))
    again = agentcap("test", "--root", str(project), "--record-mode", "once", *k, **env)
    assert again.returncode == 0, again.stderr[-3000:]
    [r] = results(again)["records"]
    assert r["judge"]["score"] == 0.7 and r["judge"]["backend"] == "claude-cli" and r["drift"] is None
    # another rubric: the judge's own request drifts
    scenario.write_text(scenario.read_text().replace("holds a greeting", "holds a warm greeting"))
    drifted = agentcap("test", "--root", str(project), "--record-mode", "once", *k, **env)
    assert drifted.returncode == 1
    [r] = results(drifted)["records"]
    assert r["verdict"] == "drift" and r["drift"]["source"] == "judge" and r["drift"]["call_seq"] is None
    assert "holds a warm greeting" in r["drift"]["got"]


@pytest.mark.timeout(600)
def test_a_secret_in_a_recording_refuses_its_cassette(tmp_path):
    project = tmp_path / "p"
    shutil.copytree(PROJECT, project)
    secret = "AKIA" + "Z7QXJ4M2P9R3T5V8"
    scenario = project / "scenarios" / "pi-hello" / "scenario.yaml"
    scenario.write_text(scenario.read_text().replace("a friendly greeting.", f"a friendly greeting (key {secret})."))
    r = agentcap("test", "--root", str(project), "--record-mode", "once", "-k", "pi-hello",
                 AGENTCAP_WORKSPACE=str(tmp_path))
    assert r.returncode == 1, r.stderr[-3000:]
    assert "cassette not written (secret found): pi-hello#1: cassettes/pi-hello/pi-hello/1/001.json" in r.stderr
    assert secret not in r.stderr and not (project / "cassettes" / "pi-hello" / "pi-hello" / "1").exists()
    [rec] = results(r)["records"]
    assert rec["passed"] and rec["cassette"]["written"] is False and "AKIA" in rec["cassette"]["refused"]


@pytest.mark.timeout(900)
def test_run_replay_of_a_pi_run_reports_zero_drift(tmp_path):
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("Create hello.txt with a friendly greeting.\nSay what is in this directory.\n")
    env = {"AGENTCAP_WORKSPACE": str(tmp_path)}
    # recorded from a script whose tool output is the same at any time (the default one runs `ls -la`,
    # whose times make a replay in another minute drift, rightly)
    with ModelServer(make_responder(script="write-file-then-answer")) as model:
        first = agentcap("run", "--agent", "pi", "--tasks", str(tasks), "--turns", "2", "-j", "2",
                         "--upstream", model.url + "/v1", "--model", "agentcap-scripted", **env)
    assert first.returncode == 0, first.stderr[-3000:]
    recorded = Path(first.stdout.strip())
    replay = agentcap("run", "--replay", recorded.name, "-j", "2", **env)
    assert replay.returncode == 0, replay.stderr[-3000:]
    run = json.loads((Path(replay.stdout.strip()) / "run.json").read_text())
    assert run["replay_of"] == recorded.name and run["provider"] == "replay" and run["status"] == "done"
    assert [(t["task_id"], t["completed_turns"], t["drift"]) for t in run["tasks"]] == [("t0001", 2, None),
                                                                                        ("t0002", 2, None)]
    assert "0/2 task(s) drifted" in replay.stderr
    ls = agentcap("ls", "-l", **env, COLUMNS="300").stdout
    assert re.search(rf"{Path(replay.stdout.strip()).name} .* {recorded.name}\s+0/2", ls), ls
    # the recorded run's second task asked something else: that task drifts on its first call
    meta = json.loads((recorded / "run.json").read_text())
    meta["tasks"][1]["prompt"] = "Say what is in that directory."
    (recorded / "run.json").write_text(json.dumps(meta))
    drifted = agentcap("run", "--replay", str(recorded), **env)
    assert drifted.returncode == 1
    run = json.loads((Path(drifted.stdout.strip()) / "run.json").read_text())
    d = run["tasks"][1]["drift"]
    assert run["tasks"][0]["drift"] is None and d["call_seq"] == 1 and d["path"].startswith("$.messages[")
    assert d["recorded"] == "Say what is in this directory." and d["got"] == "Say what is in that directory."
