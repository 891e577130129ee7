"""Decode-through: what a text holds beyond its own characters, as layers a secret scan can read.

A key leaves in whatever encoding the traffic put it in: URL escapes in an OAuth callback an agent
pasted (``state=x%26token%3Dghp_…``), ``\\uXXXX`` in JSON that a Python client wrote, JSON inside a
JSON string (tool-call ``arguments``: escaped twice), a ``.env`` attached as a base64 document, a
gzip archive inside that. Each **decoder** here is a small object in a chain (the shape of
trufflehog's ``pkg/decoders``): a ``trigger`` saying a text may hold its encoding, and ``decode``,
which returns the layer with every occurrence decoded. Each new layer goes through the chain again,
so ``%255Cu0068`` comes out as ``h`` after three steps.

A layer knows where it came from: its segments map every character back to the span of its parent
that produced it, so a secret found four layers down is reported at the JSON path of the text that
carries it and, under ``--redact``, masked **there**, in the bytes that are published.

A decoder only looks where its parent changed (``regions``): a base64 run that was already in the
parent was decoded there, so a 1 MB text with one ``\\u00e9`` costs one small window, not a second
pass. Bytes that a decoder produces (base64, hex, data URLs) that are not text go to
:mod:`.containers` (archives, compression, SQLite, media).

Bounded by :class:`Budget`: depth, decoded bytes and time, per scanned item; when a bound is
reached the item is reported as unreadable (``decode budget exhausted``) and the gate refuses it
— a decode bomb ends in a refusal, never in a stall or a pass.
"""

from __future__ import annotations

import binascii
import bisect
import hashlib
import html
import re
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

MAX_DEPTH = 8  # decoding steps from a published text to the deepest layer read
CONTEXT = 512  # characters around a change that a child layer is read in (longer than any token)
MIN_BASE64 = 28  # the base64 of 21 bytes: shorter runs cannot hold the shortest token (20 characters)
MIN_HEX = 40  # 20 bytes
MEMO = 50_000  # decoded base64 / hex runs remembered per process (agents resend their context every call)


class BudgetExhausted(Exception):
    """A decoding bound was reached: what is left of the item cannot be read, so it is refused."""


@dataclass
class Budget:
    """How far the decoding of one published item may go: ``MAX_DEPTH`` steps, ``bytes`` decoded in
    all (the floor plus a multiple of the item's size: compression ratios of real data are far
    below it, a decode bomb's far above), and ``seconds``."""

    bytes: int = 64 << 20
    seconds: float = 20.0
    depth: int = MAX_DEPTH
    started: float = field(default_factory=time.monotonic)
    used: int = 0

    @classmethod
    def for_size(cls, size: int) -> Budget:
        return cls(bytes=(64 << 20) + 32 * size, seconds=20.0 + size / 4e6)

    def spend(self, n: int) -> None:
        """Count ``n`` decoded bytes; raise when the bytes or the time are used up."""
        self.used += n
        if self.used > self.bytes:
            raise BudgetExhausted(f"over {self.bytes >> 20} MiB decoded")
        if time.monotonic() - self.started > self.seconds:
            raise BudgetExhausted(f"over {self.seconds:.0f} s of decoding")

    def left(self) -> int:
        """Bytes that may still be decoded (a decompressor's output limit)."""
        return max(0, self.bytes - self.used)


@dataclass(slots=True)
class Seg:
    """``text[dst:dst_end]`` of a layer came from ``parent[src:src_end]``: character for character
    (``exact``), or as a whole (a decoded escape, run or file)."""

    dst: int
    dst_end: int
    src: int
    src_end: int
    exact: bool
    quads: bool = False  # base64 decoded to ASCII: 3 characters here are 4 there


class Layer:
    """One reading of a published text: the text itself (the root), or what a decoder made of its
    parent. ``how`` names the step (``url``, ``base64``, ``gzip``, ``zip:a/.env`` …)."""

    __slots__ = ("text", "how", "parent", "segs", "starts", "regions", "depth", "maskable", "final", "todo")

    def __init__(self, text: str, how: str = "", parent: Layer | None = None, segs: list[Seg] | None = None,
                 regions: list[tuple[int, int]] | None = None, maskable: bool = True, final: bool = False) -> None:
        self.text = text
        self.how = how
        self.parent = parent
        self.segs = segs or []
        self.starts = [s.dst for s in self.segs]
        self.regions = regions if regions is not None else [(0, len(text))]
        self.depth: int = parent.depth + 1 if parent else 0
        self.maskable: bool = maskable and (parent.maskable if parent else True)
        self.final = final  # bytes read as Latin-1: searched for plain tokens, not decoded further
        self.todo: frozenset[str] | None = None  # the decoders whose trigger it matches, when known already

    @classmethod
    def whole(cls, text: str, how: str, parent: Layer, span: tuple[int, int], maskable: bool = True,
              final: bool = False) -> Layer:
        """A layer made from all of ``parent[span]`` at once (a decompressed file, an archive member)."""
        return cls(text, how, parent, [Seg(0, len(text), span[0], span[1], False)], maskable=maskable, final=final)

    def chain(self) -> list[str]:
        out, layer = [], self
        while layer.parent is not None:
            out.append(layer.how)
            layer = layer.parent
        return out[::-1]

    def where(self) -> str:
        """The decoding steps from the published text to this layer: ``[url → base64]``, or ``""``."""
        steps = self.chain()
        return f"[{' → '.join(steps)}]" if steps else ""

    def _to_parent(self, start: int, end: int) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        while i < len(self.segs) and self.segs[i].dst < end:
            s = self.segs[i]
            i += 1
            if s.dst_end <= start:
                continue
            a, b = max(start, s.dst), min(end, s.dst_end)
            if s.exact:
                span = (s.src + a - s.dst, s.src + b - s.dst)
            elif s.quads:
                span = (s.src + 4 * ((a - s.dst) // 3), min(s.src_end, s.src + 4 * -(-(b - s.dst) // 3)))
            else:
                span = (s.src, s.src_end)
            if out and span[0] <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], span[1]))
            else:
                out.append(span)
        return out

    def origin(self, start: int, end: int) -> list[tuple[int, int]]:
        """The spans of the root text that ``self.text[start:end]`` was decoded from."""
        spans = [(start, end)]
        layer = self
        while layer.parent is not None:
            spans = merge([p for a, b in spans for p in layer._to_parent(a, b)])
            layer = layer.parent
        return spans


def merge(spans: list[tuple[int, int]], gap: int = 0) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + gap:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _widen(changed: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    return merge([(max(0, a - CONTEXT), min(size, b + CONTEXT)) for a, b in changed])


@dataclass
class Opaque:
    """Something a decoder found but cannot read: an encrypted archive member, a binary file of no
    known format, a decode budget used up. The gate refuses it (unless its fingerprint is allowed)."""

    layer: Layer  # where it sits: ``layer.origin(*span)`` in the root
    span: tuple[int, int]
    how: str  # the decoding steps to it, e.g. "base64 → zip:secret.bin"
    why: str
    fingerprint: str  # sha256 of its bytes: what the allowlist names


@dataclass
class Decoded:
    """What one decoder made of a layer."""

    layer: Layer | None = None  # the text with every occurrence decoded in place
    extra: list[Layer] = field(default_factory=list)  # files found inside (archives, compressed data)
    opaque: list[Opaque] = field(default_factory=list)


def opaque_of(data: bytes, layer: Layer, span: tuple[int, int], how: str, why: str) -> Opaque:
    return Opaque(layer, span, how, why, hashlib.sha256(data).hexdigest())


# -- substitution: every match replaced by its decoding ------------------------------------------

def substituted(layer: Layer, pattern: re.Pattern[str], how: str, fn: Callable[[re.Match[str]], str | None],
                quads: bool = False) -> Layer | None:
    """``layer`` with every match of ``pattern`` in its regions replaced by ``fn(match)`` (``None``
    or the same text: left as it is); None when nothing changed."""
    text = layer.text
    parts: list[str] = []
    segs: list[Seg] = []
    changed: list[tuple[int, int]] = []
    at = out = 0
    for a, b in layer.regions:
        for m in pattern.finditer(text, max(a, at), b):
            rep = fn(m)
            s, e = m.span()
            if rep is None or rep == m.group():
                continue
            if s > at:
                parts.append(text[at:s])
                segs.append(Seg(out, out + s - at, at, s, True))
                out += s - at
            parts.append(rep)
            segs.append(Seg(out, out + len(rep), s, e, False, quads and rep.isascii() and "\n" not in m.group()))
            changed.append((out, out + len(rep)))
            out += len(rep)
            at = e
    if not changed:
        return None
    if at < len(text):
        parts.append(text[at:])
        segs.append(Seg(out, out + len(text) - at, at, len(text), True))
    new = "".join(parts)
    return Layer(new, how, layer, segs, _widen(changed, len(new)))


# -- the text decoders -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Decoder:
    name: str
    trigger: str  # a regular expression (RE2 and Python alike) for texts worth decoding
    decode: Callable[[Layer, Budget], Decoded]
    also: str = ""  # a second pattern a whole text must match too (RE2, over whole texts only)

    @property
    def rx(self) -> re.Pattern[str]:
        return _TRIGGERS[self.name]


_JSON_ESC = re.compile(r"\\(?:u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|([\"\\/bfnrt]))")
_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _json_char(m: re.Match[str]) -> str:
    hi, lo, one, simple = m.groups()
    if simple is not None:
        return _SIMPLE[simple]
    if hi is not None:
        return chr(0x10000 + ((int(hi, 16) - 0xD800) << 10) + (int(lo, 16) - 0xDC00))
    code = int(one, 16)
    return "\ufffd" if 0xD800 <= code <= 0xDFFF else chr(code)


def _json(layer: Layer, budget: Budget) -> Decoded:
    """One level of JSON string escapes undone (``\\uXXXX``, ``\\/``, ``\\\\`` …): JSON inside a
    JSON string comes out after two steps."""
    return Decoded(substituted(layer, _JSON_ESC, "json", _json_char))


_PERCENT = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def _url(layer: Layer, budget: Budget) -> Decoded:
    """Percent escapes (RFC 3986), as UTF-8: ``token%3Dghp_…``, ``https%3A%2F%2F…``, twice-encoded
    ``%253D`` after two steps."""
    def fn(m: re.Match[str]) -> str:
        return bytes.fromhex(m.group().replace("%", "")).decode("utf-8", "replace")
    return Decoded(substituted(layer, _PERCENT, "url", fn))


_ENTITY = re.compile(r"&(?:#[0-9]{1,7};?|#[xX][0-9A-Fa-f]{1,6};?|[A-Za-z][A-Za-z0-9]{1,31};)")


def _html(layer: Layer, budget: Budget) -> Decoded:
    """HTML character references: ``&#104;``, ``&#x68;``, ``&amp;``, ``&sol;`` …"""
    return Decoded(substituted(layer, _ENTITY, "html", lambda m: html.unescape(m.group())))


_QP = re.compile(r"(?:=(?:[0-9A-Fa-f]{2}|\r?\n|\\r\\n|\\n))+")


def _qp(layer: Layer, budget: Budget) -> Decoded:
    """Quoted-printable (RFC 2045: mail bodies, MIME parts): ``=3D`` and soft line breaks."""
    def fn(m: re.Match[str]) -> str:
        raw = re.sub(r"=(?:\r?\n|\\r\\n|\\n)", "", m.group())
        return bytes.fromhex(raw.replace("=", "")).decode("utf-8", "replace") if raw else ""
    return Decoded(substituted(layer, _QP, "quoted-printable", fn))


_INVISIBLE = re.compile(r"[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
                        r"\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\uff01-\uff5e]+")


def _unicode(layer: Layer, budget: Budget) -> Decoded:
    """Characters that hide a token from a pattern: zero-width and format characters inside it,
    full-width ASCII (``ｈｆ＿…``)."""
    def fn(m: re.Match[str]) -> str:
        return "".join(c for c in unicodedata.normalize("NFKC", m.group()) if unicodedata.category(c) != "Cf"
                       and c not in "\u115f\u1160\u3164\uffa0\u034f")
    return Decoded(substituted(layer, _INVISIBLE, "unicode", fn))


_BYTES_ESC = re.compile(r"(?:\\x[0-9a-fA-F]{2}){4,}")


def _bytes_escapes(layer: Layer, budget: Budget) -> Decoded:
    """``\\x68\\x66\\x5f…`` (Python / C byte literals, ``printf``)."""
    return _bytes_runs(layer, budget, _BYTES_ESC, "\\x escapes", lambda s: bytes.fromhex(s.replace("\\x", "")))


# base64 (standard, optionally wrapped as MIME does, or url-safe), and hex runs
_B64 = re.compile(r"(?<![A-Za-z0-9+/_-])(?:(?:[A-Za-z0-9+/]{16,}(?:\\r\\n|\\n|\r?\n)){1,100000}[A-Za-z0-9+/]{4,}={0,2}"
                  r"|[A-Za-z0-9+/]{28,}={0,2}|[A-Za-z0-9_-]{28,}={0,2})")  # MIME-wrapped, one line, url-safe
_HEX = re.compile(r"(?<![0-9A-Za-z])(?:[0-9a-fA-F]{2}){20,}(?![0-9A-Za-z])")
_BREAKS = re.compile(r"\\r\\n|\\n|\r?\n")


def _b64_bytes(run: str) -> bytes | None:
    s = (_BREAKS.sub("", run) if "\\" in run or "\n" in run else run).rstrip("=")
    if len(s) < MIN_BASE64 or len(s) % 4 == 1:
        return None
    has_std, has_url = "+" in s or "/" in s, "-" in s or "_" in s
    if has_std and has_url:
        return None
    if s.isalpha() or s.isdigit() or s.islower() or s.isupper():
        return None  # a word, a number, a path of one case: base64 of text mixes cases and digits
    try:
        if has_url:
            s = s.replace("-", "+").replace("_", "/")
        return binascii.a2b_base64(s + "=" * (-len(s) % 4), strict_mode=False)
    except (binascii.Error, ValueError):
        return None


def _hex_bytes(run: str) -> bytes | None:
    if run.isdigit() or not any(c.isdigit() for c in run[:64]):
        return None
    return bytes.fromhex(run)


_memo: dict[tuple[str, str], tuple[str, bytes | None]] = {}  # (decoder, run) → (what it is: "text" | "bytes" | "", the bytes)


def _bytes_runs(layer: Layer, budget: Budget, pattern: re.Pattern[str], how: str,
                to_bytes: Callable[[str], bytes | None], quads: bool = False) -> Decoded:
    """Runs of an encoding of bytes: decoded text replaces the run in place; a file (an archive,
    compressed data, a database, media) is opened as layers of its own; anything else was no
    encoding at all (an id, a hash) and is left alone."""
    from agentcap_cli.export.containers import as_text, open_bytes, recognised

    result = Decoded()

    def read(run: str) -> tuple[str, bytes | None]:
        kind, data = _memo.get((how, run), ("?", None))
        if kind == "?":
            data = to_bytes(run)
            kind = "" if data is None else ("text" if as_text(data, strict=True) is not None else
                                            "bytes" if recognised(data) else "")
            if len(run) <= 4096:
                if len(_memo) >= MEMO:
                    _memo.clear()
                _memo[(how, run)] = (kind, data if kind else None)
        return kind, data

    def fn(m: re.Match[str]) -> str | None:
        run = m.group()
        before = m.string[m.start() - 1:m.start()]
        if how == "base64" and ((before == "," and m.string.endswith(";base64,", 0, m.start()))
                                or (before == '"' and _DECLARED_BEFORE.search(m.string, max(0, m.start() - 24),
                                                                              m.start()))):
            return None  # a data URL's payload, a file in a JSON field: read as the file it is declared
        kind, data = read(run)
        head = ""
        if not kind and how == "base64" and ("\n" in run or "\\n" in run):
            # lines of a word-like run before the base64 (a long line, then an attachment): the
            # encoding starts at one of the first line breaks
            for br in list(_BREAKS.finditer(run))[:8]:
                kind, data = read(run[br.end():])
                if kind:
                    head = run[:br.end()]
                    break
        if not kind or data is None:
            return None
        budget.spend(len(data))
        if kind == "text":
            text = as_text(data, strict=True)
            return None if text is None else head + text
        # a run in a text, not a declared file: bytes that only look like zlib (1 in ~1,000 random
        # blobs, a vendor's encrypted reasoning among them) are nothing when they do not inflate
        parts = open_bytes(data, budget, how, declared=False)
        for part in parts.texts:
            result.extra.append(Layer.whole(part.text, f"{how} → {part.how}" if part.how else how, layer, m.span(),
                                            final=part.binary))
        result.opaque += [opaque_of(o.data, layer, m.span(), f"{how} → {o.how}" if o.how else how, o.why)
                          for o in parts.opaque]
        return None

    result.layer = substituted(layer, pattern, how, fn, quads)
    return result


def _base64(layer: Layer, budget: Budget) -> Decoded:
    """Base64 and base64url runs (RFC 4648; MIME-wrapped too): an attached ``.env``, a document
    block's data, a gzip archive sent as text."""
    return _bytes_runs(layer, budget, _B64, "base64", _b64_bytes, quads=True)


def _hex(layer: Layer, budget: Budget) -> Decoded:
    """Runs of hex digits (``xxd -p``, a hex-encoded body)."""
    return _bytes_runs(layer, budget, _HEX, "hex", _hex_bytes)


_DATA_URL = re.compile(r"data:([A-Za-z0-9][\w.+-]*/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*)(;base64)?,"
                       r"([A-Za-z0-9+/=%_.~!$&'()*,;:@-]*)")


# a file sent as base64 in a JSON field: Anthropic's ``source: {type: base64, media_type, data}``
# (images, documents), OpenAI's ``input_audio.data`` and ``file_data``, Gemini's ``inline_data``
_DECLARED = re.compile(r'"(?:data|file_data|fileData|bytes)"\s*:\s*"([A-Za-z0-9+/]{64,}={0,2})"')
_DECLARED_BEFORE = re.compile(r'"(?:data|file_data|fileData|bytes)"\s*:\s*"$')
_MEDIA_TYPE = re.compile(r'"(?:media_type|mime_type|mimeType|format)"\s*:\s*"([\w.+/-]{1,100})"')


def _declared(layer: Layer, budget: Budget, result: Decoded) -> None:
    """Base64 files in JSON fields: read as the files they are declared to be (an unreadable one
    is refused, as a data URL's)."""
    from agentcap_cli.export.containers import open_bytes

    text = layer.text
    for a, b in layer.regions:
        for m in _DECLARED.finditer(text, a, b):
            try:
                data = binascii.a2b_base64(m.group(1), strict_mode=False)
            except (binascii.Error, ValueError):
                result.opaque.append(opaque_of(m.group(1).encode(), layer, m.span(1), "base64 file", "not valid base64"))
                continue
            budget.spend(len(data))
            near = _MEDIA_TYPE.search(text, max(0, m.start() - 400), min(len(text), m.end() + 400))
            parts = open_bytes(data, budget, "base64 file", declared=True, media=near.group(1) if near else None)
            for part in parts.texts:
                result.extra.append(Layer.whole(part.text, "base64 file" + (f" → {part.how}" if part.how else ""),
                                                layer, m.span(1), final=part.binary))
            result.opaque += [opaque_of(o.data, layer, m.span(1), "base64 file" + (f" → {o.how}" if o.how else ""),
                                        o.why) for o in parts.opaque]


def _data_url(layer: Layer, budget: Budget) -> Decoded:
    """``data:`` URLs (RFC 2397), and base64 files in JSON fields (:data:`_DECLARED`): what they
    carry is a file by declaration, so one that cannot be read is refused, not passed over (an
    image or a PDF is read; an unknown binary is opaque)."""
    from agentcap_cli.export.containers import open_bytes

    result = Decoded()
    _declared(layer, budget, result)
    text = layer.text
    for a, b in layer.regions:
        for m in _DATA_URL.finditer(text, a, b):
            payload = m.group(4)
            if len(payload) < 8:
                continue
            try:
                data = _unpercent(payload)
                if m.group(3):
                    data = data.replace(b"\n", b"").rstrip(b"=")
                    data = binascii.a2b_base64(data + b"=" * (-len(data) % 4), strict_mode=False)
            except (binascii.Error, ValueError):
                result.opaque.append(opaque_of(payload.encode(), layer, m.span(4), "data URL", "not valid base64"))
                continue
            budget.spend(len(data))
            parts = open_bytes(data, budget, "data URL", declared=True, media=m.group(1))
            for part in parts.texts:
                result.extra.append(Layer.whole(part.text, "data URL" + (f" → {part.how}" if part.how else ""), layer,
                                                m.span(4), final=part.binary))
            result.opaque += [opaque_of(o.data, layer, m.span(4), "data URL" + (f" → {o.how}" if o.how else ""),
                                        o.why) for o in parts.opaque]
    return result


def _unpercent(s: str) -> bytes:
    return unquote_to_bytes(s) if "%" in s else s.encode("ascii", "replace")


# base64 that decodes to something mixes upper and lower case (:func:`_b64_bytes`): a text with a
# long run but no case change inside a run (a hex id, a lower-case path) holds no base64 worth reading
_MIXED = r"[A-Z][A-Za-z0-9+/_-]*[a-z]|[a-z][A-Za-z0-9+/_-]*[A-Z]"

DECODERS: tuple[Decoder, ...] = (
    # escapes of what a token is made of (printable ASCII, and what NFKC makes ASCII), a slash, or
    # an escaped escape (JSON in JSON); not the control characters orjson writes as \u00XX
    Decoder("json", r"\\u00[2-7][0-9A-Fa-f]|\\u(?:0[1-9A-Fa-f]|[1-9A-Fa-f][0-9A-Fa-f])[0-9A-Fa-f]{2}|\\/"
                    r"|\\\\[\\\"/bfnrtu]", _json),
    Decoder("url", r"%[0-9A-Fa-f]{2}", _url),
    Decoder("html", r"&(?:#[0-9]{2,7}|#[xX][0-9A-Fa-f]{2,6}|[A-Za-z][A-Za-z0-9]{1,31};)", _html),
    Decoder("quoted-printable", r"=3[Dd]|=\r?\n|=\\r?\\n", _qp),
    Decoder("unicode", "[\u00ad\u200b-\u200f\u2060-\u2064\ufeff\uff01-\uff5e]", _unicode),
    Decoder("data URL", r"data:[A-Za-z0-9.+/-]*[;,]|\"(?:data|file_data|fileData|bytes)\"\s*:\s*\"[A-Za-z0-9+/]{64}",
            _data_url),
    Decoder("base64", r"[A-Za-z0-9+/_-]{28,}", _base64, also=_MIXED),
    Decoder("hex", r"[0-9a-fA-F]{40}", _hex),
    Decoder("\\x escapes", r"\\x[0-9a-fA-F]{2}\\x[0-9a-fA-F]{2}", _bytes_escapes),
)
_TRIGGERS = {d.name: re.compile(d.trigger) for d in DECODERS}
#: "this text may hold an encoding", as patterns that RE2 runs over whole arrow columns: a text
#: matches when it matches ``TRIGGER`` or both of ``TRIGGER_BOTH``
TRIGGER = "|".join(f"(?:{d.trigger})" for d in DECODERS if not d.also)
TRIGGER_BOTH = [(d.trigger, d.also) for d in DECODERS if d.also]


def triggered(layers: list[Layer]) -> None:
    """Set each layer's ``todo``, the decoders whose trigger it matches: one RE2 pass per decoder
    over all of them, so :func:`readings` runs no Python search over a whole text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not layers:
        return
    arr = pa.array([layer.text for layer in layers], pa.large_string())
    names: list[list[str]] = [[] for _ in layers]
    for d in DECODERS:
        hit = pc.match_substring_regex(arr, d.trigger)
        if d.also:
            hit = pc.and_(hit, pc.match_substring_regex(arr, d.also))
        for i in pc.indices_nonzero(pc.fill_null(hit, False)).to_pylist():
            names[i].append(d.name)
    for layer, n in zip(layers, names):
        layer.todo = frozenset(n)


@dataclass
class Readings:
    """Every layer of one published text, and what could not be read."""

    layers: list[Layer]
    opaque: list[Opaque]


def readings(root: Layer, budget: Budget | None = None, extra: Iterable[Layer] = ()) -> Readings:
    """``root`` and every layer the decoders make of it (and of ``extra``, layers the caller made
    of it already, and of those), breadth first, within the budget. A budget used up is itself
    reported: an :class:`Opaque` at the root."""
    budget = budget or Budget.for_size(len(root.text))
    layers, opaque = [root], []
    queue = [root]
    seen = {hash(root.text)}
    for layer in extra:
        if hash(layer.text) not in seen:
            seen.add(hash(layer.text))
            layers.append(layer)
            queue.append(layer)
    try:
        while queue:
            layer = queue.pop(0)
            if layer.final:
                continue
            todo = [d for d in DECODERS if (d.name in layer.todo if layer.todo is not None else
                                            any(d.rx.search(layer.text, a, b) for a, b in layer.regions))]
            if todo and layer.depth >= budget.depth:
                raise BudgetExhausted(f"over {budget.depth} nested encodings")
            for d in todo:
                got = d.decode(layer, budget)
                opaque += got.opaque
                for new in ([got.layer] if got.layer else []) + got.extra:
                    h = hash(new.text)
                    if h in seen:
                        continue
                    seen.add(h)
                    budget.spend(len(new.text) if new.how not in ("json", "url", "html") else 0)
                    layers.append(new)
                    queue.append(new)
    except BudgetExhausted as exc:
        opaque.append(Opaque(root, (0, len(root.text)), "", f"decode budget exhausted ({exc})",
                             hashlib.sha256(root.text.encode("utf-8", "surrogatepass")).hexdigest()))
    return Readings(layers, opaque)
