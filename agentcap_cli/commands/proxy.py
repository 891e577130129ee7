"""``agentcap proxy``: the capture proxy for a user, in front of one upstream."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from rich.console import Console
from rich.markup import escape

from agentcap_addons.wire.api.apibase import agent_env, checked, shown, split_api_base, split_origin
from agentcap_addons.wire.capture.records import REQUEST_SUFFIX
from agentcap_addons.wire.capture.registry import Attribution, KeyRegistry, new_key
from agentcap_addons.wire.util.files import atomic_write_bytes
from agentcap_cli.console import err_console, out_console
from agentcap_cli.harness.calllog import line_for_event
from agentcap_cli.harness.proxy import ProxyProcess, ProxyStartError, start_proxy
from agentcap_cli.harness.services import UpstreamUnreachable, check_reachable, provider_of
from agentcap_cli.runs.record import RUN_JSON, RunFile, RunRecord, load_run
from agentcap_cli.runs.workspace import new_run_dir
from mcp_mocks.threaded import bind


def split_upstream(url: str) -> tuple[str, str]:
    """``https://host/v1`` → (``https://host``, ``/v1``). mitmproxy's reverse mode takes an origin
    only; the path part becomes the path of the base URL handed to agents."""
    return split_origin(url)


def _upstream(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, str]:
    try:
        return split_api_base(checked(value))  # …/v1 or not: the agents get <proxy><root>/v1 either way
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command()
@click.option("--upstream", required=True, envvar="AGENTCAP_UPSTREAM", callback=_upstream,
              help="Model API to forward to, e.g. https://router.huggingface.co (a final /v1 may be given or not).  "
                   "[env AGENTCAP_UPSTREAM]")
@click.option("--host", default="127.0.0.1", envvar="AGENTCAP_PROXY_HOST", help="Address to listen on.  [env AGENTCAP_PROXY_HOST]")
@click.option("--port", default=8080, type=click.IntRange(0, 65535), envvar="AGENTCAP_PROXY_PORT",
              help="Port to listen on (0: any free port).  [env AGENTCAP_PROXY_PORT]")
@click.option("--dir", "run_dir", type=click.Path(file_okay=False, path_type=Path), envvar="AGENTCAP_DIR",
              help="Run directory for the captures (default: a new .agentcap/proxy-<host>-<UTC time>).  [env AGENTCAP_DIR]")
@click.option("--web", is_flag=True, envvar="AGENTCAP_WEB", help="Run mitmweb (web UI) instead of mitmdump.  [env AGENTCAP_WEB]")
@click.option("--web-port", default=8081, type=click.IntRange(1, 65535), envvar="AGENTCAP_WEB_PORT",
              help="Port of the mitmweb UI (on 127.0.0.1).  [env AGENTCAP_WEB_PORT]")
@click.option("--upstream-key-env", metavar="NAME", envvar="AGENTCAP_UPSTREAM_KEY_ENV",
              help="Environment variable holding the real upstream key. The proxy then hands out its own key "
                   "for the agent and injects the real one; the real key never reaches the agent or disk.  "
                   "[env AGENTCAP_UPSTREAM_KEY_ENV]")
@click.option("--timeout", default=600.0, type=click.FloatRange(min=0, min_open=True),
              envvar=["AGENTCAP_UPSTREAM_TIMEOUT", "AGENTCAP_TIMEOUT"],
              help="Seconds the upstream may stay silent during a call before it is cut off.  "
                   "[env AGENTCAP_UPSTREAM_TIMEOUT]")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path), envvar="AGENTCAP_ENV_FILE",
              help="Also write the export lines to this file once the proxy listens (atomically).  "
                   "[env AGENTCAP_ENV_FILE]")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON line {base_url, env, web_url, captures, pid} instead of the export lines.")
@click.option("--detach", is_flag=True,
              help="Start in the background, print the export lines once it listens, and return; stop it with "
                   "kill $AGENTCAP_PROXY_PID.")
@click.option("-q", "--quiet", is_flag=True, help="No log line per captured call.")
@click.option("-v", "--verbose", is_flag=True, help="mitmproxy's own log too (connections, TLS, …).")
def proxy(upstream: tuple[str, str], host: str, port: int, run_dir: Path | None, web: bool, web_port: int,
          upstream_key_env: str | None, timeout: float, env_file: Path | None, as_json: bool, detach: bool,
          quiet: bool, verbose: bool) -> None:
    """Start the capture proxy in front of UPSTREAM and print how to point an agent at it.

    Every LLM API call that passes through is written to DIR/captures/ and logged as one line on
    stderr. Ctrl-C (or SIGTERM) stops it cleanly.
    """
    err = err_console()
    origin, root = upstream
    if upstream_key_env is not None and not os.environ.get(upstream_key_env):
        raise click.BadParameter(f"environment variable {upstream_key_env} is not set or empty",
                                 param_hint="'--upstream-key-env'")
    for what, (h, n) in (("--port", (host, port)), ("--web-port", ("127.0.0.1", web_port if web else 0))):
        if n and not port_free(h, n):
            raise click.BadParameter(f"{h}:{n} is in use (another proxy?); pick another or use 0 for any free port",
                                     param_hint=f"'{what}'")
    if detach:
        _detach(env_file, as_json)
        return
    try:
        check_reachable(origin, timeout=3)
    except UpstreamUnreachable as exc:
        err.print(f"[yellow]warning:[/] {origin}: {exc} — calls will fail until it answers")
    if run_dir is None:
        run_dir = new_run_dir("proxy", urlsplit(origin).hostname or "upstream")
    run_dir.mkdir(parents=True, exist_ok=True)
    keys_dir = key = None
    if upstream_key_env:
        keys_dir = Path(tempfile.mkdtemp(prefix="agentcap-keys-"))
        key = new_key()
        KeyRegistry(keys_dir).register(key, Attribution(run_id=run_dir.name))
    try:
        p = start_proxy(origin, run_dir, host=host, port=port, keys_dir=keys_dir, upstream_key_env=upstream_key_env,
                        web=web, web_port=web_port, log=sys.stderr.fileno(), events=True,
                        sets={"agentcap_timeout": str(timeout), "termlog_verbosity": "info" if verbose else "warn"})
    except ProxyStartError as e:
        if keys_dir:
            shutil.rmtree(keys_dir, ignore_errors=True)
        err.print(f"[red]error:[/] {e}")
        raise SystemExit(1) from None
    run_file = None
    try:
        run_file = _run_file(run_dir, origin + root, err)
        _announce(p, origin, root, run_dir, key, env_file, as_json)
        _log_calls(p, run_dir / "captures", None if quiet else err)
    except KeyboardInterrupt:
        err.print("stopping…")
    finally:
        code = p.stop()
        _drain(p, run_dir / "captures", None if quiet else err)  # calls that ended while it stopped
        p.close()
        if keys_dir:
            shutil.rmtree(keys_dir, ignore_errors=True)
        if run_file is not None:
            run_file.finish("done" if code in CLEAN_EXITS else "failed")
    n = sum(1 for f in (run_dir / "captures").glob(f"*{REQUEST_SUFFIX}")) if (run_dir / "captures").is_dir() else 0
    err.print(f"agentcap proxy stopped: {n} capture(s) in {run_dir / 'captures'}")
    if code not in CLEAN_EXITS:
        raise SystemExit(1)


CLEAN_EXITS = (0, None, -2, 130, -15)  # the proxy's exit on a stop (Ctrl-C, SIGTERM)


def _run_file(run_dir: Path, upstream: str, err: Console) -> RunFile | None:
    """run.json for this proxy (kind ``proxy``, the upstream, started now), written atomically once
    it listens; a directory that was a proxy's before keeps its first start. Another run's record
    (a corpus or suite run the captures are added to) or one that does not parse is left as it is."""
    path = run_dir / RUN_JSON
    if not path.exists():
        run_file = RunFile(run_dir, RunRecord.proxy(run_dir.name, shown(upstream), provider_of(upstream)))
    else:
        try:
            record = load_run(run_dir)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            err.print(f"[yellow]warning:[/] {escape(str(path))}: not a run record ({escape(str(exc))}) — left as it is")
            return None
        if record.kind != "proxy":
            return None
        record.upstream, record.status, record.finished_at = shown(upstream), "running", None
        run_file = RunFile(run_dir, record)
    run_file.save()
    return run_file


def port_free(host: str, port: int) -> bool:
    """Whether a listener could bind ``host:port`` (as the proxy's, with SO_REUSEADDR)."""
    try:
        bind(host, port).close()
    except OSError:
        return False
    return True


def _announce(p: ProxyProcess, origin: str, root: str, run_dir: Path, key: str | None, env_file: Path | None,
              as_json: bool) -> None:
    """What to give an agent: export lines (or one JSON line) on stdout, and the env file."""
    base_url = p.base_url + root + "/v1"
    env = {**agent_env(base_url, key), "AGENTCAP_PROXY_PID": str(os.getpid()),
           "AGENTCAP_CAPTURES": str(run_dir / "captures")}
    if env_file is not None:
        atomic_write_bytes(env_file, "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()).encode())
    if as_json:
        click.echo(json.dumps({"base_url": base_url, "env": env, "web_url": p.web_url, "captures": str(run_dir / "captures"),
                               "upstream": origin + root, "pid": os.getpid()}))
    else:
        out = out_console()
        out.print(f"# agentcap proxy → {origin}   captures: {run_dir / 'captures'}")
        if p.web_url:
            out.print(f"# mitmweb UI: {p.web_url}")
        if not key:
            out.print("# your client's own API key is passed through to the upstream unchanged")
        for k, v in env.items():
            out.print(f"export {k}={shlex.quote(v)}")
        out.print("# Ctrl-C to stop")
    sys.stdout.flush()


def _log_calls(p: ProxyProcess, captures: Path, err: Console | None) -> None:
    """Until the proxy exits: one line per captured call on stderr (``err`` None: quiet)."""
    assert p.events is not None
    while p.proc.poll() is None:
        ev = p.events.next(0.5)
        if ev is not None:
            _print_event(captures, ev, err)


def _drain(p: ProxyProcess, captures: Path, err: Console | None) -> None:
    """The events still in the pipe once the proxy has exited."""
    assert p.events is not None
    while (ev := p.events.next(0.2)) is not None:
        _print_event(captures, ev, err)


def _print_event(captures: Path, ev: dict[str, Any], err: Console | None) -> None:
    line = line_for_event(captures, ev) if err is not None else None
    if err is not None and line:
        err.print(escape(line))


def _detach(env_file: Path | None, as_json: bool) -> None:
    """Run this same command in the background (its own session, log in the run's parent dir) and
    return once it listens: its export lines (from the env file it writes) go to stdout."""
    work = Path(tempfile.mkdtemp(prefix="agentcap-proxy-"))
    target = env_file or work / "env"
    argv = [a for a in sys.argv[1:] if a != "--detach"]
    argv += [] if env_file else ["--env-file", str(target)]
    log = open(work / "proxy.log", "wb")
    child = subprocess.Popen([sys.executable, "-m", "agentcap_cli.main", *argv], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 60
    while not target.exists():  # written atomically once the proxy listens
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill() if child.poll() is None else None
            raise click.ClickException(f"the proxy did not come up; its log: {work / 'proxy.log'}\n"
                                       + (work / "proxy.log").read_text(errors="replace")[-2000:])
        time.sleep(0.05)
    lines = target.read_text()
    if as_json:
        env = dict(line.removeprefix("export ").split("=", 1) for line in lines.splitlines() if line.startswith("export "))
        click.echo(json.dumps({"env": {k: shlex.split(v)[0] for k, v in env.items()}, "log": str(work / "proxy.log"),
                               "pid": child.pid}))
    else:
        click.echo(lines.rstrip("\n"))
        click.echo(f"# running in the background (log: {work / 'proxy.log'}); stop: kill $AGENTCAP_PROXY_PID")
