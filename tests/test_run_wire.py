"""`agentcap run` for real (a CLI process, the capture proxy, pi in podman) against strict loopback upstreams:
the seed's URL form with synthesized follow-ups, an upstream refusing every call, a synthesizer that fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentcap_addons.wire.capture.records import iter_captures
from agentcap_cli.harness.followup import CONTINUE, SYNTH_SYSTEM
from agentcap_cli.harness.modelserver import ModelServer
from agentcap_cli.runs.record import load_run
from tests.support import cli
from tests.support.strict import StrictUpstream, always

pytestmark = [pytest.mark.slow, pytest.mark.podman]


def agentcap(workspace: Path, *args: str, **env: str) -> tuple[int, str, str]:
    r = cli.agentcap(*args, workspace=workspace, timeout=600, **env)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture
def one_task(tmp_path) -> Path:
    p = tmp_path / "tasks.txt"
    p.write_text("Look around the workspace.\n")
    return p


@pytest.mark.timeout(600)
def test_the_seeds_url_form_reaches_the_api_for_agents_and_synthesized_follow_ups(tmp_path, one_task):
    with ModelServer(StrictUpstream()) as live:  # answers only under /v1/, like the HF router
        code, out, err = agentcap(tmp_path, "run", "--agent", "pi", "--model", "zai-org/GLM-4.6",
                                  "--upstream", live.url, "--tasks", str(one_task), "--turns", "2",
                                  "--followup", "synthesized")
    assert code == 0, err
    rec = load_run(Path(out.strip()))
    assert rec.status == "done" and rec.upstream == live.url
    second = rec.tasks[0].turns[1]
    assert second.prompt == "I'll look at the working directory first." and second.followup_fallback is None
    assert {p for _, p in live.app.seen} <= {"/v1/chat/completions", "/v1/models"}


@pytest.mark.timeout(600)
def test_a_turn_whose_calls_all_failed_fails_the_task_with_the_upstreams_words(tmp_path, one_task):
    secret = "sk-never-shown-1234567890"
    with ModelServer(StrictUpstream(fail=always(401, "invalid api key"))) as live:
        code, out, err = agentcap(tmp_path, "run", "--agent", "pi", "--model", "m", "--upstream", live.url + "/v1/",
                                  "--tasks", str(one_task), "--turns", "2", "-v", AGENTCAP_API_KEY=secret)
    assert code == 1, err
    run_dir = Path(out.strip())
    rec = load_run(run_dir)
    [task] = rec.tasks
    assert rec.status == "failed" and task.completed_turns == 0
    assert task.aborted_reason == "upstream_error 401: invalid api key"
    [turn] = task.turns  # the task stopped at its first turn
    assert turn.aborted_reason == task.aborted_reason and turn.calls >= 1 and turn.failed_calls == turn.calls
    assert all(c.response["status_code"] == 401 for c in iter_captures(run_dir / "captures"))
    assert "upstream_error 401: invalid api key" in " ".join(err.split())  # the summary says it
    assert "upstream key: from AGENTCAP_API_KEY" in err and secret not in err + out
    assert not any(secret in f.read_text(errors="replace") for f in run_dir.rglob("*") if f.is_file())


@pytest.mark.timeout(900)
def test_a_failed_follow_up_stops_the_task_unless_the_fallback_is_allowed(tmp_path, one_task):
    def synthesizer_down(path: str, body: bytes) -> tuple[int, str] | None:
        return (500, "synthesizer overloaded") if SYNTH_SYSTEM.encode() in body else None

    with ModelServer(StrictUpstream(fail=synthesizer_down)) as live:
        code, out, err = agentcap(tmp_path, "run", "--agent", "pi", "--model", "m", "--upstream", live.url,
                                  "--tasks", str(one_task), "--turns", "2", "--followup", "synthesized")
        assert code == 1, err
        run_dir = Path(out.strip())
        task = load_run(run_dir).tasks[0]
        assert task.completed_turns == 1
        assert task.aborted_reason.startswith(f"followup_failed: POST {live.url}/v1/chat/completions → 500: "
                                              "synthesizer overloaded (gave up after 5 attempts")  # retried first
        assert "synthesizing the follow-up failed" in err and "synthesizer overloaded" in err
        # allowed explicitly (here on resume, by its environment variable): "continue", recorded per turn
        code, out, err = agentcap(tmp_path, "run", "--resume", str(run_dir), AGENTCAP_FOLLOWUP_FALLBACK="continue")
    assert code == 0, err
    rec = load_run(run_dir)
    second = rec.tasks[0].turns[1]
    assert rec.status == "done" and second.prompt == CONTINUE
    assert "500: synthesizer overloaded" in second.followup_fallback
    assert "saying 'continue'" in err


@pytest.mark.timeout(900)
def test_an_agentcap_test_repeat_whose_calls_failed_fails_with_the_reason(tmp_path):
    import json

    project = tmp_path / "p"
    assert agentcap(tmp_path, "init", str(project))[0] == 0
    with ModelServer(StrictUpstream(fail=always(404, "model 'agentcap-scripted' does not exist"))) as live:
        cfg = project / "agentcap.yaml"
        text = cfg.read_text().replace("upstream: {script: scripts/model.yaml}", f"upstream: {{url: {live.url}}}", 1)
        cfg.write_text(text)
        proc = cli.agentcap("test", "--no-judge", cwd=project, workspace=tmp_path, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    results = json.loads((project / "reports" / "results.json").read_text())
    [record] = results["records"]
    assert not record["passed"]
    assert record["error"] == "turn 1: upstream_error 404: model 'agentcap-scripted' does not exist"
    assert "upstream_error 404" in proc.stderr
