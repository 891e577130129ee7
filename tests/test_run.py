"""`agentcap run` for real: a CLI process, the capture proxy, pi in podman, the scripted upstream."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from contextlib import ExitStack
from pathlib import Path

import pytest

from agentcap_addons.wire.api.decode import request_messages
from agentcap_addons.wire.capture.records import iter_captures
from agentcap_cli.harness.followup import SYNTH_SYSTEM
from agentcap_cli.harness.modelserver import ModelServer, make_responder
from agentcap_cli.runs.record import load_run
from tests.support import cli
from tests.support.sandboxes import containers

pytestmark = [pytest.mark.slow, pytest.mark.podman]
REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["Create alpha.txt please.", "Create beta.txt please.", "Create gamma.txt please."]


def agentcap(workspace: Path, *args: str):
    """`agentcap ARGS` in the background (tests.support.cli.start), for ``finish`` or a signal."""
    return cli.start(*args, workspace=workspace)


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def run(workspace: Path, *args: str) -> tuple[int, str, str]:
    with agentcap(workspace, *args) as proc:
        return finish(proc)


@pytest.fixture
def corpus(tmp_path) -> Path:
    p = tmp_path / "tasks.txt"
    p.write_text("\n".join(PROMPTS) + "\n")
    return p


@pytest.mark.timeout(600)
def test_three_tasks_two_turns_in_parallel_each_call_attributed(tmp_path, corpus):
    code, out, err = run(tmp_path, "run", "--agent", "pi", "--tasks", str(corpus), "--turns", "2", "-j", "2")
    assert code == 0, err
    run_dir = Path(out.strip())
    rec = load_run(run_dir)
    assert rec.status == "done" and rec.finished_at and rec.upstream == "embedded:scripted"
    assert [(t.task_id, t.completed_turns, [x.turn for x in t.turns]) for t in rec.tasks] == [
        (f"t000{i}", 2, [1, 2]) for i in (1, 2, 3)]
    assert len({t.session_id for t in rec.tasks}) == 3 and all(t.session_id for t in rec.tasks)
    caps = list(iter_captures(run_dir / "captures"))
    by = {}
    for c in caps:
        assert c.request["run_id"] == rec.run_id and c.response["status_code"] == 200
        by.setdefault((c.request["task_id"], c.request["turn"]), []).append(c)
    for t in rec.tasks:
        for x in t.turns:
            assert len(by[(t.task_id, x.turn)]) == x.calls >= 1
        # the resumed second turn carries this task's own first prompt, and no other task's
        last = by[(t.task_id, 2)][-1]
        users = " ".join(m.content for m in request_messages(last.request["api"], last.request["body"]) if m.role == "user")
        assert t.prompt in users and not any(p in users for p in PROMPTS if p != t.prompt)
    assert sum(len(v) for v in by.values()) == len(caps)
    assert "tasks done" in err or "done" in err  # the progress display and the summary went to stderr


@pytest.mark.timeout(600)
def test_synthesized_follow_ups_never_reach_the_captures(tmp_path):
    tasks = tmp_path / "one.txt"
    tasks.write_text("Look around.\n")
    code, out, err = run(tmp_path, "run", "--agent", "pi", "--tasks", str(tasks), "--turns", "2",
                         "--followup", "synthesized")
    assert code == 0, err
    run_dir = Path(out.strip())
    second = load_run(run_dir).tasks[0].turns[1]
    # the embedded script's answer to a request without tools, asked directly by the synthesizer
    assert second.prompt == "I'll look at the working directory first."
    for f in (run_dir / "captures").iterdir():
        assert SYNTH_SYSTEM not in f.read_text()


def interrupted_run(tmp_path, corpus, sig: int) -> tuple[Path, ModelServer]:
    server = ModelServer(make_responder(script=str(REPO / "tests/support/slow-reply.yaml"))).start()
    third = threading.Event()
    # the third model call (the start-up probe's GET /v1/models is not one)
    server.app.on_request = lambda method, path: third.set() if sum(not p.endswith("/models") for _, p in server.app.seen) >= 3 \
        else None
    with agentcap(tmp_path, "run", "--agent", "pi", "--tasks", str(corpus), "--turns", "2", "-j", "1",
                  "--upstream", server.url + "/v1", "--model", "slow") as proc:
        assert third.wait(300), "the run never reached its third model call"
        proc.send_signal(sig)
        code, out, err = finish(proc, timeout=120)
    assert code == (1 if sig == signal.SIGINT else -signal.SIGKILL), err
    runs = list((tmp_path / ".agentcap").iterdir())
    assert len(runs) == 1
    return runs[0], server


@pytest.mark.timeout(900)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_an_interrupted_run_resumes_to_the_same_final_state(tmp_path, corpus, sig, podman):
    run_dir, server = interrupted_run(tmp_path, corpus, sig)
    try:
        rec = load_run(run_dir)
        if sig == signal.SIGINT:
            assert rec.status == "interrupted" and rec.finished_at
            assert containers(podman, run=rec.run_id) == []  # Ctrl-C removed the turn in flight
        else:
            assert rec.status == "running"  # nobody could write more: the turns done are on disk
        assert rec.tasks[0].completed_turns >= 1 and not all(t.completed_turns == 2 for t in rec.tasks)
        code, out, err = run(tmp_path, "run", "--resume", run_dir.name)
        assert code == 0, err
        assert Path(out.strip()).resolve() == run_dir.resolve()
    finally:
        server.stop()
    final = load_run(run_dir)
    assert final.status == "done" and containers(podman, run=final.run_id) == []
    assert [(t.task_id, t.completed_turns, [x.turn for x in t.turns], t.aborted_reason) for t in final.tasks] == [
        (f"t000{i}", 2, [1, 2], None) for i in (1, 2, 3)]
    turns_with_captures = {(c.request["task_id"], c.request["turn"]) for c in iter_captures(run_dir / "captures")}
    assert turns_with_captures == {(f"t000{i}", n) for i in (1, 2, 3) for n in (1, 2)}


@pytest.mark.timeout(600)
def test_shards_as_separate_processes_cover_the_corpus_once(tmp_path, corpus):
    with ExitStack() as running:
        procs = [running.enter_context(agentcap(tmp_path, "run", "--agent", "pi", "--tasks", str(corpus),
                                                "--shard", f"{i}/2")) for i in (1, 2)]
        results = [finish(p) for p in procs]
    assert [r[0] for r in results] == [0, 0], [r[2] for r in results]
    ids = [t.task_id for _, out, _ in results for t in load_run(Path(out.strip())).tasks]
    assert sorted(ids) == ["t0001", "t0002", "t0003"]
    assert {load_run(Path(out.strip())).shard for _, out, _ in results} == {"1/2", "2/2"}
    listed = cli.agentcap("ls", "--json", str(tmp_path))
    listed.check_returncode()
    assert sorted(json.loads(line)["shard"] for line in listed.stdout.splitlines()) == ["1/2", "2/2"]
