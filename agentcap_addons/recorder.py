"""Recorder: turns flows into capture records (shared by the HTTP and WebSocket capture addons).

It owns the per-run capture directories (and so ``seq``), the set of calls in flight (so that
shutdown can still close every one of them) and the building of both records. Writing goes
through :mod:`agentcap_addons.wire.capture.records`, the one place that knows the file format.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mitmproxy import http

from agentcap_addons.wire.capture.partial import data_head, head_frame, response_record
from agentcap_addons.wire.capture.policy import (
    REQUEST_HEADERS,
    RESPONSE_HEADERS,
    HeaderFilter,
    api_kind,
    redact_path,
    redact_url,
)
from agentcap_addons.wire.capture.records import (
    SCHEMA,
    CaptureDir,
    body_fields,
    new_request_id,
)
from agentcap_addons.wire.capture.registry import Attribution
from agentcap_addons.wire.capture.repair import DRAIN_WAIT, INSTANCE_LEN, Claim, claim, repair
from agentcap_addons.wire.util.clock import rfc3339_ns
from agentcap_addons.wire.util.files import InodePool, create_file
from agentcap_addons.wire.util.jsonio import dumps
from agentcap_addons.writer import ProcessWriter, append_file, remove_file

log = logging.getLogger(__name__)


@dataclass
class LiveCall:
    """One capture in flight."""

    rid: str
    seq: int
    directory: CaptureDir
    sent_ms: float  # epoch ms when the request was handed on upstream
    bufs: list[bytes] = field(default_factory=list)
    chunks: list[list[float | int]] = field(default_factory=list)
    first_byte_ms: float | None = None
    last_activity: float = field(default_factory=time.monotonic)
    teed: bool = False
    written: asyncio.Future | None = None  # resolves once the request record is on disk
    timed_out: bool = False
    finished: bool = False
    request_file: tuple[Path, bytes] | None = None  # the request record until it is known to be on disk
    request_event: dict[str, Any] = field(default_factory=dict)  # its attribution, for a capture_failed event
    write_error: str | None = None  # why the request record could not be written (the call is refused)
    partial: Path | None = None  # the partial file the response is appended to as it arrives
    sink: Callable[..., None] | None = None  # appends one chunk's frame to it

    def elapsed_ms(self) -> float:
        return round(time.time() * 1000 - self.sent_ms, 3)

    def tee(self, data: bytes) -> bytes:
        """The ``flow.response.stream`` callable: keep a copy and a time line, pass ``data`` on as is."""
        if data:
            now = round(time.time() * 1000 - self.sent_ms, 3)
            self.bufs.append(data)
            self.chunks.append([now, len(data)])
            self.last_activity = time.monotonic()
            if self.sink is not None:  # to the partial file (through the writer process, end of this loop turn)
                self.sink(data_head(now, len(data)), data)
        return data


BUSY_CALLS = 2  # calls in flight from which request records go through the writer process


def default_run_dir() -> Path:
    """``$AGENTCAP_WORKSPACE/.agentcap/proxy-<UTC stamp>`` for a power user who set no directory."""
    ws = Path(os.environ.get("AGENTCAP_WORKSPACE") or os.getcwd())
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return ws / ".agentcap" / f"proxy-{stamp}-{os.getpid()}"


class Recorder:
    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self.run_id: str | None = None
        self.request_headers = HeaderFilter(REQUEST_HEADERS)
        self.response_headers = HeaderFilter(RESPONSE_HEADERS)
        self._dirs: dict[str, CaptureDir] = {}
        self.inflight: dict[str, tuple[http.HTTPFlow, LiveCall]] = {}
        self.events_fd: int = -1
        self.events_dropped = 0
        self.writer: ProcessWriter | None = ProcessWriter()
        self.inodes = InodePool()
        # the first 8 hex digits of every request id this proxy hands out, and the name of its lock
        # in each captures directory it writes to (wire/capture/repair.py)
        self.instance = secrets.token_hex(INSTANCE_LEN // 2)
        self._claims: dict[str, Claim] = {}

    def set_writer(self, mode: str) -> None:
        """``process``: files are written by a child process (the fast path, see writer.py);
        ``inline``: by the proxy itself, synchronously (simple; what hook-level tests use)."""
        if mode == "inline":
            if self.writer is not None:
                self.writer.close()
            self.writer = None
        elif self.writer is None:
            self.writer = ProcessWriter()

    def _store(
        self,
        path: Path,
        data: bytes,
        event: dict[str, Any],
        then: Callable[[], None] | None = None,
        inline: bool = False,
        supersedes: Path | None = None,
    ) -> asyncio.Future | None:
        """Write one record: inline (raises OSError when it cannot be written) or through the writer
        process (the future resolves to False when the child could not write it). Once it is on
        disk, the partial file it ``supersedes`` is removed."""

        def written(ok: bool) -> None:
            if then is not None:
                then()
            if ok:
                self.emit(event)

        if self.writer is None or inline:
            self.write_now(path, data)
            remove_file(supersedes)
            written(True)
            return None
        return self.writer.write(path, data, written, supersedes)

    def write_now(self, path: Path, data: bytes) -> None:
        """Write ``path`` here and now. A captures directory that was removed is made again (once);
        anything else (a full disk, no permission) raises OSError."""
        try:
            create_file(path, data, self.inodes)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            old = self._claims.pop(str(path.parent), None)
            if old is not None:  # its lock file went with the directory: make one anew
                old.release()
            self._claim(path.parent, 0.0)
            create_file(path, data, self.inodes)

    def retry_request(self, call: LiveCall) -> bool:
        """The writer process could not write ``call``'s request record: try once more here (making
        the directory again if it is gone). False, with ``call.write_error`` set, when it still fails."""
        assert call.request_file is not None
        path, data = call.request_file
        try:
            self.write_now(path, data)
        except OSError as e:
            self.request_failed(call, e)
            return False
        call.request_file = None
        return True

    def request_failed(self, call: LiveCall, e: OSError) -> None:
        """No request record: the call is refused, never forwarded (the contract), and said so."""
        call.write_error = f"{type(e).__name__}: {e.strerror or e}"
        call.finished = True
        self.inflight.pop(call.rid, None)
        log.error("agentcap: capture record %s could not be written (%s); the call is refused, not forwarded",
                  call.directory.request_path(call.rid), call.write_error)
        self.emit({**call.request_event, "event": "capture_failed", "record": "request", "reason": call.write_error})

    def response_failed(self, call: LiveCall, e: OSError) -> None:
        log.error("agentcap: response record %s could not be written (%s)",
                  call.directory.response_path(call.rid), f"{type(e).__name__}: {e.strerror or e}")
        self.emit({**call.request_event, "event": "capture_failed", "record": "response",
                   "reason": f"{type(e).__name__}: {e.strerror or e}"})

    def shutdown(self) -> None:
        """Every record handed over is on disk when this returns; then the lock files go (a clean
        stop leaves nothing to repair)."""
        if self.writer is not None:
            self.writer.close()
        for c in self._claims.values():
            c.release()
        self._claims.clear()

    def set_events_fd(self, fd: int) -> None:
        """A pipe to announce every capture on (one JSON line per request / response record), so
        a parent process can count calls or wait for one without scanning directories. Never
        blocks the proxy: when the reader falls behind, events are dropped (and counted)."""
        self.events_fd = fd
        if fd >= 0:
            os.set_blocking(fd, False)

    def emit(self, event: dict[str, Any]) -> None:
        if self.events_fd < 0:
            return
        try:
            os.write(self.events_fd, json.dumps(event).encode() + b"\n")
        except BlockingIOError:
            self.events_dropped += 1
        except OSError as e:  # the reader went away; stop trying
            log.warning("agentcap: capture event pipe closed (%s)", e)
            self.events_fd = -1

    def configure(self, run_dir: str, run_id: str, extra_headers: tuple[str, ...]) -> None:
        self.run_dir = Path(run_dir) if run_dir else None
        self.run_id = run_id or None
        self.request_headers = HeaderFilter(REQUEST_HEADERS + tuple(extra_headers))
        self.response_headers = HeaderFilter(RESPONSE_HEADERS + tuple(extra_headers))
        if self.run_dir is not None and (self.run_dir / "captures").is_dir():  # a proxy started on an old run
            self._dir(self.run_dir / "captures", DRAIN_WAIT)

    def _dir(self, path: Path, wait: float = 0.0) -> CaptureDir:
        """The :class:`CaptureDir` of ``path``, claimed for this proxy on first use."""
        key = str(path)
        d = self._dirs.get(key)
        if d is None:
            d = self._dirs[key] = CaptureDir(path)
        if key not in self._claims:
            self._claim(path, wait)
        return d

    def _claim(self, path: Path, wait: float) -> None:
        """Lock ``path`` for this proxy (a repair leaves its calls in flight alone), then repair what
        a killed proxy left there. Until the lock file can be made, this is tried again on every call."""
        try:
            c = self._claims[str(path)] = claim(path, self.instance)
        except OSError as e:
            log.warning("agentcap: could not lock %s for this proxy (%s: %s)", path, type(e).__name__, e.strerror or e)
            return
        if self.writer is not None:
            self.writer.hold(c.path, c.fd)
        repair(path, f"the proxy started on it (pid {os.getpid()})", wait)

    def _captures_dir(self, attribution: Attribution | None) -> tuple[CaptureDir, str | None]:
        if attribution is not None and attribution.captures_dir:
            path = Path(attribution.captures_dir)
            run_id = attribution.run_id
        else:
            if self.run_dir is None:
                self.run_dir = default_run_dir()
            path = self.run_dir / "captures"
            run_id = (attribution.run_id if attribution else None) or self.run_id or self.run_dir.name
        return self._dir(path), run_id

    def open(
        self,
        flow: http.HTTPFlow,
        attribution: Attribution | None,
        method: str,
        body: bytes,
    ) -> LiveCall:
        """Write the request record (before anything is forwarded) and start tracking the call."""
        directory, run_id = self._captures_dir(attribution)
        api = api_kind(flow.request.path)
        call = LiveCall(
            rid=new_request_id(self.instance),
            seq=directory.next_seq(),
            directory=directory,
            sent_ms=0.0,
        )
        a = attribution or Attribution()
        record: dict[str, Any] = {
            "schema": SCHEMA,
            "request_id": call.rid,
            "seq": call.seq,
            "captured_at": rfc3339_ns(),
            "method": method,
            "path": redact_path(flow.request.path),
            "upstream_url": redact_url(flow.request.url),
            "api": api,
            "run_id": run_id,
            "task_id": a.task_id,
            "turn": a.turn,
            "cell": a.cell,
            "repeat": a.repeat,
            "headers": self.request_headers(flow.request.headers.items()),
        }
        record.update(body_fields(body))
        event = {"event": "request", "request_id": call.rid, "seq": call.seq, "run_id": run_id,
                 "task_id": a.task_id, "turn": a.turn, "cell": a.cell, "repeat": a.repeat, "path": record["path"]}
        call.request_event = event

        def on_disk() -> None:
            call.sent_ms = time.time() * 1000

        call.sent_ms = time.time() * 1000
        # A request record must be on disk before the request goes on. With the proxy idle, the
        # fastest way is to write it here (~25 µs, no round trip to the writer process: best time
        # to first byte); once other calls are in flight, the event loop is the bottleneck and the
        # writer process takes the disk work off it (best throughput). Responses always go there.
        busy = len(self.inflight) >= BUSY_CALLS
        self.inflight[call.rid] = (flow, call)
        path, data = directory.request_path(call.rid), dumps(record)
        try:
            call.written = self._store(path, data, event, on_disk, inline=not busy)
        except OSError as e:
            self.request_failed(call, e)
            return call
        if call.written is not None:  # kept for a retry here if the writer process cannot write it
            call.request_file = (path, data)
        return call

    def start_partial(self, call: LiveCall, status_code: int | None, headers: list[tuple[str, str]],
                      stream: bool) -> None:
        """From the response head on, every chunk is appended to the call's partial file as it passes
        (before it goes on to the client), so a proxy killed mid-call leaves it on disk."""
        path = call.directory.partial_path(call.rid)
        head = head_frame(status_code, self.response_headers(headers), stream, call.sent_ms, call.first_byte_ms)
        call.partial = path
        call.sink = functools.partial(self._append, call)
        self._append(call, head)

    def _append(self, call: LiveCall, *parts: bytes) -> None:
        assert call.partial is not None
        try:
            if self.writer is not None:
                self.writer.append(call.partial, *parts)
            else:
                append_file(call.partial, *parts)
        except OSError as e:  # the response record still gets every byte; only a kill would lose them
            call.sink = None
            log.warning("agentcap: could not append to %s (%s: %s); the rest of this response is kept in memory only",
                        call.partial, type(e).__name__, e.strerror or e)

    def close(
        self,
        call: LiveCall,
        status_code: int | None,
        headers: list[tuple[str, str]],
        data: bytes,
        stream: bool,
        error: dict[str, str] | None,
    ) -> None:
        """Write the response record atomically (it supersedes the partial file); at most once per call."""
        if call.finished:
            return
        call.finished = True
        call.sink = None
        self.inflight.pop(call.rid, None)
        timings = {"sent": round(call.sent_ms, 3), "first_byte": call.first_byte_ms, "done": call.elapsed_ms()}
        record = response_record(call.rid, status_code, self.response_headers(headers), stream, data, call.chunks,
                                 timings, error)
        event = {"event": "response", "request_id": call.rid, "status_code": status_code,
                 "error": error["kind"] if error else None}
        path, data = call.directory.response_path(call.rid), dumps(record)
        try:
            fut = self._store(path, data, event, supersedes=call.partial)
        except OSError as e:
            self.response_failed(call, e)
            return
        if fut is not None:
            fut.add_done_callback(lambda f: self._response_written(f, call, path, data, event))

    def _response_written(self, fut: asyncio.Future, call: LiveCall, path: Path, data: bytes,
                          event: dict[str, Any]) -> None:
        """The writer process could not write a response record: once more here, else say so."""
        if fut.cancelled() or fut.result():
            return
        try:
            self.write_now(path, data)
        except OSError as e:
            self.response_failed(call, e)
        else:
            remove_file(call.partial)
            self.emit(event)
