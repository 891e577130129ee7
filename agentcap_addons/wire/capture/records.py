"""The capture files on disk: the one module that knows their names and their format (records);
file writing, timestamps and JSON are in wire.util.

A capture is one model call: ``<rid>.request.json`` written before the request is forwarded and
``<rid>.response.json`` written when the exchange ends (DESIGN.md, "The capture contract").
The addon writes through :class:`CaptureDir`; export, inspect and replay read through
:func:`iter_captures` / :func:`read_capture`. No mitmproxy import here, on purpose.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentcap_addons.wire.util.files import create_file
from agentcap_addons.wire.util.jsonio import dumps, parse_json_body, read_json

SCHEMA = 1

REQUEST_SUFFIX = ".request.json"

RESPONSE_SUFFIX = ".response.json"

PARTIAL_SUFFIX = ".response.partial"  # the response while it arrives (wire.capture.partial); no reader opens it

ERROR_KINDS = (
    "upstream_unreachable",
    "upstream_reset",
    "client_disconnected",
    "timeout",
    "killed",
    "proxy_shutdown",
    "proxy_killed",
)

_RID = re.compile(r"^[0-9a-f]{32}$")

def new_request_id(instance: str = "") -> str:
    """32 lowercase hex digits, unique without coordination between processes. A recording proxy
    passes its ``instance`` (8 hex digits) as the prefix, so a repair can tell whose call a
    request record is (wire.capture.repair)."""
    return instance + uuid.uuid4().hex[len(instance):]

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

    def partial_path(self, request_id: str) -> Path:
        return self.path / f"{request_id}{PARTIAL_SUFFIX}"

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
