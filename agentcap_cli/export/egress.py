"""The last look before anything leaves: the files an export is about to upload, read back as their
consumers read them (every parquet cell and footer through pyarrow, every other file whole) and
scanned again, strictly — a secret that survived ``--redact`` (or a masked copy that still decodes to
one) blocks the push. What is checked is the bytes on disk that the upload sends, not what the
export meant to write.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from agentcap_cli.export.scan import Blob, Finding, Gate, scan_blobs, scan_texts

BATCH = 2000


def _strings(value: Any, path: str) -> Iterator[tuple[str, str | bytes]]:
    if isinstance(value, (str, bytes)):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


def _parquet(path: Path, name: str, gate: Gate, out: list[Finding]) -> None:
    f = pq.ParquetFile(path)
    texts: list[tuple[str, str]] = [(f"footer {k.decode('latin-1')}", v.decode("utf-8", "replace"))
                                    for k, v in (f.metadata.metadata or {}).items()]
    blobs: list[Blob] = []
    row = 0
    for batch in f.iter_batches(batch_size=BATCH):
        for values in batch.to_pylist():
            row += 1
            for where, v in ((w, v) for column, value in values.items()
                             for w, v in _strings(value, f"row {row} column {column}")):
                if isinstance(v, bytes):
                    blobs.append(Blob(f"{name}: {where}", v))
                else:
                    texts.append((where, v))
        _flush(texts, blobs, name, gate, out)
        texts, blobs = [], []
    _flush(texts, blobs, name, gate, out)


def _flush(texts: list[tuple[str, str]], blobs: list[Blob], name: str, gate: Gate, out: list[Finding]) -> None:
    scan_texts([t for _, t in texts], name, lambda i: lambda at: texts[i][0], gate, out)
    scan_blobs(blobs, gate, out)


def verify(files: list[Path], root: Path, allow: frozenset[str]) -> list[Finding]:
    """What ``files`` (under ``root``, a staged dataset) still hold, each finding blocking unless
    allowed by fingerprint."""
    gate = Gate(allow, redact=False)
    out: list[Finding] = []
    for path in files:
        name = f"{root.name}/{path.relative_to(root).as_posix()}"
        if path.suffix == ".parquet":
            _parquet(path, name, gate, out)
        else:
            scan_blobs([Blob(name, path.read_bytes())], gate, out)
    return [f for f in out if f.state == "blocking"]


def verify_text(text: str, name: str, allow: frozenset[str]) -> list[Finding]:
    """The same for a text about to be uploaded (a card as the Hub will get it)."""
    out: list[Finding] = []
    scan_blobs([Blob(name, text.encode("utf-8"))], Gate(allow, redact=False), out)
    return [f for f in out if f.state == "blocking"]
