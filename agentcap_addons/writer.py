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
of a response is handed over as it passes, before it goes on to the client, on a pipe of its own
that the child reads whenever it wakes but never waits on — one non-blocking ``write`` for the
proxy, no wake-up of the child — so a ``kill -9`` of the proxy leaves what its clients got. What the
child does with them, and the protocol: agentcap_addons/writer_child.py.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from agentcap_addons.wire.util.files import create_file
from agentcap_addons.writer_child import APPEND, CREATE, HEAD, LOCK, REPLACE, WAKE, serve

__all__ = ["ProcessWriter", "append_file", "create_superseding", "remove_file", "serve"]

log = logging.getLogger(__name__)

_F_SETPIPE_SZ = 1031


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass  # not Linux, or over the per-user limit: the default size works, just with more wake-ups


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


class _Outbox:
    """One pipe to the child, never blocking the event loop: bytes go out at once when the pipe
    takes them, else wait here and go out as it drains (``on_full`` is told when they start to wait)."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop, on_dead: Callable[[], None],
                 on_full: Callable[[], None] | None = None) -> None:
        self.fd, self.loop, self.on_dead, self.on_full = fd, loop, on_dead, on_full
        self.buf = bytearray()
        self.waiting = False
        _grow_pipe(fd)
        os.set_blocking(fd, False)

    def send(self, *parts: bytes) -> None:
        if self.waiting:
            for part in parts:
                self.buf += part
            return
        try:
            n = os.writev(self.fd, parts)
        except BlockingIOError:
            n = 0
        except OSError:
            self.on_dead()
            return
        if n < sum(map(len, parts)):
            self.buf += b"".join(parts)[n:]
            self.waiting = True
            self.loop.add_writer(self.fd, self._drain)
            if self.on_full is not None:
                self.on_full()

    def _drain(self) -> None:
        try:
            del self.buf[: os.write(self.fd, self.buf)]
        except BlockingIOError:
            return
        except OSError:
            self.on_dead()
            return
        if not self.buf:
            self.detach()
        elif self.on_full is not None:  # full again: the child must read once more
            self.on_full()

    def detach(self) -> None:
        if self.waiting:
            self.waiting = False
            try:
                self.loop.remove_writer(self.fd)
            except (ValueError, OSError, RuntimeError):
                pass

    def finish(self) -> None:
        """Write what waits, blocking (the caller closes the pipe then)."""
        self.detach()
        view = memoryview(bytes(self.buf))
        self.buf.clear()
        try:
            os.set_blocking(self.fd, True)
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:
            pass


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
        self._records: _Outbox | None = None
        self._appends: _Outbox | None = None
        self._next_id = 1
        self._pending: dict[int, _Pending] = {}
        self._acks = b""
        self._held: list[tuple[Path, int]] = []  # lock files the child holds too (wire/capture/repair.py)
        self.failed = False
        self.closed = False

    # -- lifecycle
    def _start(self, loop: asyncio.AbstractEventLoop) -> bool:
        if self.failed or self.closed:
            return False
        r, w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", f"from agentcap_addons.writer_child import serve; serve(0, 1, {r})"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": _package_root() + os.pathsep + os.environ.get("PYTHONPATH", "")},
                start_new_session=True,  # a Ctrl-C meant for the proxy must not kill it mid-write
                pass_fds=[r, *(fd for _, fd in self._held)],  # and it holds the proxy's locks from its first instant
            )
        except OSError as e:
            os.close(w)
            log.warning("agentcap: writer process unavailable (%s); writing inline", e)
            self.failed = True
            return False
        finally:
            os.close(r)
        assert self._proc.stdin and self._proc.stdout
        self._loop = loop
        self._records = _Outbox(self._proc.stdin.fileno(), loop, self._child_died)
        self._appends = _Outbox(w, loop, self._child_died, self._wake)
        _grow_pipe(self._proc.stdout.fileno())
        os.set_blocking(self._proc.stdout.fileno(), False)
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

    def _send(self, op: bytes, fid: int, path: bytes, data: bytes = b"") -> None:
        assert self._records is not None
        self._records.send(HEAD.pack(op, fid, len(path), len(data)), path, data)

    def _wake(self) -> None:
        """The appends pipe is full: have the child read it (it never waits on that pipe)."""
        self._send(WAKE, 0, b"")

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
        p = bytes(path)
        if supersedes is None:
            self._send(CREATE, fid, p, data)
        else:
            self._send(REPLACE, fid, p + b"\0" + bytes(supersedes), data)
        return fut

    def append(self, path: Path, *parts: bytes) -> None:
        """Append ``parts`` to ``path`` (a partial file): in the child's pipe when this returns
        (unless that is full: then as soon as it drains). Not acknowledged. Raises OSError only when
        it is written here (no writer process)."""
        if not self._running():
            append_file(path, *parts)
            return
        assert self._appends is not None
        p = bytes(path)
        self._appends.send(HEAD.pack(APPEND, 0, len(p), sum(map(len, parts))), p, *parts)

    def hold(self, path: Path, fd: int) -> None:
        """Have the child hold the proxy's lock on ``path`` (open as ``fd``) too, until it exits: a
        child started later inherits ``fd``; a running one opens ``path`` before its next frame."""
        self._held.append((path, fd))
        if self._proc is not None and not self.failed and not self.closed:
            self._send(LOCK, 0, bytes(path))

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
        if self._appends is not None:
            os.close(self._appends.fd)
        for entry in list(self._pending.values()):
            entry.write_inline()
        self._pending.clear()

    def _detach(self) -> None:
        if self._proc is None or self._loop is None or self._proc.stdout is None:
            return
        try:
            self._loop.remove_reader(self._proc.stdout.fileno())
        except (ValueError, OSError, RuntimeError):
            pass
        for box in (self._records, self._appends):
            if box is not None:
                box.detach()

    def close(self, timeout: float = 60.0) -> None:
        """Send what is buffered, let the child finish every file, and resolve every future.
        Later writes are done inline."""
        self.closed = True
        if self._proc is None or self.failed:
            return
        proc = self._proc
        self._detach()
        assert proc.stdin and proc.stdout and self._records and self._appends
        self._records.finish()
        try:
            proc.stdin.close()  # the child then reads the appends pipe to its end
        except OSError:
            pass
        self._appends.finish()
        os.close(self._appends.fd)
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
