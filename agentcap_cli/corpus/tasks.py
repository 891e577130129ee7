"""The corpus: tasks from a text, YAML or JSONL file, and deterministic shards of it.

    tasks.txt    one prompt per line; blank lines and lines starting with ``#`` are skipped
    tasks.yaml   a list (or ``{tasks: [...]}``) of ``{id?, prompt, turns?, followups?: [..]}``
    tasks.jsonl  one such object per line

A task without an ``id`` gets ``t<NNNN>``, its 1-based position among the tasks of the file, so the
same file always gives the same ids (and resumed runs and shards agree on them).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentcap_addons.wire.util.yamlfile import (
    ConfigError,
    Located,
    check_keys,
    load,
    read_text,
)

TASK_KEYS = {"id", "prompt", "turns", "followups"}
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class Task:
    task_id: str
    prompt: str
    turns: int | None = None  # overrides --turns for this task
    followups: list[str] = field(default_factory=list)  # the follow-up prompts, in order


def load_tasks(path: str | os.PathLike[str]) -> list[Task]:
    """Every task of the file, validated; bad input raises ConfigError naming file, line and key."""
    p = Path(path)
    if p.suffix in (".yaml", ".yml"):
        tasks = _from_yaml(load(p))
    elif p.suffix == ".jsonl":
        tasks = _from_jsonl(p)
    else:
        tasks = _from_text(p)
    if not tasks:
        raise ConfigError(p, None, "", "no tasks in the file")
    return tasks


# Agents get the prompt as one argument of their command line (``pi -p PROMPT``, ``codex exec
# PROMPT``): Linux refuses an exec whose single argument is longer than MAX_ARG_STRLEN (32 pages,
# NUL included) with E2BIG, and no argument can hold a NUL. Either would fail every turn of the
# task, after its container started; checked when the file is read instead.
MAX_PROMPT_BYTES = 32 * 4096 - 1


def prompt_problem(text: str) -> str | None:
    """Why an agent could not be given ``text`` as its prompt, or None."""
    if "\0" in text:
        return "holds a NUL byte, which no command line can carry"
    n = len(text.encode("utf-8", "surrogatepass"))
    if n > MAX_PROMPT_BYTES:
        return f"is {n:,} bytes; an agent gets its prompt on its command line, which holds at most {MAX_PROMPT_BYTES:,}"
    return None


def _from_text(p: Path) -> list[Task]:
    tasks: list[Task] = []
    for lineno, line in enumerate(read_text(p).splitlines(), start=1):
        prompt = line.strip()
        if not prompt or prompt.startswith("#"):
            continue
        problem = prompt_problem(prompt)
        if problem:
            raise ConfigError(p, lineno, "", f"the prompt {problem}")
        tasks.append(Task(f"t{len(tasks) + 1:04d}", prompt))
    return tasks


def _from_jsonl(p: Path) -> list[Task]:
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(read_text(p).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise ConfigError(p, lineno, "", f"not valid JSON: {e}") from None
        doc = Located(p, obj, {"": lineno})
        tasks.append(_task(doc, obj, "", len(tasks) + 1, seen))
    return tasks


def _from_yaml(doc: Located) -> list[Task]:
    data = doc.data
    prefix = ""
    if isinstance(data, dict):
        check_keys(doc, data, "", {"tasks"})
        data, prefix = data.get("tasks"), "tasks"
    if not isinstance(data, list):
        raise doc.error(prefix, "must be a list of tasks ({prompt: …} entries)")
    seen: dict[str, int] = {}
    return [_task(doc, entry, f"{prefix}.{i}" if prefix else str(i), i + 1, seen) for i, entry in enumerate(data)]


def _task(doc: Located, obj: Any, key: str, position: int, seen: dict[str, int]) -> Task:
    if isinstance(obj, str):
        obj = {"prompt": obj}
    if not isinstance(obj, dict):
        raise doc.error(key, "a task must be a mapping with a 'prompt' (or a plain string)")
    check_keys(doc, obj, key, TASK_KEYS)

    def k(name: str) -> str:
        return f"{key}.{name}" if key else name

    prompt = obj.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise doc.error(k("prompt"), "must be a non-empty string")
    task_id = obj.get("id", f"t{position:04d}")
    if not isinstance(task_id, (str, int)) or isinstance(task_id, bool) or not ID_RE.match(str(task_id)):
        raise doc.error(k("id"), "must be letters, digits, '.', '_' or '-' (it names files), at most 100")
    task_id = str(task_id)
    if task_id in seen:
        raise doc.error(k("id"), f"{task_id!r} is already the id of task {seen[task_id]}")
    seen[task_id] = position
    turns = obj.get("turns")
    if turns is not None and (not isinstance(turns, int) or isinstance(turns, bool) or turns < 1):
        raise doc.error(k("turns"), "must be a whole number ≥ 1")
    followups = obj.get("followups") or []
    if not isinstance(followups, list) or not all(isinstance(f, str) and f.strip() for f in followups):
        raise doc.error(k("followups"), "must be a list of non-empty strings")
    for name, text in (("prompt", prompt), *((f"followups.{i}", f) for i, f in enumerate(followups))):
        if (problem := prompt_problem(text)) is not None:
            raise doc.error(k(name), f"the prompt {problem}")
    return Task(task_id, prompt.strip(), turns, list(followups))


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` → (I, N) with 1 ≤ I ≤ N; ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise ValueError(f"{text!r} is not I/N (e.g. 2/4)")
    i, n = int(m.group(1)), int(m.group(2))
    if not 1 <= i <= n:
        raise ValueError(f"{text!r}: I must be between 1 and N")
    return i, n


def shard(tasks: list[Task], index: int, count: int) -> list[Task]:
    """Shard ``index`` of ``count`` (1-based): every count-th task starting at the index-th. The shards
    of one corpus are disjoint and together hold every task exactly once."""
    return [t for pos, t in enumerate(tasks) if pos % count == index - 1]
