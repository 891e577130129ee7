"""A writer process for capture files, so the proxy's event loop never touches the filesystem.

Measured with py-spy under 32 concurrent clients on ext4: creating two files per call
(``open(O_CREAT)`` + ``rename``) took a quarter of the proxy process's time, mostly kernel time
spent on the journal. mitmproxy runs one event loop on one core, so that time came straight off
its throughput. Here the proxy only hands ``(path, bytes)`` to a child process over a pipe (one
non-blocking ``write``) and is told, by an acknowledgement on a second pipe, when the file is on
disk; a request hook awaits that acknowledgement, so the request record is still on disk before
the request is forwarded.

Safety: the child writes every file atomically (temporary file + rename) and, when the proxy dies
(even ``kill -9``), it still drains what it was sent before exiting. If the child dies, the proxy
writes what was pending itself and carries on inline.

It also keeps the partial files (``<rid>.response.partial``, wire/capture/partial.py): every chunk
of a response is appended as it passes, so a ``kill -9`` of the proxy leaves what its clients got.
Appends are not acknowledged; the child gathers the appends of one read into one ``write`` per file,
and an append still in its buffer when the response record supersedes the partial file is never
written at all (a short call costs no partial file then).

Protocol (proxy → writer): frames of ``!cQII`` (op, id, path length, data length), path (UTF-8), data.
Ops: ``C`` create the file (acknowledged); ``R`` the same, then remove the file named after a NUL in
the path field (a response record superseding its partial file; acknowledged); ``A`` append to the
file (id 0, not acknowledged); ``L`` hold a shared ``flock`` on the file until the child exits (the
proxy's lock file, wire/capture/repair.py: a repair waits for the child's last files; the locks
the proxy holds when it starts the child are inherited instead).
Writer → proxy: the ids written, as ASCII decimal lines (``-id`` when the file could not be written).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from agentcap_addons.wire.util.files import create_file

log = logging.getLogger(__name__)

_HEAD = struct.Struct("!cQII")
CREATE, REPLACE, APPEND, LOCK = b"C", b"R", b"A", b"L"
_MAX_OPEN = 256  # append fds the child keeps open
_F_SETPIPE_SZ = 1031


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass  # not Linux, or over the per-user limit: the default size works, just with more wake-ups


# --------------------------------------------------------------------------- the child process


def hold(path: str) -> int | None:
    """A shared ``flock`` on ``path``, kept by holding the fd (None when the file is gone already)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


class _Child:
    """The child's state: partial files open for appending, appends not yet written, held locks."""

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}
        self.appends: dict[str, list[bytes]] = {}
        self.locks: list[int] = []
        self.failed: set[str] = set()

    def frame(self, op: bytes, fid: int, path: str, data: bytes) -> bytes | None:
        """Do one frame; the acknowledgement line, if it has one."""
        if op == APPEND:
            self.appends.setdefault(path, []).append(data)
            return None
        if op == LOCK:
            fd = hold(path)
            if fd is not None:
                self.locks.append(fd)
            return None
        path, _, supersedes = path.partition("\0")
        try:
            create_file(Path(path), data)
        except OSError as e:
            sys.stderr.write(f"agentcap writer: could not write {path}: {e}\n")
            return b"-%d\n" % fid
        if op == REPLACE and supersedes:
            self.drop(supersedes)
        return b"%d\n" % fid

    def drop(self, path: str) -> None:
        """The partial file ``path`` is superseded: forget its appends, close it, remove it."""
        self.appends.pop(path, None)
        fd = self.fds.pop(path, None)
        if fd is not None:
            os.close(fd)
        self.failed.discard(path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            sys.stderr.write(f"agentcap writer: could not remove {path}: {e}\n")

    def flush(self) -> None:
        """Write the appends gathered so far: one ``write`` per file."""
        for path, parts in self.appends.items():
            try:
                fd = self.fds.get(path)
                if fd is None:
                    if len(self.fds) >= _MAX_OPEN:
                        for old in self.fds.values():
                            os.close(old)
                        self.fds.clear()
                    fd = self.fds[path] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                view = memoryview(b"".join(parts))
                while view:
                    view = view[os.write(fd, view) :]
            except OSError as e:
                if path not in self.failed:  # once per file: the response record still gets every byte
                    self.failed.add(path)
                    sys.stderr.write(f"agentcap writer: could not append to {path}: {e}\n")
        self.appends.clear()


def serve(inp: int = 0, out: int = 1) -> None:
    """Read frames from ``inp`` until EOF, do each, acknowledge on ``out``."""
    buf = bytearray()
    ack_ok = True
    child = _Child()
    while True:
        chunk = os.read(inp, 1 << 20)
        if not chunk:
            break
        buf += chunk
        done: list[bytes] = []
        pos = 0
        while len(buf) - pos >= _HEAD.size:
            op, fid, plen, dlen = _HEAD.unpack_from(buf, pos)
            end = pos + _HEAD.size + plen + dlen
            if len(buf) < end:
                break
            start = pos + _HEAD.size
            path = bytes(buf[start : start + plen]).decode("utf-8")
            ack = child.frame(op, fid, path, bytes(buf[start + plen : end]))
            if ack is not None:
                done.append(ack)
            pos = end
        del buf[:pos]
        child.flush()
        if done and ack_ok:
            try:
                os.write(out, b"".join(done))
            except OSError:
                ack_ok = False  # the proxy is gone: keep writing what it sent, stop acknowledging


# --------------------------------------------------------------------------- the proxy's side


def append_file(path: Path, *parts: bytes) -> None:
    """Append ``parts`` to ``path`` here and now (inline mode, or no writer process). Raises OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(b"".join(parts))
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def remove_file(path: Path | None) -> None:
    """Remove a superseded partial file here and now (gone already is fine)."""
    if path is None:
        return
    try:
        path.unlink(missing_ok=True)
    except OSError as e:
        log.warning("agentcap: could not remove %s: %s", path, e)


def create_superseding(path: Path, data: bytes, supersedes: Path | None) -> None:
    """Create ``path`` (raises OSError), then remove the partial file it supersedes."""
    create_file(path, data)
    remove_file(supersedes)


class _Pending:
    __slots__ = ("path", "data", "fut", "then", "supersedes")

    def __init__(self, path: Path, data: bytes, fut: asyncio.Future, then: Callable[[bool], None] | None,
                 supersedes: Path | None) -> None:
        self.path, self.data, self.fut, self.then, self.supersedes = path, data, fut, then, supersedes

    def complete(self, ok: bool) -> None:
        if not self.fut.done():
            self.fut.set_result(ok)
        if self.then is not None:
            self.then(ok)
            self.then = None

    def write_inline(self) -> None:
        try:
            create_superseding(self.path, self.data, self.supersedes)
        except OSError as e:
            log.error("agentcap: could not write %s: %s", self.path, e)
            self.complete(False)  # the waiting hook decides (a request is refused, not forwarded)
            return
        self.complete(True)


class ProcessWriter:
    """Hands files to the writer process without ever blocking the event loop.

    ``write()`` returns a future that resolves (to True, or False on a failed write) once the
    file is on disk, and calls ``then(ok)`` at that moment. Without a running event loop, after
    ``close()``, or after the child died, files are written inline instead (the future is then
    None and ``then`` is called before ``write()`` returns).
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._out = bytearray()
        self._next_id = 1
        self._pending: dict[int, _Pending] = {}
        self._acks = b""
        self._held: list[tuple[Path, int]] = []  # lock files the child holds too (wire/capture/repair.py)
        self._writing_blocked = False
        self.failed = False
        self.closed = False

    # -- lifecycle
    def _start(self, loop: asyncio.AbstractEventLoop) -> bool:
        if self.failed or self.closed:
            return False
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", "from agentcap_addons.writer import serve; serve()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": _package_root() + os.pathsep + os.environ.get("PYTHONPATH", "")},
                start_new_session=True,  # a Ctrl-C meant for the proxy must not kill it mid-write
                pass_fds=[fd for _, fd in self._held],  # it holds the proxy's locks from its first instant
            )
        except OSError as e:
            log.warning("agentcap: writer process unavailable (%s); writing inline", e)
            self.failed = True
            return False
        assert self._proc.stdin and self._proc.stdout
        for fd in (self._proc.stdin.fileno(), self._proc.stdout.fileno()):
            _grow_pipe(fd)
            os.set_blocking(fd, False)
        self._loop = loop
        loop.add_reader(self._proc.stdout.fileno(), self._read_acks)
        return True

    def _running(self) -> bool:
        """The child is there to take frames (started now if need be), on this thread's running loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        return not (self.failed or self.closed or (self._proc is None and not self._start(loop))
                    or self._loop is not loop)

    def _send(self, op: bytes, fid: int, path: bytes, *data: bytes) -> None:
        self._out += _HEAD.pack(op, fid, len(path), sum(map(len, data)))
        self._out += path
        for part in data:
            self._out += part
        if not self._writing_blocked:
            self._flush_out()

    def write(self, path: Path, data: bytes, then: Callable[[bool], None] | None = None,
              supersedes: Path | None = None) -> asyncio.Future | None:
        """Create ``path`` with ``data``; then remove ``supersedes`` (a partial file), if given."""
        if not self._running():
            create_superseding(path, data, supersedes)
            if then is not None:
                then(True)
            return None
        assert self._loop is not None
        fid = self._next_id
        self._next_id += 1
        fut = self._loop.create_future()
        self._pending[fid] = _Pending(path, data, fut, then, supersedes)
        p = str(path).encode("utf-8")
        if supersedes is None:
            self._send(CREATE, fid, p, data)
        else:
            self._send(REPLACE, fid, p + b"\0" + str(supersedes).encode("utf-8"), data)
        return fut

    def append(self, path: Path, *parts: bytes) -> None:
        """Append ``parts`` to ``path`` (a partial file), in order with every other frame. Not
        acknowledged: the frame is in the pipe (or, the pipe full, in this process) when this returns.
        Raises OSError only when it is written here (no writer process)."""
        if not self._running():
            append_file(path, *parts)
            return
        self._send(APPEND, 0, str(path).encode("utf-8"), *parts)

    def hold(self, path: Path, fd: int) -> None:
        """Have the child hold the proxy's lock on ``path`` (open as ``fd``) too, until it exits: a
        child started later inherits ``fd``; a running one opens ``path`` before its next frame."""
        self._held.append((path, fd))
        if self._proc is not None and not self.failed and not self.closed:
            self._send(LOCK, 0, str(path).encode("utf-8"))

    def _flush_out(self) -> None:
        assert self._proc and self._proc.stdin and self._loop
        fd = self._proc.stdin.fileno()
        try:
            while self._out:
                n = os.write(fd, self._out)
                del self._out[:n]
        except BlockingIOError:
            if not self._writing_blocked:
                self._writing_blocked = True
                self._loop.add_writer(fd, self._on_writable)
            return
        except OSError:
            self._child_died()
            return
        if self._writing_blocked:
            self._writing_blocked = False
            self._loop.remove_writer(fd)

    def _on_writable(self) -> None:
        self._flush_out()

    def _read_acks(self) -> None:
        assert self._proc and self._proc.stdout
        try:
            chunk = os.read(self._proc.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._child_died()
            return
        self._acks += chunk
        *lines, self._acks = self._acks.split(b"\n")
        for line in lines:
            fid = int(line)
            entry = self._pending.pop(abs(fid), None)
            if entry is not None:
                entry.complete(fid > 0)

    def _child_died(self) -> None:
        """Write whatever was pending ourselves and go on inline."""
        if self.failed:
            return
        self.failed = True
        log.error("agentcap: the capture writer process ended; writing captures inline from now on")
        self._detach()
        for entry in list(self._pending.values()):
            entry.write_inline()
        self._pending.clear()

    def _detach(self) -> None:
        if self._proc is None or self._loop is None or self._proc.stdout is None or self._proc.stdin is None:
            return
        try:
            self._loop.remove_reader(self._proc.stdout.fileno())
            if self._writing_blocked:
                self._loop.remove_writer(self._proc.stdin.fileno())
        except (ValueError, OSError, RuntimeError):
            pass
        self._writing_blocked = False

    def close(self, timeout: float = 60.0) -> None:
        """Send what is buffered, let the child finish every file, and resolve every future.
        Later writes are done inline."""
        self.closed = True
        if self._proc is None or self.failed:
            return
        proc = self._proc
        self._detach()
        assert proc.stdin and proc.stdout
        os.set_blocking(proc.stdin.fileno(), True)
        try:
            if self._out:
                proc.stdin.write(bytes(self._out))
                self._out.clear()
            proc.stdin.close()
        except OSError:
            pass
        os.set_blocking(proc.stdout.fileno(), True)
        rest = self._acks + proc.stdout.read()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
        for line in rest.split(b"\n"):
            if line.strip():
                entry = self._pending.pop(abs(int(line)), None)
                if entry is not None:
                    entry.complete(int(line) > 0)
        for entry in self._pending.values():  # the child could not finish these
            entry.write_inline()
        self._pending.clear()
        self._proc = None


def _package_root() -> str:
    return str(Path(__file__).resolve().parent.parent)
