"""``agentcap test``, ``agentcap validate``, ``agentcap list``, ``agentcap init``: agent runs as unit tests."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import click
from click.core import ParameterSource
from rich.markup import escape
from rich.table import Table

from agentcap_addons.wire.api.apibase import checked
from agentcap_addons.wire.util.yamlfile import ConfigError, each_error
from agentcap_cli.console import err_console, out_console
from agentcap_cli.suite.project import Project, load_project

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


def _checked(url: str | None) -> str | None:
    try:
        return None if url is None else checked(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command(name="validate")
@_root_option
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text",
              envvar="AGENTCAP_FORMAT",
              help="text: file:line: key: message on stderr; json: a list on stdout; github: ::error "
                   "annotations on stdout.  [env AGENTCAP_FORMAT]")
def validate(root: Path, fmt: str) -> None:
    """Check every file of the project deeply (no model calls), reporting every problem of every file
    at once: exit 0 when valid, 2 otherwise."""
    errors: list[ConfigError] = []
    project = None
    try:
        project = load_project(root, errors)
    except ConfigError as exc:
        errors += each_error(exc)
    seen: set[str] = set()
    errors = [e for e in errors if not (str(e) in seen or seen.add(str(e)))]  # a shared mock: once
    if fmt == "json":
        click.echo(json.dumps({"valid": not errors, "errors": [
            {"file": e.path, "line": e.line, "key": e.key, "message": e.message} for e in errors]}, indent=2))
    elif fmt == "github":
        for e in errors:  # GitHub's workflow-command escaping: % CR LF in the message
            msg = e.message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
            click.echo(f"::error file={e.path},line={e.line or 1},title={e.key or 'agentcap validate'}::{msg}")
    else:
        err = err_console()
        for e in errors:
            err.print(f"[red]error:[/] {escape(str(e))}")
    if errors:
        sys.exit(2)
    assert project is not None
    n = sum(len(s.agents) * len(s.models) for s in project.scenarios)
    if fmt == "text":
        err_console().print(f"[green]✓[/] {project.config_file}: {len(project.scenarios)} scenario(s), "
                            f"{len(project.agents)} agent(s), {n} cell(s)")


@click.command(name="list")
@_root_option
@click.option("--json", "as_json", is_flag=True, help="JSON lines (one per scenario) on stdout instead of a table.")
def list_(root: Path, as_json: bool) -> None:
    """The scenarios and their cells."""
    project = _load(root)
    if as_json:
        for s in project.scenarios:
            click.echo(json.dumps({"id": s.id, "agents": s.agents, "provider": project.provider_of(s), "models": s.models,
                                   "repeats": s.repeats, "tags": s.tags, "assertions": len(s.assertions),
                                   "judge": s.judge is not None, "mcp": s.mcp}))
        return
    table = Table(header_style="bold", box=None)
    for col in ("scenario", "agents", "provider", "models", "repeats", "assertions", "judge"):
        table.add_column(col, overflow="fold", no_wrap=col == "scenario")
    for s in project.scenarios:
        table.add_row(s.id, ", ".join(s.agents), project.provider_of(s), ", ".join(s.models), str(s.repeats),
                      str(len(s.assertions)), "yes" if s.judge else "")
    out_console().print(table)


@click.command(name="init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """A new test project in DIRECTORY that passes out of the box (scripted model, pi in the sandbox)."""
    if directory.exists() and any(directory.iterdir()):
        raise click.BadParameter(f"{directory} is not empty", param_hint="DIRECTORY")
    shutil.copytree(SCAFFOLD, directory, dirs_exist_ok=True)
    err_console().print(f"[green]✓[/] created {directory}: cd {directory} && agentcap test")


@click.command(name="test")
@_root_option
@click.option("--filter", "filter_", help="Only cells whose id (scenario id, or id[agent]) contains this.")
@click.option("--provider", envvar="AGENTCAP_PROVIDER",
              help="The harness for scenarios that do not pin one (claude = claude-code, pi, codex, …, or a plugin "
                   "provider).  [env AGENTCAP_PROVIDER]")
@click.option("--agent", "agents", multiple=True,
              help="Run with this agent (agents/<name>/capabilities.yaml) instead of each scenario's agent: one cell "
                   "per --agent; repeatable.")
@click.option("--model", "models", multiple=True, help="Run with these models instead of the configured ones; repeatable.")
@click.option("--repeat", type=click.IntRange(1, 1000), help="Repeats per cell (overrides the project).")
@click.option("--upstream", envvar="AGENTCAP_UPSTREAM", callback=lambda ctx, param, value: _checked(value),
              help="Model API for every provider (https://host, …/v1), instead of the project's or the harness's "
                   "own.  [env AGENTCAP_UPSTREAM]")
@click.option("-j", "--jobs", default=1, type=click.IntRange(1, 64), envvar="AGENTCAP_JOBS",
              help="Repeats in parallel.  [env AGENTCAP_JOBS]")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where reports go (default: report.dir of the project, reports/).")
@click.option("--no-judge", is_flag=True, help="Skip the LLM judge.")
@click.option("--keep-workspace", is_flag=True, help="Keep each repeat's workspace in the run dir.")
@click.option("--pass-rate", type=click.FloatRange(0, 1), envvar="AGENTCAP_PASS_RATE",
              help="A cell passes when this share of its repeats pass (a scenario's min_pass_rate wins; "
                   "default 1: all).  [env AGENTCAP_PASS_RATE]")
@click.option("-m", "tags", metavar="EXPR", help="Only scenarios whose tags match, e.g. \"slack and not slow\".")
@click.option("-k", "names", metavar="EXPR", help="Only cells whose id matches, e.g. \"release or notes\" (substrings).")
@click.option("--failed", is_flag=True, help="Only the cells that failed in the last run (from the report dir's results.json).")
@click.option("-x", "--exitfirst", is_flag=True, help="Stop starting repeats at the first failed one (= --maxfail 1).")
@click.option("--maxfail", type=click.IntRange(1), help="Stop starting repeats after N failed ones.")
@click.option("--record-mode", type=click.Choice(["none", "once", "new", "new_episodes", "all"]), default="none",
              envvar="AGENTCAP_RECORD_MODE",
              help="Cassettes (cassettes/<scenario>/<cell>/<repeat>/ in the project): none (not used); once (a repeat "
                   "with one is replayed offline, one without runs live and is recorded); new (as once, and calls a "
                   "cassette lacks go live and are added); all (re-record every repeat).  [env AGENTCAP_RECORD_MODE]")
@click.option("--on-drift", type=click.Choice(["fail", "live", "record"]), default="fail", envvar="AGENTCAP_ON_DRIFT",
              help="A replayed call that matches no recording: fail the repeat (verdict drift); go live for the rest "
                   "of the repeat; or go live and re-record the repeat.  [env AGENTCAP_ON_DRIFT]")
@click.option("-v", "--verbose", count=True, help="Per-trial lines (-v); the proxy's log too (-vv).")
@click.pass_context
def test(ctx: click.Context, root: Path, filter_: str | None, provider: str | None, agents: tuple[str, ...],
         models: tuple[str, ...], repeat: int | None, upstream: str | None, jobs: int, report_dir: Path | None,
         no_judge: bool, keep_workspace: bool, pass_rate: float | None, tags: str | None, names: str | None,
         failed: bool, exitfirst: bool, maxfail: int | None, record_mode: str, on_drift: str, verbose: int) -> None:
    """Run every cell (scenario × agent × model) with its repeats; exit 0 only when all required checks pass."""
    from agentcap_cli.harness.services import UpstreamUnreachable
    from agentcap_cli.suite.runner import plan
    from agentcap_cli.suite.session import SuiteInputError, execute
    from sandbox.podman import SandboxError

    err = err_console()
    project = _load(root)
    if record_mode in ("none", "all") and ctx.get_parameter_source("on_drift") == ParameterSource.COMMANDLINE:
        raise click.BadParameter(f"applies to a replay (--record-mode once or new), not --record-mode {record_mode}",
                                 param_hint="'--on-drift'")
    if provider:
        _check_provider(provider)
    for a in agents:
        if a not in project.agents:
            raise click.BadParameter(f"no agents/{a}/capabilities.yaml in {project.root}", param_hint="'--agent'")
    if report_dir is not None and not report_dir.is_absolute():
        report_dir = project.root / report_dir  # as in agenteval: relative to the project root
    from agentcap_cli.suite.select import SelectError

    cells = _failed_cells(report_dir or project.report_dir) if failed else None
    try:
        units = plan(project, filter=filter_, agents=list(agents) or None, models=list(models) or None, repeat=repeat,
                     adapter=provider, tags=tags, names=names, cells=cells)
    except SelectError as exc:
        raise click.BadParameter(str(exc), param_hint="'-m' / '-k'") from None
    if not units:
        if failed:
            err.print("no cell failed in the last run: nothing to run")
            sys.exit(0)
        raise click.BadParameter("no cell matches the filters", param_hint="'--filter' / '-m' / '-k'")
    try:
        results, reports = execute(project, units, jobs=jobs, report_dir=report_dir, no_judge=no_judge,
                                   keep_workspace=keep_workspace, verbose=verbose, upstream=upstream, err=err,
                                   pass_rate=pass_rate, maxfail=1 if exitfirst else maxfail, record_mode=record_mode,
                                   on_drift=on_drift)
    except SuiteInputError as exc:
        raise click.BadParameter(str(exc), param_hint="upstream") from None
    except UpstreamUnreachable as exc:
        raise click.BadParameter(str(exc), param_hint="upstream") from None
    except SandboxError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    click.echo(str(reports))
    sys.exit(0 if results["passed"] else 1)


def _failed_cells(reports: Path) -> set[str]:
    """The cells that did not pass in the last run, from its results.json."""
    path = reports / "results.json"
    try:
        results = json.loads(path.read_text())
        return {c for c, v in results["cells"].items() if not v.get("gate_passed", v.get("passed") == v.get("repeats"))}
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise click.BadParameter(f"no readable results from a last run at {path} ({exc})", param_hint="'--failed'") from None


def _check_provider(name: str) -> None:
    from agentcap_cli.suite.project import HARNESS_ALIASES
    from agenteval.providers.registry import available, plugin
    from sandbox.agents import UnknownAgent, get_agent

    if plugin(name) is None:
        try:
            get_agent(HARNESS_ALIASES.get(name, name))
        except UnknownAgent:
            raise click.BadParameter(f"unknown provider {name!r}; known: {', '.join(available())}",
                                     param_hint="'--provider'") from None
