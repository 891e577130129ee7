"""``agentcap test``, ``agentcap validate``, ``agentcap list``, ``agentcap init``: agent runs as unit tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentcap_addons.wire.yamlfile import ConfigError
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
@click.option("--filter", "filter_", help="Only cells whose id (scenario id, or id[agent]) contains this.")
@click.option("--provider", envvar="AGENTCAP_PROVIDER",
              help="The harness for scenarios that do not pin one (claude = claude-code, pi, codex, …, or a plugin "
                   "provider).  [env AGENTCAP_PROVIDER]")
@click.option("--agent", "agents", multiple=True,
              help="Run with this agent (agents/<name>/capabilities.yaml) instead of each scenario's agent: one cell "
                   "per --agent; repeatable.")
@click.option("--model", "models", multiple=True, help="Run with these models instead of the configured ones; repeatable.")
@click.option("--repeat", type=click.IntRange(1, 1000), help="Repeats per cell (overrides the project).")
@click.option("--upstream", envvar="AGENTCAP_UPSTREAM",
              help="Model API for every provider (https://host, …/v1), instead of the project's or the harness's "
                   "own.  [env AGENTCAP_UPSTREAM]")
@click.option("-j", "--jobs", default=1, type=click.IntRange(1, 64), envvar="AGENTCAP_JOBS",
              help="Repeats in parallel.  [env AGENTCAP_JOBS]")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where reports go (default: report.dir of the project, reports/).")
@click.option("--no-judge", is_flag=True, help="Skip the LLM judge.")
@click.option("--keep-workspace", is_flag=True, help="Keep each repeat's workspace in the run dir.")
@click.option("-v", "--verbose", count=True, help="Per-trial lines (-v); the proxy's log too (-vv).")
def test(root: Path, filter_: str | None, provider: str | None, agents: tuple[str, ...], models: tuple[str, ...],
         repeat: int | None, upstream: str | None, jobs: int, report_dir: Path | None, no_judge: bool,
         keep_workspace: bool, verbose: int) -> None:
    """Run every cell (scenario × agent × model) with its repeats; exit 0 only when all required checks pass."""
    from agentcap_cli.services import UpstreamUnreachable
    from agentcap_cli.suite.runner import plan
    from agentcap_cli.suite.session import SuiteInputError, execute
    from sandbox.podman import SandboxError

    err = Console(stderr=True)
    project = _load(root)
    if provider:
        _check_provider(provider)
    for a in agents:
        if a not in project.agents:
            raise click.BadParameter(f"no agents/{a}/capabilities.yaml in {project.root}", param_hint="'--agent'")
    if report_dir is not None and not report_dir.is_absolute():
        report_dir = project.root / report_dir  # as in agenteval: relative to the project root
    units = plan(project, filter=filter_, agents=list(agents) or None, models=list(models) or None, repeat=repeat,
                 provider=provider)
    if not units:
        raise click.BadParameter("no cell matches the filters", param_hint="'--filter'")
    try:
        results, reports = execute(project, units, jobs=jobs, report_dir=report_dir, no_judge=no_judge,
                                   keep_workspace=keep_workspace, verbose=verbose, upstream=upstream, err=err)
    except SuiteInputError as exc:
        raise click.BadParameter(str(exc), param_hint="upstream") from None
    except UpstreamUnreachable as exc:
        raise click.BadParameter(str(exc), param_hint="upstream") from None
    except SandboxError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    click.echo(str(reports))
    sys.exit(0 if results["passed"] else 1)


def _check_provider(name: str) -> None:
    from agenteval.providers.registry import available, plugin
    from agentcap_cli.suite.project import HARNESS_ALIASES
    from sandbox.agents import UnknownAgent, get_agent

    if plugin(name) is None:
        try:
            get_agent(HARNESS_ALIASES.get(name, name))
        except UnknownAgent:
            raise click.BadParameter(f"unknown provider {name!r}; known: {', '.join(available())}",
                                     param_hint="'--provider'") from None
