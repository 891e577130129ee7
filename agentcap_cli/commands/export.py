"""``agentcap export``: runs → parquet datasets (captures + traces) in a directory or on the Hub."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agentcap_cli.export.cards import update
from agentcap_cli.export.exporter import (Staged, Target, TargetError, card_info, parse_repo, repo_names,
                                          resolve_targets, stage)
from agentcap_cli.export.scan import Finding, count_files, scan_run
from agentcap_cli.workspace import workspace_root


def _progress(err: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True)


def _scan(targets: list[Target], err: Console) -> list[tuple[Target, Finding]]:
    found = []
    with _progress(err) as progress:
        bar = progress.add_task("secret scan", total=count_files(t.run_dir for t in targets))
        for t in targets:
            found += [(t, f) for f in scan_run(t.run_dir, progress=lambda n: progress.advance(bar, n))]
    return found


def _stage(targets: list[Target], out: Path, err: Console) -> list[Staged]:
    with _progress(err) as progress:
        bar = progress.add_task("parquet", total=sum(t.captures for t in targets))
        return stage(targets, out, progress=lambda n: progress.advance(bar, n))


def _summary(staged: list[Staged], names: dict[str, str], title: str) -> Table:
    table = Table(title=title, header_style="bold")
    for col in ("dataset", "file", "rows", "state"):
        table.add_column(col, overflow="fold", justify="right" if col == "rows" else "left")
    for s in staged:
        for f in s.files:
            table.add_row(names.get(s.name, s.name), f"data/{f.path.name}", str(f.rows),
                          "new" if f.new else "[dim]already exported[/]")
    return table


@click.command()
@click.argument("runs", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every run under the workspace.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), envvar="AGENTCAP_EXPORT_OUT",
              help="Write the datasets here (captures/, <agent>-traces/).  [env AGENTCAP_EXPORT_OUT]")
@click.option("--push", metavar="OWNER/BASE", envvar="AGENTCAP_PUSH",
              help="Publish to the Hub as OWNER/BASE and OWNER/BASE-<agent>-traces (hf://datasets/ accepted).  "
                   "[env AGENTCAP_PUSH]")
@click.option("--no-scan", is_flag=True, help="Skip the secret scan (a warning says so).")
@click.option("--dry-run", is_flag=True, help="With --push: print what would be created and uploaded; send nothing.")
@click.option("--workspace", type=click.Path(file_okay=False, path_type=Path), envvar="AGENTCAP_WORKSPACE",
              help="Where run ids are looked up (default: cwd).  [env AGENTCAP_WORKSPACE]")
def export(runs: tuple[str, ...], everything: bool, out_dir: Path | None, push: str | None, no_scan: bool,
           dry_run: bool, workspace: Path | None) -> None:
    """Export RUNS (run dirs, captures dirs or run ids) as parquet datasets with cards.

    A secret scan runs first (detect-secrets; trufflehog too when installed, never verifying); any
    finding blocks a push. Exit 0 when done, 1 when the scan or the Hub refused, 2 on bad input.
    """
    err = Console(stderr=True)
    if (out_dir is None) == (push is None):
        raise click.UsageError("give exactly one of --out DIR or --push OWNER/BASE")
    if dry_run and push is None:
        raise click.UsageError("--dry-run goes with --push")
    try:
        owner, base = parse_repo(push) if push else ("", "")
        targets = resolve_targets(list(runs), everything, workspace or workspace_root())
    except TargetError as exc:
        raise click.BadParameter(str(exc), param_hint="--push" if "OWNER/BASE" in str(exc) else "RUNS") from None

    if no_scan:
        err.print("[yellow]warning:[/] secret scan skipped (--no-scan): nothing checks these files for keys")
    else:
        findings = _scan(targets, err)
        for t, f in findings:
            err.print(f"[red]secret[/] {t.run_dir / f.file}:{f.line}: {f.detector}: {f.secret}", highlight=False)
        if findings and push:
            err.print(f"[red]push blocked:[/] {len(findings)} possible secret(s); remove them (or check and "
                      "use --no-scan) — nothing was uploaded")
            sys.exit(1)
        if findings:
            err.print(f"[yellow]warning:[/] {len(findings)} possible secret(s) in what is exported to {out_dir}")

    if out_dir is not None:
        staged = _stage(targets, out_dir, err)
        names = {s.name: s.name for s in staged}
        traces = [s.name for s in staged if s.kind == "traces"]
        for s in staged:
            card = out_dir / s.name / "README.md"
            old = card.read_text(encoding="utf-8") if card.exists() else None
            card.write_text(update(old, card_info(s, s.name, "captures", traces)), encoding="utf-8")
        err.print(_summary(staged, names, f"exported to {out_dir}"))
        for s in staged:
            for f in s.files:
                click.echo(str(f.path))
        return

    work = Path(tempfile.mkdtemp(prefix="agentcap-export-"))
    try:
        staged = _stage(targets, work, err)
        names = repo_names(owner, base, staged)
        captures_repo = names["captures"]
        traces_repos = [names[s.name] for s in staged if s.kind == "traces"]
        if dry_run:
            err.print(_summary(staged, names, "dry run: would upload (files already on the Hub are skipped)"))
            for s in staged:
                click.echo(f"repo {names[s.name]} (dataset, private, created if missing)")
                for f in s.files:
                    click.echo(f"  add data/{f.path.name} ({f.path.stat().st_size} bytes, {f.rows} rows)")
                click.echo("  add/update README.md (dataset card)")
            click.echo(f"collection {owner}/{base} (private, created if missing) with {', '.join(names.values())}")
            return
        _push(work, staged, names, owner, base, captures_repo, traces_repos, targets, err)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _push(work: Path, staged: list[Staged], names: dict[str, str], owner: str, base: str, captures_repo: str,
          traces_repos: list[str], targets: list[Target], err: Console) -> None:
    from huggingface_hub.errors import HfHubHTTPError

    from agentcap_cli.export.hub import RepoPlan, gather, hub_api, push_repo

    api = hub_api()
    if not api.token:
        from huggingface_hub import get_token

        if not get_token():
            err.print("[red]error:[/] no Hugging Face token: set HF_TOKEN or run `hf auth login`")
            sys.exit(1)
    message = f"agentcap export: {len(targets)} run(s) ({', '.join(t.run.run_id for t in targets[:3])}" + \
              (" …)" if len(targets) > 3 else ")")
    try:
        for s in staged:
            plan = RepoPlan(names[s.name], work / s.name, card_info(s, names[s.name], captures_repo, traces_repos),
                            [f"data/{f.path.name}" for f in s.files])
            with err.status(f"pushing {plan.repo_id}"):
                result = push_repo(api, plan, message, lambda line: err.print(line, highlight=False))
            state = f"{len(result.uploaded)} file(s) added" if result.uploaded else "nothing new"
            err.print(f"[green]✓[/] {result.repo_id}: {state}"
                      + (f", {len(result.skipped)} already there" if result.skipped else ""))
            if result.commit_url:
                click.echo(result.commit_url)
        slug = gather(api, owner, base, list(names.values()))
        err.print(f"[green]✓[/] collection {slug}")
    except HfHubHTTPError as exc:
        err.print(f"[red]error:[/] the Hub refused: {exc}", highlight=False)
        sys.exit(1)
