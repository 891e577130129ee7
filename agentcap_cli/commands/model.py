"""``agentcap model serve``: a local model upstream (scripted replies, or a recorded run replayed)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys

import click
from rich.markup import escape

from agentcap_addons.wire.api.apibase import agent_env, api_root, checked
from agentcap_addons.wire.fake.cassette import DEFAULT_IGNORE, MATCHERS
from agentcap_addons.wire.util.yamlfile import ConfigError
from agentcap_cli.console import err_console, out_console
from agentcap_cli.harness.calllog import served_line
from agentcap_cli.harness.modelserver import ModelApp, make_responder
from mcp_mocks.threaded import bind, uvicorn_server


@click.group()
def model() -> None:
    """Local model upstreams: no model server or network needed."""


def _matchers(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [n for n in names if n not in MATCHERS]
    if bad or not names:
        raise click.BadParameter(f"unknown matcher(s) {', '.join(bad) or '(none given)'}; known: {', '.join(MATCHERS)}")
    return names


@model.command()
@click.option("--script", metavar="FILE|NAME", envvar="AGENTCAP_SCRIPT",
              help="Answer from a YAML script (a file, or a shipped one: shell-then-answer, write-file-then-answer).  "
                   "[env AGENTCAP_SCRIPT]")
@click.option("--replay", metavar="RUN", envvar="AGENTCAP_REPLAY",
              help="Answer by replaying a recorded run (its directory or its captures/).  [env AGENTCAP_REPLAY]")
@click.option("--host", default="127.0.0.1", envvar="AGENTCAP_MODEL_HOST", help="Address to listen on.  [env AGENTCAP_MODEL_HOST]")
@click.option("--port", default=8000, type=click.IntRange(0, 65535), envvar="AGENTCAP_MODEL_PORT",
              help="Port (0: any free port, printed).  [env AGENTCAP_MODEL_PORT]")
@click.option("--timing", type=click.Choice(["fast", "recorded"]), default="fast", envvar="AGENTCAP_TIMING",
              help="Replay: stream chunks back to back, or with the recorded pauses.  [env AGENTCAP_TIMING]")
@click.option("--on-miss", type=click.Choice(["error", "forward"]), default="error", envvar="AGENTCAP_ON_MISS",
              help="Replay: answer an unrecorded request with an error, or forward it to --upstream.  [env AGENTCAP_ON_MISS]")
@click.option("--upstream", envvar="AGENTCAP_UPSTREAM", help="Live upstream for --on-miss forward (https://host or https://host/v1 alike).  "
              "[env AGENTCAP_UPSTREAM]")
@click.option("--match", "match_on", callback=_matchers, envvar="AGENTCAP_MATCH",
              help=f"Replay: comma-separated matchers ({', '.join(MATCHERS)}); default method,path,body.  [env AGENTCAP_MATCH]")
@click.option("--ignore", multiple=True, metavar="PATH", envvar="AGENTCAP_IGNORE",
              help=f"Replay: a dotted body path left out of matching (repeatable); default: {', '.join(DEFAULT_IGNORE)}.  "
                   "[env AGENTCAP_IGNORE]")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line {base_url, env, pid} instead of the export lines.")
@click.option("-q", "--quiet", is_flag=True, help="No log line per answered call.")
def serve(script: str | None, replay: str | None, host: str, port: int, timing: str, on_miss: str,
          upstream: str | None, match_on: tuple[str, ...] | None, ignore: tuple[str, ...], as_json: bool,
          quiet: bool) -> None:
    """Serve OpenAI chat completions, the Responses API and Anthropic Messages locally.

    Streamed and not, in the shapes the official SDKs and agent CLIs parse. Ctrl-C stops it.
    """
    err = err_console()
    if (script is None) == (replay is None):
        raise click.UsageError("give exactly one of --script or --replay")
    if on_miss == "forward" and not upstream:
        raise click.BadParameter("--on-miss forward needs --upstream URL", param_hint="'--upstream'")
    forward_to = None
    if upstream:
        try:  # a miss is forwarded to <root><the path the client asked for>, e.g. …/v1/chat/completions
            forward_to = api_root(checked(upstream))
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'--upstream'") from None
    try:
        responder = make_responder(script, replay, timing=timing, on_miss=on_miss, match_on=match_on,
                                   ignore=ignore or None)
    except ConfigError as e:
        err.print(f"[red]error:[/] {e}")
        raise SystemExit(2) from None
    except (FileNotFoundError, ValueError) as e:
        where = "--script" if script else "--replay"
        err.print(f"[red]error:[/] {where}: {e}")
        raise SystemExit(2) from None
    try:
        sock = bind(host, port)
    except OSError as e:
        err.print(f"[red]error:[/] --port: cannot listen on {host}:{port}: {e.strerror}")
        raise SystemExit(2) from None
    bound = sock.getsockname()[1]
    base_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{bound}/v1"
    env = agent_env(base_url, "agentcap-local")
    if as_json:
        click.echo(json.dumps({"base_url": base_url, "env": env, "pid": os.getpid()}))
    else:
        out = out_console()
        out.print(f"# agentcap model server ({'script ' + script if script else 'replay of ' + str(replay)})")
        for k, v in env.items():
            out.print(f"export {k}={v}")
        out.print("# Ctrl-C to stop")
    sys.stdout.flush()
    app = ModelApp(responder, forward_to)
    if not quiet:
        count = itertools.count(1)
        app.on_served = lambda *a: err.print(escape(served_line(next(count), *a)))
    server = uvicorn_server(app)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
