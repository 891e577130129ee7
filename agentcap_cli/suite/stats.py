"""Statistics for repeated runs: Wilson interval, pass^k, aggregates, flakiness."""

from __future__ import annotations

import math
import statistics
from math import comb
from typing import Any


def wilson(passes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a pass rate; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = passes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def pass_hat_k(passes: int, n: int) -> dict[int, float]:
    """pass^k for k = 1..n: the chance that k repeats drawn from these n all pass (C(c,k) / C(n,k))."""
    return {k: comb(passes, k) / comb(n, k) for k in range(1, n + 1)}


def aggregate(values: list[float | None]) -> dict[str, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "stddev": None, "median": None, "min": None, "max": None}
    return {"mean": statistics.fmean(vals), "stddev": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def cell_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    passes = sum(1 for r in records if r["passed"])
    lo, hi = wilson(passes, n)
    return {"repeats": n, "passed": passes, "pass_rate": passes / n if n else 0.0, "wilson_95": [lo, hi],
            "pass_hat_k": pass_hat_k(passes, n), "flaky": 0 < passes < n,
            "duration_s": aggregate([r["duration_s"] for r in records]),
            "tokens": aggregate([r["tokens"] for r in records]),
            "cost_usd": aggregate([r["cost_usd"] for r in records]),
            "judge_score": aggregate([(r.get("judge") or {}).get("score") for r in records])}
