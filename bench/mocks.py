"""Mock MCP servers: tool calls/s through the official SDK client over streamable HTTP.

Starts `agentcap mock serve examples/mocks/slack` and a bare SDK server with one fixed-answer tool
(child processes), then drives each with concurrent `mcp` client sessions calling tools back to
back: a declarative rule with templates (`slack_get_users`), a rule with conditions and state
mutations (`slack_post_message`) and a handler (`slack_get_channel_history`) — on the seed state,
and again once the posts have grown it (a handler works on its own copy of the state, so its cost
grows with the state's size). Target ≥ 500 calls/s; the ratio to the bare SDK server shows what
the mock itself costs.

Then the same cases in process (``MockServer.call``, no transport): what the engine itself costs.

    python bench/mocks.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from mcp import Client  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from mcp_mocks import MockServer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def start(argv: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    for line in proc.stdout:
        if "\thttp://" in line:
            return proc, line.split("\t", 1)[1].strip()
    raise RuntimeError(f"{argv} did not start")


async def rate(url: str, tool: str, args: dict, sessions: int, per_session: int) -> float:
    async def one(i: int, ready: asyncio.Barrier) -> int:
        async with Client(url) as s:
                await s.call_tool(tool, args)  # warm-up
                await ready.wait()
                for _ in range(per_session):
                    r = await s.call_tool(tool, args)
                    assert not r.is_error, r
        return per_session

    ready = asyncio.Barrier(sessions + 1)
    tasks = [asyncio.create_task(one(i, ready)) for i in range(sessions)]
    await ready.wait()
    t0 = time.perf_counter()
    n = sum(await asyncio.gather(*tasks))
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sessions", type=int, default=8)
    args = ap.parse_args()
    per = 50 if args.quick else 200
    err, out = Console(stderr=True), Console()
    history = ("slack_get_channel_history", {"channel_id": "C01GENERAL", "limit": 5})
    # (tool, args, reset the state first): the posts grow #general, then the handler reads it
    cases = [("slack_get_users", {}, True), ("slack_post_message", {"channel_id": "C01GENERAL", "text": "bench"}, True),
             (*history, False), (*history, True)]
    mock, mock_url = start([sys.executable, "-c", "from agentcap_cli.main import main; main()", "mock", "serve",
                            "examples/mocks/slack", "--port", "0"])
    bare, bare_url = start([sys.executable, "bench/bare_mcp_server.py"])
    rows = []
    try:
        err.print(f"{args.sessions} sessions × {per} calls each")
        base = asyncio.run(rate(bare_url, "ping", {}, args.sessions, per))
        side = mock_url.removesuffix("/mcp") + "/_agentcap"
        for tool, targs, reset in cases:
            if reset:
                httpx.post(side + "/reset").raise_for_status()
            state = httpx.get(side + "/state").content
            size = f"{len(json.loads(state)['channels']['C01GENERAL']['messages']):,} msgs, {len(state) / 1024:,.0f} KB"
            rows.append((f"{tool} ({size})", asyncio.run(rate(mock_url, tool, targs, args.sessions, per))))
    finally:
        for p in (mock, bare):
            p.send_signal(signal.SIGINT)
            p.wait(20)
    t = Table(title=f"MCP tool calls/s, SDK client over streamable HTTP ({args.sessions} concurrent sessions)")
    for col in ("server / tool (state at start)", "calls/s", "vs bare SDK server", "target ≥ 500"):
        t.add_column(col)
    t.add_row("bare SDK server / ping (fixed answer)", f"{base:,.0f}", "1.00×", "")
    for tool, r in rows:
        t.add_row(f"slack mock / {tool}", f"{r:,.0f}", f"{r / base:.2f}×", "[green]yes[/]" if r >= 500 else "[red]no[/]")
    out.print(t)
    out.print(engine_table(cases, 2000 if args.quick else 10000))
    return 0


def engine_table(cases: list[tuple[str, dict, bool]], n: int) -> Table:
    mock = MockServer.load(REPO / "examples/mocks/slack")
    t = Table(title=f"MockServer.call in process, no transport ({n:,} calls per case, best of 3)")
    for col in ("tool (state at start)", "calls/s", "µs/call"):
        t.add_column(col)
    for tool, targs, reset in cases:
        if reset:
            mock.reset()
        size = len(mock.state["channels"]["C01GENERAL"]["messages"])
        best = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(n):
                mock.call(tool, targs)
            best = max(best, n / (time.perf_counter() - t0))
        t.add_row(f"{tool} ({size:,} msgs)", f"{best:,.0f}", f"{1e6 / best:,.0f}")
    return t


if __name__ == "__main__":
    raise SystemExit(main())
