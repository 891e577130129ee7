"""Paths confined to a root: what a project names stays in the project, what an assertion reads
stays in the workspace.

Two walls, two shapes:

* **A project's files** (prompt_file, assets, rubric_file, skills, base prompts, mock schemas and
  handlers) are named by whoever wrote the project. :func:`inside` resolves the name (symlinks
  included) and refuses it unless the result is inside the root; :func:`check_tree` does the same
  for every entry of a directory that will be copied (a link inside ``assets/`` to ``/etc`` is as
  much a host file as ``../../etc``), and refuses what is not a regular file, a directory or a link
  (a FIFO would hang the copy, a device would read without end). :func:`copy_tree` copies only
  what :func:`check_tree` accepts, checking again as it goes.
* **A workspace** is written by the agent, which may be hostile and may still be running. Nothing
  in it is resolved by the kernel with links followed: :func:`open_beneath` walks the name one
  component at a time from a directory fd (``openat`` with ``O_NOFOLLOW``), resolves a relative
  link itself, and refuses an absolute link or one whose ``..`` climbs above the root (what
  ``openat2(RESOLVE_BENEATH)`` does). The file it opens must be a regular file (``O_NONBLOCK``, so a
  FIFO never blocks the open); :func:`read_beneath` reads at most a cap.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from agentcap_addons.wire.util.yamlfile import Located

MAX_LINKS = 40  # as the kernel's own limit on links followed in one lookup
READ_CAP = 64 << 20  # bytes an assertion reads from one workspace file
MAX_ENTRIES = 200_000  # entries a workspace walk looks at


class Refused(ValueError):
    """The path leaves its root, or names something that is not a regular file / directory."""


# --------------------------------------------------------------------------- project files


def plain_name(rel: object) -> str:
    """``rel`` as a relative path text, or Refused: not text, empty, a NUL byte."""
    if not isinstance(rel, str) or not rel:
        raise Refused("must be a relative path")
    if "\0" in rel:
        raise Refused("holds a NUL byte")
    return rel


def inside(root: Path, path: Path) -> Path:
    """``path`` resolved (symlinks followed); Refused unless it is ``root`` or inside it."""
    real_root = root.resolve()
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as exc:  # a link loop, a name too long
        raise Refused(f"cannot be resolved: {exc}") from None
    if real != real_root and not real.is_relative_to(real_root):
        raise Refused(f"is outside {real_root} (it resolves to {real})")
    return real


def confined(doc: Located, key: str, root: Path, path: Path, *, tree: bool = False, shown: str | None = None) -> Path:
    """``path`` (a file, or with ``tree`` a file or a directory and all it holds) resolved inside
    ``root``, links followed; else the input file's error ``file:line: key: 'name' is outside …``.
    What a project names is copied to the workspace, the prompt or the judge, so a host file would
    reach the captures and the datasets."""
    try:
        return check_tree(root, path) if tree else check_file(root, path)
    except Refused as exc:
        raise doc.error(key, f"{shown if shown is not None else _shown(root, path)!r} {exc}") from None


def _shown(root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _kind_ok(mode: int) -> bool:
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


def check_file(root: Path, path: Path) -> Path:
    """``path`` inside ``root`` and a regular file (after links); the resolved path."""
    real = inside(root, path)
    try:
        st = real.stat()
    except OSError:
        raise FileNotFoundError(path) from None
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"is not a regular file ({_kind(st.st_mode)})")
    return real


def check_tree(root: Path, top: Path) -> Path:
    """``top`` (a file or a directory) and everything under it resolve inside ``root`` and are
    regular files or directories; the resolved ``top``. The first entry that is not: Refused,
    naming it."""
    real = inside(root, top)
    if real.is_file() or not real.is_dir():
        return check_file(root, top)
    seen = 0
    for d, dirs, files in os.walk(real, followlinks=False):
        for name in dirs + files:
            seen += 1
            if seen > MAX_ENTRIES:
                raise Refused(f"holds more than {MAX_ENTRIES} entries")
            entry = Path(d) / name
            try:
                target = inside(root, entry)
                mode = target.stat().st_mode
            except Refused as exc:
                raise Refused(f"{entry.relative_to(real)} {exc}") from None
            except OSError:
                raise Refused(f"{entry.relative_to(real)} is a dangling link") from None
            if not _kind_ok(mode):
                raise Refused(f"{entry.relative_to(real)} is not a regular file ({_kind(mode)})")
            if entry.is_symlink() and stat.S_ISDIR(mode):
                raise Refused(f"{entry.relative_to(real)} is a link to a directory (copy the directory instead)")
    return real


def copy_tree(root: Path, src: Path, dst: Path) -> None:
    """Copy ``src`` (file or directory) to ``dst``, merging into an existing ``dst`` directory; links
    are copied as the file they name, and only after :func:`check_tree` accepted them."""
    real = check_tree(root, src)
    if real.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        _copy_file(root, real, dst)
        return
    for d, _dirs, files in os.walk(real, followlinks=False):
        out = dst / Path(d).relative_to(real)
        out.mkdir(parents=True, exist_ok=True)
        for name in files:
            _copy_file(root, Path(d) / name, out / name)


def _copy_file(root: Path, src: Path, dst: Path) -> None:
    real = check_file(root, src)
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the check
            raise Refused(f"{src} is not a regular file")
        with open(fd, "rb", closefd=False) as f, open(dst, "wb") as out:
            while chunk := f.read(1 << 20):
                out.write(chunk)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a file"


# --------------------------------------------------------------------------- a workspace


def _parts(text: str) -> list[str]:
    return [p for p in text.split("/") if p not in ("", ".")]


def check_relative(rel: object) -> str:
    """An assertion's path: relative, no NUL, and not climbing above where it starts. Refused otherwise."""
    text = plain_name(rel)
    if text.startswith("/"):
        raise Refused("must be relative to the workspace, not absolute")
    depth = 0
    for p in _parts(text):
        depth += -1 if p == ".." else 1
        if depth < 0:
            raise Refused("leads out of the workspace")
    return text


class _Walk:
    """A lookup of one name beneath a root fd, links resolved by hand (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.stack = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]

    def close(self) -> None:
        for fd in self.stack:
            os.close(fd)
        self.stack.clear()

    def resolve(self, rel: str) -> tuple[int, str, os.stat_result] | None:
        """(parent dir fd, last name, its lstat) of ``rel``; None if it does not exist. The root
        itself comes back as (root fd, ".", stat)."""
        parts, hops, last = deque(_parts(rel)), 0, None
        while parts:
            name = parts.popleft()
            if name == "..":
                if len(self.stack) == 1:
                    raise Refused("leads out of the workspace")
                os.close(self.stack.pop())
                last = None
                continue
            try:
                st = os.stat(name, dir_fd=self.stack[-1], follow_symlinks=False)
            except FileNotFoundError:
                return None
            except NotADirectoryError:
                return None
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_LINKS:
                    raise Refused("has too many levels of links")
                target = os.readlink(name, dir_fd=self.stack[-1])
                if target.startswith("/"):
                    raise Refused(f"is a link out of the workspace (to {target})")
                parts.extendleft(reversed(_parts(target)))
                continue
            if parts:
                if not stat.S_ISDIR(st.st_mode):
                    return None
                self.stack.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self.stack[-1]))
                continue
            last = (self.stack[-1], name, st)
        return last if last is not None else (self.stack[-1], ".", os.fstat(self.stack[-1]))


def stat_beneath(root: Path, rel: str) -> os.stat_result | None:
    """The stat of ``rel`` beneath ``root`` (links resolved inside it), None if it does not exist."""
    walk = _Walk(root)
    try:
        found = walk.resolve(rel)
        return found[2] if found else None
    finally:
        walk.close()


def read_beneath(root: Path, rel: str, cap: int = READ_CAP) -> bytes:
    """The bytes of the regular file ``rel`` beneath ``root``. FileNotFoundError if it is not there;
    Refused if the name leaves the root, it is not a regular file, or it holds more than ``cap``."""
    walk = _Walk(root)
    try:
        found = walk.resolve(rel)
        if found is None:
            raise FileNotFoundError(rel)
        dir_fd, name, st = found
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"is not a regular file ({_kind(st.st_mode)})")
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=dir_fd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the lookup
                raise Refused("is not a regular file")
            with open(fd, "rb", closefd=False) as f:
                data = f.read(cap + 1)
        finally:
            os.close(fd)
        if len(data) > cap:
            raise Refused(f"is larger than the {cap >> 20} MiB an assertion reads")
        return data
    finally:
        walk.close()


def files_beneath(root: Path, rel: str = ".") -> Iterator[str]:
    """The regular files under the directory ``rel`` beneath ``root``, as paths relative to
    ``root``, links never followed (a link is skipped, whatever it names). Refused if ``rel``
    leaves the root or holds more than MAX_ENTRIES entries; nothing if it is not a directory."""
    walk = _Walk(root)
    try:
        found = walk.resolve(rel)
        if found is None or not stat.S_ISDIR(found[2].st_mode):
            return
        dir_fd, name, _ = found
        top = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    finally:
        walk.close()
    prefix = "/".join(_parts(os.path.normpath(rel)))
    seen = 0
    try:
        for d, _dirs, files, dfd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
            for f in sorted(files):
                seen += 1
                if seen > MAX_ENTRIES:
                    raise Refused(f"holds more than {MAX_ENTRIES} entries")
                if stat.S_ISREG(os.stat(f, dir_fd=dfd, follow_symlinks=False).st_mode):
                    yield "/".join(_parts(f"{prefix}/{d}/{f}"))
    finally:
        os.close(top)
