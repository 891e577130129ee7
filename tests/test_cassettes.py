"""Cassettes without containers: the on-disk format from real captures, the matcher's normalisation of a
run's own values, the replay addon serving by attribution through a real capture proxy (real SDK
clients, a real scripted upstream behind it), drift found after the fact, the secret scan, bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from agentcap_addons.wire.capture.records import Capture, iter_captures, read_capture
from agentcap_addons.wire.capture.registry import Attribution
from agentcap_addons.wire.fake import cassettedir
from agentcap_addons.wire.fake.cassette import (
    DEFAULT_IGNORE,
    Cassette,
    normalise,
    replay_response,
)
from agentcap_addons.wire.fake.cassettedir import RUN_DIR, run_subs
from agentcap_cli.harness.modelserver import ModelServer, make_responder
from agentcap_cli.harness.services import Services
from agentcap_cli.runs.drift import find_drift
from agentcap_cli.runs.record import RunFile, RunRecord, TaskRecord
from agentcap_cli.suite.cassettes import scan
from tests.conftest import closed_port
from tests.support.cli import agentcap
from tests.support.runs import TOOLS, make_run

REPO = Path(__file__).resolve().parents[1]


def ordered(directory: Path) -> list[Capture]:
    return sorted(iter_captures(directory), key=lambda c: c.seq)


# -- the format -----------------------------------------------------------------------------------

def test_a_cassette_is_compact_reviewable_and_replays_the_recorded_bytes(tmp_path):
    run = make_run(tmp_path, "pi-scripted-20261122-000000", [("openai", "m1", True), ("anthropic", "m2", False)])
    caps = ordered(run / "captures")
    files = cassettedir.render({"agent": "writer", "model": "m1"}, caps, run_subs(run, run.name), drop=DEFAULT_IGNORE)
    assert sorted(files) == ["001.json", "002.json", "cassette.json"]
    target = tmp_path / "cassettes" / "s" / cassettedir.cell_dirname("s@org/model") / "1"
    cassettedir.write(target, files)
    assert target.parent.name == "s@org%2Fmodel"
    text = (target / "001.json").read_text()
    doc = json.loads(text)
    assert text.startswith('{\n  "turn"') and set(doc) == {"turn", "request", "response"}
    # no stamps that change on every recording, nothing the replay does not need
    for key in ("request_id", "seq", "captured_at", "upstream_url", "run_id", "timings", "chunks"):
        assert f'"{key}"' not in text
    assert doc["response"]["sse"][0].startswith("data: ") and doc["response"]["headers"] == {
        "content-type": caps[0].response["headers"]["content-type"]}
    assert json.loads((target / "002.json").read_text())["response"]["body"]["type"] == "message"
    # served back: the same bytes as recorded
    cassette = Cassette(target)
    for cap in caps:
        rec = cassette.take(cap.request["method"], cap.request["path"], cap.request["body"])
        assert b"".join(replay_response(rec).chunks) == cap.response_bytes()
    # rewritten atomically: a second write replaces the whole directory
    cassettedir.write(target, {"cassette.json": b"{}\n", "001.json": files["001.json"]})
    assert sorted(p.name for p in target.iterdir()) == ["001.json", "cassette.json"]


def test_the_runs_own_values_are_normalised_on_both_sides():
    old = Path("/home/me/proj/.agentcap/suite-p-20261122-000000")
    new = Path("/builds/ci/proj/.agentcap/suite-p-20261201-101010")
    def body(run: Path, day: str, kernel: str) -> dict:
        dashed = str(run).replace("/", "-").replace(".", "-")
        return {"model": "m", "client_metadata": {"turn_id": day}, "input": [
            {"id": "msg_c105c295-481d-54dd-b4b5-ed36460d63a0", "content":
             f"cwd: {run}/cells/x/1/workspace; memory at ~/.claude/projects/{dashed}-cells-x-1-workspace; "
             f"Today's date is {day}. OS Version: {kernel}\nrun {run.name}"},
            {"id": "fco_01a22d4f-f2e8-7f92-bbbb-f8582a61b99c", "output": f"Chunk ID: ec95{day[-2:]}\nWall time: "
                                                                      f"0.00{day[-1]} seconds\n"}]}
    a = normalise(body(old, "2026-11-22", "Linux 6.18.44-fc"), frozenset(DEFAULT_IGNORE), subs=run_subs(old, old.name))
    b = normalise(body(new, "2026-12-01", "Linux 6.8.0-azure"), frozenset(DEFAULT_IGNORE), subs=run_subs(new, new.name))
    assert a == b
    # (the sandbox's paths in a recording made before they were fixed read as /workspace and -workspace)
    assert a["input"][0]["content"].startswith("cwd: /workspace; memory at ~/.claude/projects/-workspace;")
    assert normalise({"t": f"{old}/x"}, frozenset(), subs=run_subs(old, old.name)) == {"t": f"{RUN_DIR}/x"}
    # …and nothing else: a changed word still differs
    c = body(new, "2026-12-01", "Linux 6.8.0-azure")
    c["input"][0]["content"] = c["input"][0]["content"].replace("cwd", "pwd")
    assert normalise(c, frozenset(DEFAULT_IGNORE), subs=run_subs(new, new.name)) != b


# -- served through the capture proxy, by attribution ----------------------------------------------

@dataclass
class Recorded:
    root: Path  # the project's cassettes dir
    caps: list[Capture]  # the captures its cassette was made from


@pytest.fixture
def recorded(tmp_path) -> Recorded:
    """A project's cassettes dir holding cell c1#1 (two chat calls recorded through a real proxy)."""
    run = make_run(tmp_path / "rec", "suite-p-20261122-000000", [("openai", "m", False), ("openai", "m", True)])
    caps = ordered(run / "captures")
    root = tmp_path / "project" / "cassettes"
    cassettedir.write(cassettedir.repeat_dir(root, "c1", "c1", 1),
                      cassettedir.render({"agent": "a"}, caps, run_subs(run, run.name), drop=DEFAULT_IGNORE))
    return Recorded(root, caps)


def ask(services: Services, run_dir: Path, cell: str, repeat: int, content: str, stream: bool = False) -> str:
    key = services.turn_key(Attribution(run_id=run_dir.name, task_id=cell, turn=1, cell=cell, repeat=repeat,
                                        captures_dir=str(run_dir / "captures")))
    client = openai.OpenAI(base_url=services.agent_base_url + "/v1", api_key=key, max_retries=0)
    try:
        extra = {"stream_options": {"include_usage": True}} if stream else {}  # as tests/support/runs.py asks
        out = client.chat.completions.create(model="m", stream=stream, tools=TOOLS,
                                             messages=[{"role": "user", "content": content}], **extra)
        if stream:
            return "".join(c.choices[0].delta.content or "" for c in out if c.choices)
        return out.choices[0].message.content or ""
    finally:
        services.keys.unregister(key)


def settle(services: Services, run_dir: Path, cell: str, repeat: int) -> list[Capture]:
    rids = services.tracker.settle_cell(run_dir.name, cell, repeat)
    return sorted((read_capture(run_dir / "captures", r) for r in rids), key=lambda c: c.seq)


def test_the_addon_serves_each_repeat_from_its_cassette_offline_and_captures_it(recorded, tmp_path):
    root, caps = recorded.root, recorded.caps
    run_dir = tmp_path / "ws" / ".agentcap" / "suite-p-20261201-101010"
    with Services(None, None, offline=True, replay={"agentcap_cassettes": str(root)}) as services:
        first = ask(services, run_dir, "c1", 1, "task for m")
        second = ask(services, run_dir, "c1", 1, "task for m", stream=True)
        assert first and second
        again = settle(services, run_dir, "c1", 1)
        with pytest.raises(openai.NotFoundError) as miss:  # a changed prompt: drift, not a crash
            ask(services, run_dir, "c1", 1, "task for m, please")
        assert miss.value.code == "agentcap_replay_miss" and "$.messages[0].content" in str(miss.value)
        with pytest.raises(openai.InternalServerError) as gone:  # no cassette for c2: upstream (offline: none)
            ask(services, run_dir, "c2", 1, "task for m")
        assert gone.value.status_code == 502
        missed = settle(services, run_dir, "c1", 1)[2:]
    # every served call is a capture with the recorded response, attributed as usual
    assert [c.response_bytes() for c in again] == [c.response_bytes() for c in caps]
    assert all(c.request["cell"] == "c1" and c.request["repeat"] == 1 for c in again)
    drift, _ = find_drift(Cassette(cassettedir.repeat_dir(root, "c1", "c1", 1)), again + missed,
                          run_subs(run_dir, run_dir.name))
    assert drift.call_seq == 3 and drift.path == "$.messages[0].content"
    assert (drift.recorded, drift.got) == ("task for m", "task for m, please")


def test_on_miss_live_sends_the_rest_of_the_repeat_upstream(recorded, tmp_path):
    root, caps = recorded.root, recorded.caps
    run_dir = tmp_path / "ws" / ".agentcap" / "suite-p-20261201-101010"
    with ModelServer(make_responder(script="shell-then-answer")) as upstream, \
            Services(upstream.url + "/v1", None, replay={"agentcap_cassettes": str(root),
                                                        "agentcap_replay_on_miss": "live"}) as services:
        assert ask(services, run_dir, "c1", 1, "task for m") == caps[0].response["body"]["choices"][0]["message"][
            "content"]
        assert len(upstream.app.seen) == 0
        ask(services, run_dir, "c1", 1, "something new")  # drift → live
        ask(services, run_dir, "c1", 1, "task for m")  # recorded, but the repeat went live: upstream too
        assert len([p for _, p in upstream.app.seen if p.endswith("/chat/completions")]) == 2
        ask(services, run_dir, "c1", 2, "task for m")  # no cassette for repeat 2: live
        assert len([p for _, p in upstream.app.seen if p.endswith("/chat/completions")]) == 3


def test_the_replay_addon_loads_after_the_capture_addon_with_a_script_too(tmp_path):
    from agentcap_cli.harness.proxy import REPLAY_SCRIPT, start_proxy

    sets = {"agentcap_script": str(REPO / "examples" / "scripts" / "shell-then-answer.yaml")}
    with start_proxy(f"http://127.0.0.1:{closed_port()}", tmp_path / "run", addons=[REPLAY_SCRIPT], sets=sets,
                     events=True) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key="x", max_retries=0)
        out = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        rid = proxy.events.wait_for(event="request")["request_id"]
        proxy.events.wait_for(event="response", request_id=rid)
    assert out.choices[0].message.content == "I'll look at the working directory first."
    [cap] = list(iter_captures(tmp_path / "run"))  # answered by the addon, captured all the same
    assert json.loads(cap.response_bytes())["choices"][0]["message"]["content"] == out.choices[0].message.content


def test_a_recorded_path_in_a_response_names_this_runs_workspace(tmp_path):
    old = tmp_path / "old" / ".agentcap" / "suite-p-1"
    cap = Capture({"method": "POST", "path": "/v1/chat/completions", "api": "openai-chat", "request_id": "1", "seq": 1,
                   "body": {"model": "m", "messages": [{"role": "user", "content": f"write {old}/w/a.txt"}]}},
                  {"status_code": 200, "headers": {"content-type": "application/json"},
                   "body": {"choices": [{"message": {"content": f"wrote {old}/w/a.txt"}}]}})
    target = tmp_path / "cassettes" / "s" / "s" / "1"
    cassettedir.write(target, cassettedir.render({}, [cap], run_subs(old, old.name)))
    assert str(old) not in (target / "001.json").read_text()
    new = tmp_path / "new" / ".agentcap" / "suite-p-2"
    cassette = Cassette(target)
    rec = cassette.take("POST", "/v1/chat/completions", {"model": "m", "messages": [
        {"role": "user", "content": f"write {new}/w/a.txt"}]}, run_subs(new, new.name))
    assert json.loads(b"".join(replay_response(rec, subs=run_subs(new, new.name)).chunks))["choices"][0][
        "message"]["content"] == f"wrote {new}/w/a.txt"


# -- the secret scan --------------------------------------------------------------------------------

def test_a_cassette_with_a_secret_is_refused_and_the_finding_masked(tmp_path):
    secret = "AKIA" + "Z7QXJ4M2P9R3T5V8"
    run = make_run(tmp_path, "suite-p-20261122-000000", [("openai", "m", False)], secret=secret)
    files = cassettedir.render({}, ordered(run / "captures"), run_subs(run, run.name))
    found = scan(files, "cassettes/s/s/1", tmp_path)
    assert found and found[0].startswith("cassettes/s/s/1/001.json: ") and secret not in " ".join(found)
    allow = tmp_path / ".agentcap-secrets-allow"
    fp = __import__("hashlib").sha256(secret.encode()).hexdigest()
    allow.write_text(f"sha256:{fp}  # a documented test key\n")
    assert scan(files, "cassettes/s/s/1", tmp_path) == []


# -- bad input, runs and ls (no containers) --------------------------------------------------------

def test_bad_record_flags_are_exit_2_naming_the_flag(tmp_path):
    r = agentcap("test", "--root", "examples/my-eval", "--record-mode", "sometimes")
    assert r.returncode == 2 and "'--record-mode'" in r.stderr
    r = agentcap("test", "--root", "examples/my-eval", AGENTCAP_RECORD_MODE="sometimes")
    assert r.returncode == 2 and "AGENTCAP_RECORD_MODE" in r.stderr
    r = agentcap("test", "--root", "examples/my-eval", "--on-drift", "live")
    assert r.returncode == 2 and "'--on-drift'" in r.stderr and "--record-mode once or new" in r.stderr
    r = agentcap("test", "--root", "examples/my-eval", "--on-drift", "sometimes", "--record-mode", "once")
    assert r.returncode == 2 and "'--on-drift'" in r.stderr


def test_repeats_without_a_cassette_need_the_upstream(tmp_path):
    import shutil

    project = tmp_path / "p"
    shutil.copytree(REPO / "tests" / "support" / "replay-project", project)
    port = closed_port()
    r = agentcap("test", "--root", str(project), "--record-mode", "once", "--upstream", f"http://127.0.0.1:{port}",
                 AGENTCAP_WORKSPACE=str(tmp_path))
    assert r.returncode == 2, r.stderr[-2000:]
    assert "cannot connect" in r.stderr and "without a cassette need it" in r.stderr and "pi-hello#1" in r.stderr
    assert not (project / "cassettes").exists()


def test_run_replay_bad_input(tmp_path):
    ws = tmp_path
    suite = ws / ".agentcap" / "suite-x-1"
    suite.mkdir(parents=True)
    RunFile(suite, RunRecord("suite-x-1", "suite", "pi", "m", "scripted", "u", None, 1, "continue", "t")).save()
    corpus = make_run(ws, "pi-scripted-1", [("openai", "m", False)])
    env = {"AGENTCAP_WORKSPACE": str(ws)}
    r = agentcap("run", "--replay", "nowhere", **env)
    assert r.returncode == 2 and "--replay" in r.stderr and "no run.json" in r.stderr
    r = agentcap("run", "--replay", "suite-x-1", **env)
    assert r.returncode == 2 and "agentcap test --record-mode once" in r.stderr
    r = agentcap("run", "--replay", corpus.name, "--tasks", "t.txt", **env)
    assert r.returncode == 2 and "'--tasks'" in r.stderr and "cannot be combined with --replay" in r.stderr


def test_ls_long_shows_replays_and_their_drift(tmp_path):
    home = tmp_path / ".agentcap"
    for name in ("pi-replay-2", "pi-scripted-1"):
        (home / name).mkdir(parents=True)
    tasks = [TaskRecord("t1", "p", 1, completed_turns=1), TaskRecord("t2", "q", 1, completed_turns=1,
                                                                       drift={"call_seq": 1, "path": "$.x"})]
    RunFile(home / "pi-replay-2", RunRecord("pi-replay-2", "corpus", "pi", "m", "replay", "replay:pi-scripted-1",
                                            None, 1, "continue", "t", status="done", tasks=tasks,
                                            replay_of="pi-scripted-1")).save()
    RunFile(home / "pi-scripted-1", RunRecord("pi-scripted-1", "corpus", "pi", "m", "scripted", "u", None, 1,
                                              "continue", "t", status="done")).save()
    rows = [json.loads(line) for line in agentcap("ls", "--json", str(tmp_path)).stdout.splitlines()]
    by = {r["run_id"]: r for r in rows}
    assert by["pi-replay-2"]["replay_of"] == "pi-scripted-1" and by["pi-replay-2"]["drifted"] == 1
    assert by["pi-scripted-1"]["replay_of"] is None and by["pi-scripted-1"]["drifted"] is None
    out = agentcap("ls", "-l", str(tmp_path), COLUMNS="250").stdout
    assert "replay of" in out and "1/2" in out
