"""``agentcap test``, ``agentcap validate``, ``agentcap list``, ``agentcap init``: agent runs as unit tests."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentcap_addons.wire.yamlfile import ConfigError
from agentcap_cli.suite.project import Project, load_project

if TYPE_CHECKING:
    from agentcap_cli.runrecord import RunFile

SCAFFOLD = Path(__file__).resolve().parent.parent / "scaffold"


def _root_option(f):  # noqa: ANN001
    return click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=".",
                        envvar="AGENTCAP_ROOT", show_default=True,
                        help="The test project (holding agentcap.yaml).  [env AGENTCAP_ROOT]")(f)


def _load(root: Path) -> Project:
    try:
        return load_project(root)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--root") from None


@click.command(name="validate")
@_root_option
def validate(root: Path) -> None:
    """Check every file of the project deeply (no model calls): exit 0 when valid, 2 otherwise."""
    project = _load(root)
    n = sum(len(s.agents) * len(s.models) for s in project.scenarios)
    Console(stderr=True).print(f"[green]✓[/] {project.config_file}: {len(project.scenarios)} scenario(s), "
                               f"{len(project.agents)} agent(s), {n} cell(s)")


@click.command(name="list")
@_root_option
def list_(root: Path) -> None:
    """The scenarios and their cells."""
    project = _load(root)
    table = Table(header_style="bold", box=None)
    for col in ("scenario", "agents", "provider", "models", "repeats", "assertions", "judge"):
        table.add_column(col, overflow="fold", no_wrap=col == "scenario")
    for s in project.scenarios:
        table.add_row(s.id, ", ".join(s.agents), project.provider_of(s), ", ".join(s.models), str(s.repeats),
                      str(len(s.assertions)), "yes" if s.judge else "")
    Console().print(table)


@click.command(name="init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """A new test project in DIRECTORY that passes out of the box (scripted model, pi in the sandbox)."""
    if directory.exists() and any(directory.iterdir()):
        raise click.BadParameter(f"{directory} is not empty", param_hint="DIRECTORY")
    shutil.copytree(SCAFFOLD, directory, dirs_exist_ok=True)
    Console(stderr=True).print(f"[green]✓[/] created {directory}: cd {directory} && agentcap test")


@click.command(name="test")
@_root_option
@click.option("--filter", "filter_", help="Only scenarios whose id contains this.")
@click.option("--agent", "agents", multiple=True, help="Only these agents (capability sets); repeatable.")
@click.option("--model", "models", multiple=True, help="Run with these models instead of the configured ones.")
@click.option("--repeat", type=click.IntRange(1, 1000), help="Repeats per cell (overrides the project).")
@click.option("-j", "--jobs", default=1, type=click.IntRange(1, 64), envvar="AGENTCAP_JOBS",
              help="Repeats in parallel.  [env AGENTCAP_JOBS]")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), help="Where reports go.")
@click.option("--no-judge", is_flag=True, help="Skip the LLM judge.")
@click.option("--keep-workspace", is_flag=True, help="Keep each repeat's workspace in the run dir.")
@click.option("-v", "--verbose", count=True, help="More logs on stderr.")
def test(root: Path, filter_: str | None, agents: tuple[str, ...], models: tuple[str, ...], repeat: int | None,
         jobs: int, report_dir: Path | None, no_judge: bool, keep_workspace: bool, verbose: int) -> None:
    """Run every cell (scenario × agent × model) with its repeats; exit 0 only when all required checks pass."""
    from agentcap_cli.modelserver import ModelServer, make_responder
    from agentcap_cli.services import Services, UpstreamUnreachable
    from agentcap_cli.suite.report import build, write_reports
    from agentcap_cli.suite.runner import SuiteRun, plan
    from agentcap_cli.workspace import new_run_dir
    from sandbox.podman import SandboxError

    err = Console(stderr=True)
    project = _load(root)
    units = plan(project, filter=filter_, agents=list(agents) or None, models=list(models) or None, repeat=repeat)
    if not units:
        raise click.BadParameter("no cell matches the filters", param_hint="--filter/--agent")
    up = project.upstream
    key = os.environ.get(up.api_key_env) if up.api_key_env else None
    judge_server = None
    os.environ.setdefault("AGENTCAP_WORKSPACE", str(project.root))
    try:
        services = Services(up.url, key, verbose=verbose >= 2, script=str(up.script) if up.script else None)
    except UpstreamUnreachable as exc:
        raise click.BadParameter(f"{up.url}: {exc}", param_hint="upstream") from None
    try:
        ju = project.judge_upstream
        if ju is not None and not no_judge:
            if ju.script:
                judge_server = ModelServer(make_responder(script=str(ju.script))).start()
                services.judge_base_url = judge_server.url + "/v1"
            else:
                services.judge_base_url = ju.url
        run_dir = new_run_dir("suite", project.root.name)
        run_file = _run_file(run_dir, project, units, up)
        started = time.monotonic()
        suite = SuiteRun(project, services, run_dir, no_judge=no_judge, keep_workspace=keep_workspace, console=err)
        try:
            records = suite.run(units, jobs)
        except SandboxError as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False)
            sys.exit(1)
        results = build(records, {"project": str(project.root), "run_id": run_dir.name, "run_dir": str(run_dir),
                                  "jobs": jobs, "wall_s": round(time.monotonic() - started, 3)})
        by_task = {f"{r['cell']}#{r['repeat']}": r for r in records}
        for t in run_file.record.tasks:
            r = by_task.get(t.task_id)
            if r is not None:
                t.completed_turns = r["turns"] if r["passed"] else 0
                t.aborted_reason = None if r["passed"] else (r["error"] or "checks failed")
        if suite.interrupted:
            results["passed"] = False
            results["interrupted"] = True
        run_file.finish("interrupted" if suite.interrupted else "done" if results["passed"] else "failed")
        reports = report_dir or project.report_dir
        write_reports(reports, results)
    finally:
        services.close()
        if judge_server is not None:
            judge_server.stop()
    _summary(err, results)
    click.echo(str(reports))
    sys.exit(0 if results["passed"] else 1)


def _run_file(run_dir: Path, project: Project, units: list, up: object) -> "RunFile":
    """run.json for the suite run (kind "suite"), so `agentcap ls` / export / inspect list it like any run."""
    from agentcap_addons.wire.store import rfc3339_ns
    from agentcap_cli.runrecord import RunFile, RunRecord, TaskRecord
    from agentcap_cli.services import provider_of

    rec = RunRecord(run_id=run_dir.name, kind="suite", agent=",".join(sorted({u.provider for u in units})),
                    model=",".join(sorted({u.model for u in units})),
                    provider="scripted" if getattr(up, "script", None) else provider_of(getattr(up, "url", None)),
                    upstream=getattr(up, "url", None) or f"script:{getattr(up, 'script', '')}", label=project.root.name,
                    turns_per_task=max(u.scenario.max_turns for u in units), followup="continue",
                    started_at=rfc3339_ns(),
                    tasks=[TaskRecord(f"{u.cell}#{u.repeat}", u.scenario.prompt, u.scenario.max_turns) for u in units])
    run_file = RunFile(run_dir, rec)
    run_file.save()
    return run_file


def _summary(err: Console, results: dict) -> None:
    table = Table(title=f"agentcap test — {'passed' if results['passed'] else 'FAILED'}", header_style="bold")
    for col in ("cell", "pass", "rate (95% CI)", "tokens", "time s", "judge", "flaky"):
        table.add_column(col)
    for cell, c in results["cells"].items():
        lo, hi = c["wilson_95"]
        style = "green" if c["passed"] == c["repeats"] else "red"
        table.add_row(escape(cell), f"[{style}]{c['passed']}/{c['repeats']}[/]", f"{c['pass_rate']:.0%} ({lo:.0%}–{hi:.0%})",
                      f"{c['tokens']['mean'] or 0:.0f}", f"{c['duration_s']['mean'] or 0:.1f}",
                      "-" if c["judge_score"]["mean"] is None else f"{c['judge_score']['mean']:.2f}",
                      "⚠" if c["flaky"] else "")
    err.print(table)
    for r in results["records"]:
        if not r["passed"]:
            bad = [f"{a['name']}: {a['detail']}" for a in r["assertions"] if a["required"] and not a["passed"]]
            err.print(f"[red]✗[/] {escape(r['cell'])}#{r['repeat']}: "
                      + escape("; ".join(([r["error"]] if r["error"] else []) + bad)), highlight=False)
