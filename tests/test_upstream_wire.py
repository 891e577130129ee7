"""Upstream URLs in every spelling, the key's source, follow-ups that fail loudly, turns judged by the wire.

Loopback only: a strict upstream (tests/support/strict.py) answers under ``<prefix>/v1/`` and nowhere else,
mounted at the root and under ``/api``; real capture proxies (agentcap run's own Services) in front of it.
No podman here: tests/test_run_wire.py drives real agent turns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from click.testing import CliRunner

from agentcap_addons.wire.api.apibase import api_root, api_url, split_api_base
from agentcap_addons.wire.capture.records import CaptureDir, new_request_id
from agentcap_addons.wire.capture.registry import Attribution
from agentcap_addons.wire.util.clock import rfc3339_ns
from agentcap_cli.corpus.tasks import Task
from agentcap_cli.harness.credentials import HUB_LOGIN, upstream_key
from agentcap_cli.harness.followup import CONTINUE, FollowupFailed, Synthesizer, next_prompt
from agentcap_cli.harness.modelserver import ModelServer
from agentcap_cli.harness.proxy import CaptureEvents
from agentcap_cli.harness.services import CallTracker, Services
from agentcap_cli.main import cli
from agentcap_cli.runs.verdict import NO_CALL, CallOutcome, turn_failure
from agentcap_cli.suite.judge import Prompt, judge
from tests.conftest import closed_port
from tests.support.cli import read_exports, start
from tests.support.strict import StrictUpstream, always

REPO = Path(__file__).resolve().parents[1]


def spellings(base: str) -> list[str]:
    return [base, base + "/", base + "/v1", base + "/v1/"]


@dataclass
class Strict:
    server: ModelServer
    base: str  # the API's base as a user writes it, without /v1


@pytest.fixture(params=["", "/api"], ids=["root", "under-api"])
def strict(request, tmp_path) -> Iterator[Strict]:
    script = tmp_path / "judge.yaml"
    script.write_text("replies:\n  - text: '{\"score\": 0.75, \"reasoning\": \"fine\"}'\n")
    with ModelServer(StrictUpstream(prefix=request.param, script=str(script))) as server:
        yield Strict(server, server.url + request.param)


# -- the helper ------------------------------------------------------------------------------------

def test_every_spelling_names_the_same_api_root():
    for given in spellings("https://router.huggingface.co"):
        assert api_root(given) == "https://router.huggingface.co"
        assert api_url(given, "/v1/chat/completions") == "https://router.huggingface.co/v1/chat/completions"
    for given in spellings("http://127.0.0.1:8000/openai"):
        assert split_api_base(given) == ("http://127.0.0.1:8000", "/openai")
        assert api_url(given, "/v1/messages") == "http://127.0.0.1:8000/openai/v1/messages"
        assert api_url(given, "v1/responses") == "http://127.0.0.1:8000/openai/v1/responses"
    for bad in ["ftp://x", "router.huggingface.co", "https://u:p@h/v1", "https://h/v1?k=1", "https://h#x"]:
        with pytest.raises(ValueError):
            split_api_base(bad)


# -- direct consumers: the synthesizer, the judge, model serve --on-miss forward -------------------

def test_synthesizer_and_judge_reach_the_api_in_every_spelling(strict):
    server, base = strict.server, strict.base
    for given in spellings(base):
        assert Synthesizer(given, "m", "k")("the task", "the reply") == '{"score": 0.75, "reasoning": "fine"}'
        for backend in ("chat", "anthropic-api"):
            verdict = judge(given, "m", None, Prompt("be good", "done", [], {}), api=backend)
            assert verdict["score"] == 0.75 and "error" not in verdict, verdict
    prefix = base.removeprefix(server.url)
    assert {p for _, p in server.app.seen} == {prefix + "/v1/chat/completions", prefix + "/v1/messages"}


def test_a_failed_synthesized_follow_up_says_why_and_only_falls_back_when_allowed():
    with ModelServer(StrictUpstream(fail=always(401, "invalid api key"))) as server:
        synth = Synthesizer(server.url, "m", "bad")
        with pytest.raises(FollowupFailed, match=r"/v1/chat/completions → 401: invalid api key"):
            synth("task", None)
        task = Task("t1", "do it", None, [])
        with pytest.raises(FollowupFailed, match="401: invalid api key"):
            next_prompt("synthesized", task, 2, "r", synth)  # the default: an error, never a silent "continue"
        fell = next_prompt("synthesized", task, 2, "r", synth, fallback="continue")
        assert fell.prompt == CONTINUE and "401: invalid api key" in fell.fallback
        # a task's own follow-ups and the other modes never call the model
        assert next_prompt("synthesized", Task("t2", "x", None, ["mine"]), 2, None, synth).prompt == "mine"
    with ModelServer(StrictUpstream()) as server:  # a wrong path is a 404 with the upstream's words
        with pytest.raises(FollowupFailed, match="404: no route for POST /wrong/v1/chat/completions"):
            Synthesizer(server.url + "/wrong", "m", None)("task", None)
    with pytest.raises(FollowupFailed, match="ConnectError"):  # nothing listens there
        Synthesizer(f"http://127.0.0.1:{closed_port()}", "m", None, timeout=5)("task", None)


def test_judge_reports_the_upstream_message():
    with ModelServer(StrictUpstream(fail=always(429, "rate limited, retry later"))) as server:
        verdict = judge(server.url + "/v1/", "m", None, Prompt("r", "o", [], {}))
    assert verdict["score"] is None and "429: rate limited, retry later" in verdict["error"]


def test_model_serve_on_miss_forward_accepts_every_spelling(tmp_path):
    from tests.test_model_server import fake_run

    cassette = fake_run(tmp_path, [({"model": "recorded"}, ["x"])])
    with ModelServer(StrictUpstream(prefix="/api")) as live:
        with start("model", "serve", "--replay", str(cassette), "--on-miss", "forward", "--port", "0",
                   AGENTCAP_UPSTREAM=live.url + "/api/v1/") as proc:  # stopped (SIGTERM) when the block ends
            exports = read_exports(proc)
            r = httpx.post(exports["OPENAI_BASE_URL"] + "/chat/completions", timeout=30,
                           json={"model": "other", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    assert ("POST", "/api/v1/chat/completions") in live.app.seen


# -- agents' base URL through the capture proxy, and the wire verdict on a real proxy --------------

def _turn(services: Services, tmp_path: Path, turn: int) -> str:
    return services.turn_key(Attribution(run_id="r", task_id="t", turn=turn, captures_dir=str(tmp_path / "captures")))


@pytest.mark.parametrize("suffix", ["", "/v1", "/v1/"])
def test_agents_get_a_base_url_that_works_for_all_three_apis(tmp_path, suffix):
    with ModelServer(StrictUpstream(prefix="/api")) as live:
        services = Services(live.url + "/api" + suffix, "real-key")
        try:
            key = _turn(services, tmp_path, 1)
            base = services.agent_base_url  # what every adapter is given (they add /v1 themselves)
            assert base == f"http://127.0.0.1:{services.proxy.port}/api"
            chat = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
            chat.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            chat.responses.create(model="m", input="hi")
            claude = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)
            claude.messages.create(model="m", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
            calls = services.tracker.settle_turn("r", "t", 1)
            assert services.direct_base_url == live.url + "/api"
        finally:
            services.close()
    assert [c.ok for c in calls] == [True, True, True] and turn_failure(calls, tmp_path / "captures") is None
    assert [p for _, p in live.app.seen] == ["/api/v1/chat/completions", "/api/v1/responses", "/api/v1/messages"]


FAILURES = {"expired": (401, "invalid api key"), "typo": (404, "model 'gpt-typo' does not exist"),
            "busy": (429, "rate limited"), "down": (503, "no healthy upstream")}


def test_turns_are_judged_by_their_calls_on_a_real_proxy(tmp_path):
    flaked = []

    def by_model(path: str, body: bytes) -> tuple[int, str] | None:
        model = json.loads(body).get("model")
        if model == "flaky-once" and not flaked:
            flaked.append(model)
            return 429, "slow down"
        return FAILURES.get(model)

    with ModelServer(StrictUpstream(fail=by_model)) as live:
        services = Services(live.url, "real-key")
        try:
            results = {}
            for turn, models in enumerate([["expired"], ["typo"], ["busy"], ["down"], ["flaky-once", "flaky-once"],
                                           ["ok", "expired"], ["expired", "ok"]], start=1):
                key = _turn(services, tmp_path, turn)
                client = openai.OpenAI(base_url=services.agent_base_url + "/v1", api_key=key, max_retries=0)
                for model in models:
                    try:
                        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
                    except openai.APIStatusError:
                        pass  # an agent CLI prints it and, often, exits 0
                calls = services.tracker.settle_turn("r", "t", turn)
                results[tuple(models)] = turn_failure(calls, tmp_path / "captures")
            assert turn_failure(services.tracker.settle_turn("r", "t", 99), tmp_path / "captures") == NO_CALL
        finally:
            services.close()
    assert results == {
        ("expired",): "upstream_error 401: invalid api key",
        ("typo",): "upstream_error 404: model 'gpt-typo' does not exist",
        ("busy",): "upstream_error 429: rate limited",
        ("down",): "upstream_error 503: no healthy upstream",
        ("flaky-once", "flaky-once"): None,  # a retry that worked
        ("ok", "expired"): "upstream_error 401: invalid api key",  # the last call failed
        ("expired", "ok"): None,
    }


def test_an_unreachable_upstream_is_a_transport_error(tmp_path):
    live = ModelServer(StrictUpstream()).start()
    services = Services(live.url, None)
    try:
        live.stop()  # reachable at start, gone by the first call
        key = _turn(services, tmp_path, 1)
        r = httpx.post(services.agent_base_url + "/v1/chat/completions", json={"model": "m"},
                       headers={"authorization": f"Bearer {key}"}, timeout=30)
        reason = turn_failure(services.tracker.settle_turn("r", "t", 1), tmp_path / "captures")
    finally:
        services.close()
        live.stop()
    assert r.status_code >= 500 and reason.startswith("upstream_error upstream_unreachable: "), reason


# -- the verdict itself, from records on disk -------------------------------------------------------

def _call(d: CaptureDir, status: int | None, body=None, error=None, raw_b64=None) -> CallOutcome:
    rid = new_request_id()
    seq = d.next_seq()
    d.write_request({"schema": 1, "request_id": rid, "seq": seq, "captured_at": rfc3339_ns(), "method": "POST",
                     "path": "/v1/messages", "api": "anthropic-messages", "body": {"model": "m"}})
    resp = {"schema": 1, "request_id": rid, "status_code": status, "stream": False, "headers": {}, "error": error}
    resp.update({"body_b64": raw_b64} if raw_b64 else {"body": body})
    d.write_response(resp)
    return CallOutcome(rid, seq, status, error["kind"] if error else None, answered=True)


def test_failure_reasons_carry_the_upstream_words(tmp_path):
    d = CaptureDir(tmp_path / "captures")
    anth = _call(d, 401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
    hf = _call(d, 400, {"error": "Model zai-org/GLM-9 is not supported by any provider you have enabled."})
    fastapi = _call(d, 422, {"detail": [{"loc": ["body"], "msg": "field required"}]})
    html = _call(d, 404, raw_b64="PGh0bWw+PGJvZHk+Tm90ICAgRm91bmQ8L2JvZHk+PC9odG1sPg==")  # <html><body>Not   Found…
    reset = _call(d, 200, None, {"kind": "upstream_reset", "message": "connection reset mid-stream"})
    gone = _call(d, None, None, {"kind": "client_disconnected", "message": "the agent hung up"})
    ok = _call(d, 200, {"content": []})
    refused = CallOutcome("nofile", 99, None, "capture_failed", True, message="OSError: No space left on device")
    in_flight = CallOutcome("x", 100)
    cases = [([anth], "upstream_error 401: invalid x-api-key"),
             ([hf], "upstream_error 400: Model zai-org/GLM-9 is not supported by any provider you have enabled."),
             ([fastapi], "upstream_error 422: field required"),
             ([html], "upstream_error 404: <html><body>Not Found</body></html>"),
             ([reset], "upstream_error upstream_reset: connection reset mid-stream"),
             ([gone], "call_error client_disconnected: the agent hung up"),
             ([refused], "call_error capture_failed: OSError: No space left on device"),
             ([anth, ok], None), ([ok], None), ([ok, in_flight], None), ([in_flight], None), ([], NO_CALL),
             ([_call(d, 200, None, {"kind": "client_disconnected", "message": "closed after the last event"})], None)]
    last_failed = [_call(d, 200, {"content": []}), _call(d, 429, {"error": {"message": "slow down"}})]
    cases.append((last_failed, "upstream_error 429: slow down"))
    for calls, want in cases:
        assert turn_failure(list(reversed(calls)), d.path) == want  # order comes from seq, not the list


def test_the_tracker_reads_outcomes_and_refusals_from_the_event_pipe(tmp_path):
    class Alive:
        class proc:
            @staticmethod
            def poll():
                return None

    r, w = os.pipe()
    tracker = CallTracker(CaptureEvents(r), Alive())
    try:
        base = {"run_id": "r", "task_id": "t", "turn": 1, "cell": None, "repeat": None}
        events = [{**base, "event": "request", "request_id": "a", "seq": 1},
                  {"event": "response", "request_id": "a", "status_code": 200, "error": None},
                  {**base, "event": "capture_failed", "record": "request", "request_id": "b", "seq": 2,
                   "reason": "OSError: No space left on device"},
                  {**base, "turn": 2, "event": "request", "request_id": "c", "seq": 3},
                  {**base, "turn": 2, "event": "capture_failed", "record": "response", "request_id": "c", "seq": 3,
                   "reason": "OSError: read-only file system"}]
        os.write(w, b"".join(json.dumps(e).encode() + b"\n" for e in events))
        with tracker.cond:
            assert tracker.cond.wait_for(lambda: "c" in tracker.outcomes and tracker.outcomes["c"].answered, 30)
        first = tracker.settle_turn("r", "t", 1)
        second = tracker.settle_turn("r", "t", 2)
    finally:
        tracker.stop()
        os.close(w)
        os.close(r)
    assert [(c.request_id, c.ok) for c in first] == [("a", True), ("b", False)]
    assert turn_failure(first) == "call_error capture_failed: OSError: No space left on device"
    assert turn_failure(second) == "call_error capture_failed: OSError: read-only file system"
    assert not tracker.pending


# -- the key and where it came from -----------------------------------------------------------------

def test_key_order_flag_env_then_hugging_face_only_for_its_hosts():
    hf = "https://router.huggingface.co"
    assert upstream_key("k1", "--api-key", hf, env={"HF_TOKEN": "hf_x"}) == upstream_key("k1", "--api-key", hf)
    assert upstream_key("k1", "AGENTCAP_API_KEY", hf).source == "AGENTCAP_API_KEY"
    found = upstream_key(None, "--api-key", hf + "/v1", env={"HF_TOKEN": "hf_env"})
    assert (found.value, found.source) == ("hf_env", "HF_TOKEN") and "hf_env" not in repr(found)
    assert upstream_key(None, "--api-key", "https://api.openai.com/v1", env={"HF_TOKEN": "hf_env"}).value is None
    assert upstream_key(None, "--api-key", None, env={"HF_TOKEN": "hf_env"}).source == "none"


def test_the_hub_login_cache_is_read_with_huggingface_hubs_own_lookup(tmp_path):
    (tmp_path / "token").write_text("hf_fromthelogincache\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH")}
    code = ("from agentcap_cli.harness.credentials import upstream_key; "
            "k = upstream_key(None, '--api-key', 'https://router.huggingface.co'); print(k.source); print(k.value)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**env, "HF_HOME": str(tmp_path)}).stdout.splitlines()
    assert out == [HUB_LOGIN, "hf_fromthelogincache"]
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**env, "HF_HOME": str(tmp_path / "empty")}).stdout.splitlines()
    assert out == ["none", "None"]


# -- flags -----------------------------------------------------------------------------------------

def test_bad_followup_fallback_is_one_clear_error_naming_the_flag(tmp_path):
    tasks = tmp_path / "t.txt"
    tasks.write_text("hi\n")
    args = ["run", "--agent", "pi", "--tasks", str(tasks)]
    r = CliRunner().invoke(cli, args + ["--followup-fallback", "maybe"])
    assert r.exit_code == 2 and "--followup-fallback" in r.output and "'maybe'" in r.output
    r = CliRunner().invoke(cli, args, env={"AGENTCAP_FOLLOWUP_FALLBACK": "never"})
    assert r.exit_code == 2 and "--followup-fallback" in r.output and "'never'" in r.output
    r = CliRunner().invoke(cli, args + ["--upstream", "router.huggingface.co", "--model", "m"])
    assert r.exit_code == 2 and "--upstream" in r.output and "https://router.huggingface.co/v1" in r.output



