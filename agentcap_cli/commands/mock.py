"""``agentcap mock``: serve, list and call mock MCP servers built from ``mock.yaml``."""

from __future__ import annotations

import asyncio
import difflib
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from agentcap_addons.wire.util.yamlfile import ConfigError
from agentcap_cli.console import err_console, out_console
from mcp_mocks.engine import MockServer
from mcp_mocks.outdir import OutDir, OutsideOut
from mcp_mocks.serve import HTTPMock, serve_stdio


def _load(dirs: tuple[str, ...]) -> list[MockServer]:
    mocks = []
    for d in dirs:
        try:
            mocks.append(MockServer.load(d))
        except ConfigError as e:
            err_console().print(f"[red]error:[/] {e}")
            raise SystemExit(2) from None
    names = [m.name for m in mocks]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise click.BadParameter(f"two mocks are named {', '.join(sorted(dup))}", param_hint="'DIR'")
    return mocks


@click.group()
def mock() -> None:
    """Mock MCP servers whose state a test controls (see docs/mocks.md)."""


@mock.command()
@click.argument("dirs", nargs=-1, required=True, metavar="DIR…")
@click.option("--host", default="127.0.0.1", envvar="AGENTCAP_MOCK_HOST", help="Address to listen on.  [env AGENTCAP_MOCK_HOST]")
@click.option("--port", default=0, type=click.IntRange(0, 65535), envvar="AGENTCAP_MOCK_PORT",
              help="Port of the first server; the next ones take the following ports (0: any free ports).  "
                   "[env AGENTCAP_MOCK_PORT]")
@click.option("--stdio", is_flag=True, help="Serve one mock over stdin / stdout instead of HTTP.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), envvar="AGENTCAP_MOCK_OUT",
              help="Write <server>.state.json and calls.jsonl here, as each call completes (a kill -9 loses "
                   "at most the call in flight).  [env AGENTCAP_MOCK_OUT]")
@click.option("-q", "--quiet", is_flag=True, help="No log line per tool call.")
def serve(dirs: tuple[str, ...], host: str, port: int, stdio: bool, out: Path | None, quiet: bool) -> None:
    """Serve each DIR (holding a mock.yaml) as an MCP server over streamable HTTP (or stdio)."""
    mocks = _load(dirs)
    if not quiet:  # one line per tool call on stderr: `slack #3 slack_post_message ok 0.4ms`
        for m in mocks:
            m.on_call = lambda r: click.echo(f"{r.server} #{r.seq} {r.tool} {'error' if r.is_error else 'ok'} "
                                             f"{r.duration_ms}ms{' (injected fault)' if r.fault else ''}", err=True)
    if stdio and len(mocks) != 1:
        raise click.BadParameter("--stdio serves exactly one mock", param_hint="'--stdio'")
    outdir = _record(mocks, out) if out else None
    # the first SIGINT / SIGTERM (or, over stdio, the client closing stdin) stops serving — at most a
    # few seconds, even with a call stuck in a handler — then the state and calls are written;
    # later signals cannot interrupt that
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    servers = []
    try:
        if stdio:  # on a daemon thread: the SDK's stdin reader cannot be interrupted, nor keep us alive
            threading.Thread(target=_serve_stdio, args=(mocks[0], done), name="mock-stdio", daemon=True).start()
        else:
            for i, m in enumerate(mocks):
                try:
                    servers.append(HTTPMock(m, host, port + i if port else 0).start())
                except OSError as e:
                    raise click.BadParameter(f"cannot listen on {host}:{port + i}: {e.strerror}", param_hint="'--port'") from None
            for s in servers:  # tab-separated on purpose: `cut -f2` gives the URLs
                click.echo(f"{s.mock.name}\t{s.url}")
            click.echo("# state: GET <url without /mcp>/_agentcap/state, calls: .../_agentcap/calls; Ctrl-C to stop")
            sys.stdout.flush()
        done.wait()
    finally:
        for s in servers:
            s.stop()
        if outdir:
            for m in mocks:
                m.write(outdir)
            outdir.close()


def _record(mocks: list[MockServer], out: Path) -> OutDir:
    """``--out``, written from the first call on (the state files at once)."""
    try:
        outdir = OutDir(out)
        for m in mocks:
            m.record_to(outdir)
    except OutsideOut as e:
        raise click.BadParameter(str(e), param_hint="'--out'") from None
    except OSError as e:
        raise click.BadParameter(f"cannot write {e.filename or out}: {e.strerror}", param_hint="'--out'") from None
    return outdir


def _serve_stdio(mock: MockServer, done: threading.Event) -> None:
    try:
        asyncio.run(serve_stdio(mock))
    finally:
        done.set()


@mock.command()
@click.argument("directory", metavar="DIR")
@click.option("--json", "as_json", is_flag=True, help="JSON lines {tool, arguments, required, answered_by, description} on stdout.")
def tools(directory: str, as_json: bool) -> None:
    """List the tools of the mock in DIR."""
    [m] = _load((directory,))
    if as_json:
        for tool in m.spec.tools:
            schema = tool.get("inputSchema") or {}
            how = "handler" if tool["name"] in m.spec.handlers else "rules" if tool["name"] in m.spec.rules else "fallback"
            click.echo(json.dumps({"tool": tool["name"], "arguments": list(schema.get("properties") or {}),
                                   "required": list(schema.get("required") or []), "answered_by": how,
                                   "description": tool.get("description") or ""}))
        return
    t = Table(title=f"{m.name}: {len(m.spec.tools)} tools")
    for col in ("tool", "arguments", "answered by", "description"):
        t.add_column(col)
    for tool in m.spec.tools:
        schema = tool.get("inputSchema") or {}
        req = set(schema.get("required") or [])
        args = ", ".join(f"{k}{'*' if k in req else ''}" for k in (schema.get("properties") or {}))
        how = "handler" if tool["name"] in m.spec.handlers else (
            f"{len(m.spec.rules[tool['name']])} rule(s)" if tool["name"] in m.spec.rules else f"fallback ({m.spec.fallback})")
        t.add_row(tool["name"], args, how, (tool.get("description") or "").split("\n")[0][:80])
    out_console().print(t)


@mock.command()
@click.argument("directory", metavar="DIR")
@click.argument("tool")
@click.option("--args", "args_json", default="{}", help="The arguments, as a JSON object.")
def call(directory: str, tool: str, args_json: str) -> None:
    """Call TOOL once through a real MCP client: the result (JSON) on stdout, how the state changed
    (a diff) on stderr."""
    try:
        args = json.loads(args_json)
    except ValueError as e:
        raise click.BadParameter(f"not JSON: {e}", param_hint="'--args'") from None
    if not isinstance(args, dict):
        raise click.BadParameter("must be a JSON object", param_hint="'--args'")
    [m] = _load((directory,))
    before = m.snapshot()
    with HTTPMock(m) as server:
        result = asyncio.run(_call(server.url, tool, args))
    click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    diff = difflib.unified_diff(_lines(before), _lines(m.snapshot()), "state before", "state after", lineterm="")
    text = "\n".join(diff)
    click.echo(text if text else "# state unchanged", err=True)
    if result.get("isError"):
        raise SystemExit(1)


def _lines(obj: Any) -> list[str]:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


async def _call(url: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    from mcp import Client

    async with Client(url) as client:
        res = await client.call_tool(tool, args)
        return res.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"meta"})  # the wire form
