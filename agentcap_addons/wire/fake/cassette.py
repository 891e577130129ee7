"""Replay: a recorded run served back, request by request (vcrpy's idea, for LLM APIs).

A request matches a recording when the chosen matchers agree (default: method, path and body).
Bodies are compared after normalising what legitimately changes from run to run — UUIDs, long hex
ids, timestamps and dates, codex's exec-tool header (``Chunk ID``, ``Wall time``), claude-code's
``OS Version`` (the host's kernel) and the ``ignore`` paths — and, when the caller names them, the
run's own directory and id (agents put their working directory in the system prompt, and it holds the
run id): both sides get ``<run_dir>`` / ``<run_id>`` instead. Everything else must be exactly equal.
Identical requests are served in recorded order, each
recording once. A miss names the nearest recording and the first JSON path where they differ.

A source is a run directory (or its ``captures/``), a project cassette (``cassettedir``), or a list
of captures the caller picked (one task of a run).
"""

from __future__ import annotations

import base64
import difflib
import json
import os
import re
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

from agentcap_addons.wire.api.render import Rendered, error_body
from agentcap_addons.wire.capture.policy import api_kind, path_only
from agentcap_addons.wire.capture.records import (
    Capture,
    iter_captures,
    resolve_captures_dir,
)
from agentcap_addons.wire.fake.cassettedir import Subs, substitute
from agentcap_addons.wire.util.errors import AgentcapError

from . import cassettedir

MATCHERS = ("method", "path", "api", "model", "body")
DEFAULT_MATCH = ("method", "path", "body")
# client_metadata: codex's per-turn ids and start time (as metadata.user_id is claude's)
DEFAULT_IGNORE = ("metadata.user_id", "user", "prompt_cache_key", "safety_identifier", "client_metadata")

_VOLATILE = re.compile(
    r"(?P<id>\b(?:call|toolu|fc|fco|msg|resp|rs|chatcmpl|req)_[A-Za-z0-9][A-Za-z0-9-]{7,}\b)"
    r"|(?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"|(?P<time>\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?)"
    r"|(?P<date>\b\d{4}-\d\d-\d\d\b)"
    r"|(?P<hex>\b[0-9a-f]{16,}\b)"
    # codex wraps every exec result in a header with a random chunk id and the measured time
    r"|(?<=Chunk ID: )(?P<chunk>[0-9a-f]{4,})|(?<=Wall time: )(?P<elapsed>\d+(?:\.\d+)?)(?= seconds)"
    # claude-code's environment block names the host's kernel (a container shares it): CI's differs
    r"|(?<=OS Version: )(?P<os>[^\n\"]+)"
)


def _placeholder(m: re.Match[str]) -> str:
    return f"<{m.lastgroup}>"


def normalise(value: Any, ignore: frozenset[str], path: str = "", subs: Subs = ()) -> Any:
    """A copy of ``value`` with ignored paths dropped, the run's own values (``subs``: literal →
    placeholder) replaced, then volatile strings replaced."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            p = f"{path}.{k}" if path else str(k)
            if p in ignore:
                continue
            out[k] = normalise(v, ignore, p, subs)
        return out
    if isinstance(value, list):
        return [normalise(v, ignore, path, subs) for v in value]
    if isinstance(value, str):
        value = substitute(value, subs) if subs else cassettedir.modernise(value)  # (a recording's old paths too)
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


_ABSENT = "<absent>"


def _at(doc: Any, jpath: str) -> Any:
    cur = doc
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", jpath[1:]):
        key, idx = part
        try:
            cur = cur[int(idx)] if idx else cur[key]
        except (KeyError, IndexError, TypeError):
            return _ABSENT
    return cur


def excerpts(want: Any, got: Any, width: int = 120) -> tuple[Any, Any]:
    """Two differing values as a person wants to see them: long strings cut to a window around their
    first differing character (a system prompt differs somewhere in its middle)."""
    if not (isinstance(want, str) and isinstance(got, str)) or max(len(want), len(got)) <= width:
        return want, got
    i = next((k for k, (x, y) in enumerate(zip(want, got)) if x != y), min(len(want), len(got)))
    start = max(0, i - width // 3)

    def cut(text: str) -> str:
        return ("…" if start else "") + text[start:start + width] + ("…" if len(text) > start + width else "")

    return cut(want), cut(got)


@dataclass
class Recording:
    capture: Capture
    method: str
    path: str
    api: str
    model: Any
    body: Any  # normalised


class Miss(AgentcapError, LookupError):
    """No recording for a request. ``diff`` is the first differing JSON path (None when every recording
    of an identical request was served already); ``recorded`` / ``got`` the normalised values there."""

    def __init__(self, message: str, nearest: Recording | None, diff: str | None, recorded: Any = None,
                 got: Any = None) -> None:
        super().__init__(message)
        self.nearest, self.diff, self.recorded, self.got = nearest, diff, recorded, got


class Cassette:
    def __init__(
        self,
        source: str | os.PathLike[str],
        match_on: tuple[str, ...] = DEFAULT_MATCH,
        ignore: tuple[str, ...] = DEFAULT_IGNORE,
        *,
        captures: Iterable[Capture] | None = None,
        subs: Subs = (),
    ) -> None:
        """``captures`` (when given) are the recordings, ``source`` then only names them in messages;
        ``subs`` are the recorded run's own values (literal → placeholder), replaced in its bodies and
        responses (a project cassette holds the placeholders already)."""
        unknown = [m for m in match_on if m not in MATCHERS]
        if unknown:
            raise ValueError(f"unknown matcher(s) {', '.join(unknown)}; known: {', '.join(MATCHERS)}")
        self.source = str(source)
        self.match_on = tuple(match_on)
        self.ignore = frozenset(ignore)
        self.subs = tuple(subs)
        self._lock = threading.Lock()
        self.recordings: list[Recording] = []
        self._queues: dict[str, deque[Recording]] = {}
        self._used: dict[str, list[Recording]] = {}
        if captures is None:
            captures = self._read(source)
        for cap in captures:
            req = cap.request
            if cap.response is None or req.get("method") == "WEBSOCKET":
                continue
            body = req.get("body") if "body" in req else req.get("body_b64")
            rec = Recording(cap, req.get("method", "POST"), path_only(req.get("path", "")), req.get("api", "other"),
                            (body or {}).get("model") if isinstance(body, dict) else None,
                            normalise(body, self.ignore, subs=self.subs))
            self.recordings.append(rec)
            self._queues.setdefault(self._key_of(rec), deque()).append(rec)
        if not self.recordings:
            raise FileNotFoundError(f"{source}: no finished captures to replay")

    @staticmethod
    def _read(source: str | os.PathLike[str]) -> Iterable[Capture]:
        if cassettedir.is_cassette(source):
            return cassettedir.load(source)
        d = resolve_captures_dir(source)
        if not d.is_dir():
            raise FileNotFoundError(f"{source}: no captures directory here (expected a run directory or its captures/)")
        return iter_captures(d)

    def _key_of(self, rec: Recording) -> str:
        parts = {m: getattr(rec, m) for m in self.match_on}
        return json.dumps(parts, sort_keys=True, ensure_ascii=False)

    def take(self, method: str, path: str, body: Any, subs: Subs = ()) -> Recording:
        """The next unused recording for this request, or :class:`Miss`. ``subs``: this run's own values
        (literal → the same placeholders as the recording's)."""
        probe = Recording(None, method, path_only(path), api_kind(path),  # type: ignore[arg-type]
                          body.get("model") if isinstance(body, dict) else None,
                          normalise(body, self.ignore, subs=subs))
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
        detail, got, want = "", None, None
        if first and first.startswith("$"):
            want, got = excerpts(_at(rec.body, first), _at(probe.body, first))
            detail = f": recorded {json.dumps(want, ensure_ascii=False)[:200]}, got {json.dumps(got, ensure_ascii=False)[:200]}"
        raise Miss(
            f"no recording matches {probe.method} {probe.path}; nearest is {rec.capture.request_id} "
            f"(seq {rec.capture.seq}), first difference at {first or '?'}{detail} ({len(d)} difference(s))",
            rec,
            first,
            want,
            got,
        )


def replay_response(rec: Recording, timing: str = "fast", subs: Subs = (), recorded_subs: Subs = ()) -> Rendered:
    """The recorded response as it was sent: same status, same bytes, same chunk boundaries
    (and, with ``timing="recorded"``, the same pauses). With ``subs`` the recorded run's own values
    (``recorded_subs``, or a cassette's placeholders) become this run's: a tool call the model made
    with an absolute path names this run's workspace (the body then goes as one chunk)."""
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
        rewritten = _rewrite(data, subs, recorded_subs)
        if rewritten is not data:
            chunks = [rewritten]
        out = Rendered(status, ctype, chunks)
        if timing == "recorded" and rewritten is data:
            stamps = [float(ms) for ms, _ in resp.get("chunks") or []]
            out.pauses_ms = [stamps[0] if stamps else 0.0] + [max(0.0, b - a) for a, b in zip(stamps, stamps[1:])]
        if headers.get("content-encoding"):
            out.headers["content-encoding"] = headers["content-encoding"]
        return out
    if "body_b64" in resp:
        return Rendered(status, ctype, [base64.b64decode(resp["body_b64"])])
    body = resp.get("body")
    data = b"" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Rendered(status, ctype, [_rewrite(data, subs, recorded_subs)])


def _rewrite(data: bytes, subs: Subs, recorded_subs: Subs) -> bytes:
    """The recorded run's values → placeholders → this run's values; ``data`` itself when nothing changes."""
    if not subs and not recorded_subs:
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    new = cassettedir.restore(substitute(text, recorded_subs), subs)
    return data if new == text else new.encode("utf-8")


def miss_response(api: str, miss: Miss) -> Rendered:
    return error_body(api, 404, f"agentcap replay: {miss}", "agentcap_replay_miss")
