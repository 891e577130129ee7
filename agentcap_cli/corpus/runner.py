"""``agentcap run``'s engine: a corpus × turns for one agent, tasks in parallel, resumable.

Each task is one agent session over its turns, each turn a fresh container with its own key. run.json
is rewritten after every turn. Ctrl-C stops the turns in flight (their containers are removed), marks
them ``interrupted`` and the run ``interrupted``; ``--resume`` continues each task from its first
incomplete turn.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from agentcap_addons.wire.capture.records import Capture, iter_captures, read_capture
from agentcap_addons.wire.capture.registry import Attribution
from agentcap_addons.wire.fake.cassette import Cassette
from agentcap_addons.wire.fake.cassettedir import run_subs
from agentcap_cli.console import PlainProgress
from agentcap_cli.corpus.tasks import Task
from agentcap_cli.harness.followup import FollowUp, FollowupFailed, Synthesizer, next_prompt
from agentcap_cli.harness.services import Services
from agentcap_cli.harness.turns import TurnRun, run_pool, run_turn, turn_verdict
from agentcap_cli.runs.drift import describe, find_drift
from agentcap_cli.runs.record import RunFile, RunRecord, TaskRecord, TurnRecord
from sandbox.agents import Agent, get_agent
from sandbox.container import remove_containers
from sandbox.podman import Podman, get_podman

log = logging.getLogger("agentcap.run")


@dataclass
class RunOptions:
    agent: str
    model: str
    turns: int = 1
    followup: str = "continue"
    followup_fallback: str = "error"  # a failed synthesized follow-up: stop the task, or "continue"
    timeout_s: float = 600.0
    jobs: int = 1
    label: str | None = None
    sandbox_dir: Path | None = None  # task workspaces go under it instead of the run dir
    skills: list[Path] = field(default_factory=list)
    tool_dirs: list[Path] = field(default_factory=list)
    base_prompt: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"timeout_s": self.timeout_s, "jobs": self.jobs, "followup_fallback": self.followup_fallback,
                "sandbox_dir": str(self.sandbox_dir) if self.sandbox_dir else None,
                "skills": [str(p) for p in self.skills], "tool_dirs": [str(p) for p in self.tool_dirs]}


def new_record(run_dir: Path, opts: RunOptions, tasks: list[Task], provider: str, upstream: str,
               shard: str | None, replay_of: str | None = None) -> RunRecord:
    from agentcap_addons.wire.util.clock import rfc3339_ns

    return RunRecord(
        run_id=run_dir.name, kind="corpus", agent=opts.agent, model=opts.model, provider=provider,
        upstream=upstream, label=opts.label, turns_per_task=opts.turns, followup=opts.followup,
        started_at=rfc3339_ns(), shard=shard, options=opts.to_dict(), replay_of=replay_of,
        tasks=[TaskRecord(t.task_id, t.prompt, t.turns or opts.turns, list(t.followups)) for t in tasks])


def replay_plan(record: RunRecord, jobs: int | None = None, timeout_s: float | None = None,
                label: str | None = None) -> tuple[list[Task], RunOptions]:
    """What ``agentcap run --replay`` runs: the recorded run's agent, model, tasks and turns, each turn
    with the prompt it was given (a synthesized follow-up is not asked again). Workspaces go to the
    new run's own directory, whatever ``--sandbox`` the recorded run had."""
    o = record.options
    tasks = [Task(t.task_id, t.prompt, t.turns_planned,
                  [x.prompt for x in sorted(t.turns, key=lambda x: x.turn) if x.turn >= 2 and x.prompt] or t.followups)
             for t in record.tasks]
    opts = RunOptions(agent=record.agent, model=record.model, turns=record.turns_per_task,
                      followup="continue" if record.followup == "synthesized" else record.followup,
                      timeout_s=timeout_s or float(o.get("timeout_s") or 600), jobs=jobs or int(o.get("jobs") or 1),
                      label=label or record.label, skills=[Path(p) for p in o.get("skills") or []],
                      tool_dirs=[Path(p) for p in o.get("tool_dirs") or []])
    return tasks, opts


class ReplayCheck:
    """``agentcap run --replay RUN``: each task's calls against the same task's recorded calls, matched as
    the replay addon matched them while serving (the run's own directory and id normalised on both
    sides); the first miss is the task's ``drift`` in run.json."""

    def __init__(self, recorded: Path) -> None:
        self.by_task: dict[str, list[Capture]] = {}
        run_id = None
        for cap in sorted(iter_captures(recorded / "captures"), key=lambda c: c.seq):
            run_id = run_id or cap.request.get("run_id")
            self.by_task.setdefault(str(cap.request.get("task_id")), []).append(cap)
        run_id = run_id or recorded.name
        # its paths as they were when it ran: under its own name, even if its directory was renamed since
        self.subs = run_subs(recorded.parent / run_id, run_id)

    def drift(self, task_id: str, request_ids: list[str], run_dir: Path) -> dict[str, object] | None:
        calls = sorted((read_capture(run_dir / "captures", rid) for rid in request_ids), key=lambda c: c.seq)
        recorded = self.by_task.get(task_id)
        try:
            cassette = Cassette(f"task {task_id}", captures=recorded, subs=self.subs) if recorded else None
        except FileNotFoundError:
            cassette = None
        found, _ = find_drift(cassette, calls, run_subs(run_dir, run_dir.name), f"task {task_id} has no recorded calls")
        return found.to_dict() if found else None


class CorpusRun:
    """One run directory: its tasks through one agent, ``opts.jobs`` at a time."""

    def __init__(self, services: Services, run_dir: Path, record: RunRecord, opts: RunOptions,
                 console: Console, podman: Podman | None = None, replay: ReplayCheck | None = None) -> None:
        self.services, self.run_dir, self.opts, self.console = services, run_dir, opts, console
        self.replay = replay
        self.file = RunFile(run_dir, record)
        self.record = record
        self.agent: Agent = get_agent(opts.agent)
        self.podman = podman or get_podman()
        self.stop = threading.Event()
        self.running: set[str] = set()
        self.plain: PlainProgress | None = None  # off a terminal: progress as plain lines
        self.synth = (Synthesizer(services.direct_base_url, opts.model, services.api_key)
                      if opts.followup == "synthesized" else None)

    # -- one task -------------------------------------------------------------------------------

    def _paths(self, task_id: str) -> dict[str, Path]:
        root = self.run_dir
        return {"workspace": (self.opts.sandbox_dir or root / "workspaces") / task_id,
                "home": root / "state" / task_id, "traces": root / "traces" / task_id,
                "sessions": root / "sessions"}

    def run_task(self, rec: TaskRecord) -> None:
        request_ids: list[str] = []
        try:
            self._turns(rec, request_ids)
        finally:
            if self.replay is not None:
                with self.file.lock:
                    rec.drift = self.replay.drift(rec.task_id, request_ids, self.run_dir)
                    self.file.save()

    def _turns(self, rec: TaskRecord, request_ids: list[str]) -> None:
        """The task's turns from its first incomplete one; the ids of their calls go to ``request_ids``."""
        run_id = self.record.run_id
        paths = self._paths(rec.task_id)
        task = Task(rec.task_id, rec.prompt, rec.turns_planned, rec.followups)
        last_reply: str | None = None
        for turn in range(rec.completed_turns + 1, rec.turns_planned + 1):
            if self.stop.is_set():
                return
            try:
                follow = FollowUp(rec.prompt) if turn == 1 else next_prompt(
                    self.opts.followup, task, turn, last_reply, self.synth, self.opts.followup_fallback)
            except FollowupFailed as exc:
                self._followup_failed(rec, turn, str(exc))
                return
            if follow.fallback:
                self.console.print(f"[yellow]warning:[/] task {rec.task_id} turn {turn}: synthesizing a follow-up "
                                   f"failed ({escape(follow.fallback)}); saying 'continue' "
                                   "(--followup-fallback continue)", highlight=False)
            prompt = follow.prompt
            stem = paths["sessions"] / f"{rec.task_id}_turn_{turn:02d}"
            run = run_turn(self.services, self.podman, self.agent,
                           Attribution(run_id=run_id, task_id=rec.task_id, turn=turn,
                                       captures_dir=str(self.run_dir / "captures")),
                           stdout=stem.with_suffix(".out"), stderr=stem.with_suffix(".err"), trace_dir=paths["traces"],
                           timeout_s=self.opts.timeout_s, labels={"run": run_id, "task": rec.task_id},
                           tool_dirs=self.opts.tool_dirs, prompt=prompt, turn=turn, model=self.opts.model,
                           workspace=paths["workspace"], home=paths["home"], session_id=rec.session_id,
                           base_prompt=self.opts.base_prompt, skills=self.opts.skills)
            r, calls = run.result, run.calls
            request_ids += run.request_ids
            reason = self._verdict(rec, turn, run)
            done = TurnRecord(turn, prompt, r.returncode if r else None, run.duration_s, len(calls), reason,
                              failed_calls=sum(1 for c in calls if c.answered and not c.ok),
                              followup_fallback=follow.fallback)
            with self.file.lock:
                rec.turns.append(done)
                if reason:
                    rec.aborted_reason = reason
                else:
                    rec.completed_turns = turn
                    rec.session_id = (r.session_id if r else None) or rec.session_id
                self.file.save()
            self._turn_line(rec, done)
            if reason:
                log.warning("task %s turn %d: %s", rec.task_id, turn, reason)
                return
            last_reply = r.reply if r else None

    def _turn_line(self, rec: TaskRecord, done: TurnRecord) -> None:
        """Off a terminal, the finished turn as one line: ``pi t0001 turn 1/2: ok, 3 calls, 12.4s``."""
        if self.plain is not None:
            self.plain.line(f"{self.opts.agent} {rec.task_id} turn {done.turn}/{rec.turns_planned}: "
                            f"{done.aborted_reason or 'ok'}, {done.calls} calls, {done.duration_s:.1f}s")

    def _verdict(self, rec: TaskRecord, turn: int, run: TurnRun) -> str | None:
        """Why the turn failed, or None (turns.turn_verdict; a later turn may exit nonzero and still count,
        and a task that must resume by id needs the first turn's session id)."""
        if self.stop.is_set() and run.result is not None:
            return "interrupted"
        reason = turn_verdict(run, self.run_dir / "captures", exit_code_counts=turn == 1)
        r = run.result
        if reason is None and r is not None and (turn == 1 and rec.turns_planned > 1 and self.agent.supports_resume
                                                 and self.agent.resumes_by_id and not r.session_id):
            return "no_session_id"
        return reason

    def _followup_failed(self, rec: TaskRecord, turn: int, cause: str) -> None:
        """No silent change of the corpus: the task stops, run.json and stderr say why."""
        reason = f"followup_failed: {cause}"
        self.console.print(f"[bold red]error:[/] task {rec.task_id} turn {turn}: synthesizing the follow-up failed: "
                           f"{escape(cause)}\n  the task stops here "
                           "(--followup-fallback continue would say 'continue' instead)", highlight=False)
        with self.file.lock:
            rec.turns.append(TurnRecord(turn, "", None, 0.0, 0, reason))
            rec.aborted_reason = reason
            self.file.save()

    # -- the corpus -----------------------------------------------------------------------------

    def prepare_resume(self) -> None:
        """Forget the turns that did not complete, so each task goes on from its first incomplete turn."""
        removed = remove_containers(self.podman, run=self.record.run_id)  # left by a killed agentcap
        if removed:
            log.info("removed %d container(s) left by the interrupted run", len(removed))
        for rec in self.record.tasks:
            rec.turns = [x for x in rec.turns if x.turn <= rec.completed_turns and not x.aborted_reason]
            rec.aborted_reason = None
        self.record.status, self.record.finished_at = "running", None

    def execute(self) -> RunRecord:
        todo = [rec for rec in self.record.tasks if not rec.done]
        self.file.save()
        with self.console.status(f"image for {self.opts.agent}"):
            self.services.image(self.podman, self.opts.agent)
        if self.console.is_terminal:
            interrupted = self._pool_live(todo)
        else:
            self.plain = PlainProgress(self.console, lambda: f"{self.opts.agent}: {self._status()}")
            interrupted = self._pool(todo, self.plain.tick)
        # each stopped turn was recorded "interrupted" by its worker; tasks not started stay incomplete
        if interrupted:
            status = "interrupted"
        else:
            status = "done" if all(r.done for r in self.record.tasks) else "failed"
        self.file.finish(status)
        return self.record

    def _pool(self, todo: list[TaskRecord], tick: Callable[[], None]) -> bool:
        """The tasks ``opts.jobs`` at a time, ``tick`` while waiting and once at the end; True if interrupted."""
        try:
            return run_pool(todo, self._guarded, self.opts.jobs, podman=self.podman, run_id=self.record.run_id,
                            on_tick=tick, name="agentcap-task", on_interrupt=self._interrupting)
        finally:
            tick()

    def _pool_live(self, todo: list[TaskRecord]) -> bool:
        """``_pool`` under rich's live progress bar (on a terminal)."""
        progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("turns"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                            console=self.console, transient=False)
        total_turns = sum(r.turns_planned for r in self.record.tasks)
        bar = progress.add_task("", total=total_turns, completed=self._turns_done())
        with progress:
            return self._pool(todo, lambda: progress.update(bar, completed=self._turns_done(),
                                                            description=self._describe()))

    def _guarded(self, rec: TaskRecord) -> None:
        self.running.add(rec.task_id)
        try:
            self.run_task(rec)
        except Exception as exc:  # a bug must not take the other tasks down
            log.exception("task %s failed", rec.task_id)
            with self.file.lock:
                rec.aborted_reason = f"error: {exc}"
                self.file.save()
        finally:
            self.running.discard(rec.task_id)

    def _interrupting(self) -> None:
        self.stop.set()
        self.console.print("[yellow]interrupted: stopping the turns in flight …[/]")

    def _turns_done(self) -> int:
        return sum(r.completed_turns for r in self.record.tasks)

    def _status(self, sep: str = ", ") -> str:
        """``2/3 tasks done, 1 running, 0 failed, 7 calls``."""
        tasks = self.record.tasks
        done = sum(1 for r in tasks if r.done)
        failed = sum(1 for r in tasks if r.aborted_reason)
        calls = self.services.tracker.total(self.record.run_id)
        return sep.join([f"{done}/{len(tasks)} tasks done", f"{len(self.running)} running", f"{failed} failed",
                         f"{calls} calls"])

    def _describe(self) -> str:
        return f"[bold]{self.opts.agent}[/] {self._status(' · ')}"


def summary_table(record: RunRecord, limit: int = 20) -> Table:
    title = f"{record.run_id} — {record.status}"
    if record.replay_of:
        drifted = sum(1 for t in record.tasks if t.drift)
        title += f" — replay of {record.replay_of}: {drifted}/{len(record.tasks)} task(s) drifted"
    table = Table(title=title, header_style="bold")
    for col in ("task", "turns", "calls", "session", "result"):
        table.add_column(col, justify="right" if col in ("turns", "calls") else "left", overflow="fold")
    rows = sorted(record.tasks, key=lambda r: (r.done and not r.drift, r.task_id))  # problems first
    for rec in rows[:limit]:
        result = "[green]ok[/]" if rec.done else f"[red]{escape(rec.aborted_reason or 'incomplete')}[/]"
        if rec.drift:
            result = f"[red]drift: {escape(describe(rec.drift))}[/]"
        calls, failed = sum(t.calls for t in rec.turns), sum(t.failed_calls for t in rec.turns)
        table.add_row(rec.task_id, f"{rec.completed_turns}/{rec.turns_planned}",
                      f"{calls} [red]({failed} failed)[/]" if failed else str(calls), (rec.session_id or "")[:24],
                      result)
    if len(rows) > limit:
        table.add_row(f"… {len(rows) - limit} more", "", "", "", "")
    return table
