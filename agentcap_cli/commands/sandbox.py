"""``agentcap sandbox build|ls|prune`` and ``agentcap doctor``: thin commands over ``sandbox``."""

from __future__ import annotations

import json
import sys
import time

import click
from rich.table import Table

from agentcap_cli.console import err_console, out_console
from sandbox.agents import UnknownAgent, agent_names, get_agent
from sandbox.container import Leftover, prune_containers
from sandbox.doctor import FAIL, OK, run_checks
from sandbox.images import ensure_image, list_images
from sandbox.podman import Podman, SandboxError, get_podman

STYLE = {OK: "green", "warn": "yellow", FAIL: "red"}


def _names(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    for name in value:
        if name in ("base", "node"):
            continue
        try:
            get_agent(name)
        except UnknownAgent as exc:
            raise click.BadParameter(str(exc)) from exc
    return value


def _fail(exc: SandboxError) -> None:
    err_console().print(f"[red]error:[/] {exc}", highlight=False)
    sys.exit(1)


@click.group()
def sandbox() -> None:
    """Podman images for the agents, and their leftovers."""


@sandbox.command()
@click.argument("agents", nargs=-1, callback=_names)
@click.option("--rebuild", is_flag=True, help="Build again even when the inputs are unchanged.")
def build(agents: tuple[str, ...], rebuild: bool) -> None:
    """Build the images of AGENTS (default: every agent), each only when its inputs changed.

    Also takes the names of the shared layers: base, node.
    """
    err = err_console()
    names = agents or tuple(agent_names())
    try:
        podman = get_podman()
        with err.status("") as status:
            for name in names:
                started = time.monotonic()
                status.update(f"[bold]{name}[/]")

                def progress(line: str, name: str = name) -> None:
                    if err.is_terminal:
                        status.update(f"[bold]{name}[/] {line}")
                    else:  # a log (CI): one line per build step instead of a spinner
                        err.print(f"  {line}", highlight=False, soft_wrap=True)

                tag = ensure_image(podman, name, progress=progress, rebuild=rebuild)
                err.print(f"[green]✓[/] {name:<15} {tag}  [dim]{time.monotonic() - started:.1f} s[/]")
                click.echo(tag)
    except SandboxError as exc:
        _fail(exc)


@sandbox.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout instead of a table.")
def ls_(as_json: bool) -> None:
    """The images agentcap built (current = what the Containerfiles ask for now)."""
    try:
        rows = list_images(get_podman())
    except SandboxError as exc:
        _fail(exc)
    if as_json:
        for r in rows:
            click.echo(json.dumps({"image": r.name, "tag": r.tag, "current": r.current, "size": r.size,
                                   "created": r.created}))
        return
    table = Table(box=None, header_style="bold")
    for col in ("image", "tag", "current", "size", "created"):
        table.add_column(col, no_wrap=col != "tag", overflow="fold")
    for r in rows:
        table.add_row(r.name, r.tag, "✓" if r.current else "", f"{r.size / 1e6:.0f} MB", r.created[:19])
    out_console().print(table)


@sandbox.command()
@click.option("--all", "everything", is_flag=True, help="Also remove the current images (they rebuild on use).")
@click.option("--run", "runs", multiple=True, metavar="RUN",
              help="Only the containers of run RUN (repeatable); images are left alone.")
def prune(everything: bool, runs: tuple[str, ...]) -> None:
    """Remove the agentcap containers whose owner is gone and the images no Containerfile asks for any more.

    A container of a live run (the process that started it still runs) is kept: one line per kept run says so.
    """
    err = err_console()
    try:
        podman = get_podman()
        gone, kept = [], []
        for labels in ({"run": r} for r in runs) if runs else [{}]:
            removed, alive = prune_containers(podman, **labels)
            gone += removed
            kept += alive
        for c in gone:
            err.print(f"removed container {c.name}", highlight=False)
        for line in _kept_lines(kept):
            err.print(line, highlight=False)
        if not runs:
            _prune_images(podman, everything)
    except SandboxError as exc:
        _fail(exc)


def _prune_images(podman: Podman, everything: bool) -> None:
    err = err_console()
    for r in list_images(podman):
        if r.current and not everything:
            continue
        done = podman.cli(["rmi", r.tag], check=False)
        if done.returncode == 0:
            err.print(f"removed image {r.tag}")
        else:
            err.print(f"[yellow]kept[/] {r.tag}: {done.stderr.strip().splitlines()[-1:] or ''}")


def _kept_lines(kept: list[Leftover]) -> list[str]:
    """One line per run and owner whose containers stay."""
    groups: dict[tuple[str, str], list[str]] = {}
    for c in kept:
        o = c.owner
        who = f"pid {o.pid} on {o.host}" if o else "an unknown owner"
        groups.setdefault((c.run or "-", who), []).append(c.name)
    return [f"kept {len(names)} container(s) of run {run}: its owner ({who}) is still running: {' '.join(names)}"
            for (run, who), names in sorted(groups.items())]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="JSON lines {check, status, detail, fix} on stdout instead of a table.")
def doctor(as_json: bool) -> None:
    """Check what the sandbox needs; each problem comes with the command that fixes it.

    Exit status 0 when nothing failed (warnings are things built on first use).
    """
    checks = run_checks()
    if as_json:
        for c in checks:
            click.echo(json.dumps({"check": c.name, "status": c.status, "detail": c.detail, "fix": c.fix}))
        sys.exit(1 if any(c.status == FAIL for c in checks) else 0)
    table = Table(box=None, header_style="bold")
    for col in ("check", "", "detail", "fix"):
        table.add_column(col, overflow="fold")
    for c in checks:
        table.add_row(c.name, f"[{STYLE[c.status]}]{c.status}[/]", c.detail, c.fix or "")
    out_console().print(table)
    sys.exit(1 if any(c.status == FAIL for c in checks) else 0)
