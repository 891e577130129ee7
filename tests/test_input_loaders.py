"""Every YAML input goes through one loader that refuses hostile files with one clear error (exit 2,
``file:line``), never a traceback, a hang or the memory of the machine: an alias bomb, nesting
deeper than any config, a key given twice (a second ``prompt:`` silently replacing the first), and
a UTF-8 byte-order mark (which a Windows editor writes) read as nothing. Generated over the inputs
agentcap reads × the hostile forms."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import cli


def alias_bomb(text: str) -> str:
    rows = ["bomb0: &b0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"bomb{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 10)}]" for i in range(1, 9)]
    return text + "\n".join(rows) + "\n"


def deep_flow(text: str) -> str:
    return text + "deep: " + "[" * 3000 + "]" * 3000 + "\n"


def deep_block(text: str) -> str:
    return text + "".join("  " * i + f"k{i}:\n" for i in range(120)) + "  " * 120 + "v: 1\n"


def duplicate(text: str) -> str:
    first = next(line for line in text.splitlines() if line and not line.startswith((" ", "#", "-")))
    return text + first + "\n"


HOSTILE: dict[str, tuple[Callable[[str], str], str]] = {
    "alias bomb": (alias_bomb, "alias bomb"),
    "deep flow nesting": (deep_flow, "nested deeper than"),
    "deep block nesting": (deep_block, "nested deeper than"),
    "duplicate key": (duplicate, "given twice"),
}


@pytest.fixture(scope="module")
def project(init_project) -> Path:
    return init_project


INPUTS = {  # file of the `agentcap init` project → the command that reads it
    "agentcap.yaml": ["validate"],
    "scenarios/hello-file/scenario.yaml": ["validate"],
    "agents/writer/capabilities.yaml": ["validate"],
    "scripts/model.yaml": ["model", "serve", "--script", "scripts/model.yaml", "--port", "0"],
}


@pytest.mark.parametrize("form", list(HOSTILE))
@pytest.mark.parametrize("name", list(INPUTS))
def test_a_hostile_project_file_is_one_clear_error(tmp_path, project, name, form):
    root = tmp_path / "proj"
    shutil.copytree(project, root)
    mutate, says = HOSTILE[form]
    f = root / name
    f.write_text(mutate(f.read_text()))
    r = cli.agentcap(*INPUTS[name], cwd=root)
    assert r.returncode == 2, (r.returncode, r.stderr[-800:])
    assert "Traceback" not in r.stderr and says in r.stderr and f"{name}" in r.stderr, r.stderr[-800:]


@pytest.mark.parametrize("form", list(HOSTILE))
def test_a_hostile_tasks_file_is_one_clear_error(tmp_path, form):
    mutate, says = HOSTILE[form]
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(mutate("tasks:\n  - id: a\n    prompt: one\n"))
    r = cli.agentcap("run", "--agent", "hermes", "--model", "m", "--tasks", str(tasks), workspace=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and says in r.stderr, r.stderr[-800:]


@pytest.mark.parametrize("form", list(HOSTILE))
def test_a_hostile_mock_yaml_is_one_clear_error(tmp_path, form):
    mutate, says = HOSTILE[form]
    mock = tmp_path / "slack"
    shutil.copytree(Path(__file__).resolve().parents[1] / "examples" / "mocks" / "slack", mock)
    (mock / "mock.yaml").write_text(mutate((mock / "mock.yaml").read_text()))
    r = cli.agentcap("mock", "tools", str(mock), workspace=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and says in r.stderr, r.stderr[-800:]


def test_a_second_prompt_does_not_silently_replace_the_first(tmp_path):
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text("tasks:\n  - id: a\n    prompt: one\n    prompt: two\n")
    r = cli.agentcap("run", "--agent", "hermes", "--model", "m", "--tasks", str(tasks), workspace=tmp_path)
    assert r.returncode == 2 and "tasks.yaml:4: tasks.0.prompt: given twice (first on line 3)" in r.stderr


@pytest.mark.parametrize("name", ["scenarios/hello-file/scenario.yaml", "agentcap.yaml"])
def test_a_byte_order_mark_is_no_part_of_the_file(tmp_path, project, name):
    root = tmp_path / "proj"
    shutil.copytree(project, root)
    f = root / name
    f.write_text("\ufeff" + f.read_text(), encoding="utf-8")
    r = cli.agentcap("validate", cwd=root)
    assert r.returncode == 0, r.stderr


def test_a_byte_order_mark_does_not_turn_a_comment_into_a_task(tmp_path):
    from agentcap_cli.corpus.tasks import load_tasks

    tasks = tmp_path / "tasks.txt"
    tasks.write_text("\ufeff# my prompts\nfix the bug\n", encoding="utf-8")
    assert [t.prompt for t in load_tasks(tasks)] == ["fix the bug"]


# --------------------------------------------------------------------------- prompts an agent cannot receive

BAD_PROMPTS = {  # what an agent's command line cannot carry → what the error says
    "a NUL byte": ("fix\0the bug", "NUL"),
    "over the argument limit": ("x" * (32 * 4096), "command line"),
    "over the limit in UTF-8 bytes, not characters": ("é" * (16 * 4096), "command line"),
}


def _tasks_file(tmp: Path, form: str, prompt: str) -> Path:
    import json

    if form == "tasks.txt":
        f = tmp / "tasks.txt"
        f.write_text(f"ok\n{prompt}\n", encoding="utf-8")
    elif form == "tasks.jsonl":
        f = tmp / "tasks.jsonl"
        f.write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"prompt": prompt}) + "\n")
    elif form == "tasks.yaml followup":
        f = tmp / "tasks.yaml"
        f.write_text(f"- prompt: ok\n  followups: [{json.dumps(prompt)}]\n")
    else:
        f = tmp / "tasks.yaml"
        f.write_text(f"- prompt: ok\n- prompt: {json.dumps(prompt)}\n")
    return f


@pytest.mark.parametrize("bad", list(BAD_PROMPTS))
@pytest.mark.parametrize("form", ["tasks.txt", "tasks.jsonl", "tasks.yaml", "tasks.yaml followup"])
def test_a_prompt_no_agent_can_receive_is_refused_when_read(tmp_path, form, bad):
    prompt, says = BAD_PROMPTS[bad]
    f = _tasks_file(tmp_path, form, prompt)
    r = cli.agentcap("run", "--agent", "hermes", "--model", "m", "--tasks", str(f), workspace=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and says in r.stderr, r.stderr[-800:]
    assert f"{f.name}:2" in r.stderr, r.stderr[-800:]


@pytest.mark.parametrize("bad", list(BAD_PROMPTS))
@pytest.mark.parametrize("where", ["prompt", "prompt_file"])
def test_a_scenario_prompt_no_agent_can_receive_is_a_validate_error(tmp_path, project, where, bad):
    import json

    prompt, says = BAD_PROMPTS[bad]
    root = tmp_path / "proj"
    shutil.copytree(project, root)
    sc = root / "scenarios/hello-file/scenario.yaml"
    text = sc.read_text().replace("prompt: Create hello.txt with a friendly greeting.\n", "")
    if where == "prompt":
        text = f"prompt: {json.dumps(prompt)}\n" + text
    else:
        (sc.parent / "input").mkdir()
        (sc.parent / "input" / "prompt.md").write_text(prompt, encoding="utf-8")
    sc.write_text(text)
    r = cli.agentcap("validate", cwd=root)
    assert r.returncode == 2 and "Traceback" not in r.stderr and says in r.stderr, r.stderr[-800:]
    assert f"scenario.yaml:1: {where}: the prompt" in r.stderr, r.stderr[-800:]
