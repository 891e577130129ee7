"""`agentcap inspect` time to first paint on exported parquet files of 1k / 10k / 100k rows.

Each file has the export schema (row groups of 2,000, realistic request / response sizes). Timed: from
opening the target to the requests table holding its first rows and the preview painted, in textual's
headless pilot; baseline in the same process: reading the file's footer alone. Target: ≤ 1.5 s at 100k.

    python bench/inspect_paint.py [--quick]

(Not bench/inspect.py: a file of that name in bench/ shadows the standard library's `inspect` for
every other script there.)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from agentcap_cli.commands.inspect import resolve  # noqa: E402
from agentcap_cli.export.captures import FOOTER_KEY, SCHEMA  # noqa: E402
from agentcap_cli.inspect.app import InspectApp  # noqa: E402

TARGET_S = 1.5


def make_parquet(path: Path, n: int) -> None:
    request = json.dumps({"model": "m", "stream": True, "messages": [
        {"role": "system", "content": "You are a coding agent. " * 40}, {"role": "user", "content": "fix the bug"}]})
    response = "".join(f'data: {{"choices":[{{"index":0,"delta":{{"content":"w{i} "}}}}]}}\n\n' for i in range(30))
    writer = pq.ParquetWriter(path, SCHEMA.with_metadata({FOOTER_KEY: json.dumps({"rows": n}).encode()}),
                              compression="zstd")
    for start in range(0, n, 2000):
        rows = [{"request_id": f"{i:032x}", "seq": i, "run_id": "bench", "task_id": f"t{i % 100:04d}", "turn": 1,
                 "model": "m", "api": "openai-chat", "captured_at": 1_795_000_000_000_000_000 + i, "status_code": 200,
                 "stream": True, "request": request, "response": response, "ttft_ms": 12.0, "duration_ms": 40.0,
                 "prompt_tokens": 900, "completion_tokens": 30, "n_tool_calls": 0, "finish_reason": "stop"}
                for i in range(start + 1, min(n, start + 2000) + 1)]
        writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMA))
    writer.close()


async def first_paint(path: Path) -> float:
    started = time.perf_counter()
    app = InspectApp(resolve(str(path), path.parent))
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        assert app.query_one("#table").row_count > 0
        took = time.perf_counter() - started
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one round instead of three")
    args = ap.parse_args()
    rounds = 1 if args.quick else 3
    root = Path(tempfile.mkdtemp(prefix="bench-inspect-"))
    err = Console(stderr=True)
    table = Table(title="agentcap inspect: first paint of an exported parquet file (headless pilot)")
    for col in ("rows", "file MB", "footer only ms", "first paint ms", "vs footer", "vs target 1.5 s"):
        table.add_column(col, justify="right")
    for n in (1_000, 10_000, 100_000):
        path = root / f"{n}.parquet"
        with err.status(f"writing {n:,} rows"):
            make_parquet(path, n)
        footer, paint = [], []
        for _ in range(rounds):
            t = time.perf_counter()
            pq.read_metadata(path)
            footer.append(time.perf_counter() - t)
            paint.append(asyncio.run(first_paint(path)))
        f, p = statistics.median(footer), statistics.median(paint)
        table.add_row(f"{n:,}", f"{path.stat().st_size / 1e6:.1f}", f"{f * 1000:.1f}", f"{p * 1000:.0f}",
                      f"{p / f:.0f}×", f"{p / TARGET_S:.2f}×")
    Console().print(table)


if __name__ == "__main__":
    main()
