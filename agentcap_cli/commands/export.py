"""``agentcap export``: runs → datasets (calls and sessions, the agents' traces, the wire-derived
traces) in a directory or on the Hub, through the secret scan (the publish gate:
:mod:`agentcap_cli.export.scan`)."""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from agentcap_cli.console import err_console
from agentcap_cli.export.cards import CardInfo, scan_card, update, write_card
from agentcap_cli.export.egress import verify, verify_text
from agentcap_cli.export.exporter import (
    License,
    Options,
    Staged,
    Target,
    TargetError,
    card_info,
    load_prices,
    parse_license,
    parse_repo,
    repo_names,
    resolve_targets,
    stage,
    staged_footers,
)
from agentcap_cli.export.hostpaths import DETECTOR, HostPaths
from agentcap_cli.export.layers import DECODERS, MAX_DEPTH
from agentcap_cli.export.outdir import OutDir
from agentcap_cli.export.scan import (
    ALLOW_FILE,
    AllowlistError,
    Finding,
    Gate,
    load_allowlist,
)
from agentcap_cli.export.scanners import ENGINES, Engine, ScannerError, label, resolve
from agentcap_cli.runs.workspace import workspace_root

if TYPE_CHECKING:  # huggingface_hub is imported only when a push runs (start-up time of --out)
    from huggingface_hub import HfApi

    from agentcap_cli.export.hub import RepoPlan

SHOWN = 40  # finding lines printed; the rest are in each run's scan.json
STATES = {"blocking": "[red]secret[/]", "redacted": "[yellow]masked[/]", "allowed": "[dim]allowed[/]",
          "unpublished": "[yellow]secret, not published[/]", "left out": "[yellow]left out[/]"}


def _progress(err: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True)


def _gate(workspace: Path, allow_file: Path | None, redact: bool, leave_out: bool = False) -> Gate:
    """The scan's settings: the allowlist given, else the workspace's own when there is one."""
    path = allow_file or (workspace / ALLOW_FILE)
    try:
        allow = load_allowlist(path) if allow_file is not None or path.is_file() else frozenset()
    except AllowlistError as exc:
        raise click.BadParameter(str(exc), param_hint="--secrets-allow") from None
    return Gate(allow, redact, leave_out)


def _stage(targets: list[Target], out: Path, err: Console, gate: Gate | None, options: Options,
           engines: list[Engine]) -> list[Staged]:
    with _progress(err) as progress:
        bar = progress.add_task("parquet" + (" + secret scan" if gate else ""), total=sum(t.captures for t in targets))
        return stage(targets, out, progress=lambda n: progress.advance(bar, n), gate=gate, options=options,
                     engines=engines)


def _engines(names: tuple[str, ...], no_scan: bool) -> list[Engine]:
    if no_scan:
        return []
    try:
        return resolve(names)
    except ScannerError as exc:
        raise click.BadParameter(str(exc), param_hint="--scanner") from None


def _scanned(cards: dict[str, CardInfo], gate: Gate | None, found: list[Finding]) -> dict[str, CardInfo]:
    """Each dataset's card, scanned (and masked under --redact) like everything else published."""
    return cards if gate is None else {k: scan_card(c, k, gate, found) for k, c in cards.items()}


def _report(targets: list[Target], card_findings: list[Finding], err: Console) -> list[Finding]:
    """Print what was skipped, the runs that gave no calls, and what the scan found; return the
    findings that block."""
    for t in targets:
        if not t.calls:
            err.print(f"[yellow]warning:[/] {escape(str(t.run_dir))}: no captured calls — nothing in the captures "
                      "dataset from it", highlight=False, soft_wrap=True)
        for line in t.report.skipped:
            err.print(f"[yellow]warning:[/] {escape(str(t.run_dir))}/{escape(line)} — skipped", highlight=False,
                      soft_wrap=True)
    found = [(f"{t.run_dir}/", f) for t in targets for f in t.report.findings] + [("", f) for f in card_findings]
    found.sort(key=lambda item: item[1].state != "blocking")  # what blocks first
    for where, f in found[:SHOWN]:
        err.print(f"{STATES[f.state]} {escape(where + str(f))}  [dim]fingerprint {f.fingerprint[:16]}[/]",
                  highlight=False, soft_wrap=True)
    if len(found) > SHOWN:
        err.print(f"… and {len(found) - SHOWN} more: every finding is in each run's scan.json")
    masked = sum(f.state == "redacted" for _, f in found)
    if masked:
        err.print(f"[yellow]--redact:[/] {masked} secret(s) masked in what is published (the run's own files "
                  "are unchanged)")
    return [f for _, f in found if f.state == "blocking"]


def _checks(targets: list[Target], err: Console) -> None:
    """Where an agent's own trace and the wire disagree (calls, tool calls, tokens), per session."""
    for t in targets:
        for session_id, diffs in t.checks:
            err.print(f"[yellow]trace check:[/] {escape(session_id)}: {escape('; '.join(diffs))}", highlight=False,
                      soft_wrap=True)


def _summary(staged: list[Staged], names: dict[str, str], title: str) -> Table:
    table = Table(title=title, header_style="bold")
    for col in ("dataset", "file", "rows", "state"):
        table.add_column(col, overflow="fold", justify="right" if col == "rows" else "left")
    for s in staged:
        for f in s.files:
            table.add_row(names.get(s.name, s.name), s.repo_path(f), str(f.rows),
                          "new" if f.new else "[dim]already exported[/]")
    return table


def _coverage(staged: list[Staged], targets: list[Target], engines: list[Engine], gate: Gate | None,
              extra: list[Finding]) -> str:
    """What the secret scan read before this export was published, and what it found (a push or an
    --out that got here has no blocking finding left)."""
    if gate is None:
        return "[yellow]secret scan:[/] skipped (--no-scan): nothing checked these files for keys"
    rows = {k: sum(s.count(k) for s in staged) for k in ("calls", "sessions", "session")}
    rows["files"] = sum(s.count("files") for s in staged if s.kind == "traces")  # the agents' own files
    found = [f for t in targets for f in t.report.findings] + extra
    states = {state: sum(f.state == state for f in found) for state in ("blocking", "allowed", "redacted", "left out")}
    rest = ", ".join(f"{n} {'masked' if st == 'redacted' else st}" for st, n in states.items() if n and st != "blocking")
    return (f"secret scan: {rows['calls']} call rows, {rows['sessions']} session rows, {rows['files']} trace files, "
            f"{rows['session']} session files, {len(targets)} run.json, {len(staged)} cards; decode-through "
            f"{', '.join(d.name for d in DECODERS)} (up to {MAX_DEPTH} layers deep; archives, compression, SQLite, PDF); "
            f"scanners: {label(engines)}; findings: {states['blocking']} blocking" + (f" ({rest})" if rest else ""))


def _license(value: str | None, name: str | None, link: str | None) -> License | None:
    try:
        return parse_license(value, name, link)
    except TargetError as exc:
        raise click.BadParameter(str(exc), param_hint="--license") from None


def _options(prices: Path | None, with_failed: bool) -> Options:
    try:
        return Options(load_prices(prices) if prices else {}, with_failed)
    except TargetError as exc:
        raise click.BadParameter(str(exc), param_hint="--prices") from None


@click.command()
@click.argument("runs", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every run under the workspace.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), envvar="AGENTCAP_EXPORT_OUT",
              help="Write the datasets here (captures/, <agent>-traces/, wire-traces/).  [env AGENTCAP_EXPORT_OUT]")
@click.option("--push", metavar="OWNER/BASE", envvar="AGENTCAP_PUSH",
              help="Publish to the Hub as OWNER/BASE-captures, OWNER/BASE-<agent>-traces and OWNER/BASE-wire-traces, "
                   "gathered in a collection OWNER/BASE (hf://datasets/ accepted).  [env AGENTCAP_PUSH]")
@click.option("--no-scan", is_flag=True, help="Skip the secret scan (a warning says so).")
@click.option("--redact", is_flag=True, envvar="AGENTCAP_REDACT",
              help="Publish masked copies of the secrets the scan finds instead of refusing (the run's own "
                   "files stay as they are).  [env AGENTCAP_REDACT]")
@click.option("--leave-out-unreadable", "leave_out", is_flag=True, envvar="AGENTCAP_LEAVE_OUT_UNREADABLE",
              help="A trace file the scan cannot read (encrypted, an unknown binary, an archive it cannot open) is "
                   "left out of the traces datasets, and said so, instead of blocking.  [env AGENTCAP_LEAVE_OUT_UNREADABLE]")
@click.option("--secrets-allow", "allow_file", type=click.Path(dir_okay=False, path_type=Path),
              envvar="AGENTCAP_SECRETS_ALLOW",
              help=f"Allowlist of finding fingerprints (false positives). Default: {ALLOW_FILE} in the workspace, "
                   "when there is one.  [env AGENTCAP_SECRETS_ALLOW]")
@click.option("--license", "license_id", metavar="ID", envvar="AGENTCAP_LICENSE",
              help="The datasets' license as the Hub names it (an SPDX-style id: mit, apache-2.0, cc-by-4.0 …), "
                   "or 'other' with --license-name and --license-link. Unset: the cards say none is stated.  "
                   "[env AGENTCAP_LICENSE]")
@click.option("--license-name", metavar="NAME", envvar="AGENTCAP_LICENSE_NAME",
              help="With --license other: the license's short name (a-z, 0-9, -).  [env AGENTCAP_LICENSE_NAME]")
@click.option("--license-link", metavar="URL", envvar="AGENTCAP_LICENSE_LINK",
              help="With --license other: where its text is (a URL, or a file in the repo).  "
                   "[env AGENTCAP_LICENSE_LINK]")
@click.option("--prices", "prices_file", type=click.Path(dir_okay=False, path_type=Path), envvar="AGENTCAP_PRICES",
              help="YAML/JSON: model → {input, output, cached_input} USD per million tokens (an agentcap.yaml "
                   "with a prices: key works): the sessions' cost_usd.  [env AGENTCAP_PRICES]")
@click.option("--with-failed-calls", is_flag=True, envvar="AGENTCAP_WITH_FAILED_CALLS",
              help="Count calls that failed upstream in the sessions (they are left out by default).  "
                   "[env AGENTCAP_WITH_FAILED_CALLS]")
@click.option("--scanner", "scanners", multiple=True, metavar="NAME", envvar="AGENTCAP_SCANNER",
              help=f"Also run a maintained secret scanner over each run's files, never verifying what it finds: "
                   f"auto (the default: trufflehog when it is on PATH), {', '.join(ENGINES)}, or none. "
                   "Repeatable.  [env AGENTCAP_SCANNER]")
@click.option("--dry-run", is_flag=True, help="With --push: print what would be created and uploaded; send nothing.")
@click.option("--workspace", type=click.Path(file_okay=False, path_type=Path), envvar="AGENTCAP_WORKSPACE",
              help="Where run ids are looked up (default: cwd).  [env AGENTCAP_WORKSPACE]")
def export(runs: tuple[str, ...], everything: bool, out_dir: Path | None, push: str | None, no_scan: bool,
           redact: bool, leave_out: bool, allow_file: Path | None, license_id: str | None, license_name: str | None,
           license_link: str | None, prices_file: Path | None, with_failed_calls: bool, scanners: tuple[str, ...],
           dry_run: bool, workspace: Path | None) -> None:
    """Export RUNS (run dirs, captures dirs or run ids) as datasets with cards: the calls and the
    sessions (parquet), the agents' own session traces and the sessions rebuilt from the wire (files
    the Hub's trace viewer renders).

    Everything that would be published is scanned for secrets first (after decoding base64 and
    content-encodings and joining streamed text), and for absolute paths of this machine (the home,
    the workspace, the run dirs, the cwd); any finding blocks a push, unless allowlisted or (a
    secret) masked with --redact. Exit 0 when done, 1 when the scan or the Hub refused, 2 on bad input.
    """
    err = err_console()
    if (out_dir is None) == (push is None):
        raise click.UsageError("give exactly one of --out DIR or --push OWNER/BASE")
    if dry_run and push is None:
        raise click.UsageError("--dry-run goes with --push")
    if no_scan and (redact or allow_file or leave_out):
        raise click.UsageError("--redact, --secrets-allow and --leave-out-unreadable need the scan: drop --no-scan")
    ws = workspace or workspace_root()
    lic = _license(license_id, license_name, license_link)
    options = _options(prices_file, with_failed_calls)
    try:
        owner, base = parse_repo(push) if push else ("", "")
        targets = resolve_targets(list(runs), everything, ws)
    except TargetError as exc:
        raise click.BadParameter(str(exc), param_hint="--push" if "OWNER/BASE" in str(exc) else "RUNS") from None
    gate = None if no_scan else _gate(ws, allow_file, redact, leave_out)
    engines = _engines(scanners, no_scan)
    if no_scan:
        err.print("[yellow]warning:[/] secret scan skipped (--no-scan): nothing checks these files for keys "
                  "or host paths")

    hosts = None if gate is None else _host_paths(targets, ws)
    if out_dir is not None:
        _to_dir(targets, out_dir, err, gate, options, engines, lic, hosts)
        return
    try:
        work = Path(tempfile.mkdtemp(prefix="agentcap-export-"))
    except OSError as exc:
        _disk_error(exc, Path(tempfile.gettempdir()), "nothing was uploaded", err)
    try:
        try:
            staged = _stage(targets, work, err, gate, options, engines)
        except OSError as exc:  # the staging dir's disk is full (or failing)
            _disk_error(exc, work, "nothing was uploaded", err)
        names = repo_names(owner, base, staged)
        card_findings: list[Finding] = []
        cards = _scanned({s.name: card_info(s, names[s.name], names, staged_footers(s), lic) for s in staged}, gate,
                         card_findings)
        blocking = _report(targets, card_findings, err)
        _checks(targets, err)
        if gate is not None and hosts is not None:
            blocking += _host_report(_host_findings(hosts, staged, {k: update(None, c) for k, c in cards.items()},
                                                    gate), err)
        if blocking:
            _blocked(blocking, err)
        left = _egress(staged, gate, err) if gate is not None else []
        if left:
            _blocked(left, err)
        if dry_run:
            _dry_run(staged, names, owner, base, err)
            return
        _push(staged, names, owner, base, targets, gate, lic, err, hosts)
        err.print(_coverage(staged, targets, engines, gate, card_findings), highlight=False, soft_wrap=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _to_dir(targets: list[Target], out_dir: Path, err: Console, gate: Gate | None, options: Options,
            engines: list[Engine], lic: License | None, hosts: HostPaths | None = None) -> None:
    """``--out``: staged beside ``out_dir``, cards and all, then put in place at once
    (:mod:`agentcap_cli.export.outdir`): a failure or Ctrl-C before that leaves ``out_dir`` as it was."""
    out = OutDir(out_dir, lambda line: err.print(line, highlight=False))
    try:
        with out:
            staged = _stage(targets, out.work, err, gate, options, engines)
            names = {s.name: str(out.final / s.name) for s in staged}
            card_findings: list[Finding] = []
            cards = _scanned({s.name: card_info(s, names[s.name], names, staged_footers(s), lic, local=True)
                              for s in staged}, gate, card_findings)
            blocking = _report(targets, card_findings, err)
            _checks(targets, err)
            if blocking:
                err.print(f"[yellow]warning:[/] {len(blocking)} possible secret(s) in what was exported to {out_dir} "
                          "(--redact masks them; a push would be refused)")
            texts = {}
            for s in staged:
                card = s.root / "README.md"
                fresh = dataclasses.replace(cards[s.name], fresh=any(f.new for f in s.files))
                texts[s.name] = update(card.read_text(encoding="utf-8") if card.exists() else None, fresh)
                write_card(card, texts[s.name])
            if gate is not None and hosts is not None:
                # a local card names its own directory (its load_dataset snippet): that path is the card's
                left = _host_report(_host_findings(hosts, staged, texts, gate, exempt=names.values()), err)
                if left:
                    err.print(f"[yellow]warning:[/] {len(left)} absolute host path(s) in what was exported to "
                              f"{out_dir} (a push would be refused)")
            if gate is not None and gate.redact:
                left = _egress(staged, gate, err)
                if left:
                    err.print(f"[yellow]warning:[/] {len(left)} possible secret(s) left in the files written to "
                              f"{out_dir} after --redact (a push would be refused)")
            out.commit(s.name for s in staged)
    except OSError as exc:
        _disk_error(exc, out.work, f"{out_dir} is as it was", err, out.final)
    err.print(_summary(staged, {s.name: s.name for s in staged}, f"exported to {out_dir}"))
    err.print(_coverage(staged, targets, engines, gate, card_findings), highlight=False, soft_wrap=True)
    for s in staged:
        for f in s.files:
            click.echo(str(out.path(f.path)))


def _disk_error(exc: OSError, work: Path, outcome: str, err: Console, final: Path | None = None) -> NoReturn:
    """A write that failed (a full disk: ENOSPC, EFBIG, EDQUOT; EIO …) as one line, then exit 1. The
    path is the file when the error names one (as it will be under ``final``), else where the export
    was writing."""
    where = Path(exc.filename) if exc.filename else (final or work)
    if final is not None and where.is_relative_to(work):
        where = final / where.relative_to(work)
    what = os.strerror(exc.errno) if exc.errno else str(exc)
    code = f" ({errno.errorcode[exc.errno]})" if exc.errno is not None and exc.errno in errno.errorcode else ""
    err.print(f"[red]error:[/] {escape(str(where))}: {escape(what)}{code} — {escape(outcome)}", highlight=False,
              soft_wrap=True)
    sys.exit(1)


def _dry_run(staged: list[Staged], names: dict[str, str], owner: str, base: str, err: Console) -> None:
    err.print(_summary(staged, names, "dry run: would upload (files already on the Hub are skipped)"))
    for s in staged:
        click.echo(f"repo {names[s.name]} (dataset, private, created if missing)")
        for f in s.files:
            click.echo(f"  add {s.repo_path(f)} ({f.path.stat().st_size} bytes, {f.rows} rows)")
        click.echo("  add/update README.md (dataset card)")
    click.echo(f"collection {owner}/{base} (private, created if missing) with {', '.join(names.values())}")


def _egress(staged: list[Staged], gate: Gate, err: Console) -> list[Finding]:
    """Every file about to leave, read back and scanned strictly (:mod:`agentcap_cli.export.egress`);
    what it still holds is printed and returned."""
    left = []
    for s in staged:
        left += verify([f.path for f in s.files if f.new], s.root, gate.allow)
    for f in left[:SHOWN]:
        err.print(f"{STATES['blocking']} {escape(str(f))} (in what would be uploaded)  "
                  f"[dim]fingerprint {f.fingerprint[:16]}[/]", highlight=False, soft_wrap=True)
    return left


def _blocked(blocking: list[Finding], err: Console) -> None:
    paths = [f for f in blocking if f.detector.startswith(DETECTOR)]
    secrets = [f for f in blocking if not f.detector.startswith(DETECTOR)]
    if secrets:
        err.print(f"[red]push blocked:[/] {len(secrets)} possible secret(s), "
                  f"{len({f.fingerprint for f in secrets})} distinct — nothing was uploaded. Remove them, publish "
                  f"masked copies with --redact, or add false positives' fingerprints to {ALLOW_FILE}")
    if paths:
        err.print(f"[red]push blocked:[/] {len(paths)} absolute host path(s) in what would be published "
                  f"({', '.join(sorted({f.secret for f in paths}))}) — nothing was uploaded. Remove them from the "
                  f"runs, or add the fingerprints of paths meant to be published to {ALLOW_FILE}", highlight=False,
                  soft_wrap=True)
    sys.exit(1)


def _host_paths(targets: list[Target], workspace: Path) -> HostPaths:
    """This machine's paths an export of ``targets`` must not publish (:mod:`agentcap_cli.export.hostpaths`)."""
    home = os.environ.get("HOME")
    dirs = [d for t in targets for d in (t.run_dir, t.run_dir.parent / t.run.run_id)]
    return HostPaths.of(Path(home) if home else Path("/"), Path.cwd(), workspace, dirs, [t.run.run_id for t in targets])


def _host_findings(hosts: HostPaths, staged: list[Staged], cards: dict[str, str], gate: Gate,
                   exempt: Iterable[str] = ()) -> list[Finding]:
    """Host paths in the new files of each staged dataset and in its card as it will be written."""
    found: list[Finding] = []
    for s in staged:
        hosts.check_files([f.path for f in s.files if f.new], s.root, gate, found)
        if s.name in cards:
            hosts.check_bytes(cards[s.name].encode("utf-8"), f"{s.name}/README.md", gate, found, exempt)
    return found


def _host_report(found: list[Finding], err: Console) -> list[Finding]:
    """Print the host paths found (what blocks first); return those that block."""
    found = sorted(found, key=lambda f: f.state != "blocking")
    for f in found[:SHOWN]:
        state = "[red]blocking[/]" if f.state == "blocking" else STATES[f.state]
        err.print(f"{state} {escape(str(f))}  [dim]fingerprint {f.fingerprint[:16]}[/]", highlight=False,
                  soft_wrap=True)
    if len(found) > SHOWN:
        err.print(f"… and {len(found) - SHOWN} more host path(s)")
    return [f for f in found if f.state == "blocking"]


def _push(staged: list[Staged], names: dict[str, str], owner: str, base: str, targets: list[Target],
          gate: Gate | None, lic: License | None, err: Console, hosts: HostPaths | None = None) -> None:
    """Read what the Hub has (the cards describe whole repos), scan the cards again, stage them, then push."""
    from huggingface_hub.errors import HfHubHTTPError

    from agentcap_cli.export.hub import gather, hub_api, push_repo

    api = hub_api()
    if not api.token:
        from huggingface_hub import get_token

        if not get_token():
            err.print("[red]error:[/] no Hugging Face token: set HF_TOKEN or run `hf auth login`")
            sys.exit(1)
    message = f"agentcap export: {len(targets)} run(s) ({', '.join(t.run.run_id for t in targets[:3])}" + \
              (" …)" if len(targets) > 3 else ")")
    try:
        try:  # nothing is uploaded before every card is staged: a full disk stops the push whole
            plans = _plan(api, staged, names, gate, lic, err, hosts)
        except OSError as exc:
            _disk_error(exc, staged[0].root.parent, "nothing was uploaded", err)
        for s in staged:
            plan = plans[s.name]
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


def _plan(api: HfApi, staged: list[Staged], names: dict[str, str], gate: Gate | None, lic: License | None,
          err: Console, hosts: HostPaths | None = None) -> dict[str, RepoPlan]:
    """Each repo's plan (what the Hub has), its final card made from the whole repo, scanned, and
    written to the staging dir."""
    from agentcap_cli.export.hub import plan_repo

    plans = {s.name: plan_repo(api, names[s.name], s.root, [s.repo_path(f) for f in s.files]) for s in staged}
    found: list[Finding] = []
    cards = _scanned({s.name: card_info(s, names[s.name], names, plans[s.name].footers +
                                        staged_footers(s, set(plans[s.name].new)), lic) for s in staged},
                     gate, found)
    finals = {s.name: update(plans[s.name].card, dataclasses.replace(cards[s.name], fresh=bool(plans[s.name].new)))
              for s in staged}
    if gate is not None:  # the cards as the Hub will get them: the owner's parts too
        found += [f for s in staged for f in verify_text(finals[s.name], f"{s.name}/README.md", gate.allow)]
    blocking = [f for f in found if f.state == "blocking"]
    if blocking:
        _report([], blocking, err)
    if gate is not None and hosts is not None:
        paths: list[Finding] = []
        for s in staged:
            hosts.check_bytes(finals[s.name].encode("utf-8"), f"{s.name}/README.md", gate, paths)
        blocking += _host_report(paths, err)
    if blocking:
        _blocked(blocking, err)
    for s in staged:
        write_card(s.root / "README.md", finals[s.name])
    return plans
