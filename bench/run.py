"""`agentcap run` throughput: one corpus at -j 1 vs -j 4 vs -j 8, against the embedded scripted upstream.

Every configuration runs the same corpus (N tasks × 1 turn of a real agent in podman, through one
capture proxy) into its own run directory in one process; wall time is compared with -j 1, and the
captures on disk are counted against the calls the model server answered (none may be lost).

    python bench/run.py [--quick] [--agent pi] [--tasks 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from agentcap_addons.wire.capture.policy import api_kind  # noqa: E402
from agentcap_addons.wire.capture.records import iter_captures  # noqa: E402
from agentcap_cli.corpus.runner import CorpusRun, RunOptions, new_record  # noqa: E402
from agentcap_cli.corpus.tasks import Task  # noqa: E402
from agentcap_cli.harness.services import EMBEDDED_MODEL, Services  # noqa: E402
from sandbox.images import ensure_image  # noqa: E402
from sandbox.podman import get_podman  # noqa: E402


def llm_calls(services: Services) -> int:
    assert services.model_server is not None
    return sum(1 for m, p in services.model_server.app.seen if m == "POST" and api_kind(p) != "other")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="-j 1 and -j 4 only")
    ap.add_argument("--agent", default="pi")
    ap.add_argument("--tasks", type=int, default=8)
    args = ap.parse_args()
    err = Console(stderr=True, quiet=True)  # the runs' own progress stays out of the figures
    with Console(stderr=True).status(f"image {args.agent}"):
        ensure_image(get_podman(), args.agent)
    tasks = [Task(f"t{i:04d}", f"Task {i}: look at the directory and report.") for i in range(1, args.tasks + 1)]
    root = Path(tempfile.mkdtemp(prefix="bench-run-"))
    rows = []
    with Services(None, None) as services:
        for jobs in ([1, 4] if args.quick else [1, 4, 8]):
            run_dir = root / f"{args.agent}-j{jobs}"
            run_dir.mkdir()
            opts = RunOptions(agent=args.agent, model=EMBEDDED_MODEL, jobs=jobs, timeout_s=300)
            record = new_record(run_dir, opts, tasks, "scripted", "embedded:scripted", None)
            before = llm_calls(services)
            started = time.monotonic()
            result = CorpusRun(services, run_dir, record, opts, err).execute()
            wall = time.monotonic() - started
            answered = llm_calls(services) - before
            captured = sum(1 for c in iter_captures(run_dir / "captures") if c.response is not None)
            rows.append((jobs, wall, answered, captured, sum(t.done for t in result.tasks)))
    table = Table(title=f"agentcap run: {args.tasks} tasks × 1 turn of {args.agent}, embedded scripted upstream")
    for col in ("-j", "wall s", "speed-up vs -j 1", "tasks/s", "calls answered", "captured", "lost", "tasks ok"):
        table.add_column(col, justify="right")
    base = rows[0][1]
    for jobs, wall, answered, captured, ok in rows:
        table.add_row(str(jobs), f"{wall:.1f}", f"{base / wall:.2f}×", f"{args.tasks / wall:.2f}",
                      str(answered), str(captured), str(answered - captured), f"{ok}/{args.tasks}")
    Console().print(table)


if __name__ == "__main__":
    main()
