"""``run.json``: what a run is and how far it got, rewritten atomically after every turn.

A reader (``agentcap ls``, export, a resumed run) may open it at any moment and always sees a
complete document; a crash loses at most the turns in flight. Never holds a key.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from agentcap_addons.wire.util.clock import rfc3339_ns
from agentcap_addons.wire.util.files import atomic_write_bytes
from agentcap_addons.wire.util.jsonio import read_json

SCHEMA = 1
RUN_JSON = "run.json"


@dataclass
class TurnRecord:
    turn: int
    prompt: str
    returncode: int | None
    duration_s: float
    calls: int
    # timeout | failed | no_session_id | interrupted | error: … | followup_failed: … | no_model_call |
    # upstream_error 401: <the upstream's message> (the turn judged by the wire, agentcap_cli/runs/verdict.py)
    aborted_reason: str | None = None
    failed_calls: int = 0  # calls answered with a status >= 400 or a transport error
    followup_fallback: str | None = None  # why this turn says CONTINUE instead of a synthesized follow-up


@dataclass
class TaskRecord:
    task_id: str
    prompt: str
    turns_planned: int
    followups: list[str] = field(default_factory=list)
    session_id: str | None = None
    completed_turns: int = 0
    aborted_reason: str | None = None
    turns: list[TurnRecord] = field(default_factory=list)
    # a replay (`agentcap run --replay`): the first call no recording of this task matched, or None
    drift: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.completed_turns >= self.turns_planned and not self.aborted_reason


@dataclass
class RunRecord:
    run_id: str
    kind: str  # corpus | suite | proxy
    agent: str | None  # None: a proxy run (its clients are not known)
    model: str | None
    provider: str
    upstream: str  # never a key
    label: str | None
    turns_per_task: int
    followup: str | None
    started_at: str
    finished_at: str | None = None
    status: str = "running"  # running | done | interrupted | failed
    shard: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # what --resume needs to continue alike
    tasks: list[TaskRecord] = field(default_factory=list)
    replay_of: str | None = None  # `agentcap run --replay`: the run whose captures answered this one
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"schema": data.pop("schema"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        known = {f.name for f in fields(cls)}
        rec = cls(**{k: v for k, v in data.items() if k in known and k != "tasks"})
        for t in data.get("tasks") or []:
            turns = [TurnRecord(**{k: v for k, v in x.items() if k in {f.name for f in fields(TurnRecord)}})
                     for x in t.get("turns") or []]
            task_known = {f.name for f in fields(TaskRecord)} - {"turns"}
            rec.tasks.append(TaskRecord(**{k: v for k, v in t.items() if k in task_known}, turns=turns))
        return rec

    @classmethod
    def proxy(cls, run_id: str, upstream: str, provider: str) -> RunRecord:
        """An ``agentcap proxy`` run: the upstream and the times the proxy knows, no agent, model or tasks."""
        return cls(run_id=run_id, kind="proxy", agent=None, model=None, provider=provider, upstream=upstream,
                   label=None, turns_per_task=0, followup=None, started_at=rfc3339_ns())

    def task(self, task_id: str) -> TaskRecord:
        return next(t for t in self.tasks if t.task_id == task_id)


class RunFile:
    """The run record plus the lock and the atomic rewrite every worker thread goes through."""

    def __init__(self, run_dir: Path, record: RunRecord) -> None:
        self.path = Path(run_dir) / RUN_JSON
        self.record = record
        self.lock = threading.RLock()

    def save(self) -> None:
        with self.lock:
            data = json.dumps(self.record.to_dict(), indent=2, ensure_ascii=False) + "\n"
            atomic_write_bytes(self.path, data.encode("utf-8"))

    def finish(self, status: str) -> None:
        with self.lock:
            self.record.status = status
            self.record.finished_at = rfc3339_ns()
            self.save()


def load_run(run_dir: str | Path) -> RunRecord:
    return RunRecord.from_dict(read_json(Path(run_dir) / RUN_JSON))
