"""One suite invocation, whichever command started it (``agentcap test`` or ``agenteval run``): the
upstream resolved, services up, the repeats run, run.json and the reports written, a summary shown.

Where the model calls go, in order: ``--upstream URL``; the project's ``upstream:`` (a script or a
URL); else what the harness itself would use — for Anthropic Messages harnesses (claude-code)
``ANTHROPIC_BASE_URL`` or the Anthropic API with ``ANTHROPIC_API_KEY``, for OpenAI ones
``OPENAI_BASE_URL`` or the OpenAI API with ``OPENAI_API_KEY`` (environment first, then the project's
``.env``). Without ``ANTHROPIC_API_KEY``, an Anthropic harness's credential is the host's Claude
subscription login (``CLAUDE_CODE_OAUTH_TOKEN``, else ``~/.claude/.credentials.json``), as the claude
CLI itself would use it. The key or token goes to the capture proxy only, never into a sandbox.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentcap_addons.wire.api.apibase import checked
from agentcap_addons.wire.util.errors import InputError
from agentcap_cli.console import err_console, out_console
from agentcap_cli.harness.credentials import (
    CLAUDE_OAUTH_ENV,
    ClaudeLogin,
    CredentialsError,
    claude_credentials_file,
    claude_login,
)
from agentcap_cli.suite.project import Project, harness_name
from agentcap_cli.suite.results import warnings_of

if TYPE_CHECKING:
    from agentcap_cli.runs.record import RunFile
    from agentcap_cli.suite.runner import Unit

HARNESS_DEFAULTS = {  # api → (base URL variable, default URL, key variable)
    "anthropic-messages": ("ANTHROPIC_BASE_URL", "https://api.anthropic.com", "ANTHROPIC_API_KEY"),
    "openai-chat": ("OPENAI_BASE_URL", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    "openai-responses": ("OPENAI_BASE_URL", "https://api.openai.com/v1", "OPENAI_API_KEY"),
}


class SuiteInputError(InputError):
    """Bad input found before anything ran (exit 2); the message names the flag, key or variable."""


@dataclass
class Resolved:
    url: str | None  # None: the scripted model server (script)
    script: str | None
    api_key: str | None
    source: str  # where it came from, for the log and run.json (never the key)
    key_source: str | None = None  # where the key came from, for the log (never the key)
    oauth: bool = False  # api_key is a Claude subscription login (keyauth.py's oauth mode)


def resolve_upstream(project: Project, units: list[Unit], flag: str | None) -> Resolved:
    key_env = project.upstream.api_key_env if project.upstream else None
    if flag:
        return Resolved(flag, None, os.environ.get("AGENTCAP_API_KEY") or _harness_key(units), "--upstream")
    up = project.upstream
    if up is not None:
        key = os.environ.get(key_env) if key_env else None
        if key_env and not key:
            raise SuiteInputError(f"{project.config_file}: upstream.api_key_env: ${key_env} is not set")
        return Resolved(up.url, str(up.script) if up.script else None, key, f"{project.config_file.name} upstream")
    apis = {_api(u) for u in units if _api(u) in HARNESS_DEFAULTS}
    if len({HARNESS_DEFAULTS[a][0] for a in apis}) > 1:
        raise SuiteInputError("the scenarios' providers speak different APIs (Anthropic and OpenAI) and no upstream "
                              "is set: set upstream: in the project or pass --upstream")
    if not apis:  # only plugin providers: whichever API the environment holds a key for
        keyed = [a for a in ("anthropic-messages", "openai-chat") if os.environ.get(HARNESS_DEFAULTS[a][2])]
        if not keyed and (os.environ.get(CLAUDE_OAUTH_ENV) or claude_credentials_file().is_file()):
            keyed = ["anthropic-messages"]
        apis = set(keyed[:1])
    if not apis:
        raise SuiteInputError("no upstream: set upstream: in the project, pass --upstream, or set ANTHROPIC_API_KEY "
                              "/ OPENAI_API_KEY")
    api = apis.pop()
    url_env, default, key_var = HARNESS_DEFAULTS[api]
    key = os.environ.get(key_var)
    login = _claude_login() if not key and api == "anthropic-messages" else None
    if not key and login is None:
        login_hint = f", or a Claude login: ${CLAUDE_OAUTH_ENV} or {claude_credentials_file()}" \
            if api == "anthropic-messages" else ""
        raise SuiteInputError(f"no {key_var} in the environment or in {project.root / '.env'} (the harness's own "
                              f"upstream needs it{login_hint}); or set upstream: in the project, or pass --upstream")
    url = os.environ.get(url_env) or default
    try:
        checked(url)
    except ValueError as exc:
        raise SuiteInputError(f"${url_env}: {exc}") from None
    source = f"${url_env}" if os.environ.get(url_env) else default
    if login is not None:
        return Resolved(url, None, login.token, source, f"Claude login ({login.source})", oauth=True)
    return Resolved(url, None, key, source, f"${key_var}")


def _claude_login() -> ClaudeLogin | None:
    """The host's Claude login; an unusable one is a SuiteInputError (an offline cassette run needs none)."""
    try:
        return claude_login()
    except CredentialsError as exc:
        raise SuiteInputError(str(exc)) from None


def _api(u: Unit) -> str:
    from agenteval.providers.registry import plugin
    from sandbox.agents import get_agent

    return "plugin" if plugin(u.adapter) else get_agent(harness_name(u.adapter)).api


def _harness_key(units: list[Unit]) -> str | None:
    for u in units:
        api = _api(u)
        if api in HARNESS_DEFAULTS and os.environ.get(HARNESS_DEFAULTS[api][2]):
            return os.environ[HARNESS_DEFAULTS[api][2]]
    return None


def execute(project: Project, units: list[Unit], *, jobs: int = 1, report_dir: Path | None = None,
            no_judge: bool = False, keep_workspace: bool = False, verbose: int = 0, upstream: str | None = None,
            err: Console | None = None, pass_rate: float | None = None, maxfail: int | None = None,
            record_mode: str = "none", on_drift: str = "fail", out: Console | None = None) -> tuple[dict[str, Any], Path]:
    """Run ``units``; (results, the reports dir). A cell passes when its pass rate reaches its scenario's
    ``min_pass_rate``, else ``pass_rate``, else 1.0 — and none of its repeats drifted. With a
    ``record_mode`` other than none, repeats are served from / recorded into the project's cassettes
    (suite/cassettes.py); when every repeat is served and a miss fails it, no upstream is needed.
    agenteval's console lines (``scenario …``, ``trial i/N: …``, ``suite: …``) go to ``out`` (stdout),
    logs, progress and the table to ``err``.
    Raises SuiteInputError on bad input (exit 2), UpstreamUnreachable, SandboxError."""
    from agentcap_cli.harness.modelserver import ModelServer, make_responder
    from agentcap_cli.harness.services import Services, UpstreamUnreachable
    from agentcap_cli.runs.workspace import new_run_dir
    from agentcap_cli.suite.cassettes import Cassettes
    from agentcap_cli.suite.report import build, write_reports
    from agentcap_cli.suite.runner import SuiteRun

    err, out = err or err_console(), out or out_console()
    tapes = Cassettes(project.root, record_mode, on_drift) if record_mode != "none" else None
    offline = tapes is not None and tapes.offline(units)
    try:
        up = resolve_upstream(project, units, upstream)
    except SuiteInputError:
        if not offline:
            raise
        up = Resolved(None, None, None, "none: every repeat is served from its cassette")
    if verbose:
        err.print(f"upstream: {'none (offline: cassettes)' if offline else up.url or f'script {up.script}'} "
                  f"(from {up.source}); key: {f'from {up.key_source}' if up.api_key and up.key_source else 'set' if up.api_key else 'none'}",
                  highlight=False)
    notes = tapes.notes(units) if tapes else []
    judge_server = None
    os.environ.setdefault("AGENTCAP_WORKSPACE", str(project.root))
    try:
        services = Services(up.url, up.api_key, verbose=verbose >= 2, script=up.script,
                            replay=tapes.proxy_options() if tapes else None, offline=offline, oauth=up.oauth)
    except UpstreamUnreachable as exc:
        if tapes is None or tapes.mode == "all":
            raise
        live = [f"{u.cell}#{u.repeat}" for u in units if tapes.use(u) != "replay"]
        why = (f"the repeats without a cassette need it: {', '.join(live[:8])}{' …' if len(live) > 8 else ''}"
               if live else f"--on-drift {on_drift} / --record-mode {tapes.mode} need it")
        raise UpstreamUnreachable(f"{exc}; {why}") from None
    try:
        ju = project.judge_upstream
        if ju is not None and not no_judge and not offline:
            if ju.script:
                judge_server = ModelServer(make_responder(script=str(ju.script))).start()
                services.judge_base_url = judge_server.url + "/v1"
            else:
                services.judge_base_url = ju.url
        run_dir = new_run_dir("suite", project.root.name)
        run_file = _run_file(run_dir, project, units, up)
        started = time.monotonic()
        suite = SuiteRun(project, services, run_dir, no_judge=no_judge, keep_workspace=keep_workspace, console=err,
                         verbose=verbose, cassettes=tapes, out=out)
        records = suite.run(units, jobs, maxfail=maxfail)
        gates = {u.cell: u.scenario.min_pass_rate if u.scenario.min_pass_rate is not None else
                 pass_rate if pass_rate is not None else 1.0 for u in units}
        results = build([r.to_dict() for r in records], {"project": str(project.root), "run_id": run_dir.name, "run_dir": str(run_dir),
                                  "jobs": jobs, "wall_s": round(time.monotonic() - started, 3)}, gates)
        if tapes is not None:
            refused = [f"{r.key}: {c['refused']}" for r in records if (c := r.cassette or {}).get("refused")]
            notes += [f"{r.key}: {c['why']}" for r in records if (c := r.cassette or {}).get("why")]
            results["cassettes"] = {"mode": tapes.mode, "on_drift": on_drift, "dir": str(tapes.root),
                                    "offline": offline, "notes": notes, "refused": refused}
            if refused:  # a cassette holding a secret is never written: the run fails
                results["passed"] = results["summary"]["suite_pass"] = False
        if suite.stopped_early:
            results["passed"] = results["summary"]["suite_pass"] = False
            results["stopped_early"] = {"maxfail": maxfail, "not_run": len(units) - len(records)}
        by_task = {r.key: r for r in records}
        for t in run_file.record.tasks:
            r = by_task.get(t.task_id)
            if r is not None:
                t.completed_turns = r.turns if r.passed else 0
                t.aborted_reason = None if r.passed else (r.error or "checks failed")
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
    summary(err, results, out)
    return results, reports


def _run_file(run_dir: Path, project: Project, units: list[Unit], up: Resolved) -> RunFile:
    """run.json for the suite run (kind "suite"), so `agentcap ls` / export / inspect list it like any run."""
    from agentcap_addons.wire.util.clock import rfc3339_ns
    from agentcap_cli.harness.services import provider_of
    from agentcap_cli.runs.record import RunFile, RunRecord, TaskRecord

    rec = RunRecord(run_id=run_dir.name, kind="suite", agent=",".join(sorted({harness_name(u.adapter) for u in units})),
                    model=",".join(sorted({u.model for u in units})),
                    provider="scripted" if up.script else provider_of(up.url) if up.url else "cassettes",
                    upstream=up.url or (f"script:{up.script}" if up.script else "cassettes"), label=project.root.name,
                    turns_per_task=max(u.scenario.turns for u in units), followup="continue",
                    started_at=rfc3339_ns(),
                    tasks=[TaskRecord(f"{u.cell}#{u.repeat}", u.scenario.prompt, u.scenario.turns) for u in units])
    run_file = RunFile(run_dir, rec)
    run_file.save()
    return run_file


def summary(err: Console, results: dict[str, Any], out: Console) -> None:
    """The rich table, each failure (and drift) and warning on one line (on ``err``), then agenteval's
    verdict line (on ``out``)."""
    from agentcap_cli.suite.cassettes import describe

    table = Table(title=f"agentcap test — {'passed' if results['passed'] else 'FAILED'}", header_style="bold")
    for col in ("cell", "pass", "rate (95% CI)", "gate", "tokens", "cost $", "time s", "judge", "flaky"):
        table.add_column(col)
    for cell, c in results["cells"].items():
        lo, hi = c["wilson_95"]
        style = "green" if c["gate_passed"] else "red"
        costs = [r["cost_usd"] for r in results["records"] if r["cell"] == cell and r["cost_usd"] is not None]
        table.add_row(escape(cell), f"[{style}]{c['passed']}/{c['repeats']}[/]", f"{c['pass_rate']:.0%} ({lo:.0%}–{hi:.0%})",
                      f"{c['gate']:.0%}",
                      f"{c['tokens']['mean'] or 0:.0f}", f"{sum(costs) / len(costs):.4f}" if costs else "-",
                      f"{c['duration_s']['mean'] or 0:.1f}",
                      "-" if c["judge_score"]["mean"] is None else f"{c['judge_score']['mean']:.2f}",
                      "⚠" if c["flaky"] else "")
    err.print(table)
    for note in (results.get("cassettes") or {}).get("notes") or []:
        err.print(f"[yellow]cassettes:[/] {escape(note)}", highlight=False, soft_wrap=True)
    for line in (results.get("cassettes") or {}).get("refused") or []:
        err.print(f"[red]error:[/] cassette not written (secret found): {escape(line)}", highlight=False, soft_wrap=True)
    for r in results["records"]:
        if r.get("verdict") == "drift":
            err.print(f"[red]✗[/] {escape(r['cell'])}#{r['repeat']}: drift: {escape(describe(r['drift']))}",
                      highlight=False, soft_wrap=True)
        elif r.get("drift"):
            err.print(f"[yellow]~[/] {escape(r['cell'])}#{r['repeat']}: drifted, went live: "
                      f"{escape(describe(r['drift']))}", highlight=False, soft_wrap=True)
        if not r["passed"] and r.get("verdict") != "drift":
            bad = [f"{a['name']}: {a['detail']}" for a in r["assertions"] if a["required"] and not a["passed"]]
            judge = r.get("judge") or {}
            if judge.get("required") and not judge.get("passed", True):
                bad.append(f"judge: score {judge.get('score')} < {judge.get('min_score')} "
                           f"({judge.get('reasoning') or judge.get('error')})")
            err.print(f"[red]✗[/] {escape(r['cell'])}#{r['repeat']}: "
                      + escape("; ".join(([r["error"]] if r["error"] else []) + bad)), highlight=False, soft_wrap=True)
        for w in warnings_of(r):
            err.print(f"[yellow]![/] {escape(r['cell'])}#{r['repeat']}: {escape(w)}", highlight=False, soft_wrap=True)
    s = results["summary"]
    out.print(f"suite: {s['runs_passed']}/{s['runs_total']} runs passed -> {'PASS' if s['suite_pass'] else 'FAIL'}",
              highlight=False)
