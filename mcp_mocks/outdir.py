"""A mock's ``--out`` directory, written as calls complete: ``calls.jsonl`` (one JSON line per call, the
calls of every server sharing the directory) and ``<server>.state.json`` (each server's state).

Guarantees:

- **kill -9 loses at most the call in flight.** A call's state file and then its line are written
  before its answer goes back (by :meth:`MockServer.call`, holding the server's lock); the line is one
  ``write(2)`` on an ``O_APPEND`` descriptor, so a reader (or a process killed at any moment) sees
  whole lines, never two servers' lines mixed.
- **A state file is never partial**: a temporary file in the same directory, then ``os.replace``.
- **Durable in batches**: what was written reaches the disk (``fsync``, the directory too) within
  ``within_s`` seconds, sooner once ``every`` calls are waiting, and at :meth:`close` — a power cut
  loses at most that. The fsyncs run on a helper thread (started by the first :meth:`append`), never
  in a call's time; a one-off :meth:`MockServer.write` syncs at :meth:`close`.
- **Confined**: every file is resolved (symlinks followed) and refused unless it is in the directory.

One process writes one directory: :meth:`replace_calls` swaps the file, and only this object's
descriptor follows it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from agentcap_addons.wire.util.errors import InputError
from agentcap_addons.wire.util.files import atomic_write_bytes
from agentcap_addons.wire.util.jsonio import dumps

CALLS = "calls.jsonl"
FSYNC_EVERY = 32      # calls
FSYNC_WITHIN_S = 0.2  # seconds

log = logging.getLogger(__name__)


class OutsideOut(InputError):
    """A file the mock would write resolves outside its ``--out`` directory."""


class OutDir:
    def __init__(self, directory: str | os.PathLike[str], every: int = FSYNC_EVERY,
                 within_s: float = FSYNC_WITHIN_S) -> None:
        self.root = Path(directory).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.every, self.within_s = every, within_s
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._unsynced: set[Path] = set()  # state files replaced since the last fsync
        self._pending = 0                  # lines appended since the last fsync
        self._syncer: threading.Thread | None = None
        self._kick = threading.Event()     # something is waiting to be synced
        self._full = threading.Event()     # ``every`` lines are: do not wait out the window
        self._closed = False

    def file(self, name: str) -> Path:
        """``name`` in the directory, after symlinks; :class:`OutsideOut` if that leaves it."""
        path = (self.root / name).resolve()
        if path.parent != self.root:
            raise OutsideOut(f"{self.root / name}: resolves to {path}, outside --out {self.root}")
        return path

    def state_file(self, server: str) -> Path:
        return self.file(f"{server}.state.json")

    # ------------------------------------------------------------------ writing

    def write_state(self, server: str, state: Any) -> None:
        path = self.state_file(server)
        with self._lock:
            atomic_write_bytes(path, dumps(state))
            self._unsynced.add(path)
            self._schedule()

    def append(self, record: dict[str, Any]) -> None:
        """One call's line, written whole; synced in the next batch."""
        line = dumps(record) + b"\n"
        with self._lock:
            fd = self._calls_fd()
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            self._pending += 1
            if self._syncer is None:
                self._syncer = threading.Thread(target=self._sync_loop, name="mock-out-fsync", daemon=True)
                self._syncer.start()
            if self._pending >= self.every:
                self._full.set()
            self._schedule()

    def replace_calls(self, server: str, records: list[dict[str, Any]]) -> None:
        """``server``'s lines become ``records``; other servers' lines are kept; all in call time order
        (a line a crash cut short is dropped)."""
        path = self.file(CALLS)
        with self._lock:
            others = [r for r in _read_lines(path) if r.get("server") != server]
            merged = sorted(others + records, key=lambda r: (str(r.get("at")), str(r.get("server")), r.get("seq") or 0))
            atomic_write_bytes(path, b"".join(dumps(r) + b"\n" for r in merged))
            self._unsynced.add(path)
            if self._fd is not None:  # it names the file just replaced: follow the new one
                os.close(self._fd)
                self._fd = None
            self._schedule()

    # ------------------------------------------------------------------ durability

    def sync(self) -> None:
        """Everything written so far, on the disk."""
        with self._lock:
            fd = os.dup(self._fd) if self._fd is not None and self._pending else None
            paths, self._unsynced, self._pending = self._unsynced, set(), 0
        try:  # outside the lock: appends go on meanwhile
            if fd is not None:
                os.fsync(fd)
            for path in paths:
                _fsync_path(path)
            if fd is not None or paths:
                _fsync_path(self.root)
        finally:
            if fd is not None:
                os.close(fd)

    def close(self) -> None:
        self._closed = True
        self._kick.set()
        self._full.set()
        if self._syncer is not None:
            self._syncer.join(10)
        self.sync()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _calls_fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.file(CALLS), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self._fd

    def _schedule(self) -> None:
        if self._syncer is not None:
            self._kick.set()

    def _sync_loop(self) -> None:
        while not self._closed:
            self._kick.wait()
            self._full.wait(self.within_s)  # the batch window
            self._kick.clear()
            self._full.clear()
            try:
                self.sync()
            except OSError as e:  # a full or vanished disk: the next write says so to its caller
                log.warning("mock --out %s: fsync failed: %s", self.root, e)


def _fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # replaced again meanwhile: the newer one is in the set
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out
