"""``--out DIR`` changed all at once, or not at all.

Guarantees: nothing an export writes is visible in DIR before the export is complete; a failure
(a full disk: ENOSPC, EFBIG, EDQUOT, EIO …) or Ctrl-C before then leaves DIR as it was and no
temporary directory behind. How:

* the export is staged in a temporary directory **beside** DIR (``.DIR.agentcap-*``: the same
  filesystem, so the last step is renames, which need no free space);
* DIR's dataset directories (``captures``, ``<agent>-traces``, ``wire-traces``) are brought into it
  as **hard links** (no data copied; exports never rewrite a file in place — data files are named by
  their content, a card is written as a new file — so the originals cannot change under them),
  and the export adds its files there, as it always did into DIR;
* :meth:`OutDir.commit` swaps each dataset directory into DIR (``renameat2(RENAME_EXCHANGE)``
  where the kernel has it, else two renames; a DIR that did not exist is one rename) with SIGINT
  and SIGTERM held off, then the temporary directory (now holding the old copies) is removed.

Exports into one DIR take turns (a lock on DIR's parent directory), so two at once cannot drop
each other's files. Other entries of DIR are never touched.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

DATASET_DIRS = ("captures", "*-traces")  # what an export writes in DIR (wire-traces is a *-traces)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_LIBC_RENAMEAT2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # glibc ≥ 2.28


class OutDir:
    """A staging directory for ``final``: write under :attr:`work`, then :meth:`commit`."""

    def __init__(self, final: Path, waiting: Callable[[str], None] | None = None) -> None:
        self.final = final.resolve()
        self.waiting = waiting
        self.work = self.final  # until __enter__
        self._lock = -1
        self._made: list[Path] = []  # parents this export created (removed again when it fails)
        self._committed = False

    def __enter__(self) -> OutDir:
        self._made = _make_parents(self.final.parent)
        self._lock = os.open(self.final.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if self.waiting:
                self.waiting(f"waiting for another export writing beside {self.final}")
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self.work = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.agentcap-", dir=self.final.parent))
            self.work.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would become DIR's mode
            for src in self._datasets():
                shutil.copytree(src, self.work / src.name, symlinks=True, copy_function=_link,
                                ignore=shutil.ignore_patterns(".*.tmp"))  # leftovers of older exports
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._cleanup()

    def path(self, staged: Path) -> Path:
        """Where a file staged under :attr:`work` is once committed."""
        return self.final / staged.relative_to(self.work)

    def commit(self, names: Iterable[str]) -> None:
        """Put the dataset directories ``names`` (staged under :attr:`work`) in place in ``final``."""
        names = list(names)
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            if not self.final.exists():
                for extra in set(os.listdir(self.work)) - set(names):  # staged but not exported (empty dirs)
                    shutil.rmtree(self.work / extra)
                os.rename(self.work, self.final)
            else:
                for name in names:
                    _swap(self.work / name, self.final / name)
            self._committed = True
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def _datasets(self) -> list[Path]:
        if not self.final.is_dir():
            return []
        found = {p for pattern in DATASET_DIRS for p in self.final.glob(pattern) if p.is_dir() and not p.is_symlink()}
        return sorted(found)

    def _cleanup(self) -> None:
        if self.work != self.final:
            shutil.rmtree(self.work, ignore_errors=True)
        if not self._committed:
            for d in reversed(self._made):
                try:
                    d.rmdir()
                except OSError:
                    break
        if self._lock >= 0:
            os.close(self._lock)  # releases the lock
            self._lock = -1


def _make_parents(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents; the ones created, outermost first."""
    missing = [p for p in [path, *path.parents] if not p.exists()][::-1]
    path.mkdir(parents=True, exist_ok=True)
    return missing


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _link(src: str, dst: str) -> None:
    """A hard link (no data written); a copy where the filesystem has none."""
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copy2(src, dst)


def _swap(staged: Path, final: Path) -> None:
    """``staged`` becomes ``final``; the old ``final`` (if any) ends up at ``staged``."""
    if not final.exists():
        os.rename(staged, final)
        return
    if _LIBC_RENAMEAT2 is not None:
        if _LIBC_RENAMEAT2(_AT_FDCWD, os.fsencode(staged), _AT_FDCWD, os.fsencode(final), _RENAME_EXCHANGE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), str(final))
    old = staged.with_name(staged.name + ".old")
    os.rename(final, old)
    os.rename(staged, final)
    os.rename(old, staged)

