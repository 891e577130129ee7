"""Bytes → what a secret scan can read in them: text, or the files an archive or a compressed stream
holds, a SQLite database's cells, a PDF's text, a media file's metadata.

Each format is recognised by its magic number, not by a name or a declared type (a ``.png`` that is
a zip is opened as a zip). Compression is undone with a limit on the output (:class:`.layers.Budget`:
a decompression bomb stops there and is refused); archives are opened member by member. What stays
unreadable — an encrypted member, a 7z / RAR archive, a binary file of no known format — comes back
as ``opaque`` with its reason: the gate refuses it. Bytes that were only *possibly* an encoding (a
base64-looking run in a text) are not opaque when they turn out to be nothing: a hash is not a file.
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import re
import sqlite3
import struct
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentcap_cli.export.layers import Budget, BudgetExhausted

CHUNK = 1 << 20


@dataclass
class Part:
    how: str  # the steps inside these bytes that led to this text ("" for the bytes themselves)
    text: str
    binary: bool = False  # bytes read as Latin-1 (media, unknown data): searched for plain tokens, not decoded


@dataclass
class Unreadable:
    how: str
    why: str
    data: bytes  # what is fingerprinted (the allowlist names it)


@dataclass
class Parts:
    texts: list[Part] = field(default_factory=list)
    opaque: list[Unreadable] = field(default_factory=list)

    def add(self, other: Parts, how: str) -> None:
        self.texts += [Part(_join(how, p.how), p.text, p.binary) for p in other.texts]
        self.opaque += [Unreadable(_join(how, o.how), o.why, o.data) for o in other.opaque]


def _join(a: str, b: str) -> str:
    return f"{a} → {b}" if a and b else a or b


# -- text -----------------------------------------------------------------------------------------

_CONTROL = bytes(b for b in range(256) if b in range(0, 9) or b in range(14, 27) or b in range(28, 32) or b == 127)
_NOT_CONTROL = bytes(b for b in range(256) if b not in _CONTROL)
_LOW = bytes(range(128))


def _mostly_text(data: bytes, limit: float) -> bool:
    return len(data.translate(None, _NOT_CONTROL)) <= limit * len(data)


def as_text(data: bytes, strict: bool = False) -> str | None:
    """``data`` as text when it is text: UTF-8 (a BOM allowed), UTF-16 (by its BOM, or its zero
    bytes: PowerShell's output, ``-EncodedCommand``), and — unless ``strict`` — Latin-1 text with a
    few bytes of another code page. None for binary data."""
    if not data:
        return ""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text = data[2:].decode("utf-16-le" if data[0] == 0xFF else "utf-16-be", "replace")
        return text if _mostly_text(text.encode("utf-8", "replace"), 0.02) else None
    if len(data) >= 8 and (data[1::2].count(0) > 0.45 * (len(data) // 2) and data[0::2].count(0) < 0.05 * len(data)):
        text = data.decode("utf-16-le", "replace")
        return text if _mostly_text(text.encode("utf-8", "replace"), 0.02) else None
    if len(data) >= 8 and (data[0::2].count(0) > 0.45 * (len(data) // 2) and data[1::2].count(0) < 0.05 * len(data)):
        text = data.decode("utf-16-be", "replace")
        return text if _mostly_text(text.encode("utf-8", "replace"), 0.02) else None
    try:
        text = data[3:].decode() if data[:3] == b"\xef\xbb\xbf" else data.decode()
    except UnicodeDecodeError:
        if strict or not _mostly_text(data, 0.02) or len(data.translate(None, _LOW)) > 0.3 * len(data):
            return None
        return data.decode("latin-1")  # text in another code page
    return text if _mostly_text(data, 0.01 if strict else 0.02) else None


# -- what the bytes are ---------------------------------------------------------------------------

MEDIA = (  # formats that carry no text of their own beyond metadata: read as their bytes (and metadata)
    (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
    (b"BM", "bmp"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"), (b"\x00\x00\x01\x00", "ico"),
    (b"ID3", "mp3"), (b"\xff\xfb", "mp3"), (b"\xff\xf3", "mp3"), (b"\xff\xf2", "mp3"), (b"OggS", "ogg"),
    (b"fLaC", "flac"), (b"\x1aE\xdf\xa3", "webm"), (b"wOFF", "woff"), (b"wOF2", "woff2"), (b"OTTO", "otf"),
    (b"\x00\x01\x00\x00\x00", "ttf"), (b"\x00asm", "wasm"),
)
UNSUPPORTED = ((b"7z\xbc\xaf\x27\x1c", "7z archive"), (b"Rar!\x1a\x07", "RAR archive"), (b"MSCF", "cabinet archive"),
               (b"\x1f\x9d\x90", "compress (.Z) data"), (b"-----BEGIN PGP MESSAGE", "PGP message"),
               (b"\x04\x22\x4d\x18", "lz4 data"))
SQLITE = b"SQLite format 3\x00"


def _riff(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] in (b"WEBP", b"WAVE", b"AVI "):
        return data[8:12].decode().strip().lower()
    if data[4:8] == b"ftyp":
        return "mp4"
    return None


# the first bytes any format below starts with (zlib: any CMF byte of method 8): most bytes that
# are no file are told so by one set lookup
_FIRST = frozenset(b"\x1f\x28\xfdBP%R" + SQLITE[:1] + bytes(m[0] for m, _ in UNSUPPORTED) + bytes(m[0] for m, _ in MEDIA)
                   + bytes(b for b in range(0x80) if b & 0x0F == 8))


def kind(data: bytes) -> str | None:
    """The format ``data`` is in, by its magic number, or None."""
    if not data or (data[0] not in _FIRST and data[4:8] != b"ftyp" and data[257:262] != b"ustar"):
        return None
    head = data[:64]
    if head[:3] == b"\x1f\x8b\x08":  # the magic and deflate, its one method: 3 bytes, not 2, before a random blob counts
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:3] == b"BZh" and head[3:4].isdigit():
        return "bz2"
    if len(head) >= 2 and head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if data[257:262] == b"ustar":
        return "tar"
    if head.startswith(SQLITE):
        return "sqlite"
    if head[:5] == b"%PDF-":
        return "pdf"
    for magic, name in UNSUPPORTED:
        if head.startswith(magic):
            return "unsupported:" + name
    riff = _riff(head)
    if riff:
        return "media:" + riff
    for magic, name in MEDIA:
        if head.startswith(magic):
            return "media:" + name
    return None


def recognised(data: bytes) -> bool:
    return kind(data) is not None


# -- opening them ---------------------------------------------------------------------------------

def _inflate(d: Any, data: bytes, budget: Budget) -> bytes:
    """Feed ``data`` to a decompressor (a zlib, bz2, lzma or zstd object), a chunk of output at a
    time, never more in all than the budget allows."""
    out = bytearray()
    limit = lambda: min(CHUNK, budget.left() + 1)  # noqa: E731
    if hasattr(d, "unconsumed_tail"):  # zlib: what the limit held back comes back as unconsumed_tail
        chunk = d.decompress(data, limit())
        while True:
            out += chunk
            budget.spend(len(chunk))
            if d.eof or not d.unconsumed_tail:
                break
            chunk = d.decompress(d.unconsumed_tail, limit())
        tail = d.flush()
        budget.spend(len(tail))
        return bytes(out + tail)
    chunk = d.decompress(data, limit())  # bz2, lzma, zstd: call again with b"" while output is pending
    while True:
        out += chunk
        budget.spend(len(chunk))
        if d.eof or d.needs_input:
            break
        chunk = d.decompress(b"", limit())
    return bytes(out)


def _members(new: Callable[[], Any], data: bytes, budget: Budget, name: str, more: Callable[[bytes], bool]) -> bytes:
    """Every member of a stream of concatenated members (``cat a.gz b.gz`` is one gzip file)."""
    out = bytearray()
    rest = data
    while more(rest):
        d = new()
        out += _inflate(d, rest, budget)
        if not d.eof:
            raise ValueError(f"truncated {name} stream")
        rest = d.unused_data
    return bytes(out)


def gunzip(data: bytes, budget: Budget) -> bytes:
    return _members(lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), data, budget, "gzip",
                    lambda rest: rest[:2] == b"\x1f\x8b")


def unzstd(data: bytes, budget: Budget) -> bytes:
    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        from backports import zstd  # type: ignore[import-not-found, no-redef]
    return _members(zstd.ZstdDecompressor, data, budget, "zstd", bool)


def unbrotli(data: bytes, budget: Budget) -> bytes:
    import brotli  # type: ignore[import-not-found]

    d = brotli.Decompressor()
    out = bytearray()
    for i in range(0, len(data), CHUNK):
        chunk = d.process(data[i:i + CHUNK])
        out += chunk
        budget.spend(len(chunk))
    if not d.is_finished():
        raise ValueError("truncated brotli stream")
    return bytes(out)


def decompress(data: bytes, name: str, budget: Budget) -> bytes:
    """Undo one compression layer (``gzip``, ``zlib`` / ``deflate``, ``zstd``, ``br``, ``xz``, ``bz2``);
    ValueError when the data is not in that format or is cut short."""
    try:
        if name in ("gzip", "x-gzip"):
            return gunzip(data, budget)
        if name in ("zlib", "deflate"):
            try:
                return _inflate(zlib.decompressobj(), data, budget)
            except zlib.error:
                return _inflate(zlib.decompressobj(-zlib.MAX_WBITS), data, budget)
        if name == "zstd":
            return unzstd(data, budget)
        if name == "br":
            return unbrotli(data, budget)
        if name == "xz":
            return _inflate(lzma.LZMADecompressor(), data, budget)
        if name == "bz2":
            return _inflate(bz2.BZ2Decompressor(), data, budget)
    except BudgetExhausted:
        raise
    except Exception as exc:  # zlib.error, LZMAError, OSError, brotli.error …
        raise ValueError(f"not valid {name} data ({exc})") from None
    raise ValueError(f"unknown content-encoding {name!r}")


def undo_encodings(data: bytes, header: str | None, budget: Budget) -> bytes:
    """A body with its ``Content-Encoding`` undone, every coding in the list, last applied first
    (``gzip, zstd`` is zstd of gzip). ValueError when one does not decode."""
    for name in reversed([c.strip().lower() for c in (header or "").split(",") if c.strip()]):
        if name in ("identity", ""):
            continue
        data = decompress(data, name, budget)
    return data


def open_bytes(data: bytes, budget: Budget, how: str = "", declared: bool = True, media: str | None = None,
               siblings: dict[str, bytes] | None = None, depth: int = 0) -> Parts:
    """What ``data`` holds as text: itself when it is text, else what its format holds. Unreadable
    data is ``opaque`` when it is ``declared`` a file (a data URL, a base64 body, an archive member,
    a trace file); for bytes that were only possibly an encoding it is simply nothing."""
    parts = Parts()
    if depth > budget.depth:
        raise BudgetExhausted(f"over {budget.depth} nested containers")
    fmt = kind(data)
    text = as_text(data, strict=not declared) if fmt is None or fmt.startswith("media:mp3") else None
    if text is not None:
        parts.texts.append(Part("", text))
        return parts
    if fmt in ("gzip", "zstd", "xz", "bz2", "zlib"):
        try:
            inner = decompress(data, fmt, budget)
        except ValueError as exc:
            if fmt == "zlib" and not declared:
                return parts  # two bytes that happened to look like a zlib header
            parts.opaque.append(Unreadable(fmt, str(exc), data))
            return parts
        parts.add(open_bytes(inner, budget, declared=True, depth=depth + 1), fmt)
    elif fmt == "zip":
        parts.add(_zip(data, budget, depth), "")
    elif fmt == "tar":
        parts.add(_tar(data, budget, depth), "")
    elif fmt == "sqlite":
        parts.add(sqlite_parts(data, budget, siblings or {}), "")
    elif fmt == "pdf":
        parts.add(_pdf(data, budget), "pdf")
    elif fmt is not None and fmt.startswith("unsupported:"):
        parts.opaque.append(Unreadable("", f"{fmt.split(':', 1)[1]}: cannot be opened here", data))
    elif fmt is not None and fmt.startswith("media:"):
        parts.texts.append(Part(fmt.split(":", 1)[1], data.decode("latin-1"), True))  # metadata: EXIF, ID3, comments
        if fmt == "media:png":
            parts.add(_png_text(data, budget), "png")
    else:
        parts.texts.append(Part("bytes", data.decode("latin-1"), True))  # plain tokens among the bytes still count
        if declared:
            parts.opaque.append(Unreadable("", f"binary data of no known format ({len(data)} bytes"
                                           + (f", declared {media}" if media else "") + ")", data))
    return parts


def _zip(data: bytes, budget: Budget, depth: int) -> Parts:
    parts = Parts()
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        members = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        parts.opaque.append(Unreadable("zip", f"not a readable zip archive ({exc})", data))
        return parts
    for m in members:
        if m.is_dir():
            continue
        name = f"zip:{m.filename}"
        if m.flag_bits & 0x1:
            parts.opaque.append(Unreadable(name, "encrypted zip member", data))
            continue
        if m.file_size > budget.left():
            raise BudgetExhausted(f"zip member {m.filename} of {m.file_size} bytes")
        try:
            with zf.open(m) as f:
                body = f.read(budget.left() + 1)
        except (zipfile.BadZipFile, NotImplementedError, OSError, ValueError, EOFError, zlib.error) as exc:
            parts.opaque.append(Unreadable(name, f"zip member cannot be read ({exc})", data))
            continue
        budget.spend(len(body))
        parts.add(open_bytes(body, budget, declared=True, depth=depth + 1), name)
    return parts


def _tar(data: bytes, budget: Budget, depth: int) -> Parts:
    parts = Parts()
    try:
        tf = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
        members = tf.getmembers()
    except (tarfile.TarError, OSError, ValueError, EOFError) as exc:
        parts.opaque.append(Unreadable("tar", f"not a readable tar archive ({exc})", data))
        return parts
    for m in members:
        if not m.isfile():
            continue
        f = tf.extractfile(m)
        body = f.read(budget.left() + 1) if f else b""
        budget.spend(len(body))
        parts.add(open_bytes(body, budget, declared=True, depth=depth + 1), f"tar:{m.name}")
    return parts


def _png_text(data: bytes, budget: Budget) -> Parts:
    """A PNG's compressed text chunks (``zTXt``, ``iTXt``): the uncompressed ones (``tEXt``) are in its
    bytes already."""
    parts = Parts()
    at = 8
    while at + 8 <= len(data):
        size, ctype = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + size]
        at += 12 + size
        if ctype == b"zTXt" and b"\x00" in body:
            key, rest = body.split(b"\x00", 1)
            payload = rest[1:]
        elif ctype == b"iTXt" and body.count(b"\x00") >= 3:
            key, rest = body.split(b"\x00", 1)
            if not rest[:1] == b"\x01":
                continue
            payload = rest[2:].split(b"\x00", 2)[-1]
        else:
            continue
        try:
            text = _inflate(zlib.decompressobj(), payload, budget)
        except zlib.error:
            parts.opaque.append(Unreadable(f"{ctype.decode()} {key[:40].decode('latin-1')}", "not valid deflate", data))
            continue
        parts.texts.append(Part(f"{ctype.decode()} {key[:40].decode('latin-1')}", text.decode("utf-8", "replace")))
    return parts


_STREAM = re.compile(rb"<<(.{0,2000}?)>>\s*stream\r?\n", re.S)
_SHOW = re.compile(rb"\((?:[^()\\]|\\.)*\)|<[0-9A-Fa-f\s]*>|(?:BT|ET|Tj|TJ|'|\")(?![A-Za-z])")


def _pdf(data: bytes, budget: Budget) -> Parts:
    """A PDF's text: the bytes themselves, every stream inflated, and the strings its pages show
    joined as they are shown (``[(hf_a) -20 (bc…)] TJ`` splits a word for kerning). Encrypted, or
    text drawn only through a font's own code (hex strings), it is opaque: that text cannot be read."""
    parts = Parts([Part("", data.decode("latin-1"), True)])
    if re.search(rb"/Encrypt\s", data[-4096:]) or re.search(rb"/Encrypt\s+\d+ \d+ R", data):
        parts.opaque.append(Unreadable("", "encrypted PDF", data))
        return parts
    for m in _STREAM.finditer(data):
        end = data.find(b"endstream", m.end())
        raw = data[m.end():end if end >= 0 else len(data)]
        filters = re.findall(rb"/(\w+Decode)", m.group(1))
        body = raw
        try:
            for f in filters:
                if f == b"FlateDecode":
                    body = _inflate(zlib.decompressobj(), body, budget)
                elif f == b"ASCIIHexDecode":
                    body = bytes.fromhex(re.sub(rb"[^0-9A-Fa-f]", b"", body.split(b">")[0]).decode())
                else:
                    break  # images (DCT, JPX, CCITT, JBIG2) and rare filters: not text
        except (zlib.error, ValueError):
            continue
        shown, hexed = _shown(body)
        if hexed:
            parts.opaque.append(Unreadable("", "PDF text in a font's own encoding (hex strings): cannot be read", data))
            return parts
        parts.texts.append(Part("stream", body.decode("latin-1"), True))
        if shown:
            parts.texts.append(Part("text", shown))
    return parts


def _shown(content: bytes) -> tuple[str, bool]:
    """The text a content stream shows, each BT … ET block joined; and whether it showed hex strings."""
    out: list[str] = []
    hexed = False
    for m in _SHOW.finditer(content):
        tok = m.group()
        if tok[:1] == b"(":
            out.append(re.sub(rb"\\(.)", rb"\1", tok[1:-1]).decode("latin-1"))
        elif tok[:1] == b"<" and len(tok) > 2:
            hexed = True
        elif tok == b"ET":
            out.append("\n")
    return "".join(out).strip(), hexed


# -- SQLite, through SQLite ----------------------------------------------------------------------

def sqlite_cells(path: Path, budget: Budget, immutable: bool = False) -> Iterator[tuple[str, str | bytes]]:
    """(``table T row N column C``, value) of every text / blob cell of every table, read through
    SQLite (so a ``-wal`` beside it is applied). Views and virtual tables are not run."""
    uri = f"{path.resolve().as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")
    con = sqlite3.connect(uri, uri=True)
    deadline = budget.started + budget.seconds
    con.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
    try:
        con.execute("PRAGMA trusted_schema = OFF")
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE "
                                            "'CREATE VIRTUAL%'")]
        for table in tables:
            cur = con.execute(f'SELECT * FROM "{table.replace(chr(34), chr(34) * 2)}"')
            cols = [d[0] for d in cur.description]
            for n, row in enumerate(cur, start=1):
                for col, v in zip(cols, row):
                    if isinstance(v, (str, bytes)):
                        budget.spend(len(v))
                        yield f"table {table} row {n} column {col}", v
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            raise BudgetExhausted(f"over {budget.seconds:.0f} s reading a SQLite database") from None
        raise
    finally:
        con.close()


def sqlite_parts(data: bytes, budget: Budget, siblings: dict[str, bytes]) -> Parts:
    """A SQLite database's cells, the database read as SQLite reads it: a copy of the set (the file,
    its ``-wal`` and ``-journal`` when they are given) opened normally, so what is still only in the
    write-ahead log is read; and, when there is a log, the file alone as well (what the log
    superseded is still in the published bytes)."""
    parts = Parts()
    with tempfile.TemporaryDirectory(prefix="agentcap-scan-") as tmp:
        db = Path(tmp) / "db.sqlite"
        db.write_bytes(data)
        for suffix, body in siblings.items():
            Path(str(db) + suffix).write_bytes(body)
        views = [(db, False)] + ([(db, True)] if siblings else [])
        seen: set[tuple[str, int]] = set()
        for path, alone in views:
            if alone:
                for suffix in siblings:
                    os.unlink(str(db) + suffix) if os.path.exists(str(db) + suffix) else None
            try:
                for where, v in sqlite_cells(path, budget, immutable=alone):
                    key = (where, hash(v))
                    if key in seen:
                        continue
                    seen.add(key)
                    if isinstance(v, str):
                        parts.texts.append(Part(where, v))
                    else:
                        parts.add(open_bytes(v, budget, declared=True), where)
            except sqlite3.DatabaseError as exc:
                parts.opaque.append(Unreadable("sqlite", f"SQLite cannot read it ({exc})", data))
                break
    return parts
