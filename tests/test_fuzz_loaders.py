"""A fuzz pass over the YAML / JSONL loaders (issue 25): random mutations of the shipped examples
may only ever load, or fail with the loaders' one error type (``ConfigError``: ``file:line: key:
message``, which every command turns into exit 2) — never another exception (a traceback), never
a hang. Seeded, so a failure names the seed and the mutation that broke it; a handful of the
mutants also go through the real CLI, checked for exit 0 / one-line exit 2."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agentcap_addons.wire.fake.script import load_script
from agentcap_addons.wire.util.yamlfile import ConfigError
from agentcap_cli.corpus.tasks import load_tasks
from agentcap_cli.suite.project import load_project
from mcp_mocks.engine import MockServer
from tests.support import cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
MUTANTS = 40  # per input and seed
SEEDS = list(range(1, int(os.environ.get("AGENTCAP_FUZZ_SEEDS", "3")) + 1))
NOISE = [":", "- ", "{", "}", "[", "]", "&a ", "*a", "!!python/object:os.system ", "|", ">", "'", '"', "\t",
         "\n", "  ", "#", "%", "@", "`", "\\", "\0", "\ufeff", "é", "\U0001f600", "<<: *a", "? ", "---\n",
         "...\n", "~", "null", "1e999", "-1", "0x1f", "NaN", ".inf", "true", "2026-13-45", "{{", "}}", "{%", "$"]


class Hung(Exception):
    pass


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    def ring(signum, frame):
        raise Hung(f"no answer within {seconds}s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def mutate(text: str, rng: random.Random) -> str:
    """One to three random edits of the kinds that break hand-written YAML / JSON."""
    lines = text.splitlines(keepends=True) or [""]
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(8)
        i = rng.randrange(len(lines))
        if op == 0:  # noise at a random column
            col = rng.randint(0, len(lines[i]))
            lines[i] = lines[i][:col] + rng.choice(NOISE) + lines[i][col:]
        elif op == 1:  # a line dropped
            if len(lines) > 1:
                del lines[i]
        elif op == 2:  # a line duplicated (a key given twice)
            lines.insert(i, lines[i])
        elif op == 3:  # indentation changed
            lines[i] = (" " * rng.choice([0, 1, 2, 3, 4, 8])) + lines[i].lstrip(" ")
        elif op == 4:  # truncated
            lines = lines[: i + 1]
            lines[-1] = lines[-1][: rng.randint(0, len(lines[-1]))]
        elif op == 5:  # a value replaced by a value of another type
            if ":" in lines[i]:
                head = lines[i].split(":", 1)[0]
                lines[i] = f"{head}: {rng.choice(['[]', '{}', '~', '42', '-3.5', 'true', '[1, [2, {a: b}]]', '\"\"'])}\n"
        elif op == 6:  # two lines swapped
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        else:  # a random byte range deleted
            flat = "".join(lines)
            a = rng.randrange(len(flat) + 1)
            flat = flat[:a] + flat[a + rng.randint(1, 20):]
            lines = flat.splitlines(keepends=True) or [""]
    return "".join(lines)


def _tasks_jsonl(tmp: Path) -> Path:
    f = tmp / "tasks.jsonl"
    f.write_text("".join(json.dumps(t) + "\n" for t in [
        {"id": "a", "prompt": "fix the bug"}, {"id": "b", "prompt": "add a test", "turns": 2},
        {"prompt": "explain", "followups": ["more", "shorter"]}]))
    return f


def _tasks_yaml(tmp: Path) -> Path:
    f = tmp / "tasks.yaml"
    f.write_text("tasks:\n  - id: a\n    prompt: fix the bug\n  - {id: b, prompt: add a test, turns: 2}\n"
                 "  - prompt: explain\n    followups: [more, shorter]\n")
    return f


def _copy(src: Path, tmp: Path) -> Path:
    dst = tmp / src.name
    shutil.copytree(src, dst) if src.is_dir() else shutil.copyfile(src, dst)
    return dst


# input → (make the copy to mutate: tmp → (the file to mutate, what loads it))
Target = Callable[[Path], tuple[Path, Callable[[], object]]]


def _project(rel: str) -> Target:
    def make(tmp: Path) -> tuple[Path, Callable[[], object]]:
        root = _copy(EXAMPLES / "my-eval", tmp)
        return root / rel, lambda: load_project(root)
    return make


def _mock(tmp: Path) -> tuple[Path, Callable[[], object]]:
    d = _copy(EXAMPLES / "mocks" / "slack", tmp)
    (d / "handler.py").unlink()  # the YAML's loader, not the handler's import (tested in test_mocks*)
    return d / "mock.yaml", lambda: MockServer.load(d)


def _schema(tmp: Path) -> tuple[Path, Callable[[], object]]:
    d = _copy(EXAMPLES / "mocks" / "slack", tmp)
    (d / "handler.py").unlink()
    return d / "tools.json", lambda: MockServer.load(d)


TARGETS: dict[str, Target] = {
    "agentcap.yaml": _project("agentcap.yaml"),
    "scenario.yaml": _project("scenarios/release-notes/scenario.yaml"),
    "capabilities.yaml": _project("agents/release-bot/capabilities.yaml"),
    "mock.yaml": _mock,
    "tools.json": _schema,
    "model script": lambda tmp: ((f := _copy(EXAMPLES / "scripts" / "shell-then-answer.yaml", tmp)), lambda: load_script(f)),
    "tasks.txt": lambda tmp: ((f := _copy(EXAMPLES / "tasks.txt", tmp)), lambda: load_tasks(f)),
    "tasks.yaml": lambda tmp: ((f := _tasks_yaml(tmp)), lambda: load_tasks(f)),
    "tasks.jsonl": lambda tmp: ((f := _tasks_jsonl(tmp)), lambda: load_tasks(f)),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(TARGETS))
def test_a_mutated_input_loads_or_is_one_config_error(tmp_path, name, seed):
    rng = random.Random(f"{name}/{seed}")
    target, loader = TARGETS[name](tmp_path)
    original = target.read_text(encoding="utf-8")
    outcomes = {"loaded": 0, "refused": 0}
    for n in range(MUTANTS):
        text = mutate(original, rng)
        target.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            with deadline(20):
                loader()
            outcomes["loaded"] += 1
        except ConfigError as exc:
            message = str(exc)
            assert message and "Traceback" not in message, (n, text)
            outcomes["refused"] += 1
        except Hung:
            pytest.fail(f"{name} seed {seed} mutant {n} hung the loader:\n{text[:2000]}")
        except Exception as exc:
            pytest.fail(f"{name} seed {seed} mutant {n}: {type(exc).__name__}: {exc}\n--- input ---\n{text[:2000]}")
    if name != "tasks.txt":  # (almost any text is a list of prompts)
        assert outcomes["refused"] > 0, outcomes  # the mutations do break files: the pass is not vacuous


CLI_TARGETS = {"scenario.yaml": ("validate",), "tasks.yaml": ("run", "--agent", "hermes", "--model", "m", "--tasks")}


@pytest.mark.parametrize("name", list(CLI_TARGETS))
def test_mutants_through_the_cli_exit_0_or_2_with_one_line(tmp_path, name):
    rng = random.Random(f"cli/{name}")
    target, _ = TARGETS[name](tmp_path)
    original = target.read_text()
    for n in range(6):
        target.write_text(mutate(original, rng), encoding="utf-8", errors="surrogatepass")
        args = [*CLI_TARGETS[name], str(target)] if name == "tasks.yaml" else list(CLI_TARGETS[name])
        if name == "tasks.yaml":
            args += ["--dry-run"] if _has_dry_run() else []
        r = cli.agentcap(*args, cwd=target.parents[2] if name == "scenario.yaml" else tmp_path, workspace=tmp_path)
        assert "Traceback" not in r.stderr, (n, r.stderr[-2000:])
        assert r.returncode in (0, 1, 2), (n, r.returncode, r.stderr[-800:])
        if r.returncode == 2:
            problems = [line for line in r.stderr.splitlines() if line.strip()]
            assert problems and all(":" in line for line in problems), r.stderr[-800:]


def _has_dry_run() -> bool:
    r = cli.agentcap("run", "--help")
    return "--dry-run" in r.stdout
