"""Local model upstreams: calls/s of `agentcap model serve`, and the replay addon against bare mitmdump.

* `agentcap model serve --script …` (a child process) under 32 concurrent clients, non-streamed
  and streamed chat completions; target ≥ 1,000 calls/s;
* `mitmdump -s agentcap_addons/replay.py` serving a recorded run, against bare mitmdump with a
  one-line addon that answers every request with fixed bytes (the floor for any addon that
  answers by itself); rounds alternate; target ≥ 0.9×.

    python bench/upstream.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import throughput  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from agentcap_addons.wire.capture.records import CaptureDir, new_request_id  # noqa: E402
from agentcap_addons.wire.util.clock import rfc3339_ns  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXED = Path(__file__).resolve().parent / "fixed_answer_addon.py"
TOOLS = [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}]


def chat(i: int, stream: bool) -> bytes:
    return json.dumps({"model": "m", "stream": stream, "tools": TOOLS,
                       "messages": [{"role": "user", "content": f"request {i}"}]}).encode()


def make_cassette(root: Path, n: int) -> Path:
    """A recorded run of ``n`` distinct non-streamed calls (what a real run directory holds)."""
    d = CaptureDir(root / "captures")
    for i in range(n):
        rid = new_request_id()
        d.write_request({"schema": 1, "request_id": rid, "seq": d.next_seq(), "captured_at": rfc3339_ns(),
                         "method": "POST", "path": "/v1/chat/completions", "api": "openai-chat",
                         "body": json.loads(chat(i, False))})
        d.write_response({"schema": 1, "request_id": rid, "status_code": 200, "stream": False,
                          "headers": {"content-type": "application/json"},
                          "body": {"id": f"c{i}", "object": "chat.completion", "model": "m", "choices": [
                              {"index": 0, "message": {"role": "assistant", "content": f"answer {i}"},
                               "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
                          "chunks": [], "timings": {}, "served_model": "m", "error": None})
    return root


def start(argv: list[str]) -> tuple[subprocess.Popen, str]:
    """A child that reports readiness on a pipe (mitmdump) or prints its base URL (model serve)."""
    r, w = os.pipe()
    argv = [a.replace("{READY}", str(w)) for a in argv]
    is_mitm = any("agentcap_ready_fd" in a for a in argv)
    # mitmdump logs to stdout: nobody reads it here, so it must not be a pipe that can fill up
    proc = subprocess.Popen(argv, pass_fds=(w,), stdout=subprocess.DEVNULL if is_mitm else subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    os.close(w)
    if is_mitm:
        with os.fdopen(r) as f:
            port = json.loads(f.readline())["listen"][0][1]
        return proc, f"http://127.0.0.1:{port}"
    os.close(r)
    for line in proc.stdout:
        if line.startswith("export OPENAI_BASE_URL="):
            return proc, line.split("=", 1)[1].strip().removesuffix("/v1")
    raise RuntimeError("model server did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def mitmdump(script: Path, *sets: str) -> list[str]:
    argv = [sys.executable, "-c", "import sys; from mitmproxy.tools.main import mitmdump; sys.exit(mitmdump())",
            "-s", str(script), "--mode", "reverse:http://127.0.0.1:9", "--listen-host", "127.0.0.1",
            "--listen-port", "0", "--set", "agentcap_ready_fd={READY}", "--set", "flow_detail=0",
            "--set", "connection_strategy=lazy"]
    for s in sets:
        argv += ["--set", s]
    return argv


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--clients", type=int, default=32)
    args = ap.parse_args()
    per_client = 20 if args.quick else 60
    rounds = 3 if args.quick else 5
    err, out = Console(stderr=True), Console()
    rows: list[tuple[str, float, str, bool]] = []

    err.print("agentcap model serve --script shell-then-answer")
    proc, base = start([sys.executable, "-c", "from agentcap_cli.main import main; main()", "model", "serve",
                        "--script", "shell-then-answer", "--port", "0"])
    try:
        reqs = [("/v1/chat/completions", chat(i, False)) for i in range(64)]
        asyncio.run(throughput(base, reqs, args.clients, 5))  # warm-up
        plain = statistics.median(asyncio.run(throughput(base, reqs, args.clients, per_client))[0] for _ in range(rounds))
        sreqs = [("/v1/chat/completions", chat(i, True)) for i in range(64)]
        streamed = statistics.median(asyncio.run(throughput(base, sreqs, args.clients, per_client))[0] for _ in range(rounds))
    finally:
        stop(proc)
    rows.append(("model serve, chat non-streamed (calls/s)", plain, "≥ 1,000", plain >= 1000))
    rows.append(("model serve, chat streamed (calls/s)", streamed, "≥ 1,000", streamed >= 1000))

    total = args.clients * per_client
    with tempfile.TemporaryDirectory() as tmp:
        err.print(f"recording a run of {total * rounds} calls for the replay addon")
        run = make_cassette(Path(tmp) / "run", total * rounds)
        bare, bare_url = start(mitmdump(FIXED))
        rep, rep_url = start(mitmdump(Path(__file__).resolve().parent / "replay_addon.py", f"agentcap_replay={run}"))
        try:
            ratios, rep_rates, bare_rates = [], [], []
            for k in range(rounds):
                chunk = [("/v1/chat/completions", chat(i, False)) for i in range(k * total, (k + 1) * total)]
                b, _ = asyncio.run(throughput(bare_url, chunk, args.clients, per_client))
                r, _ = asyncio.run(throughput(rep_url, chunk, args.clients, per_client))
                bare_rates.append(b)
                rep_rates.append(r)
                ratios.append(r / b)
        finally:
            stop(bare)
            stop(rep)
    ratio = statistics.median(ratios)
    rows.append(("bare mitmdump, fixed answer (calls/s)", statistics.median(bare_rates), "", True))
    rows.append(("mitmdump + replay addon (calls/s)", statistics.median(rep_rates), "", True))
    rows.append(("replay addon / bare mitmdump", ratio, "≥ 0.9×", ratio >= 0.9))

    t = Table(title=f"local model upstreams ({args.clients} concurrent clients, loopback)")
    for col in ["measure", "value", "target", "met"]:
        t.add_column(col)
    for name, val, target, ok in rows:
        t.add_row(name, f"{val:.2f}×" if "/" in name and "calls" not in name else f"{val:,.0f}", target,
                  ("[green]yes[/]" if ok else "[red]no[/]") if target else "")
    out.print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
