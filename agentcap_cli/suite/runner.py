"""Running a suite: cells (scenario × agent × model) × repeats, each repeat isolated, results as they finish.

Per repeat: a fresh workspace (assets copied, then a snapshot of its files), fresh mocks served on the
host's loopback and bridged into the sandbox, a per-repeat key attributing every model call to
(run, cell, repeat), the agent's turns, then the assertions and the judge. Every repeat's record is
written to ``<run>/results/<cell>/<repeat>.json`` as soon as it ends, so a crash keeps what was done.

A provider registered as an agenteval plugin (``agenteval.providers.registry.register``) runs its own
``install`` / ``run`` on the host instead of a sandboxed adapter; its model calls are captured when
its harness honours the base-URL variables it is given.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from agentcap_addons.wire.api.decode import decode_response
from agentcap_addons.wire.capture.records import Capture, read_capture
from agentcap_addons.wire.capture.registry import Attribution
from agentcap_addons.wire.fake.cassettedir import cell_dirname
from agentcap_addons.wire.util.clock import rfc3339_ns
from agentcap_addons.wire.util.confine import copy_tree, files_beneath
from agentcap_addons.wire.util.files import atomic_write_bytes
from agentcap_cli.console import PlainProgress, err_console, out_console
from agentcap_cli.harness.credentials import CLAUDE_OAUTH_ENV
from agentcap_cli.harness.followup import CONTINUE
from agentcap_cli.harness.services import Services
from agentcap_cli.harness.turns import run_pool, run_turn, turn_verdict
from agentcap_cli.runs.verdict import turn_failure
from agentcap_cli.suite import judge as judges
from agentcap_cli.suite.assertions import ScenarioOutcome, cost_of, evaluate
from agentcap_cli.suite.cassettes import Cassettes, Tape, describe
from agentcap_cli.suite.project import Project, Scenario, harness_name
from agentcap_cli.suite.results import STOPS, RepeatResult
from mcp_mocks.engine import MockServer
from mcp_mocks.serve import HTTPMock
from sandbox.agents import get_agent
from sandbox.agents.base import last_json
from sandbox.podman import SandboxError, get_podman


@dataclass
class Unit:
    scenario: Scenario
    agent: str  # capabilities name ("default": none)
    adapter: str  # what runs the agent: a sandboxed harness or an agenteval plugin (the YAML's ``provider``)
    model: str
    repeat: int
    n_agents: int = 1  # agents / models of this scenario in this run: their names go into the cell id
    n_models: int = 1
    repeats: int = 1  # of this cell in this run (--repeat, else the scenario's): the N of ``trial i/N``

    @property
    def cell(self) -> str:
        base = self.scenario.id if self.n_agents == 1 else f"{self.scenario.id}[{self.agent}]"
        return base if self.n_models == 1 else f"{base}@{self.model}"


def plan(project: Project, *, filter: str | None = None, agents: list[str] | None = None,
         models: list[str] | None = None, repeat: int | None = None, adapter: str | None = None,
         tags: str | None = None, names: str | None = None, cells: set[str] | None = None) -> list[Unit]:
    """The repeats to run. As in agenteval, ``agents`` / ``models`` replace the scenarios' own (one cell
    each), ``adapter`` (``--provider``) replaces the default one (a scenario's own ``provider:`` still wins), and
    ``filter`` keeps cells whose id (``id`` or ``id[agent]``) contains it. ``tags`` (``-m``) and
    ``names`` (``-k``) are pytest-style expressions (suite/select.py); ``cells`` keeps only those ids."""
    from agentcap_cli.suite.select import by_name, by_tags

    tag_ok, name_ok = by_tags(tags) if tags else None, by_name(names) if names else None
    units = []
    for s in project.scenarios:
        if tag_ok and not tag_ok(s.tags):
            continue
        agent_list, model_list = agents or s.agents, models or s.models
        for a in agent_list:
            for m in model_list:
                n = repeat or s.repeats
                for r in range(1, n + 1):
                    u = Unit(s, a, s.provider or adapter or project.provider, m, r, len(agent_list), len(model_list), n)
                    if (not filter or filter in u.cell) and (not name_ok or name_ok(u.cell)) and \
                            (cells is None or u.cell in cells):
                        units.append(u)
    return units


HANDLER_TIMED_OUT = "handler timed out:"  # how mcp_mocks' engine words a handler past its handler_timeout


def stop_words(stop: str, s: Scenario) -> str:
    """``max turns reached (max_turns 15)`` / ``timed out after 300 s``."""
    return f"{STOPS[stop]} (max_turns {s.max_turns or 25})" if stop == "max_turns" else \
        f"{STOPS[stop]} after {s.timeout_s:g} s"


def hit_max_turns(stdout: Path) -> bool:
    """The harness's result says it stopped at its turn limit (claude: ``"subtype": "error_max_turns"``)."""
    try:
        result = last_json(stdout.read_text(errors="replace"))
    except OSError:
        return False
    if isinstance(result, list):
        result = next((m for m in reversed(result) if isinstance(m, dict) and m.get("type") == "result"), None)
    return isinstance(result, dict) and result.get("subtype") == "error_max_turns"


def plugin_stop(out: Any, max_turns: int) -> str | None:
    """Why a plugin provider's run stopped short, from its ProviderRunOutput: ``max_turns`` (claude's
    ``error_max_turns`` in ``raw``, or a failed run that used every turn it was given), ``timeout``."""
    failed = bool(out.error) or (out.exit_code not in (None, 0))
    raw = out.raw if isinstance(out.raw, dict) else {}
    if raw.get("subtype") == "error_max_turns" or (failed and out.num_turns >= max_turns):
        return "max_turns"
    if failed and (raw.get("timed_out") or "timed out" in (out.error or "").lower()):
        return "timeout"
    return None


def handler_timeouts(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mock calls whose handler missed its ``handler_timeout``: {server, tool, detail}."""
    return [{"server": c["server"], "tool": c["tool"], "detail": c["result"]} for c in calls
            if c.get("is_error") and isinstance(c.get("result"), str) and c["result"].startswith(HANDLER_TIMED_OUT)]


@dataclass
class Ran:
    """What the agent did in one repeat."""

    outputs: list[str]
    error: str | None = None
    turns: int = 0  # user turns run
    num_turns: int | None = None  # the agent's own turns, as its harness reports them
    cost_usd: float | None = None  # as its harness reports it
    stop: str | None = None  # max_turns | timeout (RepeatResult.stop)


class SuiteRun:
    def __init__(self, project: Project, services: Services, run_dir: Path, *, no_judge: bool = False,
                 keep_workspace: bool = False, console: Console | None = None, verbose: int = 0,
                 cassettes: Cassettes | None = None, out: Console | None = None) -> None:
        self.project, self.services, self.run_dir = project, services, run_dir
        self.out = out or out_console()  # agenteval's console lines (scenario / trial): stdout
        self._headed: str | None = None  # the cell whose scenario line was printed last
        self.cassettes = cassettes  # --record-mode other than none (suite/cassettes.py)
        self.no_judge, self.keep, self.verbose = no_judge or not project.judge_enabled, keep_workspace, verbose
        self.console = console or err_console()
        self.podman = get_podman()
        self.lock = threading.Lock()
        self.interrupted = False
        self.stopped_early = False  # --maxfail reached: repeats not started yet are skipped
        self.failures = 0
        self.maxfail: int | None = None

    # -- one repeat -----------------------------------------------------------------------------

    def run_unit(self, u: Unit) -> RepeatResult:
        s, cell = u.scenario, u.cell
        base = self.run_dir / "cells" / cell_dirname(cell) / str(u.repeat)
        workspace, home = base / "workspace", base / "home"
        tape = self.cassettes.begin(u) if self.cassettes else None
        snapshot = self._workspace(s, workspace, home)
        started = time.monotonic()
        mocks = {name: MockServer.load(s.mock_dirs[name], self.project.root) for name in s.mcp}
        served = {name: HTTPMock(m).start() for name, m in mocks.items()}
        try:
            if self._plugin(u) is not None:
                ran = self._run_plugin(u, workspace, served)
            else:
                ran = self._run_sandboxed(u, base, workspace, home, served)
        finally:
            for h in served.values():
                h.stop()
        duration = time.monotonic() - started
        for m in mocks.values():
            m.write(base / "mocks")
        caps = self._captures(self.services.tracker.settle_cell(self.run_dir.name, cell, u.repeat))
        calls = self._model_calls(caps)
        if tape is not None and self.cassettes is not None:
            self.cassettes.check(tape, caps, self.run_dir)
        outcome = ScenarioOutcome(workspace, snapshot, "\n".join(ran.outputs), {n: m.snapshot() for n, m in mocks.items()},
                          [c for m in mocks.values() for c in m.records()], calls, self.project.prices)
        checks = evaluate(s.assertions, outcome)
        judge_calls: list[Capture] = []
        judged = self._judge(s, u, outcome, base, tape, judge_calls) \
            if s.judge and not self.no_judge and ran.error is None and not self._drifted(tape) else None
        drifted = self._drifted(tape)  # the agent's calls, or the judge's request
        passed = ran.error is None and not drifted and all(c["passed"] for c in checks if c["required"]) and \
            (judged is None or not judged["required"] or judged["passed"])
        record = RepeatResult(
            cell, s.id, u.agent, u.adapter, u.model, u.repeat, passed=passed, error=ran.error,
            duration_s=round(duration, 3), turns=ran.turns, num_turns=ran.num_turns, model_calls=len(calls),
            tokens=sum((c["tokens_in"] or 0) + (c["tokens_out"] or 0) for c in calls),
            cost_usd=ran.cost_usd if ran.cost_usd is not None else cost_of(calls, self.project.prices),
            cost_source="harness" if ran.cost_usd is not None else "prices",
            tool_calls=[{"server": c["server"], "tool": c["tool"], "args": c["args"]} for c in outcome.mock_calls],
            output=outcome.output, assertions=checks, judge=judged, finished_at=rfc3339_ns(),
            verdict="drift" if drifted else "passed" if passed else "failed",
            drift=tape.drift.to_dict() if tape is not None and tape.drift is not None else None,
            stop=ran.stop, handler_timeouts=handler_timeouts(outcome.mock_calls))
        if tape is not None and self.cassettes is not None:
            record.cassette = self.cassettes.finish(tape, u, caps, judge_calls, self.run_dir, ran.error)
        (self.run_dir / "results" / cell_dirname(cell)).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.run_dir / "results" / cell_dirname(cell) / f"{u.repeat}.json",
                           json.dumps(record.to_dict(), indent=2, default=str).encode())
        if not self.keep:
            shutil.rmtree(workspace, ignore_errors=True)
        self._trial_line(u, record)
        return record

    def _drifted(self, tape: Tape | None) -> bool:
        """The repeat's verdict is drift: it missed its cassette and --on-drift fail."""
        return tape is not None and tape.drift is not None and self.cassettes is not None and \
            self.cassettes.on_drift == "fail"

    def _workspace(self, s: Scenario, workspace: Path, home: Path) -> set[str]:
        """A fresh workspace with the scenario's assets; the files it starts with (for dir_has_new_file)."""
        for d in (workspace, home):
            d.mkdir(parents=True, exist_ok=True)
        for asset in s.assets:  # agentcap: each file or dir under its own name (checked again: nothing from the host)
            copy_tree(self.project.root, asset, workspace / asset.name)
        for folder in s.assets_contents:  # agenteval: the assets dir's contents into the workspace root
            copy_tree(self.project.root, folder, workspace)
        return set(files_beneath(workspace))

    def _agent_setup(self, u: Unit, base: Path, served: dict[str, HTTPMock]) -> tuple[dict[str, str], list[Path], str | None]:
        """(MCP servers the agent is given, its skill dirs, its base prompt). A capa-format agent gets
        the mocks its capabilities declare (agenteval prunes the rest); agentcap's gets every mock."""
        adef = self.project.agents.get(u.agent)
        servers = {n: h.url for n, h in served.items() if adef is None or not adef.capa or n in adef.servers}
        skills = list(adef.skills) if adef else []
        for sid, text in (adef.inline_skills.items() if adef else ()):
            d = base / "skills" / sid
            d.mkdir(parents=True, exist_ok=True)
            (d / "SKILL.md").write_text(text)
            skills.append(d)
        return servers, skills, adef.base_prompt if adef else None

    def _run_sandboxed(self, u: Unit, base: Path, workspace: Path, home: Path, served: dict[str, HTTPMock]) -> Ran:
        s, cell = u.scenario, u.cell
        agent = get_agent(harness_name(u.adapter))
        servers, skills, base_prompt = self._agent_setup(u, base, served)
        ran, session = Ran([]), None
        try:
            forwards = dict(self.services.forwards)
            for name, h in served.items():
                forwards[h.port] = self.services.bridge.add(f"{cell}-{u.repeat}-{name}".replace("/", "_"), h.port)
            for turn in range(1, s.turns + 1):
                run = run_turn(self.services, self.podman, agent,
                               Attribution(run_id=self.run_dir.name, task_id=cell, turn=turn, cell=cell, repeat=u.repeat,
                                           captures_dir=str(self.run_dir / "captures")),
                               stdout=base / f"turn_{turn:02d}.out", stderr=base / f"turn_{turn:02d}.err",
                               trace_dir=base / "traces", forwards=forwards, timeout_s=s.timeout_s,
                               labels={"run": self.run_dir.name, "task": cell},
                               prompt=s.prompt if turn == 1 else CONTINUE, turn=turn, model=u.model,
                               workspace=workspace, home=home, session_id=session, mcp_servers=servers,
                               base_prompt=base_prompt, skills=skills, max_turns=s.max_turns)
                r = run.result
                if r is None:
                    ran.error = f"sandbox: {run.sandbox_error}"
                    break
                ran.turns = turn
                ran.outputs.append(r.reply or "")
                session = r.session_id or session
                if r.num_turns is not None:
                    ran.num_turns = (ran.num_turns or 0) + r.num_turns
                if r.cost_usd is not None:
                    ran.cost_usd = (ran.cost_usd or 0.0) + r.cost_usd
                reason = turn_verdict(run, self.run_dir / "captures")
                if reason == "failed" and hit_max_turns(r.stdout):
                    reason = "max_turns"
                if reason in STOPS:
                    ran.stop, ran.error = reason, f"turn {turn}: {stop_words(reason, s)}"
                elif reason == "failed":
                    ran.error = f"turn {turn}: the agent exited with {r.returncode}"
                elif reason:
                    ran.error = f"turn {turn}: {reason}"
                if ran.error:
                    break
        except SandboxError as exc:
            ran.error = f"sandbox: {str(exc).splitlines()[0]}"
        return ran

    def _plugin(self, u: Unit) -> Any:
        from agenteval.providers.registry import plugin

        return plugin(u.adapter)

    def _run_plugin(self, u: Unit, workspace: Path, served: dict[str, HTTPMock]) -> Ran:
        """An agenteval Provider plugin, on the host: install → run → teardown, as agenteval calls it."""
        import os

        s = u.scenario
        provider = self._plugin(u)(self.project.providers.get(u.adapter, {}))
        adef = self.project.agents.get(u.agent)
        key = self.services.turn_key(Attribution(run_id=self.run_dir.name, task_id=u.cell, turn=1, cell=u.cell,
                                                 repeat=u.repeat, captures_dir=str(self.run_dir / "captures")))
        proxy = self.services.agent_base_url  # the proxy + the upstream's API root path (no /v1)
        env = {**{k: v for k, v in os.environ.items() if k != CLAUDE_OAUTH_ENV},  # the login stays in the proxy
               "ANTHROPIC_BASE_URL": proxy, "ANTHROPIC_API_KEY": key,
               "OPENAI_BASE_URL": proxy + "/v1", "OPENAI_API_KEY": key}
        try:
            provider.install(agent_dir=adef.dir if adef else self.project.root / "agents" / u.agent,
                             workspace=workspace, mock_endpoints={n: h.url for n, h in served.items()})
            out = provider.run(prompt=s.prompt, workspace=workspace, model=u.model, timeout=int(s.timeout_s),
                               max_turns=s.max_turns or 25, env=env)
        except (TimeoutError, subprocess.TimeoutExpired):
            return Ran([], error=f"provider {u.adapter}: {stop_words('timeout', s)}", turns=1, stop="timeout")
        except Exception as exc:
            return Ran([], error=f"provider {u.adapter}: {type(exc).__name__}: {exc}", turns=1)
        finally:
            self.services.keys.unregister(key)
            if not self.keep:
                try:
                    provider.teardown(workspace=workspace)
                except Exception:
                    pass
        calls = self.services.tracker.settle_turn(self.run_dir.name, u.cell, 1, u.cell, u.repeat)
        # a plugin may talk to its model around the proxy (no calls here); calls that did pass are judged
        wire = turn_failure(calls, self.run_dir / "captures") if calls else None
        stop = plugin_stop(out, s.max_turns or 25)
        error = f"provider {u.adapter}: {stop_words(stop, s)}" if stop else \
            out.error or (f"turn 1: {wire}" if wire else None)
        return Ran([out.final_output or ""], error=error, turns=1, stop=stop,
                   num_turns=out.num_turns or None, cost_usd=out.total_cost_usd if out.total_cost_usd else None)

    def _captures(self, request_ids: list[str]) -> list[Capture]:
        """This repeat's captures in call order (their ids come from the proxy's events: no directory scan)."""
        return sorted((read_capture(self.run_dir / "captures", rid) for rid in request_ids), key=lambda c: c.seq)

    def _model_calls(self, caps: list[Capture]) -> list[dict[str, Any]]:
        """Usage of this repeat's captures."""
        out = []
        for cap in caps:
            d = decode_response(cap)
            body = cap.request.get("body")
            out.append({"model": body.get("model") if isinstance(body, dict) else None,
                        "tokens_in": d.usage.prompt_tokens, "tokens_out": d.usage.completion_tokens,
                        "duration_ms": ((cap.response or {}).get("timings") or {}).get("done")})
        return out

    def _judge(self, s: Scenario, u: Unit, o: ScenarioOutcome, base: Path, tape: Tape | None,
               judge_calls: list[Capture]) -> dict[str, Any]:
        """The judge's verdict: asked live, or (a replayed repeat) its recorded answer to the same request.
        The claude-cli judge's calls are appended to ``judge_calls``."""
        assert s.judge is not None
        model = s.judge.model or self.project.judge_model or u.model
        prompt = judges.Prompt(s.judge.rubric, o.output, [{"server": c["server"], "tool": c["tool"], "args": c["args"]}
                                                          for c in o.mock_calls], o.mock_state)
        backend = self.project.judge_backend
        tapes = self.cassettes
        replaying = tape is not None and tape.use == "replay" and tape.drift is None
        verdict: dict[str, Any] | None = None
        if backend == "claude-cli":  # through the proxy: served from the cassette's judge/ calls when replaying
            ids: list[str] = []
            verdict = judges.judge_claude_cli(self.podman, self.services, self.run_dir, base, u.cell, u.repeat,
                                              model, prompt, request_ids=ids)
            judge_calls += self._judge_captures(ids)
            if replaying and tapes is not None and tape is not None:
                tapes.check_judge_calls(tape, judge_calls, self.run_dir)
        elif replaying and tapes is not None and tape is not None:
            verdict = tapes.judge_answer(tape, backend, judges.request_body(model, prompt, backend), self.run_dir)
        if verdict is None and tape is not None and tape.drift is not None and self._drifted(tape):
            verdict = {"score": None, "error": f"not asked: {tape.drift.describe()}",
                       "request": judges.request_body(model, prompt, backend)}
        elif verdict is None:
            url = self.services.judge_base_url or self.services.direct_base_url
            verdict = judges.judge(url, model, self.services.api_key, prompt, api=backend, oauth=self.services.oauth)
        if tapes is not None and tape is not None and not verdict.get("replayed"):
            tapes.keep_judge(tape, backend, verdict)
        verdict["backend"] = backend
        score = verdict.get("score")
        return {**verdict, "min_score": s.judge.min_score, "required": s.judge.required,
                "passed": score is not None and score >= s.judge.min_score}

    def _judge_captures(self, request_ids: list[str]) -> list[Capture]:
        """The judge's calls of this repeat, in call order, by the ids its turn announced (no scan of every
        repeat's judge captures); a call whose request record could not be written has no file."""
        d = self.run_dir / "judge" / "captures"
        out = []
        for rid in request_ids:
            try:
                out.append(read_capture(d, rid))
            except FileNotFoundError:
                continue
        return sorted(out, key=lambda c: c.seq)

    def _trial_line(self, u: Unit, r: RepeatResult) -> None:
        """agenteval's lines (with -v), on stdout: ``scenario 'ID' provider=P model=M`` once per cell (again
        only when another cell's trial came between), then ``trial 1/1: PASS $0.1783 turns=4 13.2s judge=1.00``
        per repeat; a stop, a failed check or a handler timeout is named at the end."""
        if not self.verbose:
            return
        verdict = "PASS" if r.passed else "DRIFT" if r.verdict == "drift" else "FAIL"
        judge = f"  judge={r.judge['score']:.2f}" if r.judge and r.judge.get("score") is not None else ""
        cost = f"${r.cost_usd:.4f}" if r.cost_usd is not None else "$?"
        turns = r.num_turns if r.num_turns is not None else r.turns
        tail = f"  drift: {describe(r.drift or {})[:160]}" if r.verdict == "drift" else \
            f"  {r.stop}: {' '.join(r.error.split())}" if r.stop and r.error else \
            f"  error: {' '.join(r.error.split())[:80]}" if r.error else \
            "".join(f"  failed=[{a['name']}]" for a in r.assertions if not a["passed"])
        tail += "".join(f"  handler_timeout=[{h['server']}.{h['tool']}]" for h in r.handler_timeouts)
        line = f"  trial {u.repeat}/{u.repeats}: {verdict} {cost} turns={turns} {r.duration_s:.1f}s{judge}{tail}"
        with self.lock:
            if self._headed != u.cell:
                self._headed = u.cell
                line = f"scenario '{u.cell}' provider={u.adapter} model={u.model}\n{line}"
            self.out.print(line, markup=False, highlight=False, soft_wrap=True)

    # -- the suite ------------------------------------------------------------------------------

    def run(self, units: list[Unit], jobs: int, maxfail: int | None = None) -> list[RepeatResult]:
        """Every unit's record; with ``maxfail``, repeats not started yet are dropped once that many failed
        (``self.stopped_early``)."""
        for harness in sorted({harness_name(u.adapter) for u in units if self._plugin(u) is None}):
            with self.console.status(f"image for {harness}"):
                self.services.image(self.podman, harness)  # resolved once: every turn reuses it
        if self.project.judge_backend == "claude-cli" and not self.no_judge and any(u.scenario.judge for u in units):
            self.services.image(self.podman, "claude-code")
        records: list[RepeatResult] = []
        self.maxfail = maxfail
        if self.console.is_terminal:
            self._pool_live(units, jobs, records)
        else:
            self._pool_plain(units, jobs, records)
        if self.stopped_early:
            self.console.print(f"[yellow]{self.failures} failed (--maxfail {maxfail}): "
                               f"{len(units) - len(records)} repeat(s) not started[/]")
        return records

    def _pool(self, units: list[Unit], jobs: int, records: list[RepeatResult],
              on_record: Callable[[Unit, RepeatResult], None], on_tick: Callable[[], None] | None = None) -> None:
        """The repeats ``jobs`` at a time, each record to ``records`` and ``on_record`` as it ends."""
        def done(u: Unit, record: RepeatResult | None) -> None:
            if record is not None:  # None: not started, --maxfail was reached
                records.append(record)
                on_record(u, record)

        def interrupting() -> None:  # the repeats in flight stop (their containers go); what finished is kept
            self.interrupted = True
            self.console.print("[yellow]interrupted: stopping the repeats in flight …[/]")

        run_pool(units, self._guarded, jobs, podman=self.podman, run_id=self.run_dir.name, on_result=done,
                 on_tick=on_tick, on_interrupt=interrupting, name="agentcap-cell")

    def _pool_live(self, units: list[Unit], jobs: int, records: list[RepeatResult]) -> None:
        """On a terminal: rich's progress bar over the repeats."""
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=self.console)
        with progress:
            bar = progress.add_task("repeats", total=len(units))
            self._pool(units, jobs, records, lambda u, r: progress.update(
                bar, advance=1, description=f"repeats · {sum(1 for x in records if not x.passed)} failed"))

    def _pool_plain(self, units: list[Unit], jobs: int, records: list[RepeatResult]) -> None:
        """Off a terminal, on the progress console: a line per finished trial, ``trial CELL#2: PASS, 4 calls,
        12.3s`` (its task id in run.json; with -v agenteval's own lines go to stdout besides), and a
        heartbeat while waiting."""
        plain = PlainProgress(self.console, lambda: (f"{len(records)}/{len(units)} trials done, "
                                                     f"{sum(1 for r in records if not r.passed)} failed"))

        def line(u: Unit, r: RepeatResult) -> None:
            verdict = "PASS" if r.passed else "DRIFT" if r.verdict == "drift" else "FAIL"
            plain.line(f"trial {r.key}: {verdict}, {r.model_calls} calls, {r.duration_s:.1f}s"
                       + (f" ({r.error[:80]})" if r.error else ""))

        self._pool(units, jobs, records, line, on_tick=plain.tick)

    def _guarded(self, u: Unit) -> RepeatResult | None:
        """The repeat's record; None when it was not started because --maxfail was reached."""
        if self.stopped_early:
            return None
        record = self._record(u)
        if not record.passed:
            with self.lock:
                self.failures += 1
                if self.maxfail and self.failures >= self.maxfail:
                    self.stopped_early = True
        return record

    def _record(self, u: Unit) -> RepeatResult:
        try:
            return self.run_unit(u)
        except Exception as exc:  # a bug in one repeat must not stop the others
            return RepeatResult(u.cell, u.scenario.id, u.agent, u.adapter, u.model, u.repeat, passed=False,
                                error=f"{type(exc).__name__}: {exc}", finished_at=rfc3339_ns())
