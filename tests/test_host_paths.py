"""No host path in what an export publishes (issue 26).

* Real agents (pi, claude-code, codex, opencode) in podman through ``agentcap run``, two turns each,
  exported with ``--out`` and pushed to the Hub stand-in: no published byte — every file of the
  export dirs and of the pushed repos, every parquet cell and footer read through pyarrow, the cards
  — holds the workspace, a run dir, ``$HOME`` or ``.agentcap/<run id>``, in any of the forms they
  are written in (as they stand, JSON-escaped, as Claude Code names a project after a directory);
  the agents saw ``/workspace``; the export's own check reports nothing.
* The check itself: a host path planted (every kind — ``$HOME``, the workspace, the run dir, the cwd,
  a run id under a moved ``.agentcap`` — in every place: a request body, a response's tool call, a
  trace file's line, a trace file's name, an owner's card) blocks a push with a line naming the
  file, the place in it and the path (nothing uploaded), and is a warning with ``--out``; its
  fingerprint in the allowlist lets it go. Forms × kinds are found, paths that only look alike
  (``/rootfs``, ``/srv/x/root``) are not.
* A second run of the same tasks sends every agent the same system / developer prompts: nothing
  run-specific is in them, so a replay matches without rewriting paths.
* A model script is named by its file name in footers and cards.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from agentcap_addons.wire.api.decode import request_messages
from agentcap_addons.wire.capture.records import iter_captures
from agentcap_cli.export.hostpaths import HostPath, HostPaths
from agentcap_cli.runs.record import RUN_JSON
from sandbox.agents import TurnInput, agent_names, get_agent
from tests.support import cli
from tests.support.fakehub import FakeHub, Repo
from tests.support.runs import make_run

AGENTS = ["pi", "claude-code", "codex", "opencode"]
PROMPT = "Create hello.txt with a greeting."


# -- what a published byte must not hold -----------------------------------------------------------

def needles(paths: list[str], run_ids: list[str]) -> list[re.Pattern[str]]:
    """Each path as it stands, JSON-escaped, with escaped slashes, and dashed (Claude Code's project
    names); ``.agentcap/<run id>`` in any of those forms."""
    out = []
    for p in paths:
        forms = {p, json.dumps(p)[1:-1], p.replace("/", "\\/"), re.sub(r"[^A-Za-z0-9]", "-", p)}
        out += [re.compile(re.escape(f) + r"(?![A-Za-z0-9._~])") for f in forms]
    for r in run_ids:
        out += [re.compile(re.escape(f)) for f in (f".agentcap/{r}", f".agentcap\\/{r}", f"-agentcap-{r}")]
    return out


def published_texts(root: Path) -> dict[str, str]:
    """Every file under ``root`` as its consumers read it: parquet cells and footers through pyarrow,
    every other file as its bytes (Latin-1 when not UTF-8: one char per byte)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        name = p.relative_to(root).as_posix()
        if p.suffix == ".parquet":
            f = pq.ParquetFile(p)
            out[name + " [footer]"] = json.dumps({k.decode(): v.decode() for k, v in (f.metadata.metadata or {}).items()})
            out[name] = json.dumps(f.read().to_pylist(), default=str)
        data = p.read_bytes()
        try:
            out[name + " [bytes]"] = data.decode("utf-8")
        except UnicodeDecodeError:
            out[name + " [bytes]"] = data.decode("latin-1")
    return out


def leaks(texts: dict[str, str], patterns: list[re.Pattern[str]]) -> list[str]:
    return [f"{name}: {m.group()!r} at {m.start()}: …{text[max(0, m.start() - 80):m.end() + 40]!r}…"
            for name, text in texts.items() for rx in patterns for m in [rx.search(text)] if m]


# -- real agents, for real ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def agent_runs(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """One two-turn run per agent in a workspace: (workspace, agent → run dir)."""
    ws = tmp_path_factory.mktemp("ws")
    (ws / "tasks.txt").write_text(PROMPT + "\n")
    r = cli.agentcap("run", "--agent", ",".join(AGENTS), "--tasks", str(ws / "tasks.txt"), "--turns", "2",
                     workspace=ws, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    dirs = [Path(line) for line in r.stdout.splitlines() if line.strip()]
    return ws, {json.loads((d / RUN_JSON).read_text())["agent"]: d for d in dirs}


@pytest.mark.slow
@pytest.mark.podman
@pytest.mark.timeout(2400)
def test_no_host_path_in_any_published_byte_of_real_agents(agent_runs, tmp_path):
    ws, runs = agent_runs
    assert sorted(runs) == sorted(AGENTS)
    dirs = list(runs.values())
    ids = [d.name for d in dirs]
    home = str(Path.home())  # a one-component home (/root) only as the start of a path: codex's main agent is "/root"
    patterns = needles([str(ws), str(ws.resolve()), home if home.count("/") >= 2 else home + "/", *map(str, dirs)], ids)
    # the agents saw the fixed paths: pi's system prompt names its working directory
    pi_request = next((runs["pi"] / "captures").glob("*.request.json")).read_text()
    assert "/workspace" in pi_request and str(ws) not in pi_request

    out = tmp_path / "out"
    r = cli.agentcap("export", *map(str, dirs), "--out", str(out), workspace=ws, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "host path" not in r.stderr, r.stderr  # the export's own check found nothing either
    texts = published_texts(out)
    assert any(k.startswith("pi-traces/") for k in texts) and any(k.startswith("captures/data/") for k in texts)
    # a local card names its own directory for its load_dataset snippet; that is the only path it holds
    local = {k: v.replace(str(out), "<out>") for k, v in texts.items()}
    assert leaks(local, patterns) == []

    with FakeHub() as hub:
        r = cli.agentcap("export", *map(str, dirs), "--push", "me/agents", workspace=ws, timeout=900,
                         HF_ENDPOINT=hub.url, HF_TOKEN="hf_" + "t" * 34, HF_HOME=str(tmp_path / "hf"))
        assert r.returncode == 0, r.stderr
        assert "host path" not in r.stderr, r.stderr
        pushed = {f"{repo}/{name}": data for repo, rr in hub.repos.items() for name, data in rr.files.items()}
    assert any(n.endswith(".parquet") for n in pushed) and any(n.endswith("README.md") for n in pushed)
    hub_dir = tmp_path / "hub"
    for name, data in pushed.items():
        (hub_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (hub_dir / name).write_bytes(data)
    assert leaks(published_texts(hub_dir), patterns + needles([str(out)], [])) == []


def messages(run_dir: Path) -> list[tuple[str, str]]:
    """(role, text) of every message of each of the run's calls, in order."""
    caps = sorted(iter_captures(run_dir / "captures"), key=lambda c: c.seq)
    return [(m.role, m.content) for c in caps for m in request_messages(c.request["api"], c.request.get("body"))]


def instructions(run_dir: Path) -> list[str]:
    """The system / developer texts of the run's calls (what a replay matches first)."""
    return [text for role, text in messages(run_dir) if role in ("system", "developer")]


@pytest.mark.slow
@pytest.mark.podman
@pytest.mark.timeout(2400)
def test_a_second_run_of_the_same_tasks_sends_the_same_instructions(agent_runs):
    """Nothing run-specific in what the agents are told, so a replay matches with no path rewritten
    (pi's system prompt used to hold <workspace>/.agentcap/<run id>/workspaces/<task>)."""
    ws, first = agent_runs
    r = cli.agentcap("run", "--agent", ",".join(AGENTS), "--tasks", str(ws / "tasks.txt"), "--turns", "2",
                     workspace=ws, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    second = {json.loads((Path(d) / RUN_JSON).read_text())["agent"]: Path(d) for d in r.stdout.split()}
    for agent in AGENTS:
        assert second[agent] != first[agent]
        texts = instructions(first[agent])
        assert texts and any("/workspace" in text for _, text in messages(first[agent])), agent
        assert instructions(second[agent]) == texts, agent


# -- what each adapter tells its agent (no podman) -------------------------------------------------------

@pytest.mark.parametrize("turn", [1, 2])
@pytest.mark.parametrize("name", agent_names())
def test_no_adapter_tells_its_agent_a_host_path(tmp_path, name, turn):
    """The command line, the environment and the config files of every agent, first and resumed
    turn, with skills and MCP servers: the container's paths only."""
    run = tmp_path / "home" / "me" / ".agentcap" / "run-20261122-000000"
    skills = [tmp_path / "skills" / "a" / "lint", tmp_path / "skills" / "b" / "lint"]
    for d in skills:
        d.mkdir(parents=True)
        (d / "SKILL.md").write_text("---\nname: lint\n---\n")
    t = TurnInput(prompt="p", turn=turn, base_url="http://127.0.0.1:41234", api_key="k", model="m",
                  workspace=run / "workspaces" / "t0001", home=run / "state" / "t0001", session_id="s1",
                  mcp_servers={"mock": "http://127.0.0.1:41235/mcp"}, base_prompt="Be brief.", skills=skills)
    for d in (t.workspace, t.home):
        d.mkdir(parents=True)
    agent = get_agent(name)
    agent.configure(t)
    told = json.dumps([agent.command(t), agent.env(t)])
    for d in (t.workspace, t.home):  # what the agent reads is under its mounts: no host path in it either
        told += "".join(p.read_text(errors="replace") for p in sorted(d.rglob("*")) if p.is_file() and "skills" not in p.parts)
    assert str(tmp_path) not in told and "run-20261122" not in told, told
    assert t.inside(t.home / ".x") == "/home/agent/.x" and t.inside(t.workspace) == "/workspace"
    assert [t.inside(d) for d in skills] == ["/agentcap/skills/lint", "/agentcap/skills/lint-2"]


# -- the check: planted host paths ---------------------------------------------------------------------

KINDS = {
    "home": lambda c: f"{c['home']}/notes/todo.txt",
    "workspace": lambda c: f"{c['ws']}/src/app.py",
    "run dir": lambda c: f"{c['run_dir']}/workspaces/t0001/hello.txt",
    "cwd": lambda c: f"{c['cwd']}/build.log",
    "moved run": lambda c: f"/mnt/old-disk/proj/.agentcap/{c['run_id']}/workspaces/t0001",
}
WHAT = {"home": "$HOME", "workspace": "the workspace", "run dir": "the run dir", "cwd": "the cwd",
        "moved run": "a run id in a path"}


def in_request(c: dict, path: str) -> None:
    c["path_in_request"] = path


def in_response(c: dict, path: str) -> None:
    for p in (c["run_dir"] / "captures").glob("*.response.json"):
        p.write_text(p.read_text().replace("ls -la", f"ls -la {path}"))


def in_trace_line(c: dict, path: str) -> None:
    trace = c["run_dir"] / "traces" / "t0001" / ".pi" / "session.jsonl"
    trace.write_text(trace.read_text() + json.dumps({"type": "session", "cwd": path}).replace("/", "\\/") + "\n")


def in_trace_name(c: dict, path: str) -> None:
    name = re.sub(r"[^A-Za-z0-9]", "-", path)  # as Claude Code names a project after its directory
    trace = c["run_dir"] / "traces" / "t0001" / ".claude" / "projects" / name / "s.jsonl"
    trace.parent.mkdir(parents=True)
    trace.write_text('{"type": "user"}\n')


def in_card(c: dict, path: str) -> None:
    c["card"] = f"---\nlicense: mit\n---\n# Our captures\n\nRecorded from {path} on our build box.\n"


PLACES = {in_request: "column request $.", in_response: "column response $.", in_trace_line: "pi-traces/",
          in_trace_name: "column path", in_card: "captures/README.md: line "}
CASES = [(place, kind) for place in PLACES for kind in KINDS]


def planted(tmp_path: Path, place, kind: str) -> dict:
    home, ws, cwd = tmp_path / "home", tmp_path / "ws", tmp_path / "cwd"
    for d in (home, ws, cwd):
        d.mkdir(parents=True, exist_ok=True)
    c = {"home": home, "ws": ws, "cwd": cwd, "run_id": "r-20261122-000000", "run_dir": ws / ".agentcap" / "r-20261122-000000"}
    path = KINDS[kind](c)
    if place is in_request:
        place(c, path)
    make_run(ws, c["run_id"], [("openai", "m", False)], secret=c.get("path_in_request"))
    if place is not in_request:
        place(c, path)
    c["path"] = path
    return c


def export(c: dict, *args: str, **env: str) -> subprocess.CompletedProcess:
    return cli.agentcap("export", c["run_id"], *args, workspace=c["ws"], cwd=c["cwd"], HOME=str(c["home"]), **env)


def host_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "host path (" in line]


@pytest.mark.parametrize("place,kind", CASES, ids=[f"{p.__name__}-{k.replace(' ', '_')}" for p, k in CASES])
def test_a_planted_host_path_blocks_the_push_naming_where(tmp_path, place, kind):
    c = planted(tmp_path, place, kind)
    with FakeHub() as hub:
        if "card" in c:
            hub.repos["me/x-captures"] = Repo(private=True, files={"README.md": c["card"].encode()})
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_" + "t" * 34, "HF_HOME": str(tmp_path / "hf")}
        r = export(c, "--push", "me/x", **env)
        assert r.returncode == 1, r.stderr
        lines = host_lines(r.stderr)
        assert any(PLACES[place] in line and f"host path ({WHAT[kind]})" in line for line in lines), r.stderr
        assert "push blocked:" in r.stderr and "absolute host path(s)" in r.stderr and "nothing was uploaded" in r.stderr
        assert "Traceback" not in r.stderr
        assert all(not repo.commits for repo in hub.repos.values())  # nothing uploaded
        if "card" not in c:
            assert hub.requests == []  # refused before the Hub was asked anything

    out = tmp_path / "out"
    if "card" in c:
        (out / "captures").mkdir(parents=True)
        (out / "captures" / "README.md").write_text(c["card"])
    r = export(c, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert any(PLACES[place] in line for line in host_lines(r.stderr)), r.stderr
    assert re.search(r"warning:.* \d+ absolute host path\(s\) in what was exported", r.stderr), r.stderr


def test_an_allowed_host_path_goes_through(tmp_path):
    c = planted(tmp_path, in_request, "workspace")
    with FakeHub() as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_" + "t" * 34, "HF_HOME": str(tmp_path / "hf")}
        r = export(c, "--push", "me/x", **env)
        assert r.returncode == 1
        fp = re.search(r"fingerprint ([0-9a-f]{16})", host_lines(r.stderr)[0]).group(1)
        (c["ws"] / ".agentcap-secrets-allow").write_text(f"{fp}  # our public repo's path, on purpose\n")
        r = export(c, "--push", "me/x", **env)
        assert r.returncode == 0, r.stderr
        assert any("allowed" in line for line in host_lines(r.stderr)) and hub.repos["me/x-captures"].commits


def test_a_clean_run_has_nothing_to_report_and_the_script_is_named_by_its_file(tmp_path):
    c = planted(tmp_path, in_response, "home")
    for p in (c["run_dir"] / "captures").glob("*.response.json"):  # undo the plant: a clean run
        p.write_text(p.read_text().replace(f"ls -la {c['path']}", "ls -la"))
    rec = json.loads((c["run_dir"] / RUN_JSON).read_text())
    rec["upstream"] = f"script:{c['ws']}/scripts/model.yaml"
    (c["run_dir"] / RUN_JSON).write_text(json.dumps(rec))
    out = tmp_path / "out"
    r = export(c, "--out", str(out))
    assert r.returncode == 0 and host_lines(r.stderr) == [], r.stderr
    footers = [json.loads(pq.ParquetFile(p).metadata.metadata[b"agentcap"]) for p in out.rglob("*.parquet")]
    assert footers and {f["upstream"] for f in footers} == {"script:model.yaml"}
    card = (out / "captures" / "README.md").read_text()
    assert "script:model.yaml" in card and str(c["ws"]) not in card.replace(str(out), "<out>")


# -- forms × kinds, and what only looks alike ---------------------------------------------------------------

PATHS = {"home": "/home/alice", "workspace": "/srv/work/proj", "run dir": "/srv/work/proj/.agentcap/run-1"}
FORMS = {
    "as it stands": lambda p: f"cat {p}/x.txt",
    "at the end": lambda p: f"cwd: {p}",
    "in quotes": lambda p: f'"{p}"',
    "a file URL": lambda p: f"file://{p}/a",
    "JSON-escaped slashes": lambda p: '"' + (p + "/a").replace("/", "\\/") + '"',
    "dashed (a Claude project)": lambda p: f"projects/{re.sub(r'[^A-Za-z0-9]', '-', p)}-sub/s.jsonl",
}
LOOKALIKES = {
    "a longer name": lambda p: f"{p}fs/x",
    "the same name deeper": lambda p: f"/opt{p}/x",
    "a suffix of a name": lambda p: f"{p}.bak",
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", PATHS)
def test_every_form_of_every_kind_is_found(kind, form):
    hp = HostPaths([HostPath(k, p) for k, p in PATHS.items()])
    text = "before " + FORMS[form](PATHS[kind]) + " after"
    found = hp.find(text)
    assert [p.what for _, p in found] == [kind], (text, found)


@pytest.mark.parametrize("lookalike", LOOKALIKES)
@pytest.mark.parametrize("kind", PATHS)
def test_what_only_looks_alike_is_not_found(kind, lookalike):
    hp = HostPaths([HostPath(k, p) for k, p in PATHS.items() if k == kind])
    text = "x " + LOOKALIKES[lookalike](PATHS[kind]) + " y"
    assert hp.find(text) == [], text


def test_root_and_the_sandbox_paths_are_never_host_paths():
    hp = HostPaths([HostPath("$HOME", "/"), HostPath("the cwd", "/work/main")])
    assert [p.path for p in hp.paths] == ["/work/main"]
    assert hp.find("HOME=/home/agent PWD=/workspace /agentcap/traces") == []


@pytest.mark.parametrize("text,found", [('"agent_name":"/root"', False), ("ran as /root.", False), ("/root", False),
                                        ("cat /root/.bashrc", True), (r'"\/root\/proj"', True), ("/root/", False)])
def test_a_one_component_home_counts_only_as_the_start_of_a_path(text, found):
    hp = HostPaths([HostPath("$HOME", "/root")])
    assert bool(hp.find(text)) == found, text
