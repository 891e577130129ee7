"""Replay: a recorded run served back, request by request (vcrpy's idea, for LLM APIs).

A request matches a recording when the chosen matchers agree (default: method, path and body).
Bodies are compared after normalising what legitimately changes from run to run — UUIDs, long hex
ids, timestamps and the ``ignore`` paths — everything else must be exactly equal. Identical
requests are served in recorded order, each recording once. A miss names the nearest recording
and the first JSON path where they differ.
"""

from __future__ import annotations

import base64
import difflib
import json
import os
import re
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, NoReturn

from .policy import api_kind, path_only
from .render import Rendered, error_body
from .store import Capture, iter_captures, resolve_captures_dir

MATCHERS = ("method", "path", "api", "model", "body")
DEFAULT_MATCH = ("method", "path", "body")
DEFAULT_IGNORE = ("metadata.user_id", "user", "prompt_cache_key", "safety_identifier")

_VOLATILE = re.compile(
    r"(?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"|(?P<time>\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?)"
    r"|(?P<id>\b(?:call|toolu|fc|msg|resp|rs|chatcmpl|req)_[A-Za-z0-9]{8,}\b)"
    r"|(?P<hex>\b[0-9a-f]{16,}\b)"
)


def _placeholder(m: re.Match[str]) -> str:
    return f"<{m.lastgroup}>"


def normalise(value: Any, ignore: frozenset[str], path: str = "") -> Any:
    """A copy of ``value`` with volatile strings replaced and ignored paths dropped."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            p = f"{path}.{k}" if path else str(k)
            if p in ignore:
                continue
            out[k] = normalise(v, ignore, p)
        return out
    if isinstance(value, list):
        return [normalise(v, ignore, path) for v in value]
    if isinstance(value, str):
        return _VOLATILE.sub(_placeholder, value) if len(value) >= 8 else value
    return value


def diff_paths(a: Any, b: Any, path: str = "$", limit: int = 200) -> list[str]:
    """JSON paths where ``a`` and ``b`` differ, depth first, at most ``limit`` of them."""
    out: list[str] = []

    def walk(x: Any, y: Any, p: str) -> None:
        if len(out) >= limit:
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for k in list(x) + [k for k in y if k not in x]:
                if k not in x or k not in y:
                    out.append(f"{p}.{k}")
                else:
                    walk(x[k], y[k], f"{p}.{k}")
        elif isinstance(x, list) and isinstance(y, list):
            for i in range(max(len(x), len(y))):
                if i >= len(x) or i >= len(y):
                    out.append(f"{p}[{i}]")
                else:
                    walk(x[i], y[i], f"{p}[{i}]")
        elif x != y or type(x) is not type(y):
            out.append(p)

    walk(a, b, path)
    return out


def _at(doc: Any, jpath: str) -> Any:
    cur = doc
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", jpath[1:]):
        key, idx = part
        try:
            cur = cur[int(idx)] if idx else cur[key]
        except (KeyError, IndexError, TypeError):
            return "<absent>"
    return cur


@dataclass
class Recording:
    capture: Capture
    method: str
    path: str
    api: str
    model: Any
    body: Any  # normalised


class Miss(LookupError):
    def __init__(self, message: str, nearest: Recording | None, diff: str | None) -> None:
        super().__init__(message)
        self.nearest, self.diff = nearest, diff


class Cassette:
    def __init__(
        self,
        source: str | os.PathLike[str],
        match_on: tuple[str, ...] = DEFAULT_MATCH,
        ignore: tuple[str, ...] = DEFAULT_IGNORE,
    ) -> None:
        unknown = [m for m in match_on if m not in MATCHERS]
        if unknown:
            raise ValueError(f"unknown matcher(s) {', '.join(unknown)}; known: {', '.join(MATCHERS)}")
        self.source = str(source)
        self.match_on = tuple(match_on)
        self.ignore = frozenset(ignore)
        self._lock = threading.Lock()
        self.recordings: list[Recording] = []
        self._queues: dict[str, deque[Recording]] = {}
        self._used: dict[str, list[Recording]] = {}
        d = resolve_captures_dir(source)
        if not d.is_dir():
            raise FileNotFoundError(f"{source}: no captures directory here (expected a run directory or its captures/)")
        for cap in iter_captures(d):
            req = cap.request
            if cap.response is None or req.get("method") == "WEBSOCKET":
                continue
            body = req.get("body") if "body" in req else req.get("body_b64")
            rec = Recording(cap, req.get("method", "POST"), path_only(req.get("path", "")), req.get("api", "other"),
                            (body or {}).get("model") if isinstance(body, dict) else None,
                            normalise(body, self.ignore))
            self.recordings.append(rec)
            self._queues.setdefault(self._key_of(rec), deque()).append(rec)
        if not self.recordings:
            raise FileNotFoundError(f"{source}: no finished captures to replay")

    def _key_of(self, rec: Recording) -> str:
        parts = {m: getattr(rec, m) for m in self.match_on}
        return json.dumps(parts, sort_keys=True, ensure_ascii=False)

    def take(self, method: str, path: str, body: Any) -> Recording:
        """The next unused recording for this request, or :class:`Miss`."""
        probe = Recording(None, method, path_only(path), api_kind(path),  # type: ignore[arg-type]
                          body.get("model") if isinstance(body, dict) else None, normalise(body, self.ignore))
        key = self._key_of(probe)
        with self._lock:
            q = self._queues.get(key)
            if q:
                rec = q.popleft()
                self._used.setdefault(key, []).append(rec)
                return rec
            used = self._used.get(key)
        if used:
            last = used[-1]
            raise Miss(f"all {len(used)} recording(s) of this request were served already "
                       f"(last: {last.capture.request_id}, seq {last.capture.seq})", last, None)
        return self._nearest_miss(probe)

    def _nearest_miss(self, probe: Recording) -> NoReturn:
        best: tuple[tuple[int, float], Recording, list[str]] | None = None
        for rec in self.recordings:
            d = [f"<{m}>" for m in ("method", "path") if m in self.match_on and getattr(rec, m) != getattr(probe, m)]
            d += diff_paths(rec.body, probe.body) if "body" in self.match_on else []
            # fewest differences first; among those, the most similar first differing value
            similar = 0.0
            if d and d[0].startswith("$"):
                a = json.dumps(_at(rec.body, d[0]), ensure_ascii=False)[:500]
                b = json.dumps(_at(probe.body, d[0]), ensure_ascii=False)[:500]
                similar = difflib.SequenceMatcher(None, a, b).ratio()
            score = (len(d), -similar)
            if best is None or score < best[0]:
                best = (score, rec, d)
        assert best is not None
        _, rec, d = best
        first = d[0] if d else None
        detail = ""
        if first and first.startswith("$"):
            got, want = _at(probe.body, first), _at(rec.body, first)
            detail = f": recorded {json.dumps(want, ensure_ascii=False)[:120]}, got {json.dumps(got, ensure_ascii=False)[:120]}"
        raise Miss(
            f"no recording matches {probe.method} {probe.path}; nearest is {rec.capture.request_id} "
            f"(seq {rec.capture.seq}), first difference at {first or '?'}{detail} ({len(d)} difference(s))",
            rec,
            first,
        )


def replay_response(rec: Recording, timing: str = "fast") -> Rendered:
    """The recorded response as it was sent: same status, same bytes, same chunk boundaries
    (and, with ``timing="recorded"``, the same pauses)."""
    resp = rec.capture.response or {}
    headers = resp.get("headers") or {}
    status = resp.get("status_code") or 502
    ctype = headers.get("content-type", "application/json")
    if "raw" in resp or "raw_b64" in resp:
        data = resp["raw"].encode("utf-8") if "raw" in resp else base64.b64decode(resp["raw_b64"])
        chunks: list[bytes] = []
        pos = 0
        for _, n in resp.get("chunks") or []:
            chunks.append(data[pos : pos + int(n)])
            pos += int(n)
        if pos < len(data) or not chunks:
            chunks.append(data[pos:])
        out = Rendered(status, ctype, chunks)
        if timing == "recorded":
            stamps = [float(ms) for ms, _ in resp.get("chunks") or []]
            out.pauses_ms = [stamps[0] if stamps else 0.0] + [max(0.0, b - a) for a, b in zip(stamps, stamps[1:])]
        if headers.get("content-encoding"):
            out.headers["content-encoding"] = headers["content-encoding"]
        return out
    if "body_b64" in resp:
        return Rendered(status, ctype, [base64.b64decode(resp["body_b64"])])
    body = resp.get("body")
    data = b"" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Rendered(status, ctype, [data])


def miss_response(api: str, miss: Miss) -> Rendered:
    return error_body(api, 404, f"agentcap replay: {miss}", "agentcap_replay_miss")
