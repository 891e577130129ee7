"""The host-path check: no absolute path of this machine in what an export publishes.

A path such as ``/home/me/proj/.agentcap/<run>/workspaces/t0001`` tells who ran the export, where,
and when (the run id is a timestamp). agentcap's sandbox shows agents fixed paths (``/workspace``,
``/home/agent``) and footers name a model script by its file name, so a fresh run publishes none;
this check is what proves it for every export — and catches the runs recorded before, a prompt that
names a local file, an owner's card that mentions one.

What it looks for, per export: ``$HOME``, the current directory, the workspace root and each run's
directory (as given and resolved), plus ``/.agentcap/<run id>`` anywhere (a run dir that has moved
since). Each as it stands, JSON-escaped (``\\/``, ``\\uXXXX``), and — for paths of two components or
more — as Claude Code names a project after a directory (every other character a ``-``). A match
must stand on its own: ``/root`` is not found in ``/rootfs`` nor in ``/srv/x/root``; a path of one
component (``$HOME`` = ``/root``) only as the start of a longer one (``/root/proj``: alone it names
no file, and codex calls its main agent ``/root``). ``/`` itself is never a prefix.

Where it looks: the files about to be written or uploaded, read back as consumers read them — every
parquet cell (nested columns too) and every footer through pyarrow, every other file (session files,
trace files, SQLite databases) as its bytes — and the cards. Not decoded: a path inside a gzip trace
file or a base64 run is not seen (the secret scan's decode-through is for keys).

A finding is a :class:`~agentcap_cli.export.scan.Finding` (detector ``host path (<what>)``, the
path as found, a fingerprint of the path): it blocks a push like a secret and is a warning with
``--out``; its fingerprint in the allowlist allows it. ``--redact`` does not mask it (the length of
a path cannot be kept meaningfully): the run has to be fixed or the finding allowed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from agentcap_cli.export.scan import Finding, Gate, json_where, line_where

DETECTOR = "host path"
BATCH = 2000
_PATH_CHAR = "A-Za-z0-9._~-"  # what continues a path component: a match ends before anything else


@dataclass(frozen=True)
class HostPath:
    what: str  # "$HOME", "the cwd", "the workspace", "the run dir", "a run id in a path"
    path: str
    anchored: bool = True  # a match must not continue a path on its left

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.path.encode("utf-8", "surrogatepass")).hexdigest()


def _variants(p: HostPath) -> list[str]:
    """Regular expressions (RE2 and Python alike) for ``p`` as it may be written down."""
    forms = {p.path, json.dumps(p.path)[1:-1], p.path.replace("/", "\\/")}
    left = f"(?:^|[^{_PATH_CHAR}])" if p.anchored else ""
    # a one-component path (``/root``) only as the start of a longer one: alone it names no file and
    # is a word agents use (codex calls its main agent ``/root``)
    right = f"(?:[^{_PATH_CHAR}]|$)" if p.path.count("/") >= 2 or not p.anchored else r"(?:/|\\/)" + f"[{_PATH_CHAR}]"
    out = [f"{left}({re.escape(f)}){right}" for f in sorted(forms, key=len, reverse=True)]
    if p.path.count("/") >= 2:
        dashed = re.escape(re.sub(r"[^A-Za-z0-9]", "-", p.path))
        out.append(("(?:^|[^A-Za-z0-9-])" if p.anchored else "") + f"({dashed})(?:[^A-Za-z0-9]|$)")
    return out


class HostPaths:
    """The paths one export must not publish, and where a text holds them."""

    def __init__(self, paths: Iterable[HostPath]) -> None:
        unique = {p.path: p for p in sorted(paths, key=lambda p: len(p.path)) if p.path.strip("/")}
        self.paths = sorted(unique.values(), key=lambda p: len(p.path), reverse=True)  # the most specific first
        self.regexes = [(p, re.compile(v)) for p in self.paths for v in _variants(p)]
        self.pattern = "|".join(f"(?:{v})" for p in self.paths for v in _variants(p))  # for pyarrow's RE2

    @classmethod
    def of(cls, home: Path, cwd: Path, workspace: Path, run_dirs: Iterable[Path], run_ids: Iterable[str]) -> HostPaths:
        """This machine's paths for an export of ``run_dirs`` (their ids ``run_ids``) from ``workspace``."""
        named = [("$HOME", home), ("the cwd", cwd), ("the workspace", workspace),
                 *(("the run dir", d) for d in run_dirs)]
        paths = [HostPath(what, str(v)) for what, d in named for v in {d, d.resolve()}]
        paths += [HostPath("a run id in a path", f"/.agentcap/{r}", anchored=False) for r in run_ids if r]
        return cls(paths)

    def find(self, text: str, exempt: Iterable[str] = ()) -> list[tuple[int, HostPath]]:
        """(offset, path) of each host path in ``text``, one per place (the most specific), outside
        the ``exempt`` strings (a local card's own directory)."""
        for e in exempt:
            text = text.replace(e, "\0" * len(e)) if e else text
        found: dict[int, tuple[int, HostPath]] = {}  # start → (end, path)
        for p, rx in self.regexes:
            for m in rx.finditer(text):
                a, b = m.span(1)
                if not any(x <= a < y or a <= x < b for x, (y, _) in found.items()):
                    found[a] = (b, p)
        return sorted((a, p) for a, (_, p) in found.items())

    # -- what an export writes ---------------------------------------------------------------------

    def check_files(self, files: Iterable[Path], root: Path, gate: Gate, out: list[Finding],
                    exempt: Iterable[str] = ()) -> None:
        """Findings for ``files`` of the staged dataset ``root``, named ``<dataset>/<path in it>``."""
        for path in files:
            name = f"{root.name}/{path.relative_to(root).as_posix()}"
            if path.suffix == ".parquet":
                self._parquet(path, name, gate, out)
            else:
                self.check_bytes(path.read_bytes(), name, gate, out, exempt)

    def check_bytes(self, data: bytes, name: str, gate: Gate, out: list[Finding], exempt: Iterable[str] = ()) -> None:
        """A file as published (a card, a session file, a trace file, a database)."""
        try:
            text, binary = data.decode("utf-8"), False
        except UnicodeDecodeError:
            text, binary = data.decode("latin-1"), True  # one char per byte: offsets are byte offsets
        hits = self.find(text, exempt)
        if hits:
            where = (lambda at: f"byte {at}") if binary else line_where(text, name.endswith((".jsonl", ".json", ".ndjson")))
            self._note(hits, name, where, gate, out)

    def _parquet(self, path: Path, name: str, gate: Gate, out: list[Finding]) -> None:
        f = pq.ParquetFile(path)
        for key, value in (f.metadata.metadata or {}).items():
            text = value.decode("utf-8", "replace")
            if hits := self.find(text):
                self._note(hits, name, _prefixed(f"footer {key.decode('latin-1')}", json_where(text)), gate, out)
        start = 0
        for batch in f.iter_batches(batch_size=BATCH):
            rows = pa.array(range(start, start + batch.num_rows), pa.int64())
            for column, values, at in (leaf for c, n in zip(batch.columns, batch.schema.names)
                                       for leaf in _leaves(c, n, rows)):
                self._column(values, at, column, name, gate, out)
            start += batch.num_rows

    def _column(self, values: pa.Array, rows: pa.Array, column: str, name: str, gate: Gate,
                out: list[Finding]) -> None:
        """One string / binary column: RE2 over all of it in C, Python only on the cells it flags."""
        if not len(values):
            return
        flagged = pc.indices_nonzero(pc.fill_null(pc.match_substring_regex(values, self.pattern), False))
        for i in flagged.to_pylist():
            v = values[i].as_py()
            text = v.decode("latin-1") if isinstance(v, bytes) else v
            hits = self.find(text)
            if hits:
                self._note(hits, name, _prefixed(f"row {rows[i].as_py() + 1} column {column}", json_where(text)),
                           gate, out)

    @staticmethod
    def _note(hits: list[tuple[int, HostPath]], name: str, where: Callable[[int], str], gate: Gate,
              out: list[Finding]) -> None:
        seen = set()
        for at, p in hits:
            place = (where(at), p.path)
            if place in seen:
                continue
            seen.add(place)
            out.append(Finding(name, place[0], f"{DETECTOR} ({p.what})", p.path, p.fingerprint,
                               "allowed" if gate.allows(p.fingerprint) else "blocking"))


def _prefixed(head: str, where: Callable[[int], str]) -> Callable[[int], str]:
    """``head`` then the JSON path inside the text, when it is JSON (``row 3 column request $.body…``)."""
    def at(offset: int) -> str:
        inner = where(offset)
        return head if inner == "$" else f"{head} {inner}"
    return at


def _leaves(values: pa.Array, name: str, rows: pa.Array) -> Iterator[tuple[str, pa.Array, pa.Array]]:
    """The string and binary arrays in a column (inside lists and structs), each with the row
    each of its values is in: ``messages[].tool_calls[].function.arguments``."""
    t = values.type
    if pa.types.is_dictionary(t):
        yield from _leaves(values.dictionary_decode(), name, rows)
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        yield name, values, rows
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        yield from _leaves(pc.list_flatten(values), f"{name}[]", pc.take(rows, pc.list_parent_indices(values)))
    elif pa.types.is_struct(t):
        for field, child in zip(t, values.flatten()):
            yield from _leaves(child, f"{name}.{field.name}", rows)
    elif pa.types.is_nested(t) or pa.types.is_union(t):  # maps and the like (no agentcap schema has one): as JSON
        yield name, pa.array([json.dumps(v, default=str) for v in values.to_pylist()], pa.string()), rows
