"""Captures → parquet: one row per capture in ``seq`` order, written in row groups (memory stays flat).

The request and response go in as they were on the wire (the request body as JSON text, the response
body as JSON text or the raw SSE text); the derived columns (tokens, ttft, finish reason, tool calls)
are computed with the wire decoders. A run whose calls name several models is **split per model**:
one file per (run, model), each saying its model in the footer — agents make side calls to small
models (claude-code's titles, for one), so refusing such runs would refuse most real data.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import pyarrow as pa

from agentcap_addons.wire.util.errors import AgentcapError

try:
    import orjson
except ImportError:  # pragma: no cover - a dependency
    orjson = None  # type: ignore[assignment]
import pyarrow.compute as pc
import pyarrow.parquet as pq

from agentcap_addons.wire.api.decode import (
    decode_content_encoding,
    decode_response,
    response_body_bytes,
)
from agentcap_addons.wire.api.messages import DecodedResponse
from agentcap_addons.wire.api.sessions import (
    CallInfo,
    ThreadTracker,
    normalise_finish,
    previous_response_id,
    reply_fingerprint,
    request_fingerprints,
)
from agentcap_addons.wire.capture.policy import API_OPENAI_RESPONSES, header_value
from agentcap_addons.wire.capture.records import (
    REQUEST_SUFFIX,
    RESPONSE_SUFFIX,
    Capture,
    capture_heads,
    request_names,
    resolve_captures_dir,
)
from agentcap_addons.wire.capture.repair import repair
from agentcap_addons.wire.util.clock import parse_rfc3339_ns
from agentcap_addons.wire.util.jsonio import fast_loads
from agentcap_cli.export.detectors import fingerprint
from agentcap_cli.export.scan import UNREADABLE, Finding, Gate, Report
from agentcap_cli.export.scan_rows import scan_batch, streamed_text

ROW_GROUP = 2000
FOOTER_KEY = b"agentcap"
EXPORT_SCHEMA = 1

SCHEMA = pa.schema([
    ("request_id", pa.string()), ("seq", pa.int64()), ("run_id", pa.string()), ("task_id", pa.string()),
    ("turn", pa.int32()), ("cell", pa.string()), ("repeat", pa.int32()), ("thread_id", pa.string()),
    ("agent", pa.string()), ("model", pa.string()), ("served_model", pa.string()), ("provider", pa.string()),
    ("label", pa.string()), ("upstream_url", pa.string()), ("method", pa.string()), ("path", pa.string()),
    ("api", pa.string()), ("captured_at", pa.timestamp("us", tz="UTC")), ("status_code", pa.int32()),
    ("stream", pa.bool_()), ("request", pa.string()), ("response", pa.string()), ("request_headers", pa.string()),
    ("response_headers", pa.string()), ("error", pa.string()),
    ("ttft_ms", pa.float64()), ("duration_ms", pa.float64()),
    ("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()), ("cached_tokens", pa.int64()),
    ("reasoning_tokens", pa.int64()), ("finish_reason", pa.string()), ("finish_reason_raw", pa.string()),
    ("n_tool_calls", pa.int32()),
])


@dataclass
class RunInfo:
    """What the rows of one run share (from run.json; a proxy-only dir has just its id)."""

    run_id: str
    agent: str | None = None
    provider: str | None = None
    label: str | None = None
    upstream: str | None = None
    started_at: str | None = None
    tasks: list[dict[str, Any]] = field(default_factory=list)  # {id, turns, prompt ≤ 200 chars}
    kind: str | None = None  # corpus | suite | proxy (what the card may claim about how it was made)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode() if orjson is not None else json.dumps(value, ensure_ascii=False)


def _request_text(cap: Capture) -> str:
    """The request body as JSON text (compact, key order kept; orjson when the body allows it);
    a body that was not JSON as text, its content-encoding undone."""
    req = cap.request
    if "body" in req and "body_b64" not in req and orjson is not None:
        try:
            return orjson.dumps(req["body"]).decode()
        except TypeError:  # integers over 64 bits
            pass
    data = cap.request_body_bytes()
    if "body_b64" in req:
        data = decode_content_encoding(data, header_value(req.get("headers") or {}, "content-encoding"))
    return _text(data)


def call_ok(resp: dict[str, Any] | None, decoded: DecodedResponse) -> bool:
    """Answered: a response record, no transport error, a status below 400 and no error event
    (agentcap_cli/runs/verdict.py judges a turn by the same test, less the error event)."""
    if not resp or resp.get("error") or not isinstance(resp.get("status_code"), int):
        return False
    return bool(resp["status_code"] < 400 and decoded.error is None)


def capture_row(cap: Capture, run: RunInfo) -> dict[str, Any]:
    """The row of one capture; its keys beyond the schema (``_thread``) are what the parent needs
    to tell conversations apart, and are not written."""
    req, resp = cap.request, cap.response or {}
    decoded = decode_response(cap)
    timings = resp.get("timings") or {}
    err = resp.get("error")
    body = req.get("body")
    api = req.get("api") or "openai-chat"
    model = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None
    ok = call_ok(cap.response, decoded)
    fps = array("Q", request_fingerprints(api, body) if "body" in req else ())  # compact on its way to the parent
    reply = reply_fingerprint(decoded) if ok else None
    return {
        "request_id": req["request_id"], "seq": int(req.get("seq") or 0), "run_id": req.get("run_id") or run.run_id,
        "task_id": req.get("task_id"), "turn": req.get("turn"), "cell": req.get("cell"), "repeat": req.get("repeat"),
        "thread_id": None, "agent": run.agent, "model": model, "served_model": resp.get("served_model"),
        "provider": run.provider, "label": run.label, "upstream_url": req.get("upstream_url"),
        "method": req.get("method"), "path": req.get("path"), "api": req.get("api"),
        "captured_at": parse_rfc3339_ns(req["captured_at"]) // 1000,
        "status_code": resp.get("status_code"), "stream": resp.get("stream"),
        "request": _request_text(cap), "response": _text(response_body_bytes(cap)) if resp else None,
        "request_headers": _json_text(req.get("headers") or {}),
        "response_headers": _json_text(resp.get("headers") or {}) if resp else None,
        "error": (f"{err.get('kind')}: {err.get('message')}" if isinstance(err, dict) else err) if err else
                 (None if cap.response is not None else "no response record (call in flight)"),
        "ttft_ms": timings.get("first_byte"), "duration_ms": timings.get("done"),
        "prompt_tokens": decoded.usage.prompt_tokens, "completion_tokens": decoded.usage.completion_tokens,
        "cached_tokens": decoded.usage.cached_tokens, "reasoning_tokens": decoded.usage.reasoning_tokens,
        "finish_reason": normalise_finish(decoded.finish_reason, len(decoded.tool_calls), not ok),
        "finish_reason_raw": decoded.finish_reason, "n_tool_calls": len(decoded.tool_calls),
        "_thread": ((req.get("task_id"), req.get("cell"), req.get("repeat")), fps, ok, reply,
                    decoded.id if api == API_OPENAI_RESPONSES else None, previous_response_id(api, body),
                    len(body["tools"]) if isinstance(body, dict) and isinstance(body.get("tools"), list) else 0),
    }


def slug(text: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", text or "none").strip("-").lower()[:80] or "none"


@dataclass
class _Part:
    """One output file being written: the rows of one model of one run."""

    model: str | None
    tmp: Path
    writer: pq.ParquetWriter
    count: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def write(self, batch: pa.RecordBatch, redacted: Sequence[str] = ()) -> None:
        self.writer.write_batch(batch)
        self.count += batch.num_rows
        ids = batch.column("request_id").to_pylist()
        req = pc.utf8_length(batch.column("request")).to_pylist()
        resp = pc.utf8_length(batch.column("response")).to_pylist()
        masked = set(redacted)  # a masked copy is other content than the plain one: another name
        self.digest.update("".join(f"{i}:{a}:{b or 0}{':masked' if i in masked else ''}\n"
                                   for i, a, b in zip(ids, req, resp)).encode())


@dataclass
class WrittenFile:
    path: Path
    model: str | None
    rows: int
    new: bool  # False: an identical export of these captures was already there
    kind: str = "calls"  # calls | sessions (parquet rows) | files (trace files as rows) | session (a session file)


def published_upstream(upstream: str | None) -> str | None:
    """The run's upstream as footers and cards name it: a model script by its file name
    (``script:/home/me/proj/scripts/x.yaml`` → ``script:x.yaml``), a URL by its scheme, host and port
    (no user, path or query); anything else (``embedded:scripted``, ``cassettes``) as it is."""
    if not upstream:
        return upstream
    kind, sep, rest = upstream.partition(":")
    if sep and kind == "script":
        return f"script:{PurePath(rest).name}"
    if "://" in upstream:
        u = urlsplit(upstream)
        return f"{u.scheme}://{u.netloc.rpartition('@')[2]}"
    return upstream


def footer(run: RunInfo, model: str | None, rows: int, version: str) -> dict[bytes, bytes]:
    meta = {"schema": EXPORT_SCHEMA, "agentcap_version": version, "run_id": run.run_id, "agent": run.agent,
            "model": model, "provider": run.provider, "label": run.label,
            "upstream": published_upstream(run.upstream),
            "started_at": run.started_at, "run_kind": run.kind, "rows": rows, "tasks": run.tasks,
            "exported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {FOOTER_KEY: json.dumps(meta, ensure_ascii=False).encode()}


def put_in_place(tmp: Path, final: Path) -> bool:
    """Move a finished file to its content-derived name; False when that name already exists (the
    same content was exported before: the new copy is dropped, nothing is overwritten)."""
    if final.exists():
        tmp.unlink()
        return False
    os.replace(tmp, final)
    return True


def _load(path: str) -> Any:
    with open(path, "rb") as f:
        return fast_loads(f.read())


@dataclass
class _Block:
    """What a worker hands back for one block of captures."""

    batch: pa.RecordBatch
    findings: list[Finding] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    redacted: list[str] = field(default_factory=list)  # request ids whose rows were masked
    threads: list[tuple[Any, ...]] = field(default_factory=list)  # each row's ``_thread`` (capture_row)


class UnreadableCapture(AgentcapError, ValueError):
    """A capture file that does not parse (a crash mid-write by another tool, a disk error, an
    edit): readers skip it and say which file, instead of failing the whole run."""


def read_checked(directory: str | os.PathLike[str], rid: str) -> Capture | None:
    """The capture ``rid`` (response None while in flight), None when it was removed since the
    listing; raises :class:`UnreadableCapture` naming the file that does not parse."""
    base = os.path.join(directory, rid)
    records: list[Any] = []
    for suffix in (REQUEST_SUFFIX, RESPONSE_SUFFIX):
        try:
            records.append(_load(base + suffix))
        except FileNotFoundError:
            if suffix == REQUEST_SUFFIX:
                return None
            records.append(None)
        except (OSError, ValueError) as exc:
            raise UnreadableCapture(f"captures/{rid}{suffix}: unreadable ({exc})") from None
    if not isinstance(records[0], dict) or not isinstance(records[1], (dict, type(None))):
        raise UnreadableCapture(f"captures/{rid}{REQUEST_SUFFIX}: not a capture record")
    return Capture(records[0], records[1])


def _batch(job: tuple[str, list[str], RunInfo, Gate | None]) -> _Block:
    """Rows for a block of request ids, scanned when there is a gate (runs in a worker process
    for big runs, so the scan shares the workers' cores and reads no file twice)."""
    directory, rids, run, gate = job
    caps: list[Capture] = []
    skipped: list[str] = []
    for rid in rids:
        try:
            cap = read_checked(directory, rid)
        except UnreadableCapture as exc:
            skipped.append(str(exc))
            continue
        if cap is None:
            continue
        caps.append(cap)
    batch, rows, records = _rows(caps, run, skipped, lambda c: f"captures/{c.request.get('request_id')}{REQUEST_SUFFIX}")
    block = _Block(batch, skipped=skipped, threads=[r["_thread"] for r in rows])
    if gate is not None:
        block.batch, block.redacted = scan_batch(batch, records, _streams(rows), gate, block.findings)
    return block


def _rows(caps: list[Capture], run: RunInfo, skipped: list[str], name: Callable[[Capture], str]
          ) -> tuple[pa.RecordBatch, list[dict[str, Any]], list[tuple[dict[str, Any], dict[str, Any] | None]]]:
    rows, records = [], []
    for cap in caps:
        try:
            rows.append(capture_row(cap, run))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # JSON, but not a capture record
            skipped.append(f"{name(cap)}: not a capture record ({type(exc).__name__}: {exc})")
            continue
        records.append((cap.request, cap.response))
    # column lists, then arrays: several times faster than from_pylist on dicts
    batch = pa.RecordBatch.from_pydict({n: [r[n] for r in rows] for n in SCHEMA.names}, schema=SCHEMA)
    return batch, rows, records


def _streams(rows: list[dict[str, Any]]) -> list[str | None]:
    return [streamed_text(r["response"]) if r["stream"] and r["response"] else None for r in rows]


def scan_captures(caps: list[tuple[str, Capture]], gate: Gate, out: list[Finding]) -> None:
    """The gate over captures published in another form (a cassette's calls, committed to git): the
    texts a captures row of each would hold, scanned as export scans them. ``caps``: (the file a
    finding names, the capture)."""
    named = [Capture({"captured_at": "1970-01-01T00:00:00Z", **cap.request, "request_id": file}, cap.response)
             for file, cap in caps]
    skipped: list[str] = []
    batch, rows, records = _rows(named, RunInfo("-"), skipped, lambda c: str(c.request["request_id"]))
    scan_batch(batch, records, _streams(rows), gate, out, lambda file, kind: file)
    out += [Finding(s.split(": ", 1)[0], "", f"{UNREADABLE} (not a capture record)", "", fingerprint(s))
            for s in skipped]


def _heads(job: tuple[str, list[str]]) -> tuple[list[tuple[int, str, str]], list[str]]:
    """(seq, captured_at, rid) of these captures, and the ones whose request file does not parse."""
    directory, rids = job
    try:
        return capture_heads(directory, rids), []
    except (OSError, ValueError, TypeError, AttributeError):  # one bad file: find it, keep the rest
        heads, bad = [], []
        for rid in rids:
            try:
                heads += capture_heads(directory, [rid])
            except (OSError, ValueError, TypeError, AttributeError) as exc:
                bad.append(f"captures/{rid}{REQUEST_SUFFIX}: unreadable ({exc})")
        return heads, bad


def readable_order(captures_dir: str | os.PathLike[str]) -> tuple[list[tuple[int, str, str]], list[str]]:
    """(seq, captured_at, rid) of every capture in seq order, read from the files' heads, and what
    was skipped because its request file does not parse (one message per file)."""
    d = resolve_captures_dir(captures_dir)
    heads, bad = _heads((str(d), request_names(d)))
    return sorted(heads), bad


def _batches(captures_dir: Path, run: RunInfo, block: int, workers: int, gate: Gate | None,
             skipped: list[str]) -> Iterator[_Block]:
    names = request_names(captures_dir)
    if workers <= 1 or len(names) <= block:
        heads, bad = _heads((str(captures_dir), names))
        skipped += bad
        order = [rid for _, _, rid in sorted(heads)]
        yield from map(_batch, [(str(captures_dir), order[i:i + block], run, gate) for i in range(0, len(order), block)])
        return
    pa.array([""])  # pyarrow imports its pandas shim on first use (~0.2 s): once here, not in every worker
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # the seq order from the files' heads, read by the workers too
        step = -(-len(names) // (workers * 4))
        parts = list(pool.map(_heads, [(str(captures_dir), names[i:i + step]) for i in range(0, len(names), step)]))
        skipped += [b for _, bad in parts for b in bad]
        order = [rid for _, _, rid in sorted(h for heads, _ in parts for h in heads)]
        jobs = [(str(captures_dir), order[i:i + block], run, gate) for i in range(0, len(order), block)]
        pending: deque[Future[_Block]] = deque()
        for job in jobs:  # at most 2 blocks per worker in flight: memory stays flat
            pending.append(pool.submit(_batch, job))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


_CALL_COLUMNS = ("request_id", "seq", "turn", "task_id", "cell", "repeat", "duration_ms", "model", "served_model", "api", "prompt_tokens",
                 "completion_tokens", "cached_tokens", "reasoning_tokens", "n_tool_calls", "finish_reason")


def _thread_ids(block: _Block, tracker: ThreadTracker, calls: list[CallInfo] | None) -> pa.RecordBatch:
    """The block's rows with their thread ids (tracked in seq order across the blocks of a run);
    each call's :class:`CallInfo` appended to ``calls`` when it is given."""
    batch = block.batch
    ids = batch.column("request_id").to_pylist()
    assigned = [tracker.assign(scope, rid, fps, ok, reply, response_id, previous)
                for rid, (scope, fps, ok, reply, response_id, previous, _) in zip(ids, block.threads)]
    batch = batch.set_column(batch.schema.get_field_index("thread_id"), "thread_id",
                             pa.array([t for t, _ in assigned], pa.string()))
    if calls is not None:
        cols = {c: batch.column(c).to_pylist() for c in _CALL_COLUMNS}
        cols["captured_us"] = pc.cast(batch.column("captured_at"), pa.int64()).to_pylist()
        for i, (thread, length) in enumerate(assigned):
            _, fps, ok, _, response_id, previous, n_tools = block.threads[i]
            calls.append(CallInfo(thread_id=thread, ok=ok, n_messages=length, response_id=response_id,
                                  previous_response_id=previous, head=fps[0] if fps else None, n_tools=n_tools,
                                  **{c: v[i] for c, v in cols.items()}))
    return batch


def write_run(captures_dir: Path, run: RunInfo, out_dir: Path, version: str, progress: Any = None,
              row_group: int = ROW_GROUP, workers: int | None = None, gate: Gate | None = None,
              report: Report | None = None, calls: list[CallInfo] | None = None) -> list[WrittenFile]:
    """Write ``<out_dir>/<run_id>--<model>--<digest>.parquet`` per model of the run.

    Rows are made in blocks of ``row_group`` by ``workers`` processes (default: one per core) and
    written in ``seq`` order; with a ``gate`` the same workers scan them (findings, and the
    captures skipped as unreadable, go to ``report``). The digest covers request ids and body
    sizes (and which rows were masked), so exporting the same captures again finds the same name
    (nothing written twice, nothing overwritten) and new captures give a new file. Each row gets
    its ``thread_id`` here, in seq order; ``calls`` (when given) receives every call's
    :class:`~agentcap_addons.wire.api.sessions.CallInfo`, for the sessions.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    parts: dict[str | None, _Part] = {}
    workers = workers if workers is not None else (os.cpu_count() or 1)
    report = report if report is not None else Report()
    tracker = ThreadTracker()
    repair(captures_dir, "agentcap export")  # calls a killed proxy left open get their response record first
    try:
        for block in _batches(resolve_captures_dir(captures_dir), run, row_group, workers, gate, report.skipped):
            report.findings += block.findings
            report.skipped += block.skipped
            batch = _thread_ids(block, tracker, calls)
            models = batch.column("model")
            for model in pc.unique(models).to_pylist():
                part = parts.get(model)
                if part is None:
                    tmp = out_dir / f".{run.run_id}--{slug(model)}.{os.getpid()}.tmp"
                    part = parts[model] = _Part(model, tmp, pq.ParquetWriter(tmp, SCHEMA, compression="zstd"))
                mask = pc.is_null(models) if model is None else pc.equal(models, model)
                part.write(batch.filter(pc.fill_null(mask, False)), block.redacted)
            if progress is not None:
                progress(batch.num_rows + len(block.skipped))
        written = []
        for part in parts.values():
            part.writer.add_key_value_metadata(footer(run, part.model, part.count, version))
            part.writer.close()
            final = out_dir / f"{run.run_id}--{slug(part.model)}--{part.digest.hexdigest()[:12]}.parquet"
            written.append(WrittenFile(final, part.model, part.count, put_in_place(part.tmp, final)))
        return written
    finally:
        for part in parts.values():
            if part.tmp.exists():
                try:
                    part.writer.close()
                except Exception:
                    pass
                part.tmp.unlink(missing_ok=True)


def read_footer(path: str | Path | BinaryIO) -> dict[str, Any]:
    """The agentcap footer of an exported file, or of an open one (a Hub file: ranged reads); no data
    pages are read. ``{}`` when it has none."""
    meta = pq.read_metadata(path).metadata or {}
    return json.loads(meta[FOOTER_KEY]) if FOOTER_KEY in meta else {}

