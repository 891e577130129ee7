"""An independent decoder for the publish gate's tests: everything recoverable from a set of files.

It shares no code with agentcap's gate. It opens what it is given by trying, not by magic numbers
(every decompressor on every blob, zip, SQLite with its WAL, parquet cells and footers), and expands
every text by every reading it knows — percent escapes, JSON string escapes, HTML entities,
quoted-printable, NFKC without format characters, base64 / base64url (MIME-wrapped too) and hex
runs, data URLs — again and again until nothing new comes out. A planted token that any chain of
these readings recovers counts as published.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import gzip
import html
import io
import json
import lzma
import quopri
import re
import sqlite3
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

import pyarrow.parquet as pq

MAX_TEXTS = 200_000
_B64 = re.compile(r"[A-Za-z0-9+/_-](?:[A-Za-z0-9+/_=-]|\\r\\n|\\n|\r?\n){15,}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){12,}")
_JSON_ESC = re.compile(r"\\(u[0-9a-fA-F]{4}|[\"\\/bfnrt])")


def _zstd(data: bytes) -> bytes:
    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        from backports import zstd  # type: ignore[no-redef]
    return zstd.decompress(data)


def _unjson(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        g = m.group(1)
        if g[0] == "u":
            code = int(g[1:], 16)
            return "\ufffd" if 0xD800 <= code <= 0xDFFF else chr(code)
        return {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}.get(g, g)
    return _JSON_ESC.sub(one, text)


def _visible(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKC", text) if unicodedata.category(c) != "Cf"
                   and c not in "\u115f\u1160\u3164\uffa0\u034f")


def _runs(text: str) -> Iterable[bytes]:
    for m in _B64.finditer(text):
        starts = [0] + [b.end() for b in re.finditer(r"\\r\\n|\\n|\r?\n", m.group())][:8]
        for at in starts:  # the encoding may start after a line that is no part of it
            yield from _decode64(m.group()[at:])
    for m in _HEX.finditer(text):
        yield bytes.fromhex(m.group())
    for m in re.finditer(r"data:[^,]{0,100},([A-Za-z0-9+/=%_.~!$&'()*,;:@-]+)", text):
        yield unquote(m.group(1)).encode("latin-1", "replace")


def _decode64(run: str) -> Iterable[bytes]:
    run = re.sub(r"\\r\\n|\\n|\s", "", run)
    if "-" in run or "_" in run:
        run = run.replace("-", "+").replace("_", "/")
    body = run.rstrip("=")
    body = body[:-1] if len(body) % 4 == 1 else body
    try:
        yield binascii.a2b_base64(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        pass


def _strings(value: object, path: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(value, dict):
        here = path + "".join(f"/{k}={value[k]}" for k in ("index", "output_index", "content_index", "item_id")
                              if isinstance(value.get(k), (int, str)))
        for k, v in value.items():
            yield from _strings(v, f"{here}/{k}")
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, path + "/[]")
        if value and all(isinstance(v, str) for v in value):
            yield path + "/lines", "\n".join(value)  # a text kept as its list of lines (a cassette's stream)
    elif isinstance(value, str):
        yield path, value


def _keys(value: object) -> Iterable[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v)


def _json_docs(text: str) -> list[object]:
    """``text`` as a JSON document, or as JSON lines; [] when it is neither."""
    s = text.strip()
    if s[:1] not in ("{", "["):
        return []
    try:
        return [json.loads(s)]
    except ValueError:
        pass
    docs = []
    for line in s.splitlines():
        try:
            docs.append(json.loads(line))
        except ValueError:
            return []
    return docs


def _rejoined(text: str) -> Iterable[str]:
    """An SSE stream's strings joined per JSON path (a choice's, a block's deltas become one text)."""
    joined: dict[str, list[str]] = {}
    for m in re.finditer(r"^data:[ \t]?(.*)$", text, re.M):
        try:
            doc = json.loads(m.group(1))
        except ValueError:
            continue
        for path, v in _strings(doc):
            joined.setdefault(path, []).append(v)
    return ["".join(parts) for parts in joined.values()]


class Oracle:
    """Feed it blobs; ask it what it recovered."""

    def __init__(self) -> None:
        self.texts: set[str] = set()
        self._blobs: set[bytes] = set()

    def blob(self, data: bytes, depth: int = 0) -> None:
        if depth > 10 or data in self._blobs or len(self.texts) > MAX_TEXTS:
            return
        self._blobs.add(data)
        for fn in (gzip.decompress, zlib.decompress, lzma.decompress, bz2.decompress, _zstd,
                   lambda d: zlib.decompress(d, -15)):
            try:
                self.blob(fn(data), depth + 1)
            except Exception:  # noqa: BLE001 - trying every reader is the point
                pass
        self._zip(data, depth)
        self._parquet(data, depth)
        self._sqlite(data, {}, depth)
        if data.startswith((b"PAR1", b"SQLite format 3\x00", b"PK")):
            self.texts.add(data.decode("latin-1"))  # read through its format above; its bytes as they stand too
            return
        try:
            self.text(data.decode("utf-8"), depth)
        except UnicodeDecodeError:  # binary: its bytes as they stand, and each printable run read on its own
            self.texts.add(data.decode("latin-1"))
            for m in re.finditer(rb"[\t\n\r\x20-\x7e]{8,}", data):
                self.text(m.group().decode("ascii"), depth)
        for codec in ("utf-16-le", "utf-16-be"):
            if data.count(0) > len(data) // 4:
                self.text(data.decode(codec, "replace"), depth)

    def _zip(self, data: bytes, depth: int) -> None:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for name in zf.namelist():
                    self.text(name, depth)
                    try:
                        self.blob(zf.read(name), depth + 1)
                    except Exception:  # noqa: BLE001 - an encrypted member stays unread
                        pass
        except Exception:  # noqa: BLE001
            pass

    def _parquet(self, data: bytes, depth: int) -> None:
        if not data.startswith(b"PAR1"):
            return
        f = pq.ParquetFile(io.BytesIO(data))
        for k, v in (f.metadata.metadata or {}).items():
            self.blob(k + b"\n" + v, depth + 1)
        for row in f.read().to_pylist():
            for v in row.values():
                self.value(v, depth + 1)

    def value(self, v: object, depth: int) -> None:
        if isinstance(v, bytes):
            self.blob(v, depth)
        elif isinstance(v, str):
            self.text(v, depth)
        elif isinstance(v, dict):
            for x in v.values():
                self.value(x, depth)
        elif isinstance(v, list):
            for x in v:
                self.value(x, depth)
        elif v is not None:
            self.text(str(v), depth)

    def _sqlite(self, data: bytes, sidecars: dict[str, bytes], depth: int) -> None:
        if not data.startswith(b"SQLite format 3\x00"):
            return
        with tempfile.TemporaryDirectory() as d:
            db = Path(d) / "x.db"
            db.write_bytes(data)
            for suffix, side in sidecars.items():
                Path(str(db) + suffix).write_bytes(side)
            con = sqlite3.connect(db)
            try:
                for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
                    for row in con.execute(f'SELECT * FROM "{table}"'):
                        for v in row:
                            self.value(v, depth + 1)
            finally:
                con.close()

    def sqlite_set(self, db: bytes, wal: bytes) -> None:
        """A database with its un-checkpointed WAL, read as SQLite reads the pair."""
        self._sqlite(db, {"-wal": wal}, 0)

    def text(self, text: str, depth: int = 0) -> None:
        todo = [(text, depth)]
        while todo and len(self.texts) <= MAX_TEXTS:
            t, d = todo.pop()
            if t in self.texts:
                continue
            self.texts.add(t)
            docs = _json_docs(t)
            for doc in docs:  # JSON (or JSON lines): its strings, unescaped, each read on its own
                todo += [(v, d) for _, v in _strings(doc)] + [(k, d) for k in _keys(doc)]
            if "data:" in t:
                todo += [(v, d) for v in _rejoined(t)]
            if docs:
                continue
            for variant in (unquote(t), _unjson(t), html.unescape(t), _visible(t),
                            quopri.decodestring(t.encode("utf-8", "replace")).decode("utf-8", "replace")):
                if variant != t:
                    todo.append((variant, d))
            if d < 10:
                for data in _runs(t):
                    if len(data) >= 8:
                        self.blob(data, d + 1)

    def found(self, needles: Iterable[str]) -> set[str]:
        """The needles that some recovered text holds."""
        needles = set(needles)
        out = set()
        for t in self.texts:
            for n in needles - out:
                if n in t:
                    out.add(n)
        return out


def recover(files: dict[str, bytes], needles: Iterable[str]) -> set[str]:
    """The needles recoverable from these files (a SQLite database is read with its ``-wal`` when
    the set holds it)."""
    o = Oracle()
    for name, data in files.items():
        o.text(name)
        o.blob(data)
        if name + "-wal" in files:
            o.sqlite_set(data, files[name + "-wal"])
    return o.found(needles)


def json_lines(*docs: object) -> str:
    return "".join(json.dumps(d) + "\n" for d in docs)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
