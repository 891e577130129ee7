"""Files as parquet rows, and session files, for the traces datasets (native and wire-derived).

Names come from content (a digest), so an export never overwrites what an earlier one wrote: the
same content finds its name taken ("already exported"), new content gets a new name beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from agentcap_cli.export.captures import RunInfo, WrittenFile, footer, put_in_place

SCHEMA = pa.schema([("run_id", pa.string()), ("task_id", pa.string()), ("agent", pa.string()),
                    ("path", pa.string()), ("format", pa.string()), ("size", pa.int64()),
                    ("text", pa.string()), ("data", pa.binary()), ("repeat", pa.int32())])


def key_name(key: tuple[Any, ...]) -> str:
    """A session's name in file names and ``session_id``: the task id (``<cell>--<repeat>`` for a suite
    repeat), or the thread id."""
    if key[0] == "thread":
        name = str(key[1])
    else:
        _, task, cell, repeat = key
        name = str(task or cell) + (f"--{repeat}" if repeat is not None else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "session"


@dataclass
class FileRows:
    """A parquet of files (one row each), written batch by batch; the digest names it."""

    out_dir: Path
    run: RunInfo
    tmp: Path = field(init=False)
    writer: pq.ParquetWriter | None = None
    digest: Any = field(default_factory=hashlib.sha256)
    rows: int = 0

    def __post_init__(self) -> None:
        self.tmp = self.out_dir / f".{self.run.run_id}.{os.getpid()}.tmp"

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self.writer is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.tmp, SCHEMA, compression="zstd")
        for r in rows:
            self.digest.update(f"{r['task_id']}/{r['repeat']}/{r['path']}:{hashlib.sha256(r['data']).hexdigest()}\n".encode())
        self.writer.write_batch(pa.RecordBatch.from_pylist(rows, schema=SCHEMA))
        self.rows += len(rows)

    def close(self, version: str, **extra: Any) -> WrittenFile | None:
        if self.writer is None:
            return None
        meta = footer(self.run, None, self.rows, version)
        meta[b"agentcap"] = json.dumps({**json.loads(meta[b"agentcap"]), **extra}, ensure_ascii=False).encode()
        self.writer.add_key_value_metadata(meta)
        self.writer.close()
        self.writer = None
        final = self.out_dir / f"{self.run.run_id}--{self.digest.hexdigest()[:12]}.parquet"
        return WrittenFile(final, None, self.rows, put_in_place(self.tmp, final), kind="files")

    def discard(self) -> None:
        abandon(self.writer, self.tmp)


def abandon(writer: pq.ParquetWriter | None, tmp: Path) -> None:
    """Drop a parquet file being written (an export that failed or was interrupted): nothing half-written
    is left behind, whatever state the writer is in."""
    if writer is not None:
        try:
            writer.close()
        except Exception:
            pass
    tmp.unlink(missing_ok=True)


def file_row(run: RunInfo, key: tuple[Any, ...], path: str, data: bytes, fmt: str) -> dict[str, Any]:
    """A file as a row of :data:`SCHEMA` (``text`` when it is UTF-8)."""
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"run_id": run.run_id, "task_id": None if key[0] != "task" else str(key[1]), "agent": run.agent,
            "path": path, "format": fmt, "size": len(data), "text": text, "data": data,
            "repeat": key[3] if key[0] == "task" else None}


def session_file(out_dir: Path, run: RunInfo, key: tuple[Any, ...], data: bytes, rows: int) -> WrittenFile:
    """``<out_dir>/<run>/<task>--<digest>.jsonl``: named by content, never overwritten."""
    d = out_dir / run.run_id
    d.mkdir(parents=True, exist_ok=True)
    final = d / f"{key_name(key)}--{hashlib.sha256(data).hexdigest()[:12]}.jsonl"
    tmp = d / f".{final.name}.{os.getpid()}.tmp"
    tmp.write_bytes(data)
    return WrittenFile(final, None, rows, put_in_place(tmp, final), kind="session")
