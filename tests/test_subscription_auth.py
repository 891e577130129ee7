"""Subscription auth (issue 27): with a Claude login (``CLAUDE_CODE_OAUTH_TOKEN`` or the claude CLI's
``~/.claude/.credentials.json``) and no ``ANTHROPIC_API_KEY``, ``agenteval run`` and ``agentcap test`` run;
the login stays in the capture proxy and goes upstream only on captured calls, as Claude Code sends it
(``Authorization: Bearer`` + ``anthropic-beta: oauth-2025-04-20``); an expired file login is exit 2.

Without podman: the harness is an agenteval Provider plugin run on the host that makes real HTTP calls with
the per-turn key it is given, through the real proxy, to the test's own loopback upstream (which records
every header). The sandboxed claude-code harness and the claude-cli judge get the same per-turn key from
the same proxy (their container env is checked below)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from agentcap_cli.harness.credentials import CLAUDE_OAUTH_ENV, CredentialsError, claude_login
from sandbox.agents import TurnInput, get_agent
from tests.support.cli import agentcap
from tests.support.upstream import Upstream

REPO = Path(__file__).resolve().parent.parent
README_PROJECT = REPO / "tests" / "support" / "agenteval-readme"
TOKEN = "sk-ant-oat01-" + "S3cretSubscriptionT0ken" * 3
CLIENT_BETA = "fine-grained-tool-streaming-2025-05-14"
SOURCES = ("env", "file")
PROGRAMS = ("agenteval", "agentcap")
CLIENT_HEADERS = ("x-api-key", "authorization")

PROBE = '''
import json
from pathlib import Path

import httpx

from agenteval.providers.base import Provider, ProviderRunOutput
from agenteval.providers.registry import register


class Probe(Provider):
    """Calls the model the way a harness does, with the per-turn key in the header the test picks."""
    name = "probe"

    def install(self, *, agent_dir, workspace, mock_endpoints):
        pass

    def run(self, *, prompt, workspace, model, timeout, max_turns, env):
        Path(self.config["dump"]).write_text(json.dumps(env))
        key = env["ANTHROPIC_API_KEY"]
        auth = {"x-api-key": key} if self.config["header"] == "x-api-key" else {"authorization": f"Bearer {key}"}
        base = env["ANTHROPIC_BASE_URL"]
        models = httpx.get(f"{base}/v1/models", headers=auth, timeout=30)
        r = httpx.post(f"{base}/v1/messages", headers={**auth, "anthropic-version": "2023-06-01",
                                                       "anthropic-beta": "''' + CLIENT_BETA + '''"},
                       json={"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": prompt}]},
                       timeout=30)
        return ProviderRunOutput(final_output=f"models={models.status_code} messages={r.status_code}", num_turns=1)

    def preflight(self):
        return []


register(Probe)
'''


def probe_project(tmp_path: Path, header: str, judge: bool = False) -> tuple[Path, Path]:
    """The README project with its scenario run by the probe provider (and judged by the anthropic-api
    backend with ``judge``); (project, the env dump file)."""
    project = tmp_path / "my-eval"
    shutil.copytree(README_PROJECT, project)
    (project / "providers").mkdir()
    (project / "providers" / "__init__.py").write_text("")
    (project / "providers" / "probe.py").write_text(PROBE)
    dump = tmp_path / "probe-env.json"
    cfg = project / "agenteval.yaml"
    text = cfg.read_text().replace("judge:\n", "judge:\n  backend: anthropic-api\n")
    cfg.write_text(text + f"plugins:\n  - providers.probe\nproviders:\n  probe: {{header: {header}, "
                   f"dump: {json.dumps(str(dump))}}}\n")
    scenario = project / "scenarios" / "slack-release-note" / "scenario.yaml"
    text = scenario.read_text()
    scenario.write_text(text[:text.index("assertions:")]
                        + "assertions:\n  - {kind: output_contains, values: ['models=200 messages=200']}\n"
                        + ("judge: {rubric: 'Did it answer?', min_score: 0.5, required: false}\n" if judge else ""))
    return project, dump


def login_env(tmp_path: Path, source: str, expires_at: float | None = None) -> dict[str, str | None]:
    """The environment of a host logged in to Claude by ``source`` and holding no API key."""
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    env: dict[str, str | None] = {"HOME": str(home), "ANTHROPIC_API_KEY": None, "CLAUDE_CONFIG_DIR": None,
                                  CLAUDE_OAUTH_ENV: None}
    if source == "env":
        env[CLAUDE_OAUTH_ENV] = TOKEN
    else:
        expires = expires_at if expires_at is not None else (time.time() + 3600) * 1000
        (home / ".claude" / ".credentials.json").write_text(json.dumps(
            {"claudeAiOauth": {"accessToken": TOKEN, "refreshToken": "sk-ant-ort01-refresh", "expiresAt": expires,
                               "scopes": ["user:inference"], "subscriptionType": "max"}}))
    return env


def run(program: str, project: Path, upstream: str, env: dict[str, str | None], *args: str):
    cmd = ("run",) if program == "agenteval" else ("test",)
    return agentcap(*cmd, "--root", str(project), "--provider", "probe", "-vv", *(args or ("--no-judge",)),
                    program=program, workspace=project, timeout=300, clean=("ANTHROPIC_", "AGENTCAP_"),
                    ANTHROPIC_BASE_URL=upstream, **env)


def files_text(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


@pytest.mark.timeout(300)
@pytest.mark.parametrize("header", CLIENT_HEADERS)
@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("source", SOURCES)
def test_a_claude_login_runs_the_suite_and_goes_upstream_as_an_oauth_bearer_only(tmp_path, source, program, header):
    project, dump = probe_project(tmp_path, header)
    with Upstream() as up:
        r = run(program, project, up.url, login_env(tmp_path, source))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Claude login" in r.stderr  # -v says where the credential came from …
    calls = {x.path: x.headers for x in up.received}
    sent = calls["/v1/messages"]  # … and the captured call carried it the way Claude Code sends it
    assert sent["authorization"] == f"Bearer {TOKEN}" and "x-api-key" not in sent
    assert sent["anthropic-beta"].split(",") == [CLIENT_BETA, "oauth-2025-04-20"]
    side = calls["/v1/models"]  # a side endpoint is forwarded without any credential
    assert "authorization" not in side and "x-api-key" not in side
    assert all(TOKEN not in v for v in json.loads(dump.read_text()).values())  # not in the harness's env
    assert CLAUDE_OAUTH_ENV not in json.loads(dump.read_text())
    # never in a capture, a report, run.json, the proxy's log or the console
    assert (project / "reports" / "results.json").is_file()
    assert TOKEN not in files_text(project) and TOKEN not in r.stdout + r.stderr


@pytest.mark.timeout(300)
@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize("source", SOURCES)
def test_the_anthropic_api_judge_sends_the_login_as_an_oauth_bearer(tmp_path, source, program):
    """agenteval's other judge backend, called directly (not through the proxy), with the same login."""
    project, _ = probe_project(tmp_path, "x-api-key", judge=True)
    with Upstream() as up:
        r = run(program, project, up.url, login_env(tmp_path, source), "--filter", "slack")
    assert r.returncode == 0, r.stderr[-3000:]
    [judged] = [x.headers for x in up.received if x.path == "/v1/messages" and b"grading an AI agent" in x.body]
    assert judged["authorization"] == f"Bearer {TOKEN}" and judged["anthropic-beta"] == "oauth-2025-04-20"
    assert "x-api-key" not in judged
    [rec] = json.loads((project / "reports" / "results.json").read_text())["records"]
    assert rec["judge"]["backend"] == "anthropic-api"  # asked (our upstream's answer is no verdict: not required)
    assert TOKEN not in files_text(project) and TOKEN not in r.stdout + r.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize("program", PROGRAMS)
def test_an_expired_login_file_is_exit_2_naming_the_file_and_expires_at(tmp_path, program):
    project, _ = probe_project(tmp_path, "x-api-key")
    with Upstream() as up:
        r = run(program, project, up.url, login_env(tmp_path, "file", expires_at=(time.time() - 60) * 1000))
    assert r.returncode == 2, r.stderr[-3000:]
    creds = tmp_path / "home" / ".claude" / ".credentials.json"
    assert f"{creds}: claudeAiOauth.expiresAt: the login expired at" in " ".join(r.stderr.split())
    assert "Traceback" not in r.stderr and TOKEN not in r.stdout + r.stderr
    assert up.received == [] and not (project / "reports").exists()  # nothing sent, nothing half-written


@pytest.mark.parametrize("doc, says", [
    ("{not json", ":1: not JSON"),
    (json.dumps({"claudeAiOauth": {"refreshToken": "r"}}), ": claudeAiOauth.accessToken: missing"),
    (json.dumps([1]), ": claudeAiOauth.accessToken: missing"),
    (json.dumps({"claudeAiOauth": {"accessToken": TOKEN, "expiresAt": 1_000_000}}), ": claudeAiOauth.expiresAt:"),
    (json.dumps({"claudeAiOauth": {"accessToken": TOKEN, "expiresAt": (time.time() - 1) * 1000}}),
     ": claudeAiOauth.expiresAt:"),
])
def test_a_login_file_that_cannot_be_used_names_the_file_and_key(tmp_path, doc, says):
    path = tmp_path / ".credentials.json"
    path.write_text(doc)
    with pytest.raises(CredentialsError) as exc:
        claude_login({"CLAUDE_CONFIG_DIR": str(tmp_path)})
    assert str(exc.value).startswith(f"{path}{says}") and TOKEN not in str(exc.value)
    assert exc.value.exit_code == 2


@pytest.mark.parametrize("source", SOURCES)
def test_the_login_is_found_where_the_claude_cli_keeps_it_and_never_shown(tmp_path, source):
    env = {k: v for k, v in login_env(tmp_path, source).items() if v is not None}
    login = claude_login(env)
    assert login is not None and login.token == TOKEN
    assert login.source == (CLAUDE_OAUTH_ENV if source == "env" else str(tmp_path / "home/.claude/.credentials.json"))
    assert TOKEN not in repr(login)
    assert claude_login({"HOME": str(tmp_path / "nobody")}) is None  # no login: the caller asks for a key


def test_the_claude_code_container_gets_only_the_turn_key(tmp_path, monkeypatch):
    """What the sandboxed claude-code (and the claude-cli judge, the same adapter) would be given."""
    monkeypatch.setenv(CLAUDE_OAUTH_ENV, TOKEN)
    for d in ("ws", "home"):
        (tmp_path / d).mkdir()
    agent = get_agent("claude-code")
    t = TurnInput(prompt="hi", turn=1, base_url="http://127.0.0.1:4321", api_key="acp-turn-key", model="m1",
                  workspace=tmp_path / "ws", home=tmp_path / "home")
    agent.configure(t)
    env = agent.env(t)
    assert env["ANTHROPIC_API_KEY"] == "acp-turn-key" and CLAUDE_OAUTH_ENV not in env
    assert TOKEN not in json.dumps(agent.command(t)) + json.dumps(env) + files_text(tmp_path)


def test_an_unusable_login_is_a_suite_input_error_so_an_offline_cassette_run_still_runs(tmp_path, monkeypatch):
    """session.execute goes offline (every repeat from its cassette) on a SuiteInputError: an expired login
    must be one, not an error of its own that stops a run needing no upstream."""
    from agentcap_cli.suite.project import load_project
    from agentcap_cli.suite.runner import plan
    from agentcap_cli.suite.session import SuiteInputError, resolve_upstream

    project, _ = probe_project(tmp_path, "x-api-key")
    for k, v in login_env(tmp_path, "file", expires_at=1_000).items():
        monkeypatch.delenv(k, raising=False) if v is None else monkeypatch.setenv(k, v)
    p = load_project(project)
    with pytest.raises(SuiteInputError, match="claudeAiOauth.expiresAt: the login expired"):
        resolve_upstream(p, plan(p, adapter="probe"), None)
