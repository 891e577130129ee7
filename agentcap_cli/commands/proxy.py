"""``agentcap proxy``: the capture proxy for a user, in front of one upstream."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import click

from agentcap_addons.wire.apibase import split_api_base, split_origin
from agentcap_addons.wire.registry import Attribution, KeyRegistry, new_key
from agentcap_addons.wire.store import REQUEST_SUFFIX
from agentcap_cli.console import err_console, out_console
from agentcap_cli.proxyproc import ProxyStartError, start_proxy
from agentcap_cli.workspace import new_run_dir


def split_upstream(url: str) -> tuple[str, str]:
    """``https://host/v1`` → (``https://host``, ``/v1``). mitmproxy's reverse mode takes an origin
    only; the path part becomes the path of the base URL handed to agents."""
    return split_origin(url)


def _upstream(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, str]:
    try:
        return split_api_base(value)  # …/v1 or not: the agents get <proxy><root>/v1 either way
    except ValueError as e:
        raise click.BadParameter(f"{value!r} {e}") from None


def agent_env(base_url: str, key: str | None) -> dict[str, str]:
    """What to export for an OpenAI- or Anthropic-style client to go through the proxy."""
    env = {"OPENAI_BASE_URL": base_url, "ANTHROPIC_BASE_URL": base_url.removesuffix("/v1")}
    if key:
        env["OPENAI_API_KEY"] = key
        env["ANTHROPIC_API_KEY"] = key
    return env


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
@click.option("--timeout", default=600.0, type=click.FloatRange(min=0, min_open=True), envvar="AGENTCAP_TIMEOUT",
              help="Seconds the upstream may stay silent during a call before it is cut off.  [env AGENTCAP_TIMEOUT]")
def proxy(upstream: tuple[str, str], host: str, port: int, run_dir: Path | None, web: bool, web_port: int,
          upstream_key_env: str | None, timeout: float) -> None:
    """Start the capture proxy in front of UPSTREAM and print how to point an agent at it.

    Every LLM API call that passes through is written to DIR/captures/. Ctrl-C stops it cleanly.
    """
    err = err_console()
    out = out_console()
    origin, root = upstream
    if upstream_key_env is not None and not os.environ.get(upstream_key_env):
        raise click.BadParameter(f"environment variable {upstream_key_env} is not set or empty",
                                 param_hint="'--upstream-key-env'")
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
                        web=web, web_port=web_port, sets={"agentcap_timeout": str(timeout)},
                        log=sys.stderr.fileno())
    except ProxyStartError as e:
        if keys_dir:
            shutil.rmtree(keys_dir, ignore_errors=True)
        err.print(f"[red]error:[/] {e} (is port {port} free? try --port 0)")
        raise SystemExit(1)
    base_url = p.base_url + root + "/v1"
    out.print(f"# agentcap proxy → {origin}   captures: {run_dir / 'captures'}")
    if p.web_url:
        out.print(f"# mitmweb UI: {p.web_url}")
    if not key:
        out.print("# your client's own API key is passed through to the upstream unchanged")
    for k, v in agent_env(base_url, key).items():
        out.print(f"export {k}={v}")
    out.print("# Ctrl-C to stop")
    sys.stdout.flush()
    try:
        p.proc.wait()
    except KeyboardInterrupt:
        err.print("stopping…")
    finally:
        code = p.stop()
        if keys_dir:
            shutil.rmtree(keys_dir, ignore_errors=True)
    n = sum(1 for f in (run_dir / "captures").glob(f"*{REQUEST_SUFFIX}")) if (run_dir / "captures").is_dir() else 0
    err.print(f"agentcap proxy stopped: {n} capture(s) in {run_dir / 'captures'}")
    if code not in (0, None, -2, 130):
        raise SystemExit(1)
