"""Every agent for real: its CLI in its podman image, through the capture proxy, against the scripted model.

Per agent: the scripted tool call writes hello.txt into the workspace, the final reply is parsed, a
second turn resumes the same session (agents that can), the native trace is exported, and every model
call is a capture with the right attribution and no key in it.
"""

from __future__ import annotations

import pytest

from agentcap_addons.wire.api.decode import request_messages
from agentcap_addons.wire.capture.records import iter_captures
from sandbox.agents import TurnInput, get_agent
from sandbox.turn import run_agent_turn
from tests.support.sandboxes import REAL_KEY, harness

pytestmark = [pytest.mark.slow, pytest.mark.podman]

AGENTS = ["pi", "opencode", "qwen-code", "hermes", "mini-swe-agent", "aider", "codex", "claude-code"]
RUN = "e2e-run"
PROMPTS = ["Create hello.txt with a greeting.", "Now say what you did."]


@pytest.fixture(scope="module")
def h(tmp_path_factory):
    yield from harness(tmp_path_factory.mktemp("e2e"))


def first_user_texts(capture) -> str:
    req = capture.request
    return "\n".join(m.content for m in request_messages(req["api"], req.get("body")) if m.role == "user")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", AGENTS)
def test_agent_turns_in_the_sandbox(name, h, podman):
    agent = get_agent(name)
    task = f"{name}-t1"
    root = h.root / name
    workspace, home, traces = root / "workspaces" / task, root / "state" / task, root / "traces" / task
    results, keys, session = [], [], None
    before = h.settle()
    for turn, prompt in enumerate(PROMPTS, start=1):
        key = h.turn_key(RUN, task, turn)
        keys.append(key)
        t = TurnInput(prompt=prompt, turn=turn, base_url=h.base_url, api_key=key, model="agentcap-scripted",
                      workspace=workspace, home=home, session_id=session)
        r = run_agent_turn(podman, agent, t, stdout=root / "sessions" / f"{task}_turn_{turn:02d}.out",
                           stderr=root / "sessions" / f"{task}_turn_{turn:02d}.err", trace_dir=traces,
                           forwards=h.forwards, timeout_s=300, labels={"run": RUN, "task": task})
        h.revoke(key)
        assert (r.returncode, r.timed_out) == (0, False), r.stderr.read_text()[-3000:] + r.stdout.read_text()[-3000:]
        results.append(r)
        session = r.session_id
        if turn == 1:
            # the scripted tool call ran inside the container, in the shared workspace
            assert (workspace / "hello.txt").read_text() == "hello from agentcap\n"
    made = h.settle() - before
    first, second = results
    assert first.reply and "hello" in first.reply
    assert second.reply
    if agent.supports_resume and first.session_id:
        assert second.session_id == first.session_id

    capdir = h.captures
    caps = [c for c in iter_captures(capdir) if c.request.get("task_id") == task]
    assert len(caps) == made >= 2  # every call the model server answered for this agent is a capture
    by_turn = {1: [c for c in caps if c.request["turn"] == 1], 2: [c for c in caps if c.request["turn"] == 2]}
    assert by_turn[1] and by_turn[2]
    for c in caps:
        assert c.request["run_id"] == RUN and c.response is not None
        assert c.response["status_code"] == 200 and c.response["error"] is None
        assert c.request["api"] == agent.api
    # resumed: the second turn's conversation carries the first prompt; a fresh run does not
    seen_first = PROMPTS[0] in first_user_texts(by_turn[2][-1])
    assert seen_first == agent.supports_resume

    # no key anywhere in the captures (per-turn keys are stripped, the real key is only sent upstream)
    for c in caps:
        text = "".join((capdir / f"{c.request_id}.{part}.json").read_text() for part in ("request", "response"))
        assert not any(k in text for k in (*keys, REAL_KEY))
    # nor anywhere the agent could see
    for path in (p for d in (workspace, home, traces) for p in d.rglob("*") if p.is_file()):
        assert REAL_KEY.encode() not in path.read_bytes(), path

    # the native trace came out, non-empty
    assert first.trace_files and all(p.is_file() and p.stat().st_size > 0 for p in second.trace_files)
    assert all(p.is_relative_to(traces) for p in second.trace_files)
