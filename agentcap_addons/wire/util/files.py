"""Files a reader may open while they are written: created whole (``O_TMPFILE`` + link, inodes made
ahead by a helper thread) or replaced atomically (temporary file + rename). No partial file is
ever visible, and a crash leaves no temporary name behind."""

from __future__ import annotations

import collections
import os
import threading
from pathlib import Path
from typing import Any

from agentcap_addons.wire.util.jsonio import dumps


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
