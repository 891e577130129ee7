"""Export speed and memory: captures/s into parquet, and peak memory, for 10k and 100k captures.

Synthetic captures (a streamed chat completion with a tool call, the request holding a short
conversation and a tool list, as agents send them) are written once per size; each size is then
exported by `agentcap_cli.export.captures.write_run` in a fresh child process, which reports its
rate and its peak RSS. Targets: ≥ 20,000 captures/s; memory flat in the number of captures (the
100k / 10k peak-memory ratio near 1).

    python bench/export.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from agentcap_addons.wire.store import new_request_id, rfc3339_ns  # noqa: E402

TARGET = 20_000


def sse(i: int) -> str:
    head = {"id": f"chatcmpl-{i}", "object": "chat.completion.chunk", "model": "m", "choices": []}
    parts = []
    for word in ["I'll", " look", " at", " the", " files", "."]:
        parts.append({**head, "choices": [{"index": 0, "delta": {"content": word}}]})
    parts.append({**head, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                  "function": {"name": "bash", "arguments": "{\"command\": \"ls -la\"}"}}]}}]})
    parts.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
                  "usage": {"prompt_tokens": 900 + i % 100, "completion_tokens": 20, "total_tokens": 920}})
    return "".join(f"data: {json.dumps(p)}\n\n" for p in parts) + "data: [DONE]\n\n"


def make_captures(directory: Path, n: int) -> None:
    directory.mkdir(parents=True)
    tools = [{"type": "function", "function": {"name": f"tool{k}", "description": "does a thing " * 8,
                                               "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}
             for k in range(6)]
    for i in range(1, n + 1):
        rid = new_request_id()
        req = {"schema": 1, "request_id": rid, "seq": i, "captured_at": rfc3339_ns(), "method": "POST",
               "path": "/v1/chat/completions", "upstream_url": "http://127.0.0.1:8000/v1/chat/completions",
               "api": "openai-chat", "run_id": "bench", "task_id": f"t{i % 50:04d}", "turn": 1 + i % 3, "cell": None,
               "repeat": None, "headers": {"content-type": "application/json"},
               "body": {"model": "m", "stream": True, "tools": tools, "messages": [
                   {"role": "system", "content": "You are a coding agent. " * 20},
                   {"role": "user", "content": f"Task {i}: fix the bug in main.py"}]}}
        resp = {"schema": 1, "request_id": rid, "status_code": 200, "headers": {"content-type": "text/event-stream"},
                "stream": True, "raw": sse(i), "chunks": [[1.0, 100]] * 8,
                "timings": {"sent": 0.0, "first_byte": 12.5, "done": 40.0}, "served_model": "m", "error": None}
        (directory / f"{rid}.request.json").write_text(json.dumps(req))
        (directory / f"{rid}.response.json").write_text(json.dumps(resp))


def child(captures: str, out: str) -> None:
    from agentcap_cli.export.captures import RunInfo, write_run

    started = time.perf_counter()
    files = write_run(Path(captures), RunInfo("bench", agent="bench"), Path(out), "bench")
    elapsed = time.perf_counter() - started
    rows = sum(f.rows for f in files)
    print(json.dumps({"rows": rows, "seconds": elapsed,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "bytes": sum(f.path.stat().st_size for f in files)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2k and 20k captures instead of 10k and 100k")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    sizes = [2_000, 20_000] if args.quick else [10_000, 100_000]
    root = Path(tempfile.mkdtemp(prefix="bench-export-"))
    err = Console(stderr=True)
    results = []
    for n in sizes:
        with err.status(f"writing {n:,} synthetic captures"):
            make_captures(root / f"c{n}" / "captures", n)
        with err.status(f"exporting {n:,} captures"):
            out = subprocess.run([sys.executable, __file__, "--child", str(root / f"c{n}"), str(root / f"out{n}")],
                                 capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        results.append((n, json.loads(out.stdout)))
    table = Table(title="captures → parquet (one process, zstd, row groups of 2,000, one worker per core)")
    for col in ("captures", "seconds", "captures/s", "vs target 20k/s", "peak RSS MB", "vs smallest", "file MB"):
        table.add_column(col, justify="right")
    base_mem = results[0][1]["peak_mb"]
    for n, r in results:
        rate = r["rows"] / r["seconds"]
        table.add_row(f"{n:,}", f"{r['seconds']:.2f}", f"{rate:,.0f}", f"{rate / TARGET:.2f}×", f"{r['peak_mb']:.0f}",
                      f"{r['peak_mb'] / base_mem:.2f}×", f"{r['bytes'] / 1e6:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
