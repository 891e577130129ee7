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

Protocol (proxy → writer): frames of ``!QII`` (id, path length, data length), path (UTF-8), data.
Writer → proxy: the ids written, as ASCII decimal lines.
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

_HEAD = struct.Struct("!QII")
_F_SETPIPE_SZ = 1031


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass  # not Linux, or over the per-user limit: the default size works, just with more wake-ups


# --------------------------------------------------------------------------- the child process


def serve(inp: int = 0, out: int = 1) -> None:
    """Read frames from ``inp`` until EOF, write each file, acknowledge on ``out``."""
    buf = bytearray()
    ack_ok = True
    while True:
        chunk = os.read(inp, 1 << 20)
        if not chunk:
            break
        buf += chunk
        done: list[bytes] = []
        pos = 0
        while len(buf) - pos >= _HEAD.size:
            fid, plen, dlen = _HEAD.unpack_from(buf, pos)
            end = pos + _HEAD.size + plen + dlen
            if len(buf) < end:
                break
            start = pos + _HEAD.size
            path = bytes(buf[start : start + plen]).decode("utf-8")
            try:
                create_file(Path(path), bytes(buf[start + plen : end]))
                done.append(b"%d\n" % fid)
            except OSError as e:
                sys.stderr.write(f"agentcap writer: could not write {path}: {e}\n")
                done.append(b"-%d\n" % fid)
            pos = end
        del buf[:pos]
        if done and ack_ok:
            try:
                os.write(out, b"".join(done))
            except OSError:
                ack_ok = False  # the proxy is gone: keep writing what it sent, stop acknowledging


# --------------------------------------------------------------------------- the proxy's side


class _Pending:
    __slots__ = ("path", "data", "fut", "then")

    def __init__(self, path: Path, data: bytes, fut: asyncio.Future, then: Callable[[bool], None] | None) -> None:
        self.path, self.data, self.fut, self.then = path, data, fut, then

    def complete(self, ok: bool) -> None:
        if not self.fut.done():
            self.fut.set_result(ok)
        if self.then is not None:
            self.then(ok)
            self.then = None

    def write_inline(self) -> None:
        try:
            create_file(self.path, self.data)
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

    def write(self, path: Path, data: bytes, then: Callable[[bool], None] | None = None) -> asyncio.Future | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if (
            loop is None
            or self.failed
            or self.closed
            or (self._proc is None and not self._start(loop))
            or self._loop is not loop
        ):
            create_file(path, data)
            if then is not None:
                then(True)
            return None
        fid = self._next_id
        self._next_id += 1
        fut = loop.create_future()
        self._pending[fid] = _Pending(path, data, fut, then)
        p = str(path).encode("utf-8")
        self._out += _HEAD.pack(fid, len(p), len(data)) + p + data
        if not self._writing_blocked:
            self._flush_out()
        return fut

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
