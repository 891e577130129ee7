"""Capture proxy overhead, as ratios against baselines run in the same process (DESIGN.md targets).

One process starts a streaming upstream (a child process on loopback) and measures the same
workloads three ways: direct, through bare mitmdump (only a readiness addon, no request hooks),
and through mitmdump + the capture addon:

* TTFB: sequential streamed chat completions on one keep-alive connection, time to first body byte;
* inter-chunk timing: events sent 20 ms apart; |gap at the client - 20 ms| per gap, and whether
  every event arrived as its own chunk (no coalescing);
* throughput: 32 concurrent clients, each making streamed requests back to back.

    python bench/proxy.py            # full run (~1 min)
    python bench/proxy.py --quick    # a smaller run

Environment: BENCH_TMP=DIR puts the capture directories there (e.g. /dev/shm, to take the disk
out of the picture); WRITER=inline runs the capture proxy with agentcap_writer=inline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from loadgen import throughput  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from agentcap_addons.wire.capture.records import iter_captures  # noqa: E402
from agentcap_cli.harness.proxy import start_proxy  # noqa: E402

BODY = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
PACE_MS = 20
BASELINE = Path(__file__).resolve().parent / "baseline_addon.py"


@dataclass
class Result:
    name: str
    ttfb: list[float] = field(default_factory=list)
    gap_err: list[float] = field(default_factory=list)
    chunks_seen: int = 0
    chunks_sent: int = 0
    rps: float = 0.0
    requests: int = 0
    rounds: list[float] = field(default_factory=list)


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


async def measure_ttfb(bases: list[str], n: int) -> list[list[float]]:
    """Requests alternate between the paths (one each, round robin), so drift hits all alike."""
    out: list[list[float]] = [[] for _ in bases]
    clients = [httpx.AsyncClient(timeout=30) for _ in bases]
    try:
        for i in range(n + 5):
            for j, (c, base) in enumerate(zip(clients, bases)):
                t0 = time.perf_counter()
                async with c.stream("POST", base + "/sse/v1/chat/completions", json=BODY) as r:
                    it = r.aiter_raw()
                    await it.__anext__()
                    if i >= 5:  # warm-up requests are not counted
                        out[j].append((time.perf_counter() - t0) * 1000)
                    async for _ in it:
                        pass
    finally:
        for c in clients:
            await c.aclose()
    return out


async def measure_pacing(base: str, n: int, events: int) -> tuple[list[float], int, int]:
    errs: list[float] = []
    seen = sent = 0
    async with httpx.AsyncClient(timeout=30) as c:
        for _ in range(n):
            arrivals = []
            async with c.stream("POST", base + f"/paced/{PACE_MS}/v1/chat/completions", json=BODY) as r:
                async for _ in r.aiter_raw():
                    arrivals.append(time.perf_counter())
            # the chunked terminator may ride with the last event or come alone
            seen += min(len(arrivals), events)
            sent += events
            gaps = [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:events])]
            errs += [abs(g - PACE_MS) for g in gaps]
    return errs, seen, sent


async def measure_throughput(base: str, clients: int, per_client: int) -> tuple[float, int]:
    body = json.dumps(BODY).encode()
    return await throughput(base, [("/sse/v1/chat/completions", body)], clients, per_client)


def run_latency(results: list[Result], bases: list[str], args: argparse.Namespace, events: int) -> None:
    for res, ttfb in zip(results, asyncio.run(measure_ttfb(bases, args.ttfb_requests))):
        res.ttfb = ttfb
    for res, base in zip(results, bases):
        res.gap_err, res.chunks_seen, res.chunks_sent = asyncio.run(measure_pacing(base, args.paced_requests, events))


def run_throughput(results: list[Result], bases: list[str], args: argparse.Namespace) -> None:
    """Rounds alternate between the paths so drift (page cache, CPU frequency, other load)
    hits all of them alike; each path's figure is its median round."""
    rounds: list[list[float]] = [[] for _ in bases]
    for _ in range(args.rounds):
        for i, base in enumerate(bases):
            rps, n = asyncio.run(measure_throughput(base, args.clients, args.per_client))
            rounds[i].append(rps)
            results[i].requests += n
    for res, rs in zip(results, rounds):
        res.rps = statistics.median(rs)
        res.rounds = rs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer requests")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    args = ap.parse_args()
    args.ttfb_requests = 100 if args.quick else 400
    args.paced_requests = 4 if args.quick else 15
    args.per_client = 15 if args.quick else 40
    args.rounds = 3 if args.quick else 7
    err = Console(stderr=True)

    up = subprocess.Popen([sys.executable, "-m", "tests.support.upstream"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    port = int(up.stdout.readline())
    upstream = f"http://127.0.0.1:{port}"
    from tests.support.upstream import chat_sse_events

    n_events = len(chat_sse_events())
    captures = lost = 0
    try:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp, \
                start_proxy(upstream, Path(tmp) / "bare", script=BASELINE) as bare_p, \
                start_proxy(upstream, Path(tmp) / "cap", sets={"agentcap_writer": os.environ.get("WRITER", "process")}) as cap_p:
            results = [Result("direct"), Result("bare mitmdump"), Result("mitmdump + capture")]
            bases = [upstream, bare_p.base_url, cap_p.base_url]
            err.print("time to first byte and chunk timing")
            run_latency(results, bases, args, n_events)
            err.print(f"throughput, {args.rounds} alternating rounds of {args.clients} clients")
            run_throughput(results, bases, args)
            cap_p.stop()
            caps = list(iter_captures(Path(tmp) / "cap"))
            captures = len(caps)
            lost = sum(1 for c in caps if c.response is None or c.response.get("error"))
    finally:
        up.stdin.close()
        up.wait(10)

    direct, bare, cap = results
    expected = cap.requests + args.ttfb_requests + 5 + args.paced_requests
    table = Table(title=f"capture proxy overhead (loopback, {args.clients} concurrent clients for throughput)")
    for col in ["path", "TTFB p50 ms", "TTFB p95 ms", "chunk |err| p50 ms", "chunk |err| p95 ms", "chunks seen/sent", "req/s"]:
        table.add_column(col, justify="right" if col != "path" else "left")
    for r in results:
        table.add_row(r.name, f"{pct(r.ttfb, .5):.2f}", f"{pct(r.ttfb, .95):.2f}", f"{pct(r.gap_err, .5):.2f}",
                      f"{pct(r.gap_err, .95):.2f}", f"{r.chunks_seen}/{r.chunks_sent}", f"{r.rps:.0f}")
    out = Console()
    out.print(table)

    d_bare = pct(cap.ttfb, .5) - pct(bare.ttfb, .5)
    d_direct = pct(cap.ttfb, .5) - pct(direct.ttfb, .5)
    # the median of per-round ratios: each capture round is compared with the bare round next to it
    ratio = statistics.median(c / b for c, b in zip(cap.rounds, bare.rounds))
    chunk_delta = pct(cap.gap_err, .95) - pct(direct.gap_err, .95)
    checks = [
        ("TTFB p50, capture − bare mitmdump", f"{d_bare:+.2f} ms", "≤ +0.5 ms", d_bare <= 0.5),
        ("TTFB p50, capture − direct", f"{d_direct:+.2f} ms", "≤ +5 ms", d_direct <= 5),
        ("throughput, capture / bare mitmdump", f"{ratio:.2f}×", "≥ 0.9×", ratio >= 0.9),
        ("chunk timing p95, capture − direct", f"{chunk_delta:+.2f} ms", "≤ 1 ms", chunk_delta <= 1),
        ("chunks coalesced (capture)", f"{cap.chunks_sent - cap.chunks_seen}", "0", cap.chunks_seen == cap.chunks_sent),
        ("captures written / requests", f"{captures}/{expected} ({lost} incomplete)", "all", captures == expected and lost == 0),
    ]
    t2 = Table(title="ratios against the baselines (DESIGN.md targets)")
    for col in ["measure", "value", "target", "met"]:
        t2.add_column(col)
    for name, val, target, ok in checks:
        t2.add_row(name, val, target, "[green]yes[/]" if ok else "[red]no[/]")
    out.print(t2)
    if args.json:
        print(json.dumps({
            "results": {r.name: {"ttfb_p50": pct(r.ttfb, .5), "ttfb_p95": pct(r.ttfb, .95),
                                 "chunk_err_p50": pct(r.gap_err, .5), "chunk_err_p95": pct(r.gap_err, .95),
                                 "rps": r.rps} for r in results},
            "checks": {name: {"value": val, "met": ok} for name, val, _, ok in checks},
        }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
