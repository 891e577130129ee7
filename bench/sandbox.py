"""Sandbox start-up: how long until a turn's command runs in a fresh container (target ≤ 1 s warm).

Three ways of starting a container from the same (already built) image, interleaved round by round
so drift hits all alike:

  bare     `podman run --rm --network none IMAGE CMD` (the CLI: podman's own floor)
  api      the same through podman-py and the API service (no entry script, no forwarders)
  agentcap sandbox.container.run_container: entry script, socat forwarders for the proxy and one
           mock (ready before the command runs), session files, labels, watchdog, removal

"start" is the time from the call until the command inside wrote its first timestamp (host and
container share the clock); "total" adds exit and removal. Ratios are against `bare`.
A last section runs `pi --version` (a real agent CLI) through run_container for the warm turn as
an agent sees it.

    python bench/sandbox.py [--quick] [--image pi]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from sandbox.bridge import Bridge  # noqa: E402
from sandbox.container import ContainerSpec, Mount, run_container  # noqa: E402
from sandbox.images import ensure_image  # noqa: E402
from sandbox.podman import get_podman  # noqa: E402

STAMP = "date +%s.%N"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 rounds instead of 20")
    ap.add_argument("--image", default="pi", help="the agent image to start (built if missing)")
    args = ap.parse_args()
    rounds = 5 if args.quick else 20
    err = Console(stderr=True)
    podman = get_podman()
    with err.status(f"image {args.image}"):
        tag = ensure_image(podman, args.image)
    client = podman.client()
    work = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    stamp_file = work / "stamp"
    results: dict[str, dict[str, list[float]]] = {k: {"start": [], "total": []} for k in ("bare", "api", "agentcap")}

    def bare() -> float:
        out = subprocess.run([podman.binary, "run", "--rm", "--network", "none", tag, "bash", "-c", STAMP],
                             env=podman.env(), capture_output=True, text=True, check=True)
        return float(out.stdout.strip())

    def api() -> float:
        c = client.containers.create(tag, command=["bash", "-c", STAMP], network_mode="none")
        try:
            c.start()
            c.wait(condition="exited")
            return float(b"".join(c.logs(stdout=True, stderr=False)).decode().strip())
        finally:
            c.remove(force=True)

    with Bridge(work / "sock") as bridge:
        forwards = bridge.forwards({"proxy": 1, "mock": 2})  # the ports need not answer: nothing connects

        def agentcap() -> float:
            spec = ContainerSpec(image=tag, command=["bash", "-c", f"{STAMP} > {stamp_file}"], workdir=work,
                                 stdout=work / "out", stderr=work / "err", forwards=forwards, timeout_s=60,
                                 labels={"agentcap.run": "bench"}, mounts=[Mount(work)])
            result = run_container(podman, spec)
            assert result.returncode == 0, (work / "err").read_text()
            return float(stamp_file.read_text().strip())

        ways = {"bare": bare, "api": api, "agentcap": agentcap}
        for fn in ways.values():  # warm-up: page cache, the API service, the image's layers
            fn()
        with err.status("") as status:
            for i in range(rounds):
                for name, fn in ways.items():
                    status.update(f"round {i + 1}/{rounds}: {name}")
                    t0 = time.time()
                    started = fn()
                    results[name]["start"].append(started - t0)
                    results[name]["total"].append(time.time() - t0)

        agent_turn: list[float] = []
        if args.image == "pi":
            for _ in range(max(3, rounds // 4)):
                spec = ContainerSpec(image=tag, command=["pi", "--version"], workdir=work, stdout=work / "out",
                                     stderr=work / "err", forwards=forwards, timeout_s=60)
                t0 = time.time()
                assert run_container(podman, spec).returncode == 0
                agent_turn.append(time.time() - t0)

    table = Table(title=f"container start, image {args.image}, {rounds} rounds (p50 / p90, seconds)")
    for col in ("way", "start p50", "start p90", "total p50", "total p90", "start vs bare"):
        table.add_column(col, justify="right" if col != "way" else "left")
    base = statistics.median(results["bare"]["start"])
    for name, r in results.items():
        s, t = sorted(r["start"]), sorted(r["total"])
        p90 = lambda xs: xs[min(len(xs) - 1, int(len(xs) * 0.9))]  # noqa: E731
        table.add_row(name, f"{statistics.median(s):.3f}", f"{p90(s):.3f}", f"{statistics.median(t):.3f}",
                      f"{p90(t):.3f}", f"{statistics.median(s) / base:.2f}×")
    console = Console()
    console.print(table)
    if agent_turn:
        console.print(f"`pi --version` through run_container (start + node start-up + exit + removal): "
                      f"p50 {statistics.median(agent_turn):.3f} s")
    console.print(f"warm start target ≤ 1 s: agentcap p50 start {statistics.median(results['agentcap']['start']):.3f} s")


if __name__ == "__main__":
    main()
