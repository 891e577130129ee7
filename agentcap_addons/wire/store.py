"""The capture files on disk: the one module that knows their names and their format.

A capture is one model call: ``<rid>.request.json`` written before the request is forwarded and
``<rid>.response.json`` written when the exchange ends (DESIGN.md, "The capture contract").
The addon writes through :class:`CaptureDir`; export, inspect and replay read through
:func:`iter_captures` / :func:`read_capture`. No mitmproxy import here, on purpose.
"""

from __future__ import annotations

import base64
import collections
import functools
import json
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

SCHEMA = 1
REQUEST_SUFFIX = ".request.json"
RESPONSE_SUFFIX = ".response.json"
ERROR_KINDS = (
    "upstream_unreachable",
    "upstream_reset",
    "client_disconnected",
    "timeout",
    "killed",
    "proxy_shutdown",
)
_RID = re.compile(r"^[0-9a-f]{32}$")


def new_request_id() -> str:
    """32 lowercase hex digits, unique without coordination between processes."""
    return uuid.uuid4().hex


try:  # orjson reads JSON several times faster; readers (export, inspect) parse a lot of it
    import orjson as _orjson

    def fast_loads(data: bytes | str) -> Any:
        """``json.loads``, through orjson when it is installed (and json when orjson refuses:
        NaN, integers over 64 bits)."""
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:
            return json.loads(data)
except ImportError:  # pragma: no cover - orjson is a dependency
    fast_loads = json.loads  # type: ignore[assignment]


_SECOND_CACHE: tuple[int, str] = (-1, "")


def rfc3339_ns(ns: int | None = None) -> str:
    """An RFC 3339 UTC timestamp with nanoseconds, e.g. ``2026-11-22T01:59:14.123456789Z``."""
    global _SECOND_CACHE
    if ns is None:
        ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    cached_secs, base = _SECOND_CACHE
    if cached_secs != secs:
        base = datetime.fromtimestamp(secs, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _SECOND_CACHE = (secs, base)
    return f"{base}.{frac:09d}Z"


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


@functools.lru_cache(maxsize=4096)
def _epoch_seconds(base: str, zone: str) -> int:
    tz = timezone.utc
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


def dumps(obj: Any) -> bytes:
    """Compact, strict UTF-8 JSON (RFC 8259: no NaN / Infinity, which strict readers reject —
    non-finite numbers become the strings "NaN", "Infinity", "-Infinity"); falls back to ASCII
    escapes when a string holds a lone surrogate."""
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")
    except ValueError:  # a non-finite float
        return dumps(_finite(obj))


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees either the old file or the whole new one.

    The temporary name is unique per process and thread (cheaper than ``tempfile.mkstemp``,
    which matters on the capture path: two writes per call)."""
    tmp = f"{path.parent}/.{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


_DIR_FDS: dict[str, int] = {}
_DIR_FDS_LOCK = threading.Lock()
_HAVE_TMPFILE = hasattr(os, "O_TMPFILE")


def _dir_fd(directory: str) -> int:
    fd = _DIR_FDS.get(directory)
    if fd is None:
        with _DIR_FDS_LOCK:
            fd = _DIR_FDS.get(directory)
            if fd is None:
                if len(_DIR_FDS) >= 64:  # a long-lived proxy writing to many runs: start over
                    for old in _DIR_FDS.values():
                        os.close(old)
                    _DIR_FDS.clear()
                fd = _DIR_FDS[directory] = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    return fd


class InodePool:
    """Unnamed files (``O_TMPFILE``) made ahead of time, per directory, by a helper thread.

    Allocating an inode is the slow part of creating a file (measured here on ext4: ~150-400 µs
    when the disk has been idle for a few ms, against ~10 µs for the write and the link). The
    proxy writes each request record before forwarding the request, so that allocation would sit
    in every call's time to first byte; with a pool it happens between calls instead.
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._pools: dict[str, collections.deque[int]] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def take(self, directory: str) -> int | None:
        """An open, unnamed, writable file in ``directory``; None when none is ready (yet)."""
        pool = self._pools.get(directory)
        fd = None
        if pool is None:
            with self._lock:
                self._pools.setdefault(directory, collections.deque())
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="agentcap-inodes", daemon=True)
                    self._thread.start()
        else:
            try:
                fd = pool.popleft()
            except IndexError:
                pass
        self._wake.set()
        return fd

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self.refill()

    def refill(self) -> None:
        """Top every known directory's pool up to ``size`` (the helper thread's work)."""
        for directory, pool in list(self._pools.items()):
            while len(pool) < self.size:
                try:
                    pool.append(os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o644))
                except OSError:
                    self._pools.pop(directory, None)  # gone, or no O_TMPFILE there: stop trying
                    break


def create_file(path: Path, data: bytes, pool: InodePool | None = None) -> None:
    """Create ``path`` (which must not exist yet) with ``data``, atomically.

    On Linux the file is written as an unnamed inode (``O_TMPFILE``, from ``pool`` when it has
    one ready) and then linked into the directory complete: one directory operation instead of
    create + rename, and no temporary name a crash could leave behind. Capture files are always
    new, and two are made per call. Elsewhere (or if the file exists) this is
    :func:`atomic_write_bytes`.
    """
    if _HAVE_TMPFILE:
        directory = str(path.parent)
        fd = pool.take(directory) if pool is not None else None
        try:
            if fd is None:
                fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o644)
        except OSError:
            pass  # a filesystem without O_TMPFILE support
        else:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.link(f"/proc/self/fd/{fd}", path.name, dst_dir_fd=_dir_fd(directory), follow_symlinks=True)
                return
            except OSError:
                stale = _DIR_FDS.pop(directory, None)  # e.g. the directory was removed and made anew
                if stale is not None:
                    os.close(stale)
            finally:
                os.close(fd)
    atomic_write_bytes(path, data)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, dumps(obj))


def parse_json_body(data: bytes) -> tuple[bool, Any]:
    """(True, value) when ``data`` is a JSON document, else (False, None). Key order is kept.
    Python's parser also takes the non-standard ``NaN`` / ``Infinity`` / ``-Infinity``: they are kept
    as those strings, so the record stays strict JSON (docs/capture.md)."""
    if not data:
        return False, None
    try:
        return True, json.loads(data, parse_constant=str)
    except (ValueError, UnicodeDecodeError):
        return False, None


def body_fields(data: bytes) -> dict[str, Any]:
    """``{"body": parsed}`` for JSON, ``{"body_b64": …}`` for anything else, ``{"body": None}`` if empty."""
    if not data:
        return {"body": None}
    ok, value = parse_json_body(data)
    if ok:
        return {"body": value}
    return {"body_b64": base64.b64encode(data).decode("ascii")}


def raw_fields(data: bytes) -> dict[str, Any]:
    """``{"raw": text}`` when the bytes are valid UTF-8, else ``{"raw_b64": …}`` (lossless either way)."""
    try:
        return {"raw": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"raw_b64": base64.b64encode(data).decode("ascii")}


def resolve_captures_dir(path: str | os.PathLike[str]) -> Path:
    """A run directory (holding ``captures/``) or a captures directory → the captures directory."""
    p = Path(path)
    if (p / "captures").is_dir():
        return p / "captures"
    return p


class CaptureDir:
    """Writes captures into one directory and hands out the per-run ``seq``.

    ``seq`` continues after the highest one already on disk, so a resumed run (a new proxy on an
    old run directory) never reuses a number. Thread-safe.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._next_seq: int | None = None

    def _scan_max_seq(self) -> int:
        best = 0
        if not self.path.is_dir():
            return best
        for entry in os.scandir(self.path):
            if entry.name.endswith(REQUEST_SUFFIX):
                try:
                    with open(entry.path, "rb") as f:
                        best = max(best, int(json.loads(f.read()).get("seq") or 0))
                except (OSError, ValueError, TypeError, AttributeError):
                    continue
        return best

    def next_seq(self) -> int:
        with self._lock:
            if self._next_seq is None:
                self.path.mkdir(parents=True, exist_ok=True)
                self._next_seq = self._scan_max_seq() + 1
            seq = self._next_seq
            self._next_seq += 1
            return seq

    def request_path(self, request_id: str) -> Path:
        return self.path / f"{request_id}{REQUEST_SUFFIX}"

    def response_path(self, request_id: str) -> Path:
        return self.path / f"{request_id}{RESPONSE_SUFFIX}"

    def write_request(self, record: dict[str, Any]) -> Path:
        path = self.request_path(record["request_id"])
        create_file(path, dumps(record))
        return path

    def write_response(self, record: dict[str, Any]) -> Path:
        path = self.response_path(record["request_id"])
        create_file(path, dumps(record))
        return path


@dataclass
class Capture:
    """One call read back from disk. ``response`` is None only while the call is still in flight."""

    request: dict[str, Any]
    response: dict[str, Any] | None

    @property
    def request_id(self) -> str:
        return self.request["request_id"]

    @property
    def seq(self) -> int:
        return int(self.request.get("seq") or 0)

    def request_body_bytes(self) -> bytes:
        return _body_bytes(self.request)

    def response_bytes(self) -> bytes:
        """The response body as bytes: the raw stream, or the JSON body re-encoded, or the b64 body."""
        if self.response is None:
            return b""
        if "raw" in self.response:
            return self.response["raw"].encode("utf-8")
        if "raw_b64" in self.response:
            return base64.b64decode(self.response["raw_b64"])
        return _body_bytes(self.response)


def _body_bytes(record: dict[str, Any]) -> bytes:
    if "body_b64" in record:
        return base64.b64decode(record["body_b64"])
    if record.get("body") is None:
        return b""
    return dumps(record["body"])


def read_json(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return fast_loads(f.read())


def read_capture(directory: str | os.PathLike[str], request_id: str) -> Capture:
    d = resolve_captures_dir(directory)
    request = read_json(d / f"{request_id}{REQUEST_SUFFIX}")
    resp_path = d / f"{request_id}{RESPONSE_SUFFIX}"
    response = read_json(resp_path) if resp_path.exists() else None
    return Capture(request, response)


_HEAD_SEQ = re.compile(rb'"seq":\s*(\d+)')
_HEAD_AT = re.compile(rb'"captured_at":\s*"([^"]*)"')


def request_names(directory: str | os.PathLike[str]) -> list[str]:
    """The request ids of the capture files in ``directory`` (unsorted)."""
    d = resolve_captures_dir(directory)
    if not d.is_dir():
        return []
    return [e.name[: -len(REQUEST_SUFFIX)] for e in os.scandir(d)
            if e.name.endswith(REQUEST_SUFFIX) and _RID.match(e.name[: -len(REQUEST_SUFFIX)])]


def capture_heads(directory: str | os.PathLike[str], rids: list[str]) -> list[tuple[int, str, str]]:
    """(seq, captured_at, request_id) of these captures, from the head of each request file only
    (the recorder writes ``seq`` and ``captured_at`` first)."""
    d = str(resolve_captures_dir(directory))
    out: list[tuple[int, str, str]] = []
    for rid in rids:
        path = os.path.join(d, rid + REQUEST_SUFFIX)
        try:
            with open(path, "rb") as f:
                head = f.read(400)
        except FileNotFoundError:  # removed since the listing
            continue
        seq, at = _HEAD_SEQ.search(head), _HEAD_AT.search(head)
        if seq is None or at is None:  # not in the recorder's key order: parse the whole record
            req = read_json(Path(path))
            out.append((int(req.get("seq") or 0), str(req.get("captured_at", "")), rid))
        else:
            out.append((int(seq.group(1)), at.group(1).decode(), rid))
    return out


def capture_order(directory: str | os.PathLike[str]) -> list[tuple[int, str, str]]:
    """(seq, captured_at, request_id) of every capture, sorted by seq. Reads only the head of each
    request file, so memory and time stay small for 100,000s of captures."""
    return sorted(capture_heads(directory, request_names(directory)))


def iter_captures(directory: str | os.PathLike[str]) -> Iterator[Capture]:
    """Every capture of a run or captures directory, in ``seq`` order (not file-name order),
    read one at a time (memory stays flat in the number of captures)."""
    d = resolve_captures_dir(directory)
    for _, _, rid in capture_order(d):
        try:
            yield read_capture(d, rid)
        except FileNotFoundError:  # removed since the scan
            continue
