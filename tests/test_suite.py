"""`agentcap test`: the example suite for real, a suite built to fail, statistics, validation, assertions."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from junitparser import JUnitXml

from agentcap_cli.main import cli
from agentcap_cli.suite import assertions as kinds
from agentcap_cli.suite.assertions import ScenarioOutcome, evaluate
from agentcap_cli.suite.jsonpath import JSONPathError, find
from agentcap_cli.suite.project import load_project
from agentcap_cli.suite.stats import aggregate, cell_summary, pass_hat_k, wilson
from tests.support.cli import agentcap, start

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "my-eval"


# -- for real (containers, mocks, proxy) ------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.podman
@pytest.mark.timeout(900)
def test_the_example_suite_passes_with_parallel_cells_isolated(tmp_path):
    project = tmp_path / "my-eval"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("reports", ".agentcap"))
    r = agentcap("test", "--root", str(project), "-j", "2", "--repeat", "2", AGENTCAP_WORKSPACE=str(tmp_path))
    assert r.returncode == 0, r.stderr[-4000:]
    *said, last = r.stdout.strip().splitlines()  # agenteval's lines on stdout, then the reports dir
    assert said[-1] == "suite: 8/8 runs passed -> PASS", r.stdout
    reports = Path(last)
    results = json.loads((reports / "results.json").read_text())
    assert results["passed"] and set(results["cells"]) == {
        "release-notes", "write-file", "multi-agent[release-bot]", "multi-agent[writer]"}
    notes = results["cells"]["release-notes"]
    assert notes["repeats"] == 2 and notes["wilson_95"][0] > 0.3 and not notes["flaky"]
    rec = next(x for x in results["records"] if x["cell"] == "release-notes")
    assert rec["judge"]["score"] == 0.9 and rec["tool_calls"][0]["args"]["channel_id"] == "C03RELEASES"
    assert rec["cost_usd"] is not None and rec["tokens"] > 0
    suite = JUnitXml.fromfile(str(reports / "junit.xml"))
    cases = [c for s in suite for c in s]
    assert len(cases) == 8 and all(c.is_passed for c in cases)
    # isolation: each repeat had its own mock (one post each), its own workspace, its own captures
    assert [len([t for t in x["tool_calls"] if t["tool"] == "slack_post_message"])
            for x in results["records"] if x["cell"] == "release-notes"] == [1, 1]
    run_dir = Path(results["run_dir"])
    from agentcap_addons.wire.capture.records import iter_captures

    seen = {(c.request["cell"], c.request["repeat"]) for c in iter_captures(run_dir / "captures")}
    assert seen == {(x["cell"], x["repeat"]) for x in results["records"]}
    assert all((run_dir / "results" / x["cell"] / f"{x['repeat']}.json").is_file() for x in results["records"])
    judge_body = json.dumps(rec["judge"]["request"])
    for c in iter_captures(run_dir / "captures"):  # the judge's calls are in the results, not the captures
        assert "grading an AI agent" not in json.dumps(c.request["body"]) or judge_body is None


@pytest.mark.slow
@pytest.mark.podman
@pytest.mark.timeout(900)
def test_init_scaffold_passes_and_a_failing_scenario_fails_clearly(tmp_path):
    project = tmp_path / "my-eval"
    assert agentcap("init", str(project)).returncode == 0
    ok = agentcap("test", cwd=project, AGENTCAP_WORKSPACE=str(tmp_path))
    assert ok.returncode == 0, ok.stderr[-3000:]
    bad = project / "scenarios" / "wrong-file"
    bad.mkdir()
    (bad / "scenario.yaml").write_text(
        "id: wrong-file\nagent: writer\nprompt: Create hello.txt with a friendly greeting.\nassertions:\n"
        "  - {kind: file_exists, path: missing.txt, name: the missing file}\n"
        "  - {kind: output_contains, text: never said, required: false}\n")
    failed = agentcap("test", "--filter", "wrong", "--no-judge", cwd=project, AGENTCAP_WORKSPACE=str(tmp_path))
    assert failed.returncode == 1
    reports = project / "reports"
    [case] = [c for s in JUnitXml.fromfile(str(reports / "junit.xml")) for c in s]
    assert not case.is_passed and "the missing file: missing.txt does not exist" in case.result[0].message
    assert "never said" not in case.result[0].message  # optional checks do not fail the case
    md = (reports / "report.md").read_text()
    assert "❌ failed" in md and "the missing file: missing.txt does not exist" in md and "(optional)" in md


# -- statistics ---------------------------------------------------------------------------------------

def test_statistics_on_known_inputs():
    lo, hi = wilson(5, 10)
    assert round(lo, 4) == 0.2366 and round(hi, 4) == 0.7634
    assert wilson(0, 0) == (0.0, 1.0) and wilson(10, 10)[1] == 1.0 and round(wilson(10, 10)[0], 4) == 0.7225
    assert pass_hat_k(3, 4) == {1: 0.75, 2: 0.5, 3: 0.25, 4: 0.0}
    assert aggregate([1.0, 2.0, 3.0, 4.0]) == {"mean": 2.5, "stddev": pytest.approx(1.2910, abs=1e-4),
                                              "median": 2.5, "min": 1.0, "max": 4.0}
    recs = [{"passed": p, "duration_s": 1.0, "tokens": 10, "cost_usd": None, "judge": None} for p in (True, False)]
    s = cell_summary(recs)
    assert s["flaky"] and s["pass_rate"] == 0.5 and s["cost_usd"]["mean"] is None


# -- validation -----------------------------------------------------------------------------------------

BROKEN = [
    ("scenarios/release-notes/scenario.yaml", "kind: tool_called\n", "kind: tool_calld\n", "unknown assertion kind 'tool_calld'"),
    ("scenarios/release-notes/scenario.yaml", "max_count: 0\n", "max_count: 0\n    colour: red\n", "colour"),
    ("scenarios/release-notes/scenario.yaml", "tool: slack_delete_message", "tool: slack_drop_table",
     "no mock of this scenario offers a tool 'slack_drop_table'"),
    ("scenarios/release-notes/scenario.yaml", "rubric_file: rubric.md", "rubric_file: nope.md", "no file 'nope.md'"),
    ("scenarios/release-notes/scenario.yaml", "agent: release-bot", "agent: ghost", "no agents/ghost/capabilities.yaml"),
    ("scenarios/write-file/scenario.yaml", "provider: pi", "provider: nobody", "unknown provider 'nobody'"),
    ("scenarios/release-notes/scenario.yaml", "path: \"$.channels", "path: \"channels", "a JSONPath starts with $"),
    ("mcp/slack/mock.yaml", "fallback: error", "fallback: error\nbogus_key: 1", "bogus_key"),
    ("agentcap.yaml", "repeats: 1", "repeats: many", "repeats: must be a whole number"),
]


@pytest.mark.parametrize("path,old,new,message", BROKEN)
def test_validate_names_each_broken_file(tmp_path, path, old, new, message):
    project = tmp_path / "p"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("reports", ".agentcap"))
    f = project / path
    assert old in f.read_text()
    f.write_text(f.read_text().replace(old, new, 1))
    r = CliRunner().invoke(cli, ["validate", "--root", str(project)])
    assert r.exit_code == 2 and message in r.output and path.split("/")[-1] in r.output


def test_the_example_validates_and_lists():
    assert CliRunner().invoke(cli, ["validate", "--root", str(EXAMPLE)]).exit_code == 0
    listed = CliRunner().invoke(cli, ["list", "--root", str(EXAMPLE)])
    assert listed.exit_code == 0 and "release-notes" in listed.output and "multi-agent" in listed.output
    assert len(load_project(EXAMPLE).scenarios) == 3


# -- assertions and JSONPath ------------------------------------------------------------------------------

def outcome(tmp_path: Path, **kw) -> ScenarioOutcome:
    base = dict(workspace=tmp_path, snapshot=set(), output="", mock_state={}, mock_calls=[], model_calls=[], prices={})
    return ScenarioOutcome(**{**base, **kw})


def check(kind: str, params: dict, o: ScenarioOutcome) -> tuple[bool, str]:
    [r] = evaluate([kinds.Assertion(kind, params, kind)], o)
    return r["passed"], r["detail"]


def test_tool_called_argument_matching(tmp_path):
    calls = [{"server": "s", "tool": "post", "args": {"channel": "C1", "text": "release v1.2 now"}}]
    o = outcome(tmp_path, mock_calls=calls)
    assert check("tool_called", {"tool": "post", "args": {"channel": "C1"}}, o)[0]  # subset
    assert not check("tool_called", {"tool": "post", "args": {"channel": "C1"}, "match": "exact"}, o)[0]
    assert check("tool_called", {"tool": "post", "args": {"text": r"v1\.\d"}, "match": "regex"}, o)[0]
    assert not check("tool_called", {"tool": "post", "max_count": 0}, o)[0]
    assert check("tool_called", {"tool": "delete", "max_count": 0}, o)[0]


def test_file_and_output_kinds(tmp_path):
    (tmp_path / "old.txt").write_text("before")
    (tmp_path / "new.md").write_text("hello world")
    o = outcome(tmp_path, snapshot={"old.txt"}, output="Done: wrote new.md")
    assert check("file_contains", {"path": "new.md", "contains": ["hello", "nope"], "mode": "any"}, o)[0]
    assert not check("file_contains", {"path": "new.md", "contains": ["hello", "nope"]}, o)[0]
    assert check("dir_has_new_file", {"matches": r"\.md$", "contents_include": "world"}, o)[0]
    assert not check("dir_has_new_file", {"matches": r"^old"}, o)[0]  # in the snapshot: not new
    assert check("output_matches", {"pattern": r"wrote \w+\.md"}, o)[0]
    assert check("output_contains", {"text": "Done"}, o)[0]


def test_model_calls_limits_and_cost(tmp_path):
    calls = [{"model": "m", "tokens_in": 1_000_000, "tokens_out": 100_000, "duration_ms": 1500}] * 2
    o = outcome(tmp_path, model_calls=calls, prices={"m": {"input": 3.0, "output": 15.0}})
    assert check("model_calls", {"max_count": 2, "max_cost_usd": 9.01}, o)[0]  # 2 × (3 + 1.5)
    ok, detail = check("model_calls", {"max_tokens": 1000, "max_cost_usd": 8.0, "max_seconds": 2}, o)
    assert not ok and "tokens 2200000 > 1000" in detail and "cost $9.0000 > $8.0" in detail and "model time" in detail
    assert "cost unknown" in check("model_calls", {"max_cost_usd": 1}, outcome(tmp_path, model_calls=calls))[1]


def test_jsonpath_goessner_filters():
    state = {"channels": {"C1": {"messages": [{"text": "v1.2 out", "n": 3}, {"text": "hi", "n": 1}]}}}
    assert find("$.channels.C1.messages[?(@.text =~ /v1\\.2/)].n", state) == [3]
    assert find("$.channels.*.messages[?(@.n >= 2)]", state) == [{"text": "v1.2 out", "n": 3}]
    assert find("$..text", state) == ["v1.2 out", "hi"] and find("$.channels['C1'].messages[-1].n", state) == [1]
    assert find("$.channels.C9.messages[*]", state) == []
    with pytest.raises(JSONPathError):
        find("$.a[?(@.b ~~ 1)]", state)


def test_a_plugin_kind_and_the_shadowing_warning(caplog):
    kinds.register_kind("always", set(), lambda p, o: (True, "fine"))
    try:
        with caplog.at_level(logging.WARNING):
            kinds.register_kind("file_exists", {"path"}, kinds.KINDS["file_exists"].check)
        assert "replaces a built-in" in caplog.text
        caplog.clear()
        kinds.register_kind("file_exists", {"path"}, kinds.KINDS["file_exists"].check, force=True)
        assert caplog.text == ""
        assert evaluate([kinds.Assertion("always", {}, "x")], outcome(Path(".")))[0]["passed"]
    finally:
        kinds.KINDS.pop("always")


@pytest.mark.slow
@pytest.mark.podman
@pytest.mark.timeout(900)
def test_ctrl_c_stops_the_suite_and_keeps_what_finished(tmp_path, podman):
    import signal
    import threading

    from agentcap_cli.harness.modelserver import ModelServer, make_responder
    from agentcap_cli.runs.record import load_run

    project = tmp_path / "p"
    assert agentcap("init", str(project)).returncode == 0
    server = ModelServer(make_responder(script=str(REPO / "tests/support/slow-reply.yaml"))).start()
    third = threading.Event()
    server.app.on_request = lambda method, path: third.set() if len(server.app.seen) >= 3 else None
    cfg = project / "agentcap.yaml"
    cfg.write_text(cfg.read_text().replace("upstream: {script: scripts/model.yaml}",
                                           f"upstream: {{url: {server.url}/v1}}"))
    try:
        with start("test", "--repeat", "4", "--no-judge", cwd=project, workspace=tmp_path) as proc:
            assert third.wait(300), "the suite never reached its third repeat"
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=120)
    finally:
        server.stop()
    assert proc.returncode == 1, err[-3000:]
    results = json.loads((project / "reports" / "results.json").read_text())
    assert results["interrupted"] and not results["passed"] and len(results["records"]) >= 2
    [run_dir] = (tmp_path / ".agentcap").iterdir()
    assert load_run(run_dir).status == "interrupted"
    assert (run_dir / "results" / "hello-file" / "1.json").is_file()
    from tests.support.sandboxes import containers

    assert containers(podman, run=run_dir.name) == []
