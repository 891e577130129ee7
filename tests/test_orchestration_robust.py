"""Orchestration that must not fail quietly or for a passing reason (issue 27): a handler named for no
declared tool is an error at its line, the judge and the follow-up synthesizer outlast a rate limit,
and an upstream that does not speak the model API stops `run` before the first task."""

from __future__ import annotations

import random
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agentcap_cli.harness import retry
from agentcap_cli.harness.followup import FollowupFailed, Synthesizer
from agentcap_cli.harness.modelserver import ModelServer, make_responder
from agentcap_cli.harness.probe import probe
from agentcap_cli.harness.services import UpstreamUnreachable
from agentcap_cli.suite import judge as judges
from tests.conftest import closed_port
from tests.support.cli import REPO, agentcap
from tests.support.strict import StrictUpstream, always
from tests.support.upstream import Upstream

TOOLS = ["slack_list_channels", "slack_post_message", "slack_delete_message"]
NEAR = {  # a typo of slack_post_message: did-you-mean names it
    "dropped": "slack_post_mesage", "plural": "slack_post_messages", "swapped": "slack_psot_message",
    "singular": "slack_post_messag", "case": "Slack_post_message",
}
FAR = {"unrelated": "frobnicate", "short": "x"}  # no declared name is close: no did-you-mean
HELPERS = "import json\n\n\ndef _fmt(x):\n    return json.dumps(x)\n\n\n"  # the handler's line is not 1
FORMS = {  # handler.py whose typo'd binding is on the last line written before the body
    "def": lambda n: (HELPERS + f"def tool_{n}(args, ctx):\n    return {{'ok': True}}\n", 8, f"tool_{n}"),
    "async def": lambda n: (HELPERS + f"async def tool_{n}(args, ctx):\n    return {{'ok': True}}\n", 8, f"tool_{n}"),
    "HANDLERS literal": lambda n: (HELPERS + f"HANDLERS = {{\n    'slack_list_channels': lambda a, c: 1,\n    {n!r}: lambda a, c: 1,\n}}\n",
                                   10, f"HANDLERS.{n}"),
    "HANDLERS item": lambda n: (HELPERS + f"HANDLERS = {{}}\nHANDLERS[{n!r}] = lambda a, c: 1\n", 9, f"HANDLERS.{n}"),
}


def _project(tmp_path: Path, handler: str) -> Path:
    project = tmp_path / "p"
    shutil.copytree(REPO / "examples" / "my-eval", project, ignore=shutil.ignore_patterns("reports", ".agentcap"))
    (project / "mcp" / "slack" / "handler.py").write_text(handler)
    return project


@pytest.mark.parametrize("command", ["validate", "mock tools"])
@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("typo", [*NEAR, *FAR])
def test_a_handler_naming_no_declared_tool_is_an_error_at_its_line_with_did_you_mean(tmp_path, command, form, typo):
    name = {**NEAR, **FAR}[typo]
    body, line, key = FORMS[form](name)
    project = _project(tmp_path, body)
    slack = project / "mcp" / "slack"
    args = ["validate", "--root", str(project)] if command == "validate" else ["mock", "tools", str(slack)]
    r = agentcap(*args, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    hint = " (did you mean 'slack_post_message'?)" if typo in NEAR else ""
    want = f"{slack / 'handler.py'}:{line}: {key}: no tool {name!r} in the schema{hint}"
    assert want in r.stderr, r.stderr
    assert typo in NEAR or "did you mean" not in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_every_unmatched_handler_is_named_at_once_and_matched_ones_still_load(tmp_path):
    body = HELPERS + ("def tool_slack_post_message(args, ctx):\n    return 1\n\n\n"
                      "def tool_slack_list_chanels(args, ctx):\n    return 1\n\n\n"
                      "HANDLERS = {'slack_delete_mesage': lambda a, c: 1}\n")
    project = _project(tmp_path, body)
    handler = project / "mcp" / "slack" / "handler.py"
    r = agentcap("validate", "--root", str(project), timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"{handler}:12: tool_slack_list_chanels: no tool 'slack_list_chanels' in the schema (did you mean 'slack_list_channels'?)" in r.stderr
    assert f"{handler}:16: HANDLERS.slack_delete_mesage: no tool 'slack_delete_mesage' in the schema (did you mean 'slack_delete_message'?)" \
        in r.stderr, r.stderr
    assert "tool_slack_post_message" not in r.stderr
    (handler).write_text(HELPERS + "def tool_slack_post_message(args, ctx):\n    return 1\n")
    ok = agentcap("mock", "tools", str(handler.parent), "--json", timeout=60)
    assert ok.returncode == 0, ok.stderr


# ------------------------------------------------------------------ the judge and the synthesizer outlast a 429

CALLERS = {  # what each caller gets from the upstream's answer, and the word its retry lines start with
    "judge": ("judge", lambda base: judges.judge(base, "m", "sk-test", PROMPT)),
    "synthesizer": ("follow-up", lambda base: Synthesizer(base, "m", "sk-test")("fix the bug", "done")),
}
PROMPT = judges.Prompt(rubric="did it work?", output="yes", tool_calls=[], mock_state={})
VERDICT = '{"score": 0.9, "reasoning": "it worked"}'
RETRY_AFTER = {"seconds": ("1", 1.0), "date": ("date", 0.0), "absent": ("none", 0.5)}  # header, least wait each


@pytest.fixture
def upstream():
    up = Upstream()
    up.chat_json["choices"][0]["message"]["content"] = VERDICT
    with up:
        yield up


def _retry_lines(err: str, word: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"{word}: POST ")]


@pytest.mark.parametrize("refusals", [1, 2])
@pytest.mark.parametrize("after", list(RETRY_AFTER))
@pytest.mark.parametrize("caller", list(CALLERS))
def test_the_judge_and_the_synthesizer_wait_out_429s_and_log_each_retry(upstream, capsys, caller, after, refusals):
    word, call = CALLERS[caller]
    header, least = RETRY_AFTER[after]
    base = f"{upstream.url}/limited/{refusals}/{header}"
    started = time.monotonic()
    got = call(base)
    took = time.monotonic() - started
    if caller == "judge":
        assert got["score"] == 0.9 and "error" not in got, got
    else:
        assert got == VERDICT
    assert len(upstream.received) == refusals + 1
    lines = _retry_lines(capsys.readouterr().err, word)
    assert len(lines) == refusals, lines
    for i, line in enumerate(lines, start=2):
        assert f"POST {base}/v1/chat/completions → 429: rate limited" in line and f"; retry {i}/5 in " in line, line
        assert ("(Retry-After" in line) == (after != "absent"), line
    assert took >= least * refusals  # the server's Retry-After (or the backoff) was waited for


@pytest.mark.parametrize("caller", list(CALLERS))
def test_a_429_that_never_ends_fails_clearly_after_five_attempts(upstream, capsys, caller):
    word, call = CALLERS[caller]
    base = f"{upstream.url}/limited/always/0"
    want = f"POST {base}/v1/chat/completions → 429: rate limited (gave up after 5 attempts"
    if caller == "judge":
        got = call(base)
        assert got["score"] is None and got["error"].startswith(f"judge call failed: {want}"), got
    else:
        with pytest.raises(FollowupFailed, match=re.escape(want)):
            call(base)
    assert len(upstream.received) == 5
    assert len(_retry_lines(capsys.readouterr().err, word)) == 4


@pytest.mark.parametrize("caller", list(CALLERS))
def test_a_retry_after_past_the_bound_is_not_waited_for(upstream, caller):
    _, call = CALLERS[caller]
    started = time.monotonic()
    if caller == "judge":
        error = call(f"{upstream.url}/limited/always/3600")["error"]
    else:
        with pytest.raises(FollowupFailed) as exc:
            call(f"{upstream.url}/limited/always/3600")
        error = str(exc.value)
    assert "gave up after 1 attempt(s): waiting 3600s more would pass the 60s bound" in error, error
    assert time.monotonic() - started < 10 and len(upstream.received) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_is_retried_with_backoff_until_the_budget_ends(upstream, status):
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(retry.GaveUp, match=rf"→ {status}: status {status} \(gave up after \d attempt\(s\): waiting"):
        retry.post("t", f"{upstream.url}/status/{status}", json={}, headers={}, timeout=5, budget=2.5,
                   log=lines.append, rng=random.Random(0))
    assert time.monotonic() - started <= 2.5 + 1
    assert len(lines) == len(upstream.received) - 1 >= 1 and all(f"→ {status}: status {status}" in x for x in lines)


def test_a_refused_connection_is_retried_and_named():
    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1/chat/completions"
        lines: list[str] = []
        with pytest.raises(retry.GaveUp, match="ConnectError"):
            retry.post("t", url, json={}, headers={}, timeout=5, budget=1.5, log=lines.append, rng=random.Random(0))
    assert lines and all("→ ConnectError" in x for x in lines)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_client_error_is_not_retried(upstream, status):
    lines: list[str] = []
    r = retry.post("t", f"{upstream.url}/status/{status}", json={}, headers={}, timeout=5, log=lines.append)
    assert r.status_code == status and len(upstream.received) == 1 and lines == []


@pytest.mark.parametrize("value,now,want", [
    ("7", 0.0, 7.0), (" 0 ", 0.0, 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0, 10.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490.0, 0.0), ("soon", 0.0, None), ("-1", 0.0, None), ("", 0.0, None),
    ("1.5", 0.0, None),  # RFC 9110: delta-seconds is digits only
])
def test_retry_after_is_read_as_rfc_9110_says(value, now, want):
    assert retry.retry_after(value, now) == want


# ------------------------------------------------------------------ an upstream that is no model server


class Raw:
    """A loopback TCP server that answers each connection with ``reply(request bytes)`` (None: say nothing
    until the server stops), then closes it — something that is listening, but not a model API."""

    def __init__(self, reply: Callable[[bytes], bytes | None]) -> None:
        self.reply, self.sock = reply, socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    request = conn.recv(65536)
                    out = self.reply(request)
                    if out is None:
                        self.stopping.wait(60)
                    else:
                        conn.sendall(out)
                except OSError:
                    pass

    def __enter__(self) -> Raw:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(10)
        self.sock.close()


def _http(status: str, ctype: str, body: bytes) -> bytes:
    return b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (
        status.encode(), ctype.encode(), len(body), body)


def _auth_line(request: bytes) -> bytes:
    return next((line for line in request.split(b"\r\n") if line.lower().startswith(b"authorization")), b"")


KEY = "sk-probe-secret-123"
NOT_APIS = {  # what listens → (its reply to any request, what the error must show of it)
    "ssh banner": (lambda req: b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff garbage", "RemoteProtocolError"),
    "echoed key": (lambda req: _http("401 Unauthorized", "text/plain", b"bad " + _auth_line(req)),
                   "401 text/plain: b'bad authorization: Bearer ***'"),
    "html 200": (lambda req: _http("200 OK", "text/html", b"<!doctype html><title>Grafana</title>"), "200 text/html: b'<!doctype html>"),
    "json 404": (lambda req: _http("404 Not Found", "application/json", b'{"detail": "Not Found"}'), "404 application/json: b'{\"detail\""),
    "html 404": (lambda req: _http("404 Not Found", "text/html", b"<h1>404</h1>"), "404 text/html: b'<h1>404</h1>'"),
    "echo": (lambda req: _http("200 OK", "text/plain", req), "200 text/plain: b'GET /v1/models"),
    "405 json error": (lambda req: _http("405 Method Not Allowed", "application/json", b'{"error": "method not allowed"}'), "405"),
    "silent": (lambda req: None, "ReadTimeout"),
}


@pytest.mark.parametrize("kind", list(NOT_APIS))
def test_run_stops_in_seconds_when_the_upstream_is_not_a_model_server(tmp_path, kind):
    reply, shows = NOT_APIS[kind]
    (tmp_path / "tasks.txt").write_text("a prompt\n")
    with Raw(reply) as server:
        started = time.monotonic()
        r = agentcap("run", "--agent", "pi", "--tasks", str(tmp_path / "tasks.txt"), "--model", "m",
                     "--upstream", server.url + "/v1", "--api-key", KEY, workspace=tmp_path, timeout=120)
        took = time.monotonic() - started
    assert r.returncode == 2, (r.returncode, r.stderr)
    err = " ".join(r.stderr.split())
    assert "--upstream" in err and ("does not speak the model API" in err or "does not speak HTTP" in err), err
    assert f"GET {server.url}/v1/models → {shows}" in err, err
    if kind == "ssh banner":  # not HTTP: the port's own first bytes say what it is
        assert "does not speak HTTP" in err and r"the port sends b'SSH-2.0-OpenSSH_9.6\r\n\x00\xff garbage'" in err, err
    elif kind != "silent":  # a silent one is not asked twice
        assert f"POST {server.url}/v1/chat/completions → " in err, err
    assert KEY not in r.stderr + r.stdout and "Traceback" not in r.stderr
    assert took < (30 if kind == "silent" else 15), took
    assert not (tmp_path / ".agentcap").exists()  # no run dir: nothing started


SPEAKING = {  # upstreams that speak the API, in every way a probe may hear it
    "agentcap model serve": lambda: ModelServer(make_responder(script="shell-then-answer")),
    "401 on everything": lambda: ModelServer(StrictUpstream(fail=always(401, "invalid api key"))),
    "429 on everything": lambda: ModelServer(StrictUpstream(fail=always(429, "slow down"))),
    "503 on everything": lambda: ModelServer(StrictUpstream(fail=always(503, "overloaded"))),
    "no models list": lambda: ModelServer(StrictUpstream(fail=lambda path, body: (404, "no") if path.endswith("/models") else None)),
}


@pytest.mark.parametrize("kind", list(SPEAKING))
def test_the_probe_passes_an_upstream_that_speaks_the_api_even_when_it_refuses(kind):
    with SPEAKING[kind]() as server:
        probe(server.url + "/v1", KEY, "m", timeout=5)
        seen = [p for _, p in server.app.seen]
    assert seen[0] == "/v1/models" and len(seen) <= 2, seen  # one list, at most one one-token call


def test_the_probe_of_a_closed_port_is_todays_unreachable_error():
    port = closed_port()
    with pytest.raises(UpstreamUnreachable, match=f"cannot connect to 127.0.0.1:{port}"):
        probe(f"http://127.0.0.1:{port}/v1", None, "m", timeout=2)
