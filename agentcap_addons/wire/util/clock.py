"""Timestamps of capture records: RFC 3339 UTC with nanoseconds, written fast (the proxy stamps every
request) and read back."""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, datetime, timedelta, timezone

_SECOND_CACHE: tuple[int, str] = (-1, "")

def rfc3339_ns(ns: int | None = None) -> str:
    """An RFC 3339 UTC timestamp with nanoseconds, e.g. ``2026-11-22T01:59:14.123456789Z``."""
    global _SECOND_CACHE
    if ns is None:
        ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    cached_secs, base = _SECOND_CACHE
    if cached_secs != secs:
        base = datetime.fromtimestamp(secs, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _SECOND_CACHE = (secs, base)
    return f"{base}.{frac:09d}Z"

_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")

@functools.lru_cache(maxsize=4096)
def _epoch_seconds(base: str, zone: str) -> int:
    tz = UTC
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        hh, mm = zone[1:].split(":")
        tz = timezone(sign * timedelta(hours=int(hh), minutes=int(mm)))
    return int(datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=tz).timestamp())

def parse_rfc3339_ns(text: str) -> int:
    """Inverse of :func:`rfc3339_ns` (nanoseconds since the epoch); accepts any fraction length."""
    m = _RFC3339.fullmatch(text)
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    frac = (m.group(2) or "0").ljust(9, "0")
    return _epoch_seconds(m.group(1), m.group(3)) * 1_000_000_000 + int(frac)
