"""The publish gate: what ``agentcap export`` scans, how it reports a finding, allows or masks it.

What is scanned is what is published, as it is published: every text column of every captures row
(request and response bodies, headers, URLs, errors; a gzip / deflate / br / zstd body after
decoding, a ``body_b64`` / ``raw_b64`` one after base64), the text a stream spells out across its
events (deltas joined, so a key the model echoes token by token is seen whole), each run's run.json
(its prompts go into every parquet footer), every traces file (text, bytes, SQLite cells, gzip), the
cards, and the run's ``sessions/`` (not published, but what an agent printed is what it may have
sent). Captures are scanned by the export workers as they make the rows (:mod:`.scan_rows`), the
rest here; the detectors are :mod:`.detectors`.

A finding names the file and a JSON path (``captures/ab12….response.json: $.raw[sse text]``), the
kind, the secret masked, and its fingerprint (sha256 of the secret) — the key of the allowlist file
``.agentcap-secrets-allow`` for false positives. With ``--redact`` the published copy gets the
secret masked (same length: binary files stay valid), and what was masked is scanned again: a secret
that could not be masked (inside a gzip trace, split over SQLite pages) still blocks.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentcap_addons.wire.util.clock import rfc3339_ns
from agentcap_addons.wire.util.errors import InputError
from agentcap_addons.wire.util.files import atomic_write_bytes
from agentcap_cli.export.detectors import (
    RULES,
    Hit,
    find,
    fingerprint,
    flagged,
    mask,
    normalise,
    redact,
)

SCAN_JSON = "scan.json"
SCANNED_DIRS = ("captures", "traces", "sessions")
ALLOW_FILE = ".agentcap-secrets-allow"
_FP = re.compile(r"^(?:sha256:)?([0-9a-f]{16,64})$")


@dataclass
class Finding:
    file: str  # relative to the run dir (or the staged dataset, for a card)
    where: str  # a JSON path, or a line / table / row
    detector: str
    secret: str  # masked
    fingerprint: str
    state: str = "blocking"  # blocking | allowed (allowlist) | redacted (--redact) | unpublished

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.detector} {self.secret}"


@dataclass(frozen=True)
class Gate:
    """What the scan does with a finding (picklable: it travels to the export workers)."""

    allow: frozenset[str] = frozenset()  # fingerprints or prefixes of them (≥ 16 hex digits)
    redact: bool = False

    def allows(self, fp: str) -> bool:
        return any(fp.startswith(a) for a in self.allow)


@dataclass
class Report:
    """Everything one export found: per run, what the scan found and which captures it skipped."""

    findings: list[Finding] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "captures/<rid>.request.json: unreadable (…)"


class AllowlistError(InputError):
    pass


def load_allowlist(path: Path) -> frozenset[str]:
    """Fingerprints from an allowlist file: one per line (``sha256:`` optional, a prefix of at
    least 16 hex digits is enough), then an optional ``# comment``; blank and ``#`` lines skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AllowlistError(f"{path}: cannot read the allowlist ({exc})") from None
    out = set()
    for n, line in enumerate(lines, start=1):
        entry = line.split("#", 1)[0].strip().lower()
        if not entry:
            continue
        m = _FP.match(entry)
        if not m:
            raise AllowlistError(f"{path}:{n}: {entry!r} is not a finding fingerprint (16 to 64 hex digits, "
                                 "as printed after 'fingerprint')")
        out.add(m.group(1))
    return frozenset(out)


def state_of(fp: str, gate: Gate, published: bool = True, maskable: bool = True) -> str:
    """What a finding with this fingerprint is: allowed, masked in the published copy, in a file
    that is not published (``--redact`` lets the push go on), or blocking."""
    if gate.allows(fp):
        return "allowed"
    if not gate.redact:
        return "blocking"
    if not published:
        return "unpublished"
    return "redacted" if maskable else "blocking"


def judge(hits: list[Hit], file: str, where: Callable[[Hit], str], gate: Gate, out: list[Finding],
          published: bool = True) -> list[Hit]:
    """Findings for ``hits`` (appended to ``out``); returns the hits to mask."""
    to_mask = []
    for h in hits:
        fp = fingerprint(h.secret)
        state = state_of(fp, gate, published)
        out.append(Finding(file, where(h), h.rule.name, mask(h.secret), fp, state))
        if state == "redacted":
            to_mask.append(h)
    return to_mask


def leftovers(text: str, file: str, where: Callable[[Hit], str], gate: Gate, out: list[Finding]) -> None:
    """Fail closed after masking: a secret still in the text to publish blocks."""
    for h in find(text):
        fp = fingerprint(h.secret)
        if not gate.allows(fp):
            out.append(Finding(file, where(h), h.rule.name + " (left after --redact)", mask(h.secret), fp))


def scan_text(text: str, file: str, where: Callable[[Hit], str], gate: Gate, out: list[Finding],
              published: bool = True) -> str:
    """Scan one published text; returns it as it should be published (masked under --redact)."""
    if not flagged([text]):
        return text
    return scan_flagged(text, file, where, gate, out, published)


def scan_flagged(text: str, file: str, where: Callable[[Hit], str], gate: Gate, out: list[Finding],
                 published: bool = True) -> str:
    """:func:`scan_text` for a text the caller's own prefilter (``flagged``) has flagged already."""
    masked = judge(find(text), file, where, gate, out, published)
    if not masked:
        return text
    result = redact(text, masked)
    leftovers(result, file, where, gate, out)
    return result


# -- where a hit is ------------------------------------------------------------------------------

def _key(k: str) -> str:
    return f".{k}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) else f"[{json.dumps(k)}]"


def leaves(value: Any, path: str = "$") -> Iterator[tuple[str, str]]:
    """(JSON path, string) of every string (and object key) in ``value``, depth first."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield path + _key(str(k)) + "{key}", str(k)
            yield from leaves(v, path + _key(str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, f"{path}[{i}]")


def locate(value: Any, secret: str, base: str = "$") -> str:
    """The JSON path of the first string in ``value`` holding ``secret`` (found in JSON text, it
    may still carry escapes: a PEM body's ``\\n``); ``base`` when none does."""
    plain = unescaped(secret)
    squeezed = normalise(secret) if plain != secret or re.search(r"\s", secret) else None
    for path, text in leaves(value, base):
        if plain in text or (squeezed and squeezed in normalise(text)):
            return path
    return base


def line_where(text: str, parsed_lines: bool) -> Callable[[Hit], str]:
    """``line N`` of a text file, plus the JSON path inside the line for JSON / JSONL files."""
    def where(h: Hit) -> str:
        n = text.count("\n", 0, h.start)
        if not parsed_lines:
            return f"line {n + 1}"
        start = text.rfind("\n", 0, h.start) + 1
        end = text.find("\n", h.start)
        try:
            return f"line {n + 1} " + locate(json.loads(text[start:end if end >= 0 else len(text)]), h.secret)
        except ValueError:
            return f"line {n + 1}"
    return where


# -- files: run.json, traces, sessions, cards ----------------------------------------------------

def scan_json_file(file: str, text: str, gate: Gate, out: list[Finding]) -> str:
    """A JSON document (run.json): findings at JSON paths; returns the (masked) text."""
    try:
        doc = json.loads(text)
    except ValueError:
        return scan_text(text, file, line_where(text, False), gate, out)
    return scan_text(text, file, lambda h: locate(doc, h.secret), gate, out)


def unescaped(secret: str) -> str:
    try:
        return json.loads(f'"{secret}"')
    except ValueError:
        return secret


def _sqlite_cells(path: Path) -> Iterator[tuple[str, str]]:
    """(where, text) of every text / blob cell of a SQLite database, read-only."""
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error:
        return
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cur = con.execute(f'SELECT * FROM "{table.replace(chr(34), chr(34) * 2)}"')
            cols = [d[0] for d in cur.description]
            for n, row in enumerate(cur, start=1):
                for col, v in zip(cols, row):
                    if isinstance(v, (str, bytes)):
                        yield f"table {table} row {n} column {col}", v if isinstance(v, str) else v.decode("latin-1")
    except sqlite3.Error:
        return
    finally:
        con.close()


def _views(data: bytes, path: Path | None) -> Iterator[tuple[str, str]]:
    """What a binary file holds beyond its bytes: a gzip file's text, a SQLite database's cells."""
    if data[:2] == b"\x1f\x8b":
        try:
            yield "[gzip]", gzip.decompress(data).decode("utf-8", "replace")
        except (OSError, EOFError):
            pass
    if path is not None and data.startswith(b"SQLite format 3\x00"):
        yield from _sqlite_cells(path)


@dataclass
class Blob:
    """A file published as it is (a trace) or kept beside the run (sessions)."""

    file: str  # relative to the run dir: what a finding names
    data: bytes
    path: Path | None = None  # on disk (a SQLite database is read through sqlite3)
    name: str | None = None  # a published name to scan too (a trace's ``path`` column)


def _decoded(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"  # one char per byte: offsets are byte offsets


def scan_blobs(blobs: list[Blob], gate: Gate, out: list[Finding], published: bool = True) -> list[Blob]:
    """Scan files: text by line (and JSON path for JSON lines), binary by byte and by what it
    holds (gzip, SQLite cells). One prefilter call for all of them; returns them as they should be
    published (masked under --redact; same length)."""
    decoded = [_decoded(b.data) for b in blobs]
    views = [list(_views(b.data, b.path)) if codec == "latin-1" else [] for b, (_, codec) in zip(blobs, decoded)]
    owner = [i for i, b in enumerate(blobs) for _ in (0, 1)] + [i for i, v in enumerate(views) for _ in v]
    texts = [t for (text, _), b in zip(decoded, blobs) for t in (text, b.name or "")] + \
        [text for v in views for _, text in v]
    suspects = {owner[k] for k in flagged(texts)}
    result = []
    for i, b in enumerate(blobs):
        if i not in suspects:
            result.append(b)
            continue
        data = _scan_blob(b.file, b.data, decoded[i], views[i], gate, out, published)
        name = scan_text(b.name, b.file, lambda h: "its name", gate, out, published) if b.name else b.name
        result.append(Blob(b.file, data, b.path, name))
    return result


def scan_derived(blobs: list[Blob], gate: Gate, report: Report) -> list[Blob]:
    """Scan files made from what was scanned already (a session rebuilt from captures, a trace
    converted to another format): as :func:`scan_blobs`, masked the same way, but a secret already
    reported for this run is not reported again."""
    known = {f.fingerprint for f in report.findings}
    found: list[Finding] = []
    result = scan_blobs(blobs, gate, found)
    report.findings += [f for f in found if f.fingerprint not in known]
    return result


def _scan_blob(file: str, data: bytes, decoded: tuple[str, str], views: list[tuple[str, str]], gate: Gate,
               out: list[Finding], published: bool) -> bytes:
    text, codec = decoded
    inside: dict[str, tuple[str, Hit]] = {}  # fingerprint → (where in a gzip / SQLite view, hit)
    for view_where, view in views:
        for h in find(view):
            inside.setdefault(fingerprint(h.secret), (view_where, h))
    if codec == "utf-8":
        where = line_where(text, file.endswith((".jsonl", ".json", ".ndjson")))
    else:
        where = lambda h: inside.get(fingerprint(h.secret), (f"byte {h.start}",))[0]  # noqa: E731
    found: list[Finding] = []
    result = scan_text(text, file, where, gate, found, published)
    seen = {f.fingerprint for f in found}
    for fp, (view_where, h) in inside.items():
        if fp not in seen:  # only inside (compressed, split over pages): the bytes cannot be masked
            found.append(Finding(file, view_where, h.rule.name, mask(h.secret), fp,
                                 state_of(fp, gate, published, maskable=False)))
    out += found
    return result.encode(codec) if result is not text else data


def scan_sessions(run_dir: Path, gate: Gate, out: list[Finding]) -> None:
    """The agent's stdout / stderr of each turn: not published, scanned as evidence."""
    root = run_dir / "sessions"
    paths = [p for p in sorted(root.rglob("*")) if p.is_file()] if root.is_dir() else []
    scan_blobs([Blob(str(p.relative_to(run_dir)), p.read_bytes(), p) for p in paths], gate, out, published=False)


def trufflehog(run_dir: Path, gate: Gate, found: list[Finding]) -> list[Finding]:
    """trufflehog v3 over the run's files when it is on PATH — an extra, never verifying (that
    would use the key, and may get it revoked); [] otherwise. What it finds that agentcap's own
    detectors did not is a file:line it cannot mask, so it blocks even under --redact."""
    exe = shutil.which("trufflehog")
    paths = [run_dir / d for d in SCANNED_DIRS if (run_dir / d).is_dir()]
    if not exe or not paths:
        return []
    done = subprocess.run([exe, "filesystem", "--json", "--no-verification", "--no-update", *map(str, paths)],
                          capture_output=True, text=True, timeout=1800)
    known = {f.fingerprint for f in found}
    out = []
    for line in done.stdout.splitlines():
        try:
            item = json.loads(line)
            fs = item["SourceMetadata"]["Data"]["Filesystem"]
            raw, file = str(item.get("Raw") or ""), Path(fs["file"])
        except (ValueError, KeyError, TypeError):
            continue
        fp = fingerprint(raw)
        if fp in known:
            continue
        known.add(fp)
        rel = str(file.relative_to(run_dir)) if file.is_relative_to(run_dir) else str(file)
        out.append(Finding(rel, f"line {fs.get('line') or '?'}", f"trufflehog {item.get('DetectorName')}", mask(raw),
                           fp, state_of(fp, gate, published=not rel.startswith("sessions"), maskable=False)))
    return out


def write_scan_json(run_dir: Path, report: Report) -> None:
    """The run's scan result, for people and CI (rewritten by every export that scans)."""
    data = {"schema": 2, "scanned_at": rfc3339_ns(), "detectors": f"agentcap ({len(RULES)} rules)" +
            (" + trufflehog" if shutil.which("trufflehog") else ""),
            "findings": [asdict(f) for f in report.findings], "skipped": report.skipped}
    try:
        atomic_write_bytes(run_dir / SCAN_JSON, json.dumps(data, indent=1, ensure_ascii=False).encode())
    except OSError:  # a read-only run directory: the report on stderr is what counts
        pass
