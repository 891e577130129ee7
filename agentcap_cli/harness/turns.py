"""One agent turn through agentcap's services, and the pool that runs many — shared by ``agentcap run``
(corpus tasks) and ``agentcap test`` (suite repeats), so both register keys, settle calls, judge turns
by the wire and stop on Ctrl-C the same way.

A turn: a fresh per-turn key registered with its attribution → the agent's command in a fresh
container (sandbox.run_agent_turn) → the key unregistered → the turn's calls settled from the proxy's
event pipe (each with its response record) → a verdict from the agent's own end and from the wire.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentcap_addons.wire.capture.registry import Attribution
from agentcap_cli.harness.services import Services
from agentcap_cli.runs.verdict import NO_CALL, CallOutcome, turn_failure
from sandbox.agents import Agent, TurnInput
from sandbox.container import KILLED_OUTSIDE, remove_containers
from sandbox.podman import Podman, SandboxError
from sandbox.turn import TurnResult, run_agent_turn


@dataclass
class TurnRun:
    """What happened in one turn."""

    result: TurnResult | None  # None: the sandbox failed before the agent ran
    calls: list[CallOutcome] = field(default_factory=list)  # the turn's model calls, in request order
    sandbox_error: str | None = None
    duration_s: float = 0.0

    @property
    def request_ids(self) -> list[str]:
        return [c.request_id for c in self.calls]


def run_turn(services: Services, podman: Podman, agent: Agent, attribution: Attribution, *,
             stdout: Path, stderr: Path, trace_dir: Path, timeout_s: float, labels: dict[str, str],
             forwards: dict[int, Path] | None = None, tool_dirs: Iterable[Path] = (), **inputs: Any) -> TurnRun:
    """Run one turn; ``inputs`` are the rest of :class:`TurnInput` (prompt, turn, model, workspace, …)."""
    started = time.monotonic()
    key = services.turn_key(attribution)
    run = TurnRun(None)
    try:
        t = TurnInput(base_url=services.agent_base_url, api_key=key, **inputs)
        run.result = run_agent_turn(podman, agent, t, stdout=stdout, stderr=stderr, trace_dir=trace_dir,
                                    forwards=forwards if forwards is not None else services.forwards,
                                    timeout_s=timeout_s, labels=labels, tool_dirs=list(tool_dirs),
                                    image=services.image(podman, agent.name))
    except SandboxError as exc:
        run.sandbox_error = str(exc).splitlines()[0]
    finally:
        services.keys.unregister(key)
    a = attribution
    run.calls = services.tracker.settle_turn(a.run_id or "", a.task_id or "", a.turn or 0, a.cell, a.repeat)
    run.duration_s = round(time.monotonic() - started, 3)
    return run


def turn_verdict(run: TurnRun, captures_dir: Path, *, exit_code_counts: bool = True) -> str | None:
    """Why the turn failed, or None: ``error: …`` (the sandbox), ``timeout``, ``failed: killed from outside
    the run (exit code N)`` (someone else's ``podman kill`` / ``sandbox prune``), the wire's reason
    (verdict.py: an agent that exits 0 after its model calls failed did not do the turn), or ``failed``
    (a nonzero exit; with ``exit_code_counts`` False only when the agent never reached the model)."""
    r = run.result
    if r is None:
        return f"error: {run.sandbox_error}"
    if r.timed_out:
        return "timeout"
    if r.killed_outside:
        return f"failed: {KILLED_OUTSIDE} (exit code {r.returncode})"
    wire = turn_failure(run.calls, captures_dir)
    if wire == NO_CALL and r.returncode != 0:
        return "failed"  # the agent ended before calling the model; its exit code is in the record
    if wire:
        return wire
    if r.returncode != 0 and exit_code_counts:
        return "failed"
    return None


def run_pool[T, R](items: list[T], work: Callable[[T], R], jobs: int, *, podman: Podman, run_id: str,
             on_result: Callable[[T, R], None] | None = None, on_tick: Callable[[], None] | None = None,
             on_interrupt: Callable[[], None] | None = None, name: str = "agentcap") -> bool:
    """``work`` on every item, ``jobs`` at a time; ``on_result`` as each ends (in the calling thread),
    ``on_tick`` about four times a second. Ctrl-C (or SIGTERM): ``on_interrupt``, the items not started are dropped, the
    containers of this run are removed until every worker has returned (their turns end as failed by
    then), and True is returned."""
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix=name)
    futures: dict[Future[R], T] = {pool.submit(work, item): item for item in items}
    reported: set[Future[R]] = set()

    def report(done: Iterable[Future[R]]) -> None:
        for f in done:
            if f not in reported and not f.cancelled() and f.exception() is None and on_result is not None:
                reported.add(f)
                on_result(futures[f], f.result())

    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            for f in done:
                if f.exception() is not None:
                    raise f.exception()  # type: ignore[misc]  # work() guards itself; this is a bug
            report(done)
            if on_tick is not None:
                on_tick()
        return False
    except KeyboardInterrupt:
        if on_interrupt is not None:
            on_interrupt()
        for f in futures:
            f.cancel()
        deadline = time.monotonic() + 60
        # a worker may be creating its container right now: remove until every worker has returned
        while any(not f.done() for f in futures) and time.monotonic() < deadline:
            remove_containers(podman, run=run_id)
            wait([f for f in futures if not f.done()], timeout=0.5)
        report([f for f in futures if f.done()])
        return True
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
