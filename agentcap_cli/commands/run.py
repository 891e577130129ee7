"""``agentcap run``: a corpus of prompts × turns through one or more agents, each turn in a sandbox."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from rich.console import Console
from rich.logging import RichHandler

from agentcap_addons.wire.api.apibase import checked
from agentcap_addons.wire.util.yamlfile import ConfigError
from agentcap_cli.console import err_console
from agentcap_cli.corpus.runner import (
    CorpusRun,
    ReplayCheck,
    RunOptions,
    new_record,
    replay_plan,
    summary_table,
)
from agentcap_cli.corpus.tasks import Task, load_tasks, parse_shard
from agentcap_cli.corpus.tasks import shard as take_shard
from agentcap_cli.harness.credentials import is_huggingface, upstream_key
from agentcap_cli.harness.followup import FALLBACKS, MODES
from agentcap_cli.harness.probe import probe
from agentcap_cli.harness.services import (
    EMBEDDED_MODEL,
    Services,
    UpstreamUnreachable,
    provider_of,
)
from agentcap_cli.main import workspace_option
from agentcap_cli.runs.record import RUN_JSON, RunRecord, load_run
from agentcap_cli.runs.workspace import agentcap_home, new_run_dir
from sandbox.agents import UnknownAgent, get_agent
from sandbox.podman import SandboxError

log = logging.getLogger("agentcap.run")


def _agents(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str]:
    names = [n.strip() for v in value for n in v.split(",") if n.strip()]
    for name in names:
        try:
            get_agent(name)
        except UnknownAgent as exc:
            raise click.BadParameter(str(exc)) from None
    return names


def _upstream(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        checked(value)  # https://host, https://host/v1 and …/v1/ name the same API
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value.rstrip("/")


def _shard(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        return parse_shard(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _resume_dir(value: str, flag: str) -> Path:
    for candidate in (Path(value), agentcap_home() / value):
        if (candidate / RUN_JSON).is_file():
            return candidate
    raise click.BadParameter(f"{value!r}: no {RUN_JSON} there nor under {agentcap_home()}", param_hint=flag)


REPLAY_CONFLICTS = ("agents", "model", "upstream", "api_key", "tasks_file", "turns", "followup", "sandbox_dir",
                    "skills", "tool_dirs", "resume", "shard")


def _replay(ctx: click.Context, value: str, err: Console, verbose: int) -> None:
    """``agentcap run --replay RUN``: the recorded run again, answered from its own captures; exits."""
    for name in REPLAY_CONFLICTS:
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
            opt = next(p for p in ctx.command.params if p.name == name)
            flag = max(opt.opts, key=len)
            raise click.BadParameter("cannot be combined with --replay (the recorded run's own is used)",
                                     param_hint=f"'{flag}'")
    src = _resume_dir(value, "--replay").resolve()
    record = load_run(src)
    if record.kind != "corpus":
        raise click.BadParameter(f"{src.name} is a {record.kind} run: a suite is replayed with `agentcap test "
                                 "--record-mode once`", param_hint="--replay")
    if not (src / "captures").is_dir() or not any((src / "captures").iterdir()):
        raise click.BadParameter(f"{src.name} has no captures to replay", param_hint="--replay")
    params = ctx.params
    given = lambda name: ctx.get_parameter_source(name) != ParameterSource.DEFAULT  # noqa: E731
    tasks, opts = replay_plan(record, params["jobs"] if given("jobs") else None,
                              params["timeout_s"] if given("timeout_s") else None, params["label"])
    missing = [str(p) for p in opts.skills + opts.tool_dirs if not p.is_dir()]
    if missing:
        raise click.BadParameter(f"the recorded run's skills / tool dirs are gone: {', '.join(missing)}",
                                 param_hint="--replay")
    services = Services(None, None, verbose=verbose >= 2, offline=True,
                        replay={"agentcap_replay": str(src), "agentcap_replay_per": "task",
                                "agentcap_replay_on_miss": "error"})
    try:
        run_dir = new_run_dir(opts.agent, "replay")
        rec = new_record(run_dir, opts, tasks, "replay", f"replay:{record.run_id}", None, replay_of=record.run_id)
        result = _execute(CorpusRun(services, run_dir, rec, opts, err, replay=ReplayCheck(src)), run_dir, err)
    finally:
        services.close()
    sys.exit(0 if result.status == "done" and not any(t.drift for t in result.tasks) else 1)


def _execute(corpus: CorpusRun, run_dir: Path, err: Console) -> RunRecord:
    """One run to its end: the summary on stderr, the run dir on stdout. A sandbox failure or a Ctrl-C
    before the tasks started (e.g. while the image builds) ends the run in run.json and exits 1."""
    try:
        result = corpus.execute()
    except SandboxError as exc:
        corpus.file.finish("failed")
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        corpus.file.finish("interrupted")
        err.print("[yellow]interrupted[/]")
        click.echo(str(run_dir))
        sys.exit(1)
    err.print(summary_table(result))
    click.echo(str(run_dir))
    return result


@dataclass
class Plan:
    """One run to make: a new one over ``tasks``, or an interrupted one to resume (``record``)."""

    opts: RunOptions
    tasks: list[Task] = field(default_factory=list)
    shard: str | None = None
    resume: tuple[Path, RunRecord] | None = None


def _resume_plan(ctx: click.Context, resume: str) -> tuple[Plan, str | None]:
    """The interrupted run's own options (``--jobs``, ``--timeout``, ``--followup-fallback`` given now
    win) and its upstream."""
    run_dir = _resume_dir(resume, "--resume")
    record = load_run(run_dir)
    if record.kind == "proxy":
        raise click.BadParameter(f"{run_dir.name} is a proxy run: it has no tasks to resume", param_hint="--resume")
    if record.replay_of:
        raise click.BadParameter(f"{run_dir.name} is a replay of {record.replay_of}: replay that run again "
                                 "instead", param_hint="--resume")
    o = record.options
    opts = RunOptions(agent=record.agent, model=record.model, turns=record.turns_per_task, followup=record.followup,
                      timeout_s=float(o.get("timeout_s") or 600), jobs=int(o.get("jobs") or 1), label=record.label,
                      sandbox_dir=Path(o["sandbox_dir"]) if o.get("sandbox_dir") else None,
                      skills=[Path(p) for p in o.get("skills") or []],
                      tool_dirs=[Path(p) for p in o.get("tool_dirs") or []],
                      followup_fallback=str(o.get("followup_fallback") or "error"))
    for name in ("followup_fallback", "jobs", "timeout_s"):
        if ctx.get_parameter_source(name) != ParameterSource.DEFAULT:
            setattr(opts, name, ctx.params[name])
    upstream = None if record.provider == "scripted" else record.upstream
    return Plan(opts, resume=(run_dir, record)), upstream


def _new_plans(agents: list[str], model: str | None, upstream: str | None, tasks_file: Path | None,
               shard: tuple[int, int] | None, **options: Any) -> list[Plan]:
    """One plan per agent over the same corpus (or its shard)."""
    if not agents:
        raise click.UsageError("give --agent (or --resume RUN)")
    if tasks_file is None:
        raise click.UsageError("give --tasks FILE (or --resume RUN)")
    if upstream and not model:
        raise click.UsageError("give --model with --upstream (the embedded upstream needs none)")
    try:
        tasks = load_tasks(tasks_file)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--tasks") from None
    shard_text = None
    if shard:
        tasks, shard_text = take_shard(tasks, *shard), f"{shard[0]}/{shard[1]}"
        if not tasks:
            raise click.BadParameter(f"shard {shard_text} of {len(load_tasks(tasks_file))} tasks is empty",
                                     param_hint="--shard")
    sandbox_dir, skills, tool_dirs = options.pop("sandbox_dir"), options.pop("skills"), options.pop("tool_dirs")
    # mounts need absolute paths: the same path inside the container as here
    return [Plan(RunOptions(agent=name, model=model or EMBEDDED_MODEL, **options,
                            sandbox_dir=sandbox_dir.resolve() if sandbox_dir else None,
                            skills=[p.resolve() for p in skills], tool_dirs=[p.resolve() for p in tool_dirs]),
                 tasks, shard_text)
            for name in agents]


def _setup_logging(verbose: int, console: Console) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)],
                        force=True)


@click.command()
@click.option("--agent", "agents", multiple=True, callback=_agents, envvar="AGENTCAP_AGENT", metavar="NAME[,NAME]",
              help="The agent (repeat, or a comma list: one run per agent over the same corpus).  [env AGENTCAP_AGENT]")
@click.option("--model", envvar="AGENTCAP_MODEL",
              help=f"Model name sent to the upstream (default with the embedded upstream: {EMBEDDED_MODEL}).  "
                   "[env AGENTCAP_MODEL]")
@click.option("--upstream", callback=_upstream, envvar="AGENTCAP_UPSTREAM", metavar="URL",
              help="Model API, e.g. https://router.huggingface.co (a final /v1 may be given or not; default: the "
                   "embedded scripted model, no network needed).  [env AGENTCAP_UPSTREAM]")
@click.option("--api-key", envvar="AGENTCAP_API_KEY", metavar="KEY",
              help="Upstream key; for *.huggingface.co when unset: HF_TOKEN, then the `hf auth login` token. Only the "
                   "proxy sees it; -v says which source was used.  [env AGENTCAP_API_KEY]")
@click.option("--tasks", "tasks_file", type=click.Path(dir_okay=False, path_type=Path), envvar="AGENTCAP_TASKS",
              help="The corpus: .txt (a prompt per line), .yaml or .jsonl ({id?, prompt, turns?, followups?}).  "
                   "[env AGENTCAP_TASKS]")
@click.option("--turns", default=1, type=click.IntRange(1, 100), envvar="AGENTCAP_TURNS",
              help="Turns per task (a task's own 'turns' wins).  [env AGENTCAP_TURNS]")
@click.option("--followup", default="continue", type=click.Choice(MODES), envvar="AGENTCAP_FOLLOWUP",
              help="What the user says after turn 1 (a task's own 'followups' win).  [env AGENTCAP_FOLLOWUP]")
@click.option("--followup-fallback", default="error", type=click.Choice(FALLBACKS), envvar="AGENTCAP_FOLLOWUP_FALLBACK",
              help="When a synthesized follow-up fails: 'error' stops the task (recorded in run.json), 'continue' "
                   "says 'continue' instead (recorded per turn).  [env AGENTCAP_FOLLOWUP_FALLBACK]")
@click.option("--timeout", "timeout_s", default=600.0, type=click.FloatRange(1),
              envvar=["AGENTCAP_TURN_TIMEOUT", "AGENTCAP_TIMEOUT"],
              help="Seconds per turn before its container is killed.  [env AGENTCAP_TURN_TIMEOUT]")
@click.option("--label", envvar="AGENTCAP_LABEL", help="A free label kept in run.json.  [env AGENTCAP_LABEL]")
@click.option("--sandbox", "sandbox_dir", type=click.Path(file_okay=False, path_type=Path), envvar="AGENTCAP_SANDBOX",
              help="Put task workspaces under DIR/<task> instead of the run dir.  [env AGENTCAP_SANDBOX]")
@click.option("--skills", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              envvar="AGENTCAP_SKILLS", help="A skills dir, mounted read-only (repeatable).  [env AGENTCAP_SKILLS]")
@click.option("--tool-dir", "tool_dirs", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              envvar="AGENTCAP_TOOL_DIR", help="A dir of tools, read-only and first on PATH (repeatable).  "
                                                "[env AGENTCAP_TOOL_DIR]")
@click.option("-j", "--jobs", default=1, type=click.IntRange(1, 64), envvar="AGENTCAP_JOBS",
              help="Tasks in parallel.  [env AGENTCAP_JOBS]")
@click.option("--resume", "resume", metavar="RUN", envvar="AGENTCAP_RESUME",
              help="Continue an interrupted run (its dir or its name) from each task's first incomplete turn.  "
                   "[env AGENTCAP_RESUME]")
@click.option("--shard", callback=_shard, envvar="AGENTCAP_SHARD", metavar="I/N",
              help="Only shard I of N of the corpus (every N-th task from the I-th).  [env AGENTCAP_SHARD]")
@click.option("--replay", "replay", metavar="RUN", envvar="AGENTCAP_RUN_REPLAY",
              help="Re-run a recorded corpus run (its dir or name): same agent, model, tasks and turns, every call "
                   "answered from that run's captures, offline; each task's first drifted call goes to run.json.  "
                   "[env AGENTCAP_RUN_REPLAY]")
@click.option("-v", "--verbose", count=True, help="More logs on stderr (-vv: debug, and the proxy's own log).")
@workspace_option
@click.pass_context
def run(ctx: click.Context, agents: list[str], model: str | None, upstream: str | None, api_key: str | None,
        tasks_file: Path | None, turns: int, followup: str, followup_fallback: str, timeout_s: float, label: str | None,
        sandbox_dir: Path | None, skills: tuple[Path, ...], tool_dirs: tuple[Path, ...], jobs: int,
        resume: str | None, shard: tuple[int, int] | None, replay: str | None, verbose: int) -> None:
    """Run AGENT over a corpus of prompts, every turn in a fresh sandbox, every model call captured.

    Prints each run's directory on stdout; progress and the summary go to stderr.
    Exit 0 when every task completed all its turns (and, with --replay, none drifted), 1 otherwise,
    2 on bad input.
    """
    err = err_console()
    _setup_logging(verbose, err)
    if replay:
        _replay(ctx, replay, err, verbose)
    if resume:
        plan, upstream = _resume_plan(ctx, resume)
        plans = [plan]
    else:
        plans = _new_plans(agents, model, upstream, tasks_file, shard, turns=turns, followup=followup,
                           followup_fallback=followup_fallback, timeout_s=timeout_s, jobs=jobs, label=label,
                           sandbox_dir=sandbox_dir, skills=skills, tool_dirs=tool_dirs)

    given = "AGENTCAP_API_KEY" if ctx.get_parameter_source("api_key") == ParameterSource.ENVIRONMENT else "--api-key"
    key = upstream_key(api_key, given, upstream)
    if upstream:
        log.info("upstream key: %s", f"from {key.source}" if key.value else "none (requests go without one)")
        if not key.value and is_huggingface(upstream):
            log.warning("no key for %s: set HF_TOKEN, run `hf auth login`, or give --api-key", upstream)
    try:
        if upstream:  # the embedded scripted upstream is ours: nothing to ask
            probe(upstream, key.value, plans[0].opts.model)
        services = Services(upstream, key.value, verbose=verbose >= 2)
    except UpstreamUnreachable as exc:
        raise click.BadParameter(f"{upstream}: {exc}", param_hint="--upstream") from None
    ok = True
    try:
        for plan in plans:
            if plan.resume:
                run_dir, record = plan.resume
            else:
                run_dir = new_run_dir(plan.opts.agent, provider_of(upstream))
                record = new_record(run_dir, plan.opts, plan.tasks, provider_of(upstream),
                                    upstream or "embedded:scripted", plan.shard)
            corpus = CorpusRun(services, run_dir, record, plan.opts, err)
            if plan.resume:
                corpus.prepare_resume()
            result = _execute(corpus, run_dir, err)
            ok = ok and result.status == "done"
            if result.status == "interrupted":
                break
    finally:
        services.close()
    sys.exit(0 if ok else 1)
