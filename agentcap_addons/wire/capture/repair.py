"""Crash repair: a request record whose proxy died (``kill -9``, a crash) gets its response record.

Guarantees:

* **Only dead proxies' calls.** A recording proxy holds a lock file per captures directory,
  ``captures/.proxy-<instance>.lock`` (``instance``: 8 hex digits, the first 8 of every request id it
  hands out), with a shared ``flock`` taken before the file gets its name and held until the proxy
  and its writer process (which takes the lock too) have ended — the kernel drops it when they die,
  however they die. The file holds ``{"pid", "start", "instance", "started_at"}`` (``start``: the
  process start time in clock ticks, so a reused pid is not taken for the proxy). A call is repaired
  only when its instance's lock can be taken exclusively, or there is no lock file for it (a
  proxy from before this scheme, or one already repaired). When the lock is still held but the
  proxy's process is gone, its writer is still draining what it was sent: the repair waits for it
  (at most ``wait`` seconds), then repairs with every byte on disk.
* **Whatever arrived.** The response record is built from the call's partial file
  (:mod:`agentcap_addons.wire.capture.partial`) with ``error: {kind: "proxy_killed", message}``,
  in the same fields a normal record uses (``raw`` / ``body`` …): the bytes clients received are in it.
* **Atomic and idempotent.** The record is created whole (unnamed inode or temporary file, then a
  link that never replaces an existing record), then the partial file is removed; running it again,
  or from two processes at once, changes nothing more. A partial file beside a response record (the
  proxy died between the two) is removed.

Called when a proxy starts on a captures directory, and by ``agentcap ls`` / ``inspect`` /
``export`` before they read a run's records. No mitmproxy import here.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agentcap_addons.wire.capture.partial import read_partial, response_record
from agentcap_addons.wire.capture.records import (
    PARTIAL_SUFFIX,
    REQUEST_SUFFIX,
    RESPONSE_SUFFIX,
    resolve_captures_dir,
)
from agentcap_addons.wire.util.clock import parse_rfc3339_ns, rfc3339_ns
from agentcap_addons.wire.util.jsonio import dumps, read_json

log = logging.getLogger(__name__)

LOCK_PREFIX, LOCK_SUFFIX = ".proxy-", ".lock"
INSTANCE_LEN = 8
DRAIN_WAIT = 10.0  # seconds a repair waits for a dead proxy's writer process to finish its files
_POLL = 0.02


def lock_path(captures_dir: Path, instance: str) -> Path:
    return captures_dir / f"{LOCK_PREFIX}{instance}{LOCK_SUFFIX}"


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot, /proc/PID/stat field 22); None
    when there is no such process or no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


# --------------------------------------------------------------------------- the recording proxy's side


class Claim:
    """A recording proxy's lock on one captures directory (see the module docstring)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    def release(self) -> None:
        """Remove the lock file, then drop the lock (a clean stop: nothing of ours is left to repair)."""
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)


def claim(captures_dir: Path, instance: str) -> Claim:
    """Create ``captures_dir`` if needed and its lock file for ``instance``, locked before it has
    its name (so no repair ever sees it unlocked while we live). Raises OSError."""
    captures_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(captures_dir, instance)
    pid = os.getpid()
    data = dumps({"pid": pid, "start": process_start(pid), "instance": instance, "started_at": rfc3339_ns()})
    f = _Unnamed(captures_dir, data, lambda fd: fcntl.flock(fd, fcntl.LOCK_SH))
    try:
        f.link(path)
    except BaseException:
        f.close()
        raise
    if f.tmp is not None:  # the lock is on the inode, which keeps its new name
        f.tmp.unlink(missing_ok=True)
    return Claim(path, f.fd)


# --------------------------------------------------------------------------- files that are never replaced


class _Unnamed:
    """A file in ``directory`` holding ``data`` that has no name yet (O_TMPFILE; elsewhere a
    temporary name), given one by :meth:`link` — never over an existing file."""

    def __init__(self, directory: Path, data: bytes, prepare: Callable[[int], None] | None = None) -> None:
        self.tmp: Path | None = None
        try:
            self.fd = os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o644)
        except (AttributeError, OSError):  # not Linux, or a filesystem without O_TMPFILE
            self.tmp = directory / f".repair.{os.getpid()}.{time.monotonic_ns()}.tmp"
            self.fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            if prepare is not None:
                prepare(self.fd)
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]
        except BaseException:
            self.close()
            raise

    def link(self, path: Path) -> None:
        """Name the file ``path``; FileExistsError when that exists."""
        if self.tmp is not None:
            os.link(self.tmp, path)
            return
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:  # a dir fd makes os.link call linkat(AT_SYMLINK_FOLLOW): the inode, not the /proc link
            os.link(f"/proc/self/fd/{self.fd}", path.name, dst_dir_fd=dfd, follow_symlinks=True)
        finally:
            os.close(dfd)

    def close(self) -> None:
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
        os.close(self.fd)


def create_new(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data``, whole, unless it exists (then False, and it is left as it is)."""
    f = _Unnamed(path.parent, data)
    try:
        f.link(path)
    except FileExistsError:
        return False
    finally:
        f.close()
    return True


# --------------------------------------------------------------------------- the repair


@dataclass
class Repaired:
    """What a repair did in one captures directory."""

    repaired: list[str] = field(default_factory=list)  # request ids given a proxy_killed response record
    live: list[str] = field(default_factory=list)  # in flight in a live proxy: left alone
    cleaned: int = 0  # partial and lock files removed


@dataclass
class _Listing:
    requests: set[str] = field(default_factory=set)
    responses: set[str] = field(default_factory=set)
    partials: set[str] = field(default_factory=set)
    locks: set[str] = field(default_factory=set)


def _list(d: Path) -> _Listing:
    out = _Listing()
    try:
        entries = list(os.scandir(d))
    except OSError:  # no such directory (yet), or not one we may read: nothing to repair
        return out
    for e in entries:
        name = e.name
        if name.endswith(REQUEST_SUFFIX):
            out.requests.add(name[: -len(REQUEST_SUFFIX)])
        elif name.endswith(RESPONSE_SUFFIX):
            out.responses.add(name[: -len(RESPONSE_SUFFIX)])
        elif name.endswith(PARTIAL_SUFFIX):
            out.partials.add(name[: -len(PARTIAL_SUFFIX)])
        elif name.startswith(LOCK_PREFIX) and name.endswith(LOCK_SUFFIX):
            out.locks.add(name[len(LOCK_PREFIX) : -len(LOCK_SUFFIX)])
    return out


def repair(directory: str | os.PathLike[str], by: str, wait: float = DRAIN_WAIT) -> Repaired:
    """Give every request record of a dead proxy that has no response record one (module docstring).
    ``directory``: a run or captures directory; ``by``: who repairs, for the record's message."""
    d = resolve_captures_dir(directory)
    listing = _list(d)
    out = Repaired()
    for rid in listing.partials & listing.responses:  # the proxy died between the record and the removal
        out.cleaned += _unlink(d / f"{rid}{PARTIAL_SUFFIX}")
    orphans = sorted(listing.requests - listing.responses)
    by_instance: dict[str, list[str]] = {}
    for rid in orphans:
        by_instance.setdefault(rid[:INSTANCE_LEN], []).append(rid)
    for instance in sorted(set(by_instance) | listing.locks):
        rids = by_instance.get(instance, [])
        # no lock file: a proxy from before the lock files, or one whose lock a repair removed
        lock = _take(lock_path(d, instance), wait if rids else 0.0) if instance in listing.locks else _NO_LOCK
        if lock is None:  # a live proxy's calls
            out.live += rids
            continue
        try:
            for rid in rids:
                if _repair_one(d, rid, by):
                    out.repaired.append(rid)
            if lock != _NO_LOCK:
                out.cleaned += _unlink(lock_path(d, instance))
        finally:
            if lock != _NO_LOCK:
                os.close(lock)
    if out.repaired:
        log.warning("agentcap: %s: %d call(s) of a proxy that was killed got a proxy_killed response record",
                    d, len(out.repaired))
    return out


_NO_LOCK = -1


def _take(path: Path, wait: float) -> int | None:
    """The lock of a dead proxy, held exclusively (an fd), or None while its proxy lives. While only
    its writer process holds it (the proxy is gone), wait up to ``wait`` seconds for the writer."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return _NO_LOCK
    except OSError:  # cannot tell whether its proxy lives: leave its calls alone
        return None
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                pass
            if _owner_alive(fd) or time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(_POLL)  # a dead proxy's writer finishing its last files: milliseconds
    except BaseException:
        os.close(fd)
        raise


def _owner_alive(fd: int) -> bool:
    try:
        info = json.loads(os.pread(fd, 4096, 0))
        pid, start = int(info["pid"]), info.get("start")
    except (OSError, ValueError, KeyError, TypeError):
        return True  # not readable: assume the worst (alive), repair nothing
    now = process_start(pid)
    if now is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return start is None  # no /proc: the pid exists, take it for the proxy
    return start is None or now == start


def _unlink(path: Path) -> int:
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    except OSError as e:  # a read-only copy of a run
        log.debug("agentcap: could not remove %s: %s", path, e)
        return 0
    return 1


def _repair_one(d: Path, rid: str, by: str) -> bool:
    """Write ``rid``'s response record from its partial file; False when one appeared meanwhile, or
    when it cannot be written here (a read-only copy of a run, a full disk: read as it is, repaired
    another time)."""
    path = d / f"{rid}{RESPONSE_SUFFIX}"
    try:
        made = create_new(path, dumps(_killed_record(d, rid, by)))
        if made:
            _unlink(d / f"{rid}{PARTIAL_SUFFIX}")
        return made
    except OSError as e:
        log.warning("agentcap: %s: could not write a response record (%s: %s)", path, type(e).__name__,
                    e.strerror or e)
        return False


def _killed_record(d: Path, rid: str, by: str) -> dict:
    """The ``proxy_killed`` response record of ``rid``: what its partial file holds."""
    part = read_partial(d / f"{rid}{PARTIAL_SUFFIX}")
    head = part.head or {}
    sent = head.get("sent")
    if not isinstance(sent, (int, float)):
        sent = _sent_of_request(d / f"{rid}{REQUEST_SUFFIX}")
    last = part.chunks[-1][0] if part.chunks else head.get("first_byte")
    error = {"kind": "proxy_killed",
             "message": f"the proxy ended during the call (kill -9 or a crash); {len(part.data)} bytes had "
                        f"arrived; response record written by {by} at {rfc3339_ns()}"}
    timings = {"sent": sent, "first_byte": head.get("first_byte"), "done": last}
    status, headers = head.get("status_code"), head.get("headers")
    return response_record(rid, status if isinstance(status, int) else None,
                           headers if isinstance(headers, dict) else {}, head.get("stream") is True,
                           part.data, part.chunks, timings, error)


def _sent_of_request(path: Path) -> float | None:
    """Epoch ms of the request record's ``captured_at`` (when no response head says when it was sent)."""
    try:
        return round(parse_rfc3339_ns(str(read_json(path).get("captured_at"))) / 1e6, 3)
    except (OSError, ValueError, AttributeError):
        return None
