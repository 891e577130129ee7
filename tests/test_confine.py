"""The two path walls of issue 25, tried the way a hostile project and a hostile agent would.

* Every file a project names (prompt_file, rubric_file, assets, skills, base prompts, the upstream
  script) resolves inside the project, links followed; anything else is a ``validate`` error
  (exit 2, ``file:line: key``) and the host file's text appears nowhere. Generated: every key ×
  every way out (absolute, ``../``, a link, a linked directory, a link chain, and for what is copied
  as a tree: a link, a FIFO or a linked directory inside it).
* Every path an assertion names stays in the workspace: written out of it (absolute, ``../``) is a
  validate error; an agent's link out of it, a FIFO, a device or a file over the cap fails the
  assertion with the reason — without reading the host, and without hanging.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from agentcap_addons.wire.util.confine import READ_CAP, Refused, copy_tree
from agentcap_cli.suite.assertions import Assertion, ScenarioOutcome, evaluate, normalize
from tests.support import cli

MARKER = "HOST-SECRET-7f3a9c"


@pytest.fixture
def host(tmp_path) -> Path:
    """Files of the "host": outside the project, holding the marker."""
    h = tmp_path / "host"
    (h / "dir").mkdir(parents=True)
    for f in (h / "secret.md", h / "dir" / "secret.md", h / "dir" / "SKILL.md"):
        f.write_text(f"{MARKER}\n")
    return h


# --------------------------------------------------------------------------- project files

# A way out: (where the name is looked up, the host, whether a tree is expected) → the name to write,
# or None when the form does not apply. Each creates what it needs beside ``base``.
Form = Callable[[Path, Path, bool], str | None]


def _absolute(base: Path, host: Path, tree: bool) -> str:
    return str(host / "dir") if tree else str(host / "secret.md")


def _dotdot(base: Path, host: Path, tree: bool) -> str:
    return os.path.relpath(host / "dir" if tree else host / "secret.md", base)


def _link(base: Path, host: Path, tree: bool) -> str:
    (base / "leak").symlink_to(host / "dir" if tree else host / "secret.md")
    return "leak"


def _linked_dir(base: Path, host: Path, tree: bool) -> str:
    (base / "via").symlink_to(host)
    return "via/dir" if tree else "via/secret.md"


def _chain(base: Path, host: Path, tree: bool) -> str:
    (base / "hop2").symlink_to(host / "dir" if tree else host / "secret.md")
    (base / "hop1").symlink_to("hop2")
    return "hop1"


def _link_inside(base: Path, host: Path, tree: bool) -> str | None:
    if not tree:
        return None
    d = base / "bundle"
    d.mkdir()
    (d / "SKILL.md").write_text("a skill\n")
    (d / "notes.md").symlink_to(host / "secret.md")
    return "bundle"


def _fifo_inside(base: Path, host: Path, tree: bool) -> str | None:
    if not tree:
        return None
    d = base / "bundle"
    d.mkdir()
    (d / "SKILL.md").write_text("a skill\n")
    os.mkfifo(d / "pipe")
    return "bundle"


def _dir_link_inside(base: Path, host: Path, tree: bool) -> str | None:
    if not tree:
        return None
    d = base / "bundle"
    (d / "sub").mkdir(parents=True)
    (d / "SKILL.md").write_text("a skill\n")
    (d / "sub" / "up").symlink_to(host / "dir")
    return "bundle"


FORMS: dict[str, Form] = {"absolute": _absolute, "dotdot": _dotdot, "link": _link, "linked dir": _linked_dir,
                          "link chain": _chain, "link inside": _link_inside, "fifo inside": _fifo_inside,
                          "dir link inside": _dir_link_inside}

SCENARIO = "scenarios/hello-file/scenario.yaml"
AGENT = "agents/writer/capabilities.yaml"


def _edit(root: Path, rel: str, change: Callable[[dict], None]) -> None:
    f = root / rel
    data = yaml.safe_load(f.read_text())
    change(data)
    f.write_text(yaml.safe_dump(data, sort_keys=False))


def _prompt_file(data: dict, name: str) -> None:
    data.pop("prompt")
    data["prompt_file"] = name


def _rubric_file(data: dict, name: str) -> None:
    data["judge"]["rubric_file"] = name


def _assets_list(data: dict, name: str) -> None:
    data["assets"] = [name]


def _assets_dir(data: dict, name: str) -> None:
    data["assets"] = name


def _script(data: dict, name: str) -> None:
    data["upstream"] = {"script": name}


def _base_prompt_file(data: dict, name: str) -> None:
    data.pop("base_prompt")
    data["base_prompt_file"] = name


def _capa_base(data: dict, name: str) -> None:
    data.pop("base_prompt")
    data["agents"] = {"base": {"type": "local", "path": name}}


def _skills_dir(data: dict, name: str) -> None:
    data["skills"] = [name]


def _capa_skill(data: dict, name: str) -> None:
    data["skills"] = [{"id": "s", "type": "local", "def": {"path": name}}]


# key → (file it is written in, its base dir in the project, the key in the error, tree?, the edit)
KEYS: dict[str, tuple[str, str, str, bool, Callable[[dict, str], None]]] = {
    "prompt_file": (SCENARIO, "scenarios/hello-file", "prompt_file", False, _prompt_file),
    "judge.rubric_file": (SCENARIO, "scenarios/hello-file", "judge.rubric_file", False, _rubric_file),
    "upstream.script": ("agentcap.yaml", ".", "upstream.script", False, _script),
    "base_prompt_file": (AGENT, "agents/writer", "base_prompt_file", False, _base_prompt_file),
    "agents.base.path": (AGENT, "agents/writer", "agents.base.path", False, _capa_base),
    "assets (a list)": (SCENARIO, "scenarios/hello-file", "assets.0", True, _assets_list),
    "assets (a dir)": (SCENARIO, "scenarios/hello-file", "assets", True, _assets_dir),
    "skills (a dir)": (AGENT, "agents/writer", "skills.0", True, _skills_dir),
    "skills (capa, local)": (AGENT, "agents/writer", "skills.0.def.path", True, _capa_skill),
}


def _cells() -> list[tuple[str, str]]:
    return [(k, f) for k in KEYS for f in FORMS if KEYS[k][3] or "inside" not in f]


@pytest.mark.parametrize(("key", "form"), _cells())
def test_a_project_cannot_name_a_host_file(tmp_path, init_project, host, key, form):
    root = tmp_path / "proj"
    shutil.copytree(init_project, root)
    file, base, shown_key, tree, edit = KEYS[key]
    name = FORMS[form](root / base, host, tree)
    assert name is not None
    _edit(root, file, lambda d: edit(d, name))
    r = cli.agentcap("validate", cwd=root)
    assert r.returncode == 2, (r.returncode, r.stdout[-400:], r.stderr[-800:])
    assert "Traceback" not in r.stderr
    assert f"{file}:" in r.stderr and f": {shown_key}:" in r.stderr, r.stderr[-800:]
    assert any(w in r.stderr for w in ("is outside", "not a regular file", "is a link to a directory")), r.stderr
    assert MARKER not in r.stdout + r.stderr


def test_the_default_assets_dir_as_a_link_out_is_refused(tmp_path, init_project, host):
    root = tmp_path / "proj"
    shutil.copytree(init_project, root)
    (root / "scenarios/hello-file/assets").symlink_to(host / "dir")
    r = cli.agentcap("validate", cwd=root)
    assert r.returncode == 2 and f"{SCENARIO}:" in r.stderr and ": assets:" in r.stderr, r.stderr[-800:]


@pytest.mark.parametrize("key", [k for k in KEYS if k != "upstream.script"])
def test_links_that_stay_in_the_project_are_fine(tmp_path, init_project, key):
    """The wall is the project root, not "no links": a link to another file of the project passes."""
    root = tmp_path / "proj"
    shutil.copytree(init_project, root)
    file, base, _, tree, edit = KEYS[key]
    shared = root / "shared"
    (shared / "dir").mkdir(parents=True)
    (shared / "prompt.md").write_text("a prompt\n")
    (shared / "dir" / "SKILL.md").write_text("a skill\n")
    (root / base / "inproject").symlink_to(shared / "dir" if tree else shared / "prompt.md")
    _edit(root, file, lambda d: edit(d, "inproject"))
    r = cli.agentcap("validate", cwd=root)
    assert r.returncode == 0, r.stderr[-800:]


def test_the_copy_into_the_workspace_checks_again(tmp_path, host):
    """An asset that became a link out after validate (the project changed under a long run) is
    not copied: the copy refuses what validate would have refused."""
    root = tmp_path / "proj"
    (root / "assets").mkdir(parents=True)
    (root / "assets" / "ok.txt").write_text("fine\n")
    out = tmp_path / "ws"
    copy_tree(root, root / "assets", out)
    assert (out / "ok.txt").read_text() == "fine\n"
    (root / "assets" / "late").symlink_to(host / "secret.md")
    with pytest.raises(Refused, match="outside"):
        copy_tree(root, root / "assets", tmp_path / "ws2")
    assert not any(MARKER in p.read_text() for p in (tmp_path / "ws2").rglob("*") if p.is_file())


# --------------------------------------------------------------------------- assertion paths in the YAML

BAD_PATHS = ["/etc/passwd", "../outside.txt", "a/../../outside.txt", "./../x", "x\0y", ""]
PATH_PARAMS = [("file_exists", "path", {}), ("file_contains", "path", {"values": ["x"]}),
               ("dir_has_new_file", "path", {}), ("dir_has_new_file", "dir", {})]


@pytest.mark.parametrize("bad", BAD_PATHS, ids=repr)
@pytest.mark.parametrize(("kind", "param", "extra"), PATH_PARAMS, ids=[f"{k}.{p}" for k, p, _ in PATH_PARAMS])
def test_an_assertion_path_out_of_the_workspace_is_a_validate_error(tmp_path, init_project, kind, param, extra, bad):
    root = tmp_path / "proj"
    shutil.copytree(init_project, root)
    _edit(root, SCENARIO, lambda d: d.update(assertions=[{"kind": kind, param: bad, **extra}]))
    r = cli.agentcap("validate", cwd=root)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-800:]
    assert f"{SCENARIO}:" in r.stderr and f"assertions.0.{param}:" in r.stderr, r.stderr[-800:]


# --------------------------------------------------------------------------- what an agent leaves in the workspace

# A hostile workspace: (workspace, host) → the path the assertions are pointed at. Whatever it is,
# no assertion may pass on the host's text, nor take long.
Plant = Callable[[Path, Path], str]


def _abs_link(ws: Path, host: Path) -> str:
    (ws / "out.txt").symlink_to(host / "secret.md")
    return "out.txt"


def _rel_link_out(ws: Path, host: Path) -> str:
    (ws / "out.txt").symlink_to(os.path.relpath(host / "secret.md", ws))
    return "out.txt"


def _deep_rel_link_out(ws: Path, host: Path) -> str:
    (ws / "a" / "b").mkdir(parents=True)
    (ws / "a" / "b" / "out.txt").symlink_to("../../" + os.path.relpath(host / "secret.md", ws))
    return "a/b/out.txt"


def _dir_component_out(ws: Path, host: Path) -> str:
    (ws / "d").symlink_to(host / "dir")
    return "d/secret.md"


def _rel_dir_component_out(ws: Path, host: Path) -> str:
    (ws / "d").symlink_to(os.path.relpath(host / "dir", ws))
    return "d/secret.md"


def _loop(ws: Path, host: Path) -> str:
    (ws / "out.txt").symlink_to("loop2")
    (ws / "loop2").symlink_to("out.txt")
    return "out.txt"


def _fifo(ws: Path, host: Path) -> str:
    os.mkfifo(ws / "out.txt")
    return "out.txt"


def _dev_zero(ws: Path, host: Path) -> str:
    (ws / "out.txt").symlink_to("/dev/zero")
    return "out.txt"


def _dev_zero_relative(ws: Path, host: Path) -> str:
    (ws / "out.txt").symlink_to("../" * (len(ws.parts) + 2) + "dev/zero")
    return "out.txt"


def _socket(ws: Path, host: Path) -> str:
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(ws / "out.txt"))
    s.close()
    return "out.txt"


def _over_cap(ws: Path, host: Path) -> str:
    with open(ws / "out.txt", "wb") as f:  # sparse: the cap, plus the marker
        f.truncate(READ_CAP)
        f.seek(READ_CAP)
        f.write(MARKER.encode())
    return "out.txt"


PLANTS: dict[str, Plant] = {"absolute link": _abs_link, "relative link out": _rel_link_out,
                            "deep relative link out": _deep_rel_link_out, "dir component out": _dir_component_out,
                            "relative dir component out": _rel_dir_component_out, "link loop": _loop,
                            "fifo": _fifo, "/dev/zero": _dev_zero, "/dev/zero by ../": _dev_zero_relative,
                            "socket": _socket, "over the cap": _over_cap}


def _assertions(path: str) -> list[Assertion]:
    parent = path.rpartition("/")[0] or "."
    raw = [("file_exists", {"path": path}), ("file_contains", {"path": path, "values": [MARKER]}),
           ("dir_has_new_file", {"dir": parent, "matches": ".", "contents_include": [MARKER]})]
    return [Assertion(k, normalize(k, p), k) for k, p in raw]


def _evaluate(ws: Path, path: str) -> list[dict]:
    outcome = ScenarioOutcome(ws, set(), "", {}, [], [])
    done: list[list[dict]] = []
    t = threading.Thread(target=lambda: done.append(evaluate(_assertions(path), outcome)), daemon=True)
    t.start()
    t.join(30)  # bounded: a FIFO or /dev/zero must neither block nor read without end
    assert done, "the assertions did not finish"
    return done[0]


@pytest.mark.parametrize("plant", list(PLANTS))
def test_an_agent_cannot_make_an_assertion_read_the_host(tmp_path, host, plant):
    ws = tmp_path / "work" / "ws"
    ws.mkdir(parents=True)
    path = PLANTS[plant](ws, host)
    results = {r["kind"]: r for r in _evaluate(ws, path)}
    assert not results["file_contains"]["passed"] and not results["dir_has_new_file"]["passed"], results
    # only a regular file in the workspace exists for file_exists (over the cap: it does, it is not read)
    assert results["file_exists"]["passed"] == (plant == "over the cap"), results
    assert all(f"found ['{MARKER}']" not in r["detail"] for r in results.values()), results


def test_the_same_assertions_pass_on_what_the_agent_really_wrote(tmp_path):
    """The controls: a regular file, and a link that stays in the workspace, pass all three."""
    ws = tmp_path / "ws"
    (ws / "a").mkdir(parents=True)
    (ws / "a" / "out.txt").write_text(f"{MARKER}\n")
    assert all(r["passed"] for r in _evaluate(ws, "a/out.txt"))
    (ws / "b").mkdir()
    (ws / "b" / "link.txt").symlink_to("../a/out.txt")
    results = {r["kind"]: r for r in _evaluate(ws, "b/link.txt")}
    assert results["file_exists"]["passed"] and results["file_contains"]["passed"], results


MOCK_KEYS = {"schema": "tools.json", "handler": "handler.py"}


@pytest.mark.parametrize("form", [f for f in FORMS if "inside" not in f])
@pytest.mark.parametrize("key", list(MOCK_KEYS))
def test_a_mock_cannot_name_a_host_file(tmp_path, init_project, host, key, form):
    """A mock's schema and handler are project files too (as from ``validate``; standalone
    ``agentcap mock`` confines them to the mock's own directory)."""
    root = tmp_path / "proj"
    shutil.copytree(init_project, root)
    mock = root / "mcp" / "m"
    mock.mkdir(parents=True)
    (mock / "tools.json").write_text(json.dumps({"tools": [{"name": "ping", "inputSchema": {"type": "object"}}]}))
    (mock / "handler.py").write_text("def tool_ping(args, ctx):\n    return {'ok': True}\n")
    for f in (host / "secret.md", host / "dir" / "secret.md"):  # the host file is a valid one of its kind
        f.write_text((mock / MOCK_KEYS[key]).read_text() + f"# {MARKER}\n" * (key == "handler"))
    name = FORMS[form](mock, host, False)
    (mock / "mock.yaml").write_text(yaml.safe_dump({"name": "m", "schema": "tools.json", key: name}))
    _edit(root, SCENARIO, lambda d: d.update(mcp=["m"]))
    for args in (["validate"], ["mock", "tools", str(mock)]):
        r = cli.agentcap(*args, cwd=root)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr[-800:])
        assert "mock.yaml:" in r.stderr and f": {key}:" in r.stderr and "is outside" in r.stderr, (args, r.stderr[-800:])
        assert MARKER not in r.stdout + r.stderr
