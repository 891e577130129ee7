"""``agentcap sandbox build|ls|prune`` and ``agentcap doctor``: thin commands over ``sandbox``."""

from __future__ import annotations

import json
import sys
import time

import click
from rich.table import Table

from agentcap_cli.console import err_console, out_console
from sandbox.agents import UnknownAgent, agent_names, get_agent
from sandbox.container import remove_containers
from sandbox.doctor import FAIL, OK, run_checks
from sandbox.images import ensure_image, list_images
from sandbox.podman import SandboxError, get_podman

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
def prune(everything: bool) -> None:
    """Remove leftover agentcap containers and the images no Containerfile asks for any more."""
    err = err_console()
    try:
        podman = get_podman()
        gone = remove_containers(podman)
        for name in gone:
            err.print(f"removed container {name}")
        for r in list_images(podman):
            if r.current and not everything:
                continue
            done = podman.cli(["rmi", r.tag], check=False)
            if done.returncode == 0:
                err.print(f"removed image {r.tag}")
            else:
                err.print(f"[yellow]kept[/] {r.tag}: {done.stderr.strip().splitlines()[-1:] or ''}")
    except SandboxError as exc:
        _fail(exc)


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
