"""`agentcap test` for people and CI: validate as a linter, pass-rate gates, flaky cells in junit,
--failed, -x / --maxfail, -m / -k selection, one line per message when not on a terminal."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from agentcap_cli.main import cli
from agentcap_cli.suite.project import load_project
from agentcap_cli.suite.report import build, junit
from agentcap_cli.suite.results import RepeatResult
from agentcap_cli.suite.runner import SuiteRun, plan
from agentcap_cli.suite.select import SelectError, by_name, by_tags
from tests.support import cli as cli_process

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "my-eval"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    dest = tmp_path / "p"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("reports", ".agentcap"))
    return dest


def test_validate_reports_every_broken_file_in_one_pass_in_three_formats(project):
    (project / "scenarios" / "write-file" / "scenario.yaml").write_text(
        (project / "scenarios" / "write-file" / "scenario.yaml").read_text().replace("kind: file_exists", "kind: file_exist"))
    notes = project / "scenarios" / "release-notes" / "scenario.yaml"
    notes.write_text(notes.read_text().replace("agent: release-bot", "agent: release-bots"))
    r = CliRunner().invoke(cli, ["validate", "--root", str(project), "--format", "json"])
    assert r.exit_code == 2 and "Usage:" not in r.output
    out = json.loads(r.stdout)
    assert not out["valid"] and [Path(e["file"]).parent.name for e in out["errors"]] == ["release-notes", "write-file"]
    assert "did you mean 'release-bot'?" in out["errors"][0]["message"]
    assert "did you mean 'file_exists'?" in out["errors"][1]["message"]
    r = CliRunner().invoke(cli, ["validate", "--root", str(project), "--format", "github"])
    lines = r.stdout.splitlines()
    assert r.exit_code == 2 and len(lines) == 2 and all(line.startswith("::error file=") for line in lines)
    assert ",line=" in lines[0] and "title=agent::" in lines[0]
    # text, through a pipe: one line per error, however long
    p = cli_process.agentcap("validate", "--root", str(project), timeout=60)
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert p.returncode == 2 and len(errors) == 2 and all("scenario.yaml:" in e for e in errors)
    assert len(p.stderr.splitlines()) == 2


def test_validate_reports_every_problem_of_one_file_each_at_its_line(project):
    """Independent parts of one scenario are checked on their own: three problems, three errors in file
    order; an assertion on a mock that does not load is not reported again."""
    path = project / "scenarios" / "write-file" / "scenario.yaml"
    text = path.read_text().replace("kind: file_exists", "kind: file_exist").replace("\nprompt", "\nowner: me\nprompt", 1)
    path.write_text(text + "tags: [\"not a word\"]\nrun: {repeats: two}\n")
    r = CliRunner().invoke(cli, ["validate", "--root", str(project), "--format", "json"])
    assert r.exit_code == 2, r.output
    errors = json.loads(r.stdout)["errors"]
    assert [e["key"] for e in errors] == ["owner", "assertions.0.kind", "tags.0", "run.repeats"], errors
    assert [e["line"] for e in errors] == sorted(e["line"] for e in errors)
    lines = text.splitlines()
    assert lines[errors[0]["line"] - 1].startswith("owner") and "file_exist" in lines[errors[1]["line"] - 1]
    # a library caller without ``errors`` still gets one exception: the first problem, and the count
    from agentcap_addons.wire.util.yamlfile import ConfigError

    with pytest.raises(ConfigError, match=r"owner: unknown key.*\(\+3 more in this file\)"):
        load_project(project)


def test_an_unknown_key_gets_a_suggestion(project):
    cfg = project / "agentcap.yaml"
    cfg.write_text(cfg.read_text().replace("repeats: 1", "repeat: 1"))
    r = CliRunner().invoke(cli, ["validate", "--root", str(project)])
    assert r.exit_code == 2 and "repeat: unknown key (did you mean 'repeats'?)" in r.output


def test_selection_expressions():
    assert by_tags("slack and not slow")(["slack"]) and not by_tags("slack and not slow")(["slack", "slow"])
    assert by_tags("(a or b) and not c")(["b"]) and not by_tags("a or b")([])
    assert by_name("release or notes")("Release-Notes") and not by_name("not write")("write-file")
    for bad in ("", "a and", "(a or b", "a b", "and a"):
        with pytest.raises(SelectError):
            by_tags(bad)


def test_tags_and_k_pick_cells(project):
    notes = project / "scenarios" / "release-notes" / "scenario.yaml"
    notes.write_text("tags: [slack, smoke]\n" + notes.read_text())
    p = load_project(project)
    assert {u.cell for u in plan(p, tags="slack")} == {"release-notes"}
    assert {u.cell for u in plan(p, tags="not slack")} == {"write-file", "multi-agent[release-bot]", "multi-agent[writer]"}
    assert {u.cell for u in plan(p, names="multi and writer")} == {"multi-agent[writer]"}
    assert {u.cell for u in plan(p, cells={"write-file"})} == {"write-file"}
    r = CliRunner().invoke(cli, ["test", "--root", str(project), "-m", "slack and"])
    assert r.exit_code == 2 and "'-m' / '-k'" in r.output
    notes.write_text(notes.read_text().replace("tags: [slack, smoke]", "tags: ['two words']"))
    r = CliRunner().invoke(cli, ["validate", "--root", str(project)])
    assert r.exit_code == 2 and "tags.0" in r.output


def rec(cell: str, repeat: int, passed: bool) -> dict:
    return {"cell": cell, "scenario": cell, "agent": "a", "model": "m", "repeat": repeat, "passed": passed,
            "error": None if passed else "turn 1: the agent exited with 1", "duration_s": 1.0, "tokens": 10,
            "cost_usd": None, "assertions": [], "judge": None, "output": ""}


def test_pass_rate_gates_and_flaky_cells_in_junit():
    records = [rec("noisy", 1, True), rec("noisy", 2, False), rec("noisy", 3, True), rec("solid", 1, True)]
    strict = build(records, {})
    assert not strict["passed"] and not strict["cells"]["noisy"]["gate_passed"]
    gated = build(records, {}, {"noisy": 0.6, "solid": 1.0})
    assert gated["passed"] and gated["summary"]["suite_pass"] and gated["cells"]["noisy"]["flaky"]
    cases = ET.fromstring(junit(gated)).iter("testcase")
    by_name = {c.get("name"): c for c in cases}
    noisy2 = by_name["noisy#2"]
    props = {p.get("name"): p.get("value") for p in noisy2.iter("property")}
    assert props["flaky"] == "true" and props["failed_within_gate"] == "true" and props["gate"] == "0.600"
    assert noisy2.find("failure") is None and "exited with 1" in noisy2.find("system-err").text
    assert ET.fromstring(junit(strict)).iter("failure").__next__() is not None
    assert build(records, {}, {"noisy": 0.7})["passed"] is False  # 2/3 < 0.7


def test_failed_reruns_only_what_failed_last_time(project, tmp_path):
    reports = project / "reports"
    reports.mkdir()
    (reports / "results.json").write_text(json.dumps(build([rec("write-file", 1, False), rec("release-notes", 1, True)], {})))
    from agentcap_cli.commands.suite import _failed_cells

    assert _failed_cells(reports) == {"write-file"}
    (reports / "results.json").write_text(json.dumps(build([rec("write-file", 1, True)], {})))
    r = CliRunner().invoke(cli, ["test", "--root", str(project), "--failed"])
    assert r.exit_code == 0 and "nothing to run" in r.output
    r = CliRunner().invoke(cli, ["test", "--root", str(project), "--failed", "--report-dir", str(tmp_path / "none")])
    assert r.exit_code == 2 and "--failed" in r.output


def test_maxfail_stops_starting_repeats(project, monkeypatch):
    """The pool logic alone: each repeat's own work replaced by a record (no containers)."""
    p = load_project(project)
    units = plan(p, repeat=3)
    ran: list[str] = []

    def fake(self, u):
        ran.append(f"{u.cell}#{u.repeat}")
        return RepeatResult(u.cell, u.scenario.id, u.agent, u.adapter, u.model, u.repeat, passed=False, error="turn 1")

    monkeypatch.setattr(SuiteRun, "run_unit", fake)
    no_images = SimpleNamespace(image=lambda podman, agent: f"localhost/agentcap-{agent}:test")  # no podman builds
    suite = SuiteRun(p, services=no_images, run_dir=project / "run")  # type: ignore[arg-type]
    records = suite.run(units, jobs=1, maxfail=2)
    assert suite.stopped_early and len(records) == 2 and len(ran) == 2 < len(units)
