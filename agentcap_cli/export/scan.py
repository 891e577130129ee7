"""The publish gate: what ``agentcap export`` scans, how it reports a finding, allows or masks it.

What is scanned is what is published, as it is published: every text column of every captures row
(request and response bodies, headers, URLs, errors), the text a stream spells out across its
events (rejoined per choice and content block, so a key the model echoes token by token is seen
whole), each run's run.json (its prompts go into every parquet footer), every traces file, the
sessions rows and files, the cards, and the run's ``sessions/`` (not published, but what an agent
printed is what it may have sent). Captures are scanned by the export workers as they make the
rows (:mod:`.scan_rows`), the rest here; the detectors are :mod:`.detectors`.

**Decode-through** (:mod:`.layers`, :mod:`.containers`): every text is also read after URL, JSON
string, HTML entity, quoted-printable, base64 and hex decoding, each decoded layer decoded again,
and every archive, compressed stream and SQLite database opened; within a budget of depth, bytes
and time. **Fail closed**: what cannot be read (an encrypted archive member, a binary of no known
format declared as a file, a decode budget used up) is a finding like a key — it blocks the push
unless its fingerprint is allowed.

A finding names the file and a JSON path (``captures/ab12….response.json: $.raw[sse text]``) plus
the decoding steps to it (``[url → base64]``), the kind, the secret masked, and its fingerprint
(sha256 of the secret; of the bytes for what could not be read) — the key of the allowlist file
``.agentcap-secrets-allow``. With ``--redact`` every published copy gets the secret masked where it
sits in the published text (same length: binary files stay valid), and what was masked is scanned
again: a secret that could not be masked (inside a gzip trace, split over SQLite pages) still blocks.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from agentcap_addons.wire.util.clock import rfc3339_ns
from agentcap_addons.wire.util.errors import InputError
from agentcap_addons.wire.util.files import atomic_write_bytes
from agentcap_cli.export.containers import open_bytes
from agentcap_cli.export.detectors import (
    OVERLAP,
    WINDOW,
    Hit,
    find,
    fingerprint,
    flagged,
    mask,
    prefiltered,
)
from agentcap_cli.export.jsonpaths import JsonIndex, Lines
from agentcap_cli.export.layers import Budget, Layer, Opaque, merge, readings, triggered

SCAN_JSON = "scan.json"
SCANNED_DIRS = ("captures", "traces", "sessions", "cells", "judge")
ALLOW_FILE = ".agentcap-secrets-allow"
UNREADABLE = "unreadable"  # what a finding about something that could not be read says it is
_FP = re.compile(r"^(?:sha256:)?([0-9a-f]{16,64})$")


@dataclass
class Finding:
    file: str  # relative to the run dir (or the staged dataset, for a card)
    where: str  # a JSON path, or a line / table / row, then the decoding steps: "[url → base64]"
    detector: str
    secret: str  # masked
    fingerprint: str
    state: str = "blocking"  # blocking | allowed (allowlist) | redacted (--redact) | unpublished | left out

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.detector}" + (f" {self.secret}" if self.secret else "")


@dataclass(frozen=True)
class Gate:
    """What the scan does with a finding (picklable: it travels to the export workers)."""

    allow: frozenset[str] = frozenset()  # fingerprints or prefixes of them (≥ 16 hex digits)
    redact: bool = False
    leave_out: bool = False  # --leave-out-unreadable: a trace file that cannot be read is not published

    def allows(self, fp: str) -> bool:
        return bool(self.allow) and any(fp.startswith(a) for a in self.allow)


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


# -- one published text, through every layer ----------------------------------------------------

@dataclass
class Seen:
    """What one published text holds: secrets in any of its layers, and what could not be read."""

    root: Layer
    hits: list[tuple[Hit, Layer]] = field(default_factory=list)
    opaque: list[Opaque] = field(default_factory=list)

    def fingerprints(self) -> set[str]:
        return {fingerprint(h.secret) for h, _ in self.hits} | {o.fingerprint for o in self.opaque}


_PRINTABLE = re.compile(r"[\t\n\r\x20-\x7e]{8,}")  # what a token among bytes read as Latin-1 is made of


def _pieces(layer: Layer) -> Iterator[tuple[int, int, bool]]:
    """The spans of a layer to search, none longer than a window and a half (each reaching
    ``OVERLAP`` into the next, so no token is cut: ``cut`` says a piece's end is such a window's),
    its regions, or for bytes read as Latin-1 the runs of printable ASCII in them."""
    if layer.final:
        spans = merge([m.span() for m in _PRINTABLE.finditer(layer.text)], gap=16)
    else:
        spans = layer.regions
    for a, b in spans:
        for s in range(a, b, WINDOW):
            yield s, min(b, s + WINDOW + OVERLAP), s + WINDOW + OVERLAP < b
            if s + WINDOW + OVERLAP >= b:
                break


def examine(roots: list[Layer], extra: dict[int, list[Layer]] | None = None) -> list[Seen]:
    """Every layer of every root (``extra``: layers the caller made already, by root index: a
    stream's channels, a body's decoded bytes) read, then searched — one RE2 pass over every
    piece of every layer, Python only where it flags."""
    seen = [Seen(root) for root in roots]
    pieces: list[tuple[int, Layer, int, int, bool]] = []
    triggered(list(roots) + [layer for more in (extra or {}).values() for layer in more])
    for i, root in enumerate(roots):
        r = readings(root, Budget.for_size(len(root.text)), (extra or {}).get(i, ()))
        seen[i].opaque = r.opaque
        pieces += [(i, layer, a, b, cut) for layer in r.layers for a, b, cut in _pieces(layer)]
    texts = [layer.text[a:b] if (a, b) != (0, len(layer.text)) else layer.text for _, layer, a, b, _ in pieces]
    places: set[tuple[int, str, tuple[tuple[int, int], ...]]] = set()
    for k, rules in prefiltered(texts):
        i, layer, a, b, cut = pieces[k]
        for h in find(layer.text, a, b, rules):
            if cut and h.end == b:
                continue  # cut by the window's end: the next window holds it whole
            place = (i, fingerprint(h.secret), tuple(layer.origin(h.start, h.end)))
            if place not in places:  # the same secret in the same place, seen again in a deeper layer
                places.add(place)
                seen[i].hits.append((h, layer))
    return seen


@dataclass
class Mask:
    spans: list[tuple[int, int]]  # in the published text
    keep: bool  # the secret as it stands there: keep its first four characters (else mask the span whole)


def judge(seen: Seen, file: str, where: Callable[[int], str], gate: Gate, out: list[Finding],
          published: bool = True, reported: set[tuple[str, str]] | None = None) -> list[Mask]:
    """Findings for what one text holds (appended to ``out``, each secret once per ``reported``
    and state), and what to mask in it under --redact."""
    reported = set() if reported is None else reported
    masks: list[Mask] = []
    maskable = {fingerprint(h.secret) for h, layer in seen.hits if layer.maskable}

    def note(fp: str, spans: list[tuple[int, int]], layer: Layer, detector: str, secret: str, keep: bool) -> None:
        state = state_of(fp, gate, published, layer.maskable or fp in maskable)
        if (fp, state) not in reported:
            reported.add((fp, state))
            at = layer.where() if not layer.maskable else where(_start(spans)) + layer.where()
            out.append(Finding(file, at, detector, secret, fp, state))
        if state == "redacted" and layer.maskable:
            masks.append(Mask(spans, keep))

    # a hit read out of a file's structure (a database cell, an archive member) is reported there
    # rather than at a byte offset of the file read as Latin-1
    for h, layer in sorted(seen.hits, key=lambda hit: hit[1].final):
        spans = layer.origin(h.start, h.end)
        note(fingerprint(h.secret), spans, layer, h.rule.name, mask(h.secret), _verbatim(layer))
    for o in seen.opaque:
        spans = o.layer.origin(*o.span)
        note(o.fingerprint, spans, o.layer, f"{UNREADABLE} ({o.why})", "", False)
    return masks


def _start(spans: list[tuple[int, int]]) -> int:
    return spans[0][0] if spans else 0


def _verbatim(layer: Layer) -> bool:
    """The layer's text is the published text's own characters (the root, a stream's channel):
    a secret found in it stands as it is, and keeps its first four characters when masked."""
    while layer.parent is not None:
        if not all(s.exact for s in layer.segs):
            return False
        layer = layer.parent
    return True


_MASK_ALL = re.compile(r"\\u[0-9A-Fa-f]{4}|\\.|[^\s\"{}\[\],:\\]")


def _star(m: re.Match[str]) -> str:
    g = m.group()
    return g if g[0] == "\\" and g[1:2] != "u" else "*" * len(g)


def apply(text: str, masks: Iterable[Mask]) -> str:
    """``text`` with every span masked: a secret as it stands keeps its first four characters; an
    encoded one (URL escapes, base64, a compressed file) is masked whole. Lengths stay (a binary
    file stays valid) and JSON stays JSON (escapes stay escapes)."""
    # (start, end, how many of its first characters stay): a secret split over several spans (a
    # stream's events) keeps its first four characters across them
    spans: list[tuple[int, int, int]] = []
    for m in masks:
        left = 4 if m.keep else 0
        for a, b in m.spans:
            spans.append((a, b, min(left, b - a)))
            left -= min(left, b - a)
    parts, at = [], 0
    for a, b, keep in sorted(spans):
        a = max(a, at)
        if b <= a:
            continue
        parts.append(text[at:a + keep])
        parts.append(_MASK_ALL.sub(_star, text[a + keep:b]))
        at = b
    parts.append(text[at:])
    return "".join(parts)


def leftovers(texts: list[str], file: str, where: Callable[[int], str], gate: Gate, out: list[Finding],
              extra: dict[int, list[Layer]] | None = None, opaque: list[Opaque] | None = None,
              final: bool = False) -> None:
    """Fail closed after masking: whatever the masked texts still hold blocks (``final``: they are
    bytes read as Latin-1)."""
    found = examine([Layer(t, final=final) for t in texts], extra)
    if found and opaque:
        found[0].opaque += opaque
    for s in found:
        for h, layer in s.hits:
            fp = fingerprint(h.secret)
            if not gate.allows(fp):
                out.append(Finding(file, where(_start(layer.origin(h.start, h.end))) + layer.where(),
                                   h.rule.name + " (left after --redact)", mask(h.secret), fp))
        for o in s.opaque:
            if not gate.allows(o.fingerprint):
                out.append(Finding(file, where(_start(o.layer.origin(*o.span))) + o.layer.where(),
                                   f"{UNREADABLE} ({o.why}) (left after --redact)", "", o.fingerprint))


def scan_text(text: str, file: str, where: Callable[[int], str], gate: Gate, out: list[Finding],
              published: bool = True) -> str:
    """Scan one published text; returns it as it should be published (masked under --redact)."""
    return scan_texts([text], file, lambda i: where, gate, out, published)[0]


def scan_texts(texts: list[str], file: str | Callable[[int], str], where: Callable[[int], Callable[[int], str]],
               gate: Gate, out: list[Finding], published: bool = True) -> list[str]:
    """Scan several published texts (``file``, ``where(i)``: the file of the i-th and how it says
    where); returns them as they should be published. Only what the prefilter flags is read in
    Python, and each secret is reported once per file."""
    result = list(texts)
    suspects = flagged(texts) if texts else []
    reported: dict[str, set[tuple[str, str]]] = {}
    for i, seen in zip(suspects, examine([Layer(texts[i]) for i in suspects])):
        name = file if isinstance(file, str) else file(i)
        masks = judge(seen, name, where(i), gate, out, published, reported.setdefault(name, set()))
        if masks:
            result[i] = apply(texts[i], masks)
            leftovers([result[i]], name, where(i), gate, out)
    return result


# -- where a hit is ------------------------------------------------------------------------------

def json_where(text: str, base: str = "$") -> Callable[[int], str]:
    """Offset → the JSON path of the string holding it (the index is made on the first call)."""
    index: list[JsonIndex] = []

    def where(at: int) -> str:
        if not index:
            index.append(JsonIndex(text, base))
        return index[0].path_at(at)
    return where


def line_where(text: str, parsed_lines: bool) -> Callable[[int], str]:
    """``line N`` of a text file, plus the JSON path inside the line for JSON / JSONL files."""
    index: list[Lines] = []
    per_line: dict[int, JsonIndex] = {}

    def where(at: int) -> str:
        if not index:
            index.append(Lines(text))
        lines = index[0]
        n = lines.number(at)
        if not parsed_lines:
            return f"line {n}"
        if n not in per_line:
            per_line[n] = JsonIndex(lines.line(n))
        return f"line {n} " + per_line[n].path_at(at - lines.starts[n - 1])
    return where


# -- files: run.json, traces, sessions, cards ----------------------------------------------------

def scan_json_file(file: str, text: str, gate: Gate, out: list[Finding]) -> str:
    """A JSON document (run.json): findings at JSON paths; returns the (masked) text."""
    return scan_text(text, file, json_where(text), gate, out)


@dataclass
class Blob:
    """A file published as it is (a trace) or kept beside the run (sessions)."""

    file: str  # relative to the run dir: what a finding names
    data: bytes
    path: Path | None = None  # on disk (a SQLite database is read with its -wal / -journal beside it)
    name: str | None = None  # a published name to scan too (a trace's ``path`` column)


SIDECARS = ("-wal", "-journal")


def _decoded(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"  # one char per byte: offsets are byte offsets


def _sidecar(b: Blob) -> bool:
    """A SQLite ``-wal`` / ``-journal`` / ``-shm`` beside its database: read through the database."""
    p = b.path
    return p is not None and any(p.name.endswith(s) for s in (*SIDECARS, "-shm")) and \
        p.with_name(re.sub(r"-(?:wal|journal|shm)$", "", p.name)).is_file()


def _inside(b: Blob, root: Layer) -> tuple[list[Layer], list[Opaque]]:
    """What a binary file holds as layers of its own (a gzip file's text, a database's cells, a
    zip's members), and what in it cannot be read: found there, a secret cannot be masked in the
    published bytes."""
    siblings = {}
    if b.path is not None and b.data.startswith(b"SQLite format 3\x00"):
        siblings = {s: Path(str(b.path) + s).read_bytes() for s in SIDECARS if Path(str(b.path) + s).is_file()}
    parts = open_bytes(b.data, Budget.for_size(len(b.data)), declared=not _sidecar(b), siblings=siblings)
    whole = (0, len(root.text))
    layers = [Layer.whole(p.text, p.how, root, whole, maskable=False) for p in parts.texts if p.how]
    opaque = [Opaque(Layer.whole("", o.how or "file", root, whole, maskable=False), (0, 0), o.how, o.why,
                     hashlib.sha256(o.data).hexdigest()) for o in parts.opaque]
    return layers, opaque


def scan_blobs(blobs: list[Blob], gate: Gate, out: list[Finding], published: bool = True) -> list[Blob]:
    """Scan files: text by line (and JSON path for JSON lines), binary by byte and by what it
    holds (archives, compressed data, SQLite cells). One prefilter call for all of them; returns
    them as they should be published (masked under --redact; same length)."""
    decoded = [_decoded(b.data) for b in blobs]
    binary = {i for i, (_, codec) in enumerate(decoded) if codec == "latin-1"}
    texts = [text for text, _ in decoded] + [b.name or "" for b in blobs]
    todo = sorted({i % len(blobs) for i in flagged(texts)} | binary) if blobs else []
    roots = [Layer(decoded[i][0], final=i in binary) for i in todo]
    inside = {k: _inside(blobs[i], roots[k]) for k, i in enumerate(todo) if i in binary}
    result = list(blobs)
    for k, (i, seen) in enumerate(zip(todo, examine(roots, {k: v[0] for k, v in inside.items()}))):
        b = blobs[i]
        text, codec = decoded[i]
        seen.opaque += inside[k][1] if k in inside else []
        where = _blob_where(b.file, text, codec)
        masks = judge(seen, b.file, where, gate, out, published)
        data = b.data
        if masks:
            masked = apply(text, masks)
            data = masked.encode(codec)
            again = Layer(masked, final=codec == "latin-1")
            layers, opaque = _inside(Blob(b.file, data), again) if codec == "latin-1" else ([], [])
            leftovers([masked], b.file, where, gate, out, {0: layers}, opaque, final=codec == "latin-1")
        name = scan_text(b.name, b.file, lambda at: "its name", gate, out, published) if b.name else b.name
        result[i] = Blob(b.file, data, b.path, name)
    return result


def _blob_where(file: str, text: str, codec: str) -> Callable[[int], str]:
    if codec == "utf-8":
        return line_where(text, file.endswith((".jsonl", ".json", ".ndjson")))
    return lambda at: f"byte {at}"


def scan_derived(blobs: list[Blob], gate: Gate, report: Report) -> list[Blob]:
    """Scan files made from what was scanned already (a session rebuilt from captures, a trace
    converted to another format): as :func:`scan_blobs`, masked the same way, but a secret already
    reported for this run is not reported again."""
    known = {f.fingerprint for f in report.findings}
    found: list[Finding] = []
    result = scan_blobs(blobs, gate, found)
    report.findings += [f for f in found if f.fingerprint not in known or f.state == "blocking"]
    return result


def scan_sessions(run_dir: Path, gate: Gate, out: list[Finding]) -> None:
    """The agent's stdout / stderr of each turn: not published, scanned as evidence."""
    root = run_dir / "sessions"
    paths = [p for p in sorted(root.rglob("*")) if p.is_file()] if root.is_dir() else []
    scan_blobs([Blob(str(p.relative_to(run_dir)), p.read_bytes(), p) for p in paths], gate, out, published=False)


def write_scan_json(run_dir: Path, report: Report, engines: str) -> None:
    """The run's scan result, for people and CI (rewritten by every export that scans)."""
    data = {"schema": 3, "scanned_at": rfc3339_ns(), "detectors": engines,
            "findings": report.findings, "skipped": report.skipped}
    try:
        text = orjson.dumps(data, option=orjson.OPT_INDENT_2)
    except TypeError:  # a lone surrogate in a path
        text = json.dumps({**data, "findings": [asdict(f) for f in report.findings]}, indent=1).encode()
    try:
        atomic_write_bytes(run_dir / SCAN_JSON, text)
    except OSError:  # a read-only run directory: the report on stderr is what counts
        pass
