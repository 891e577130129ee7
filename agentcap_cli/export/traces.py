"""Traces → parquet: every native trace file of a run as one row, for the paired traces dataset.

Rows join the captures on ``run_id`` (and ``task_id``). The file itself is kept byte for byte in
``data``; ``text`` holds it decoded when it is UTF-8 (JSONL sessions, markdown), else null (SQLite).
With a gate each batch of files is scanned before it is written (:func:`.scan.scan_blobs`); under
``--redact`` both columns hold the masked copy (so does ``path``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from agentcap_cli.export.captures import RunInfo, WrittenFile, footer, put_in_place
from agentcap_cli.export.scan import Blob, Gate, Report, scan_blobs

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


def _rows(blobs: list[Blob], run: RunInfo, digest: Any) -> list[dict[str, object]]:
    rows = []
    for b in blobs:
        task_id = b.file.split("/")[1]
        try:
            text: str | None = b.data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        digest.update(f"{task_id}/{b.name}:{hashlib.sha256(b.data).hexdigest()}\n".encode())
        rows.append({"run_id": run.run_id, "task_id": task_id, "agent": run.agent, "path": b.name,
                     "format": _format(Path(b.file)), "size": len(b.data), "text": text, "data": b.data})
    return rows


def write_traces(run_dir: Path, run: RunInfo, out_dir: Path, version: str, gate: Gate | None = None,
                 report: Report | None = None) -> WrittenFile | None:
    """One parquet file of the run's traces (None when it has none), each batch of files scanned
    before it is written when there is a gate."""
    files = trace_files(run_dir)
    if not files:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{run.run_id}.{os.getpid()}.tmp"
    digest = hashlib.sha256()
    writer = pq.ParquetWriter(tmp, SCHEMA, compression="zstd")

    def flush(blobs: list[Blob]) -> None:
        if gate is not None and report is not None:
            blobs = scan_blobs(blobs, gate, report.findings)
        writer.write_batch(pa.RecordBatch.from_pylist(_rows(blobs, run, digest), schema=SCHEMA))

    try:
        pending: list[Blob] = []
        size = 0
        for task_id, path in files:
            pending.append(Blob(str(path.relative_to(run_dir)), path.read_bytes(), path,
                                str(path.relative_to(run_dir / "traces" / task_id))))
            size += len(pending[-1].data)
            if size >= BATCH_BYTES:
                flush(pending)
                pending, size = [], 0
        if pending:
            flush(pending)
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
