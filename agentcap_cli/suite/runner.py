"""Running a suite: cells (scenario × agent × model) × repeats, each repeat isolated, results as they finish.

Per repeat: a fresh workspace (assets copied, then a snapshot of its files), fresh mocks served on the
host's loopback and bridged into the sandbox, a per-repeat key attributing every model call to
(run, cell, repeat), the agent's turns, then the assertions and the judge. Every repeat's record is
written to ``<run>/results/<cell>/<repeat>.json`` as soon as it ends, so a crash keeps what was done.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agentcap_addons.wire.decode import decode_response
from agentcap_addons.wire.registry import Attribution
from agentcap_addons.wire.store import atomic_write_bytes, read_capture, rfc3339_ns
from agentcap_cli.followup import CONTINUE
from agentcap_cli.services import Services
from agentcap_cli.suite.assertions import Outcome, cost_of, evaluate
from agentcap_cli.suite.judge import judge
from agentcap_cli.suite.project import Project, Scenario
from mcp_mocks.engine import MockServer
from mcp_mocks.serve import HTTPMock
from sandbox.agents import TurnInput, get_agent
from sandbox.images import ensure_image
from sandbox.podman import SandboxError, get_podman
from sandbox.session import run_agent_turn


@dataclass
class Unit:
    scenario: Scenario
    agent: str  # capabilities name ("default": none)
    provider: str
    model: str
    repeat: int

    @property
    def cell(self) -> str:
        base = self.scenario.id if len(self.scenario.agents) == 1 else f"{self.scenario.id}[{self.agent}]"
        return base if len(self.scenario.models) == 1 else f"{base}@{self.model}"


def plan(project: Project, *, filter: str | None = None, agents: list[str] | None = None,
         models: list[str] | None = None, repeat: int | None = None) -> list[Unit]:
    units = []
    for s in project.scenarios:
        if filter and filter not in s.id:
            continue
        for a in s.agents:
            if agents and a not in agents:
                continue
            for m in models or s.models:
                for r in range(1, (repeat or s.repeats) + 1):
                    units.append(Unit(s, a, project.provider_of(s), m, r))
    return units


class SuiteRun:
    def __init__(self, project: Project, services: Services, run_dir: Path, *, no_judge: bool = False,
                 keep_workspace: bool = False, console: Console | None = None) -> None:
        self.project, self.services, self.run_dir = project, services, run_dir
        self.no_judge, self.keep = no_judge, keep_workspace
        self.console = console or Console(stderr=True)
        self.podman = get_podman()
        self.lock = threading.Lock()
        self.interrupted = False

    # -- one repeat -----------------------------------------------------------------------------

    def run_unit(self, u: Unit) -> dict[str, Any]:
        s, cell = u.scenario, u.cell
        base = self.run_dir / "cells" / cell / str(u.repeat)
        workspace, home = base / "workspace", base / "home"
        for d in (workspace, home):
            d.mkdir(parents=True, exist_ok=True)
        for asset in s.assets:  # a fresh workspace per repeat, assets copied, then a snapshot
            target = workspace / asset.name
            shutil.copytree(asset, target) if asset.is_dir() else shutil.copyfile(asset, target)
        snapshot = {str(p.relative_to(workspace)) for p in workspace.rglob("*") if p.is_file()}
        adef = self.project.agents.get(u.agent)
        agent = get_agent(u.provider)
        started = time.monotonic()
        mocks = {name: MockServer.load(self.project.root / "mcp" / name) for name in s.mcp}
        served = {name: HTTPMock(m).start() for name, m in mocks.items()}
        outputs, error, turns = [], None, 0
        try:
            forwards = dict(self.services.forwards)
            for name, h in served.items():
                forwards[h.port] = self.services.bridge.add(f"{cell}-{u.repeat}-{name}".replace("/", "_"), h.port)
            session = None
            for turn in range(1, s.max_turns + 1):
                key = self.services.turn_key(Attribution(run_id=self.run_dir.name, task_id=cell, turn=turn, cell=cell,
                                                         repeat=u.repeat, captures_dir=str(self.run_dir / "captures")))
                t = TurnInput(prompt=s.prompt if turn == 1 else CONTINUE, turn=turn,
                              base_url=self.services.agent_base_url, api_key=key, model=u.model, workspace=workspace,
                              home=home, session_id=session, mcp_servers={n: h.url for n, h in served.items()},
                              base_prompt=adef.base_prompt if adef else None,
                              skills=list(adef.skills) if adef else [])
                try:
                    r = run_agent_turn(self.podman, agent, t, stdout=base / f"turn_{turn:02d}.out",
                                       stderr=base / f"turn_{turn:02d}.err", trace_dir=base / "traces",
                                       forwards=forwards, timeout_s=s.timeout_s,
                                       labels={"run": self.run_dir.name, "task": cell})
                finally:
                    self.services.keys.unregister(key)
                turns = turn
                outputs.append(r.reply or "")
                session = r.session_id or session
                if r.timed_out:
                    error = f"turn {turn} timed out after {s.timeout_s:g} s"
                    break
                if r.returncode != 0:
                    error = f"turn {turn}: the agent exited with {r.returncode}"
                    break
        except SandboxError as exc:
            error = f"sandbox: {str(exc).splitlines()[0]}"
        finally:
            for h in served.values():
                h.stop()
        duration = time.monotonic() - started
        for name, m in mocks.items():
            m.write(base / "mocks")
        calls = self._model_calls(self.services.tracker.settle_cell(self.run_dir.name, cell, u.repeat))
        outcome = Outcome(workspace, snapshot, "\n".join(outputs), {n: m.snapshot() for n, m in mocks.items()},
                          [c for m in mocks.values() for c in m.records()], calls, self.project.prices)
        checks = evaluate(s.assertions, outcome)
        judged = self._judge(s, u, outcome) if s.judge and not self.no_judge else None
        passed = error is None and all(c["passed"] for c in checks if c["required"]) and \
            (judged is None or not judged["required"] or judged["passed"])
        record = {"cell": cell, "scenario": s.id, "agent": u.agent, "provider": u.provider, "model": u.model,
                  "repeat": u.repeat, "passed": passed, "error": error, "duration_s": round(duration, 3),
                  "turns": turns, "model_calls": len(calls),
                  "tokens": sum((c["tokens_in"] or 0) + (c["tokens_out"] or 0) for c in calls),
                  "cost_usd": cost_of(calls, self.project.prices),
                  "tool_calls": [{"server": c["server"], "tool": c["tool"], "args": c["args"]} for c in outcome.mock_calls],
                  "output": outcome.output, "assertions": checks, "judge": judged, "finished_at": rfc3339_ns()}
        (self.run_dir / "results" / cell).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.run_dir / "results" / cell / f"{u.repeat}.json",
                           json.dumps(record, indent=2, default=str).encode())
        if not self.keep:
            shutil.rmtree(workspace, ignore_errors=True)
        return record

    def _model_calls(self, request_ids: list[str]) -> list[dict[str, Any]]:
        """Usage of this repeat's captures (their ids come from the proxy's events: no directory scan)."""
        out = []
        for rid in request_ids:
            cap = read_capture(self.run_dir / "captures", rid)
            d = decode_response(cap)
            body = cap.request.get("body")
            out.append({"model": body.get("model") if isinstance(body, dict) else None,
                        "tokens_in": d.usage.prompt_tokens, "tokens_out": d.usage.completion_tokens,
                        "duration_ms": ((cap.response or {}).get("timings") or {}).get("done")})
        return out

    def _judge(self, s: Scenario, u: Unit, o: Outcome) -> dict[str, Any]:
        assert s.judge is not None
        base = self.services.judge_base_url or self.services.direct_base_url
        verdict = judge(base, s.judge.model or self.project.judge_model or u.model, self.services.api_key, s.judge.rubric,
                        o.output, [{"tool": c["tool"], "args": c["args"]} for c in o.mock_calls], o.mock_state)
        score = verdict.get("score")
        return {**verdict, "min_score": s.judge.min_score, "required": s.judge.required,
                "passed": score is not None and score >= s.judge.min_score}

    # -- the suite ------------------------------------------------------------------------------

    def run(self, units: list[Unit], jobs: int) -> list[dict[str, Any]]:
        for provider in sorted({u.provider for u in units}):
            with self.console.status(f"image for {provider}"):
                ensure_image(self.podman, provider)
        records: list[dict[str, Any]] = []
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=self.console)
        pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="agentcap-cell")
        try:
            with progress:
                bar = progress.add_task("repeats", total=len(units))
                for record in pool.map(self._guarded, units):
                    records.append(record)
                    failed = sum(1 for r in records if not r["passed"])
                    progress.update(bar, advance=1, description=f"repeats · {failed} failed")
        except KeyboardInterrupt:
            # stop the repeats in flight (their containers go), keep what finished, report it
            self.interrupted = True
            self.console.print("[yellow]interrupted: stopping the repeats in flight …[/]")
            pool.shutdown(wait=False, cancel_futures=True)
            from sandbox.turn import remove_containers

            deadline = time.monotonic() + 60
            while any(t.is_alive() for t in getattr(pool, "_threads", ())) and time.monotonic() < deadline:
                remove_containers(self.podman, run=self.run_dir.name)
                for t in list(getattr(pool, "_threads", ())):
                    t.join(0.5)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return records

    def _guarded(self, u: Unit) -> dict[str, Any]:
        try:
            return self.run_unit(u)
        except Exception as exc:  # a bug in one repeat must not stop the others
            return {"cell": u.cell, "scenario": u.scenario.id, "agent": u.agent, "provider": u.provider,
                    "model": u.model, "repeat": u.repeat, "passed": False, "error": f"{type(exc).__name__}: {exc}",
                    "duration_s": 0.0, "turns": 0, "model_calls": 0, "tokens": 0, "cost_usd": None, "tool_calls": [],
                    "output": "", "assertions": [], "judge": None}
