"""agenteval projects run unchanged: a project written from agenteval's README (tests/support/agenteval-readme,
agenteval's formats only) validates and runs with the `agenteval` command — claude-code in podman
against the scripted Anthropic model, both judge backends — and each form agenteval documents is read
as it means. No mocks of the HTTP layer: a real model server, proxy, containers and MCP mocks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from agentcap_addons.wire.util.yamlfile import ConfigError
from agentcap_cli.harness.modelserver import ModelServer, make_responder
from agentcap_cli.main import agenteval, cli
from agentcap_cli.suite.assertions import Assertion, ScenarioOutcome, evaluate
from agentcap_cli.suite.project import load_dotenv, load_project
from agentcap_cli.suite.runner import plan
from agentcap_cli.suite.session import SuiteInputError, resolve_upstream

REPO = Path(__file__).resolve().parent.parent
README_PROJECT = REPO / "tests" / "support" / "agenteval-readme"
MODEL = REPO / "tests" / "support" / "agenteval-readme-model.yaml"
AGENTEVAL = [sys.executable, "-c", "from agentcap_cli.main import agenteval_main; agenteval_main()"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    dest = tmp_path / "my-eval"
    shutil.copytree(README_PROJECT, dest)
    return dest


@pytest.fixture
def claude_model():
    """The scripted model, speaking Anthropic Messages, as ANTHROPIC_BASE_URL would point at."""
    with ModelServer(make_responder(script=str(MODEL))) as server:
        yield server


def agenteval_run(project: Path, model_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "AGENTCAP_"))}
    env.update(ANTHROPIC_BASE_URL=model_url, ANTHROPIC_API_KEY="sk-ant-test-key", AGENTCAP_WORKSPACE=str(project))
    return subprocess.run(AGENTEVAL + ["run", *args], cwd=project, env=env, capture_output=True, text=True, timeout=600)


# -- the whole path, in podman ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.podman
@pytest.mark.timeout(900)
def test_the_readme_project_runs_unchanged_with_the_claude_cli_judge(project, claude_model):
    before = {p.relative_to(project): p.read_bytes() for p in project.rglob("*") if p.is_file()}
    r = agenteval_run(project, claude_model.url, "-v")
    assert r.returncode == 0, r.stderr[-3000:]
    # agenteval's console shape, on stdout as agenteval prints it
    assert "scenario 'slack-release-note' provider=claude model=claude-opus-4-8" in r.stdout
    assert "trial 1/1: PASS $" in r.stdout and "judge=0.90" in r.stdout
    assert "suite: 1/1 runs passed -> PASS" in r.stdout
    results = json.loads((project / "reports" / "results.json").read_text())  # report.dir
    assert results["summary"] == {"cells": 1, "runs_total": 1, "runs_passed": 1, "suite_pass": True}
    [rec] = results["records"]
    assert all(a["passed"] for a in rec["assertions"]), rec["assertions"]
    assert rec["judge"]["backend"] == "claude-cli" and rec["judge"]["score"] == 0.9
    assert rec["num_turns"] == 4 and rec["cost_source"] == "harness" and rec["cost_usd"] > 0  # claude's own result
    run_dir = Path(results["run_dir"])
    state = json.loads(next(run_dir.glob("cells/*/1/mocks/slack.state.json")).read_text())
    # the handler's ctx.state.data write and the declarative `- append: {path, value}` both landed
    assert [m["text"][:12] for m in state["messages"]] == ["Backend 1.2.", "Full notes i"]
    first = min((json.loads(p.read_text()) for p in run_dir.glob("captures/*.request.json")), key=lambda c: c["seq"])
    assert first["api"] == "anthropic-messages" and "You announce releases on Slack" in json.dumps(first["body"])
    assert list((run_dir / "judge" / "captures").glob("*.request.json"))  # the judge's calls: not the agent's
    # the project was not touched (zero edits), apart from the reports and run dirs it asked for
    after = {p.relative_to(project): p.read_bytes() for p in project.rglob("*") if p.is_file()
             if not str(p.relative_to(project)).startswith(("reports", ".agentcap"))}
    assert after == before


@pytest.mark.slow
@pytest.mark.podman
@pytest.mark.timeout(900)
def test_the_anthropic_api_judge_and_a_failing_assertion_exit_1(project, claude_model):
    cfg = project / "agenteval.yaml"
    cfg.write_text(cfg.read_text().replace("  min_score: 0.6\n", "  min_score: 0.6\n  backend: anthropic-api\n"))
    scenario = project / "scenarios" / "slack-release-note" / "scenario.yaml"
    scenario.write_text(scenario.read_text().replace("tool: slack_send_message\n    min_count: 1",
                                                     "tool: slack_send_message\n    min_count: 5"))
    r = agenteval_run(project, claude_model.url, "--report-dir", "out")
    assert r.returncode == 1, r.stderr[-3000:]
    assert "suite: 0/1 runs passed -> FAIL" in r.stdout and "slack_send_message called 1 (expected 5..∞)" in r.stderr
    results = json.loads((project / "out" / "results.json").read_text())  # --report-dir: relative to the root
    [rec] = results["records"]
    assert rec["judge"]["backend"] == "anthropic-api" and rec["judge"]["passed"]
    junit = (project / "out" / "junit.xml").read_text()
    assert "<failure" in junit and "slack_send_message" in junit


@pytest.mark.slow
@pytest.mark.podman
@pytest.mark.timeout(900)
def test_the_ci_templates_parse_and_their_command_runs(tmp_path):
    example = REPO / "examples" / "my-eval"
    gh = yaml.safe_load((example / ".github" / "workflows" / "agenteval.yml").read_text())
    gl = yaml.safe_load((example / ".gitlab-ci.yml").read_text())
    gh_run = [s["run"] for s in gh["jobs"]["eval"]["steps"] if "agenteval run" in s.get("run", "")]
    gl_run = [c for c in gl["agenteval"]["script"] if "agenteval run" in c]
    assert gh["jobs"]["eval"]["steps"][-1]["with"]["report_paths"] == "examples/my-eval/reports/junit.xml"
    assert gl["agenteval"]["artifacts"]["reports"]["junit"] == "examples/my-eval/reports/junit.xml"
    [line] = gh_run
    assert line.removeprefix("sudo -E ") == gl_run[0].removeprefix(".venv/bin/")
    repo = tmp_path / "repo"
    shutil.copytree(example, repo / "examples" / "my-eval", ignore=shutil.ignore_patterns("reports", ".agentcap"))
    argv = line.removeprefix("sudo -E ").split()
    assert argv[:2] == ["agenteval", "run"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCAP_")}
    r = subprocess.run(AGENTEVAL + argv[1:], cwd=repo, env=env, capture_output=True, text=True, timeout=800)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (repo / "examples" / "my-eval" / "reports" / "junit.xml").is_file()


# -- each documented form, read as agenteval means it (no podman) -----------------------------------


def test_validate_list_and_both_commands_accept_the_project(project):
    for command in (agenteval, cli):
        r = CliRunner().invoke(command, ["validate", "--root", str(project)])
        assert r.exit_code == 0, r.output
    r = CliRunner().invoke(agenteval, ["list", "--root", str(project)])
    assert r.exit_code == 0 and "slack-release-note" in r.output


def test_the_project_is_read_as_agenteval_means_it(project, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    p = load_project(project)
    assert p.report_dir == project / "reports" and p.provider == "claude" and p.judge_backend == "claude-cli"
    assert p.upstream is None and p.max_turns == 15
    [s] = p.scenarios
    assert s.mock_dirs == {"slack": project / "scenarios" / "slack-release-note" / "mcp" / "slack"}
    assert s.assets_contents == [project / "scenarios" / "slack-release-note" / "assets"]  # assets/ copied unasked
    assert s.prompt.startswith("Version 1.2.0") and s.max_turns == 15 and s.turns == 1
    bot = p.agents["release-bot"]
    assert bot.capa and bot.servers == ["slack"] and bot.base_prompt.startswith("You announce releases")
    assert [d.name for d in bot.skills] == ["slack"]
    assert [(a.kind, a.params.get("jsonpath") or a.params.get("values")) for a in s.assertions][:2] == \
        [("mock_state", "$.messages[?(@.channel_name=='releases')]"), ("tool_called", None)]


def test_dotenv_supplies_the_key_and_the_real_environment_wins(project, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    p = load_project(project)
    units = plan(p)
    with pytest.raises(SuiteInputError, match="no ANTHROPIC_API_KEY in the environment or in .*\\.env"):
        resolve_upstream(p, units, None)
    (project / ".env").write_text('# keys\nexport ANTHROPIC_API_KEY="sk-from-dotenv"\nANTHROPIC_BASE_URL=http://127.0.0.1:9\n')
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:7")  # the real environment wins
    assert load_dotenv(project / ".env") == {"ANTHROPIC_API_KEY": "sk-from-dotenv", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
    up = resolve_upstream(load_project(project), units, None)
    assert (up.url, up.api_key, up.source) == ("http://127.0.0.1:7", "sk-from-dotenv", "$ANTHROPIC_BASE_URL")
    monkeypatch.delenv("ANTHROPIC_BASE_URL")
    os.environ.pop("ANTHROPIC_BASE_URL", None)
    assert resolve_upstream(p, units, None).url == "https://api.anthropic.com"  # what claude itself would use
    assert resolve_upstream(p, units, "http://127.0.0.1:5/v1").url == "http://127.0.0.1:5/v1"  # --upstream wins


def test_agent_model_and_provider_overrides_make_distinct_cells(project):
    (project / "agents" / "other").mkdir()
    (project / "agents" / "other" / "capabilities.yaml").write_text("servers: []\nbase_prompt: hi\n")
    p = load_project(project)
    units = plan(p, agents=["release-bot", "other"], models=["m1", "m2"], repeat=2, adapter="pi")
    cells = sorted({u.cell for u in units})
    assert cells == ["slack-release-note[other]@m1", "slack-release-note[other]@m2",
                     "slack-release-note[release-bot]@m1", "slack-release-note[release-bot]@m2"]
    assert len(units) == 8 and {u.adapter for u in units} == {"pi"}
    assert [u.cell for u in plan(p, filter="[other]", agents=["release-bot", "other"])] == ["slack-release-note[other]"]
    scenario = project / "scenarios" / "slack-release-note" / "scenario.yaml"
    scenario.write_text("provider: claude\n" + scenario.read_text())  # a pinned provider beats --provider
    assert {u.adapter for u in plan(load_project(project), adapter="pi")} == {"claude"}
    r = CliRunner().invoke(agenteval, ["run", "--root", str(project), "--agent", "ghost"])
    assert r.exit_code == 2 and "no agents/ghost/capabilities.yaml" in r.output
    r = CliRunner().invoke(agenteval, ["run", "--root", str(project), "--provider", "nobody"])
    assert r.exit_code == 2 and "unknown provider 'nobody'" in r.output


@pytest.mark.parametrize("kind,params,ok", [
    ("mock_state", {"server": "s", "jsonpath": "$.messages[0:1]", "min_count": 1, "max_count": 1}, True),
    ("mock_state", {"server": "s", "jsonpath": "$.messages[?(@.channel=='releases' && @.n > 1)]"}, True),
    ("mock_state", {"server": "s", "jsonpath": "$.messages[?(@.channel in ['releases', 'x'])]", "min_count": 2}, True),
    ("mock_state", {"server": "s", "jsonpath": "$.messages", "min_count": 2}, True),  # a plain path counts items
    ("mock_state", {"server": "s", "jsonpath": "$.__calls__[?(@.tool=='post')]", "min_count": 1}, True),
    ("file_contains", {"path": "out/a.md", "values": ["Hello", "nope"], "mode": "any"}, True),
    ("file_contains", {"path": "out/a.md", "values": ["Hello", "nope"]}, False),
    ("dir_has_new_file", {"path": "out", "matches": "*.md", "contents_include": ["Hello"]}, True),
    ("dir_has_new_file", {"path": "out", "matches": "*.txt"}, False),
    ("output_contains", {"values": ["POSTED", "zzz"], "mode": "any", "ignore_case": True}, True),
    ("output_contains", {"values": ["POSTED"]}, False),
    ("output_matches", {"pattern": "^posted", "ignore_case": True}, True),
])
def test_assertion_params_as_agenteval_documents_them(tmp_path, kind, params, ok):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.md").write_text("Hello")
    o = ScenarioOutcome(tmp_path, set(), "Posted it.", {"s": {"messages": [{"channel": "releases", "n": 2}, {"channel": "x", "n": 0}]}},
                [{"server": "s", "tool": "post", "args": {}, "at": "t"}], [], {})
    [r] = evaluate([Assertion(kind, params, kind)], o)
    assert r["passed"] is ok, r["detail"]


BAD = [
    ("agenteval.yaml", "report:\n  dir: reports", "report:\n  folder: reports", "report.folder: unknown key"),
    ("agenteval.yaml", "  min_score: 0.6", "  min_score: 0.6\n  backend: gpt-judge", "judge.backend: 'gpt-judge'"),
    ("agents/release-bot/capabilities.yaml", "    tool: post_message", "    tool: post_massage",
     "the slack mock offers no tool 'post_massage'"),
    ("agents/release-bot/capabilities.yaml", "- id: slack\n  type: local", "- id: slack\n  type: github",
     "'github' skills are not supported"),
    ("agents/release-bot/capabilities.yaml", "    server: '@slack'\n    tool: list", "    server: '@jira'\n    tool: list",
     "'@jira' is not one of this file's servers"),
    ("scenarios/slack-release-note/scenario.yaml", "mcp: [slack]", "mcp: [jira]", "no mock 'jira'"),
    ("scenarios/slack-release-note/scenario.yaml", "jsonpath: \"$.messages", "jsonpath: \"$.messages[[", "jsonpath"),
    ("scenarios/slack-release-note/scenario.yaml", "prompt_file: input/prompt.md", "prompt_file: input/nope.md",
     "no file 'input/nope.md'"),
]


@pytest.mark.parametrize("path,old,new,message", BAD)
def test_validate_reports_mistakes_in_agenteval_terms(project, path, old, new, message):
    f = project / path
    assert old in f.read_text()
    f.write_text(f.read_text().replace(old, new, 1))
    r = CliRunner().invoke(agenteval, ["validate", "--root", str(project)])
    assert r.exit_code == 2 and message in r.output and Path(path).name in r.output, r.output
    with pytest.raises(ConfigError):
        load_project(project)


def test_capa_keys_that_configure_the_harness_pass_through(project):
    cap = project / "agents" / "release-bot" / "capabilities.yaml"
    text = cap.read_text().replace("agents:\n  base:", "agents:\n  additional: [{type: local, path: ./CLAUDE.md}]\n  base:")
    cap.write_text(text + "hooks: [{id: h, type: inline, def: {content: x}}]\nplugins: []\n"
                          "subagents: [{id: reviewer}]\nclients: [claude-code]\n")
    assert load_project(project).agents["release-bot"].base_prompt.startswith("You announce")


def test_claude_code_gets_max_turns_skills_and_reports_cost(tmp_path):
    from sandbox.agents import TurnInput, get_agent

    skill = tmp_path / "skills" / "slack"
    skill.mkdir(parents=True)
    (skill / "SKILL.md").write_text("---\nname: slack\n---\n")
    t = TurnInput(prompt="p", turn=1, base_url="http://127.0.0.1:1", api_key="k", model="m", workspace=tmp_path / "w",
                  home=tmp_path / "h", skills=[skill], max_turns=15)
    agent = get_agent("claude-code")
    t.workspace.mkdir()
    agent.configure(t)
    cmd = agent.command(t)
    assert cmd[cmd.index("--max-turns") + 1] == "15"
    assert (t.home / ".claude" / "skills" / "slack" / "SKILL.md").is_file()
    assert not (t.workspace / ".claude").exists()  # the workspace the test inspects holds only the agent's work
    out = agent.parse(json.dumps({"type": "result", "result": "done", "session_id": "s", "total_cost_usd": 0.25,
                                  "num_turns": 4}), "", t)
    assert (out.reply, out.cost_usd, out.num_turns) == ("done", 0.25, 4)


PLUGIN = '''
from pathlib import Path

from agenteval.providers.base import Provider, ProviderRunOutput
from agenteval.providers.registry import register


class EchoProvider(Provider):
    name = "echo"

    def install(self, *, agent_dir, workspace, mock_endpoints):
        (Path(workspace) / "installed.txt").write_text(",".join(sorted(mock_endpoints)) + "|" + self.config["greeting"])

    def run(self, *, prompt, workspace, model, timeout, max_turns, env):
        text = (Path(workspace) / "installed.txt").read_text()
        return ProviderRunOutput(final_output=f"{text} {model} {max_turns} {env['ANTHROPIC_API_KEY'][:4]}",
                                 num_turns=2, total_cost_usd=0.5)

    def preflight(self):
        return []


register(EchoProvider)
'''


def test_a_plugin_provider_runs_in_agentcaps_runner(project, claude_model):
    (project / "providers").mkdir()
    (project / "providers" / "__init__.py").write_text("")
    (project / "providers" / "echo.py").write_text(PLUGIN)
    cfg = project / "agenteval.yaml"
    cfg.write_text(cfg.read_text() + "plugins:\n  - providers.echo\nproviders:\n  echo: {greeting: hi}\n")
    scenario = project / "scenarios" / "slack-release-note" / "scenario.yaml"
    text = scenario.read_text()
    scenario.write_text(text[:text.index("assertions:")] + "assertions:\n  - {kind: output_contains, values: ['slack|hi m1 15 acp-']}\n")
    r = agenteval_run(project, claude_model.url, "--provider", "echo", "--model", "m1", "--no-judge", "-v")
    assert r.returncode == 0, r.stderr[-3000:]
    [rec] = json.loads((project / "reports" / "results.json").read_text())["records"]
    assert rec["provider"] == "echo" and rec["num_turns"] == 2 and rec["cost_usd"] == 0.5
    assert "trial 1/1: PASS $0.5000 turns=2" in r.stdout


def test_registering_over_a_builtin_warns_unless_forced():
    from agenteval.providers import registry
    from agenteval.providers.base import Provider, ProviderRunOutput

    class Claude(Provider):
        name = "claude"

        def install(self, **kw):
            pass

        def run(self, **kw):
            return ProviderRunOutput()

    try:
        with pytest.warns(UserWarning, match="shadows a built-in provider"):
            registry.register(Claude)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            registry.register(Claude, force=True)
            registry.register(Claude)  # the same class again: no warning
        assert isinstance(registry.get_provider("claude"), Claude) and "claude" in registry.available()
    finally:
        registry._PROVIDERS.pop("claude", None)
    with pytest.raises(KeyError, match="sandboxed harness"):
        registry.get_provider("claude")


def test_agenteval_init_scaffolds_a_project_that_validates_and_keeps_existing_files(tmp_path):
    (tmp_path / "README.md").write_text("mine")
    (tmp_path / "agenteval.yaml").write_text("provider: claude\nmodels: [m]\n")
    r = CliRunner().invoke(agenteval, ["init", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "README.md").read_text() == "mine" and "scripts/model.yaml" not in \
        (tmp_path / "agenteval.yaml").read_text()  # an existing file is left alone
    fresh = tmp_path / "fresh"
    assert CliRunner().invoke(agenteval, ["init", str(fresh)]).exit_code == 0
    assert (fresh / ".env.example").is_file() and (fresh / "scenarios/example/mcp/demo/mock.yaml").is_file()
    r = CliRunner().invoke(agenteval, ["validate", "--root", str(fresh)])
    assert r.exit_code == 0, r.output


@pytest.mark.slow
@pytest.mark.podman
@pytest.mark.timeout(900)
def test_agenteval_init_passes_out_of_the_box(tmp_path):
    assert CliRunner().invoke(agenteval, ["init", str(tmp_path / "p")]).exit_code == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "AGENTCAP_"))}
    r = subprocess.run(AGENTEVAL + ["run", "-v"], cwd=tmp_path / "p", env=env, capture_output=True, text=True,
                       timeout=800)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "suite: 1/1 runs passed -> PASS" in r.stdout
