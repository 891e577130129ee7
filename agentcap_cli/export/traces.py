"""Traces → parquet: every native trace file of a run as one row, for the paired traces dataset.

Rows join the captures on ``run_id`` (and ``task_id``). The file itself is kept byte for byte in
``data``; ``text`` holds it decoded when it is UTF-8 (JSONL sessions, markdown), else null (SQLite).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from agentcap_cli.export.captures import RunInfo, WrittenFile, footer, put_in_place

SCHEMA = pa.schema([("run_id", pa.string()), ("task_id", pa.string()), ("agent", pa.string()),
                    ("path", pa.string()), ("format", pa.string()), ("size", pa.int64()),
                    ("text", pa.string()), ("data", pa.binary())])
BATCH_BYTES = 64 << 20


def _format(path: Path) -> str:
    return {".jsonl": "jsonl", ".json": "json", ".md": "markdown", ".db": "sqlite", ".sqlite": "sqlite"}.get(
        path.suffix, path.suffix.lstrip(".") or "text")


def trace_files(run_dir: Path) -> list[tuple[str, Path]]:
    """(task_id, file) for every file under ``traces/<task>/``, in a stable order."""
    root = run_dir / "traces"
    if not root.is_dir():
        return []
    return [(task.name, f) for task in sorted(root.iterdir()) if task.is_dir()
            for f in sorted(p for p in task.rglob("*") if p.is_file())]


def write_traces(run_dir: Path, run: RunInfo, out_dir: Path, version: str) -> WrittenFile | None:
    files = trace_files(run_dir)
    if not files:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{run.run_id}.{os.getpid()}.tmp"
    digest = hashlib.sha256()
    rows: list[dict[str, object]] = []
    size = 0
    writer = pq.ParquetWriter(tmp, SCHEMA, compression="zstd")
    try:
        for task_id, path in files:
            data = path.read_bytes()
            try:
                text: str | None = data.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            rel = str(path.relative_to(run_dir / "traces" / task_id))
            digest.update(f"{task_id}/{rel}:{hashlib.sha256(data).hexdigest()}\n".encode())
            rows.append({"run_id": run.run_id, "task_id": task_id, "agent": run.agent, "path": rel,
                         "format": _format(path), "size": len(data), "text": text, "data": data})
            size += len(data)
            if size >= BATCH_BYTES:
                writer.write_batch(pa.RecordBatch.from_pylist(rows, schema=SCHEMA))
                rows, size = [], 0
        if rows:
            writer.write_batch(pa.RecordBatch.from_pylist(rows, schema=SCHEMA))
        writer.add_key_value_metadata(footer(run, None, len(files), version))
        writer.close()
        final = out_dir / f"{run.run_id}--{digest.hexdigest()[:12]}.parquet"
        return WrittenFile(final, None, len(files), put_in_place(tmp, final))
    finally:
        if tmp.exists():
            try:
                writer.close()
            except Exception:
                pass
            tmp.unlink(missing_ok=True)
