"""Export speed and memory, and what the secret scan (the publish gate) costs.

Synthetic captures (a streamed chat completion with a tool call, the request holding a short
conversation and a tool list, as agents send them) are written once per size.

1. Each size (10k, 100k) is exported by `agentcap_cli.export.captures.write_run` in a fresh child
   process, which reports its rate and its peak RSS. Targets: ≥ 20,000 captures/s; memory flat in the
   number of captures (the 100k / 10k peak-memory ratio near 1).
2. The gate: 5,000 captures exported by `agentcap_cli.export.exporter.stage` (what `agentcap export`
   runs: run.json, captures, traces, sessions; the calls, the sessions config and the traces
   datasets are written) with and without the scan, each in a fresh child
   process, alternating, best of 3; one 8 MB capture (a base64 PNG in the request) and one
   capture whose tool result holds 16,000 distinct keys, the same way. Targets: with the scan
   ≥ 0.5× the speed without it; the 8 MB capture and the 16k keys each scanned in < 1 s.

    python bench/export.py [--quick] [--gate-only]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from agentcap_addons.wire.capture.records import new_request_id  # noqa: E402
from agentcap_addons.wire.util.clock import rfc3339_ns  # noqa: E402

TARGET = 20_000
GATE_CAPTURES = 5_000


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


def png(size: int) -> bytes:
    """A PNG of ``size`` bytes of (incompressible) image data: what a screenshot sent to a model is."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1000, size // 3000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", random.Random(1).randbytes(size)) + chunk(b"IEND", b""))


def make_big_capture(run_dir: Path, image_bytes: int = 6_000_000) -> None:
    """One call whose request carries an image as a base64 data URL (8 MB of JSON)."""
    image = base64.b64encode(png(image_bytes)).decode()
    write_call(run_dir, "big", [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}}]}])


def make_many_keys(run_dir: Path, keys: int = 16_000) -> None:
    """One call whose last tool result holds ``keys`` distinct GitHub tokens (a leaked secrets dump)."""
    rng = random.Random(2)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    dump = "\n".join(f"TOKEN_{i}=ghp_{''.join(rng.choice(alphabet) for _ in range(36))}" for i in range(keys))
    write_call(run_dir, "keys", [
        {"role": "user", "content": "What is in secrets.env?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                                                                "function": {"name": "bash", "arguments": "{\"command\": \"cat secrets.env\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": dump}])


def write_call(run_dir: Path, run_id: str, messages: list) -> None:
    (run_dir / "captures").mkdir(parents=True)
    rid = new_request_id()
    req = {"schema": 1, "request_id": rid, "seq": 1, "captured_at": rfc3339_ns(), "method": "POST",
           "path": "/v1/chat/completions", "upstream_url": "http://127.0.0.1:8000/v1/chat/completions",
           "api": "openai-chat", "run_id": run_id, "task_id": "t0001", "turn": 1, "cell": None, "repeat": None,
           "headers": {"content-type": "application/json"}, "body": {"model": "m", "messages": messages}}
    resp = {"schema": 1, "request_id": rid, "status_code": 200, "headers": {"content-type": "application/json"},
            "stream": False, "body": {"id": "c1", "object": "chat.completion", "model": "m", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "A cat."}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 3}},
            "chunks": [], "timings": {"sent": 0.0, "first_byte": 5.0, "done": 6.0}, "served_model": "m", "error": None}
    (run_dir / "captures" / f"{rid}.request.json").write_text(json.dumps(req))
    (run_dir / "captures" / f"{rid}.response.json").write_text(json.dumps(resp))


def make_run_dir(run_dir: Path, n: int) -> None:
    """A run directory as `agentcap run` leaves it: run.json, captures, a trace and sessions."""
    make_captures(run_dir / "captures", n)
    tasks = [{"task_id": f"t{i:04d}", "prompt": f"Task {i}: fix the bug in main.py", "completed_turns": 3}
             for i in range(50)]
    (run_dir / "run.json").write_text(json.dumps({"schema": 1, "run_id": run_dir.name, "agent": "bench",
                                                  "model": "m", "tasks": tasks}))
    for i in range(50):
        trace = run_dir / "traces" / f"t{i:04d}" / "session.jsonl"
        trace.parent.mkdir(parents=True)
        trace.write_text("".join(json.dumps({"type": "message", "text": "did a thing " * 20}) + "\n"
                                 for _ in range(40)))
        (run_dir / "sessions").mkdir(exist_ok=True)
        (run_dir / "sessions" / f"t{i:04d}_turn_01.out").write_text("ran the agent\n" * 100)


def child_stage(run_dir: str, out: str, scan: str) -> None:
    from agentcap_cli.export.exporter import Target, run_info, stage
    from agentcap_cli.export.scan import Gate

    target = Target(Path(run_dir), run_info(Path(run_dir)))
    cpu, started = cpu_seconds(), time.perf_counter()
    staged = stage([target], Path(out), gate=Gate() if scan == "1" else None)
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    print(json.dumps({"rows": sum(s.count("calls") for s in staged if s.kind == "captures"),
                      "seconds": elapsed, "cpu": cpu, "findings": len(target.report.findings)}))


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the export workers): the measure
    that holds when other work shares the machine."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def child(captures: str, out: str) -> None:
    from agentcap_cli.export.captures import RunInfo, write_run

    started = time.perf_counter()
    files = write_run(Path(captures), RunInfo("bench", agent="bench"), Path(out), "bench")
    elapsed = time.perf_counter() - started
    rows = sum(f.rows for f in files)
    print(json.dumps({"rows": rows, "seconds": elapsed,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "bytes": sum(f.path.stat().st_size for f in files)}))


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "0"})
    return json.loads(out.stdout)


def throughput(root: Path, sizes: list[int], err: Console) -> None:
    """Section 1: captures/s into parquet, and peak memory."""
    results = []
    for n in sizes:
        with err.status(f"writing {n:,} synthetic captures"):
            make_captures(root / f"c{n}" / "captures", n)
        with err.status(f"exporting {n:,} captures"):
            results.append((n, run_child("--child", str(root / f"c{n}"), str(root / f"out{n}"))))
    table = Table(title="captures → parquet (one process, zstd, row groups of 2,000, one worker per core)")
    for col in ("captures", "seconds", "captures/s", "vs target 20k/s", "peak RSS MB", "vs smallest", "file MB"):
        table.add_column(col, justify="right")
    base_mem = results[0][1]["peak_mb"]
    for n, r in results:
        rate = r["rows"] / r["seconds"]
        table.add_row(f"{n:,}", f"{r['seconds']:.2f}", f"{rate:,.0f}", f"{rate / TARGET:.2f}×", f"{r['peak_mb']:.0f}",
                      f"{r['peak_mb'] / base_mem:.2f}×", f"{r['bytes'] / 1e6:.1f}")
    Console(width=200).print(table)


def gate(root: Path, err: Console) -> None:
    """Section 2: the scan's cost, as ratios against the same export without it."""
    small, big, keys = root / "gate" / "bench-gate", root / "gate" / "bench-big", root / "gate" / "bench-keys"
    with err.status(f"writing {GATE_CAPTURES:,} captures, an 8 MB one and one with 16k keys"):
        make_run_dir(small, GATE_CAPTURES)
        make_big_capture(big)
        make_many_keys(keys)
    table = Table(title="the publish gate: stage() with and without the secret scan (a fresh process each, best of 3)")
    for col in ("case", "captures", "wall s: no scan", "scan", "captures/s: no scan", "scan", "speed ratio (wall)",
                "CPU s: no scan", "scan", "speed ratio (CPU)", "scan cost (CPU s)", "findings", "target"):
        table.add_column(col, justify="right")
    for name, run_dir, target in ((f"{GATE_CAPTURES:,} small", small, "ratio ≥ 0.5"), ("one 8 MB", big, "scan < 1 s"),
                                  ("16k keys in one", keys, "scan < 1 s")):
        wall: dict[str, float] = {}
        cpu: dict[str, float] = {}
        rows = found = 0
        with err.status(f"exporting {name} with and without the scan"):
            for attempt in range(3):
                for scan in ("0", "1"):
                    out = root / "gate" / f"out-{run_dir.name}-{scan}-{attempt}"
                    r = run_child("--child-stage", str(run_dir), str(out), scan)
                    rows = r["rows"]
                    found = r["findings"] if scan == "1" else found
                    wall[scan] = min(wall.get(scan, float("inf")), r["seconds"])
                    cpu[scan] = min(cpu.get(scan, float("inf")), r["cpu"])
        table.add_row(name, f"{rows:,}", f"{wall['0']:.2f}", f"{wall['1']:.2f}", f"{rows / wall['0']:,.0f}",
                      f"{rows / wall['1']:,.0f}", f"{wall['0'] / wall['1']:.2f}×", f"{cpu['0']:.2f}", f"{cpu['1']:.2f}",
                      f"{cpu['0'] / cpu['1']:.2f}×", f"{cpu['1'] - cpu['0']:.2f}", f"{found:,}", target)
    Console(width=200).print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2k and 20k captures instead of 10k and 100k")
    ap.add_argument("--gate-only", action="store_true", help="only section 2, the secret scan's cost")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--child-stage", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.child_stage:
        child_stage(*args.child_stage)
        return
    sizes = [2_000, 20_000] if args.quick else [10_000, 100_000]
    root = Path(tempfile.mkdtemp(prefix="bench-export-"))
    err = Console(stderr=True)
    try:
        if not args.gate_only:
            throughput(root, sizes, err)
        gate(root, err)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
