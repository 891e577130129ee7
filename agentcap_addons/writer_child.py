"""The writer process's side of agentcap_addons/writer.py: frames in, files out, acknowledgements back.

Two pipes come in. **Records** (stdin): ``C`` create a file (acknowledged), ``R`` the same and then
remove the partial file named after a NUL in the path field (a response record superseding it;
acknowledged), ``L`` hold a shared ``flock`` on the file until this process exits (the proxy's lock
file, wire/capture/repair.py; the locks the proxy held when it started this process are
inherited instead), ``W`` nothing (the proxy's appends pipe is full: read it). **Appends** (another
fd): ``A`` append to a partial file. This process blocks on the records pipe only, and reads the
appends pipe each time it wakes (before it does the records it read, so a response record never
overtakes the chunks before it): a chunk handed over costs the proxy one pipe write and never a
wake-up of this process.

Appends wait (in the pipe, then here) until the call ends — then they are dropped, never written —
or for at most ``FLUSH_AFTER`` seconds once seen, or until ``MAX_PENDING`` bytes wait; all of them
are written the moment the proxy's pipes close (a ``kill -9`` of the proxy included), before this
process exits and lets go of the lock a repair waits on.

Frames: ``!cQII`` (op, id, path length, data length), path (UTF-8), data. Back on stdout: the ids
written, as ASCII decimal lines (``-id`` when the file could not be written).
"""

from __future__ import annotations

import collections
import fcntl
import os
import select
import struct
import sys
import time
from pathlib import Path

from agentcap_addons.wire.util.files import create_file

HEAD = struct.Struct("!cQII")
CREATE, REPLACE, APPEND, LOCK, WAKE = b"C", b"R", b"A", b"L", b"W"
FLUSH_AFTER = 0.5  # seconds an append may wait once seen (a call that ends sooner costs no file)
MAX_PENDING = 8 << 20  # bytes of appends that may wait here
_MAX_OPEN = 256  # partial files kept open for appending
_SUPERSEDED = 4096  # superseded partial files remembered (a late append to one is dropped)


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


def frames(buf: bytearray) -> list[tuple[bytes, int, str, bytes]]:
    """The whole frames at the start of ``buf`` (removed from it); a frame cut short stays."""
    out = []
    pos = 0
    while len(buf) - pos >= HEAD.size:
        op, fid, plen, dlen = HEAD.unpack_from(buf, pos)
        end = pos + HEAD.size + plen + dlen
        if len(buf) < end:
            break
        start = pos + HEAD.size
        out.append((op, fid, bytes(buf[start : start + plen]).decode("utf-8"), bytes(buf[start + plen : end])))
        pos = end
    del buf[:pos]
    return out


class Child:
    """The partial files: appends waiting, files on disk, files superseded; and the held locks."""

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}  # partial files open for appending
        self.on_disk: set[str] = set()  # partial files that exist (open or not)
        self.waiting: dict[str, list[bytes]] = {}
        self.seen: dict[str, float] = {}  # when the oldest waiting append of each file came
        self.pending = 0  # bytes waiting
        self.superseded: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.locks: list[int] = []
        self.failed: set[str] = set()

    def append(self, path: str, data: bytes) -> None:
        if path in self.superseded:
            return  # it arrived after the response record (the proxy's appends pipe was full)
        self.waiting.setdefault(path, []).append(data)
        self.seen.setdefault(path, time.monotonic())
        self.pending += len(data)

    def record(self, op: bytes, fid: int, path: str, data: bytes) -> bytes | None:
        """Do one records frame; the acknowledgement line, if it has one."""
        if op == LOCK:
            fd = hold(path)
            if fd is not None:
                self.locks.append(fd)
        if op not in (CREATE, REPLACE):
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
        """The partial file ``path`` is superseded: forget its appends, and remove it if it was written."""
        self.superseded[path] = None
        if len(self.superseded) > _SUPERSEDED:
            self.superseded.popitem(last=False)
        self.pending -= sum(map(len, self.waiting.pop(path, ())))
        self.seen.pop(path, None)
        self.failed.discard(path)
        fd = self.fds.pop(path, None)
        if fd is not None:
            os.close(fd)
        if path in self.on_disk:
            self.on_disk.discard(path)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                sys.stderr.write(f"agentcap writer: could not remove {path}: {e}\n")

    def timeout(self) -> float | None:
        """Seconds until the oldest waiting append must be written (None: nothing waits)."""
        if not self.seen:
            return None
        return max(0.0, min(self.seen.values()) + FLUSH_AFTER - time.monotonic())

    def flush(self, everything: bool = False) -> None:
        """Write the appends that waited ``FLUSH_AFTER`` (all of them when ``everything`` or too many
        bytes wait): one ``write`` per file."""
        everything = everything or self.pending > MAX_PENDING
        due = time.monotonic() - FLUSH_AFTER
        for path in [p for p, t in self.seen.items() if everything or t <= due]:
            parts = self.waiting.pop(path)
            del self.seen[path]
            self.pending -= sum(map(len, parts))
            self._write(path, b"".join(parts))

    def _write(self, path: str, data: bytes) -> None:
        try:
            fd = self.fds.get(path)
            if fd is None:
                if len(self.fds) >= _MAX_OPEN:
                    for old in self.fds.values():
                        os.close(old)
                    self.fds.clear()
                fd = self.fds[path] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self.on_disk.add(path)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as e:
            if path not in self.failed:  # once per file: the response record still gets every byte
                self.failed.add(path)
                sys.stderr.write(f"agentcap writer: could not append to {path}: {e}\n")


def _drain(fd: int, buf: bytearray) -> bool:
    """Read what the appends pipe holds now into ``buf``; False once it is closed."""
    if fd < 0:
        return False
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        buf += chunk


def serve(inp: int = 0, out: int = 1, appends: int = -1) -> None:
    """Do the frames of ``inp`` (records) and ``appends`` until ``inp`` ends, acknowledge on ``out``;
    then write every append that waits."""
    if appends >= 0:
        os.set_blocking(appends, False)
    rbuf, abuf = bytearray(), bytearray()
    ack_ok = True
    child = Child()
    while True:
        ready = select.select([inp], [], [], child.timeout())[0]
        chunk = os.read(inp, 1 << 20) if ready else None
        _drain(appends, abuf)  # every chunk the proxy handed over before the records just read
        for _, _, path, data in frames(abuf):
            child.append(path, data)
        if chunk == b"":
            break
        if chunk:
            rbuf += chunk
        acks = [a for f in frames(rbuf) if (a := child.record(*f)) is not None]
        child.flush()
        if acks and ack_ok:
            try:
                os.write(out, b"".join(acks))
            except OSError:
                ack_ok = False  # the proxy is gone: keep writing what it sent, stop acknowledging
    if appends >= 0:
        os.set_blocking(appends, True)
        _drain(appends, abuf)  # to its end: the proxy's side is closed (or dead)
        for _, _, path, data in frames(abuf):
            child.append(path, data)
    child.flush(everything=True)
