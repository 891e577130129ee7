"""The publish gate over captures rows, run by the export workers as they make the rows.

Every text column of a batch of rows, plus the text each stream spells out across its events, goes
through the RE2 prefilter in one call per batch (:func:`.detectors.flagged`); only the rows it flags
are looked at in Python (:func:`scan_row`), where each finding gets its capture file and JSON path
and, under ``--redact``, the row its masked columns.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agentcap_addons.wire.capture.policy import header_value
from agentcap_cli.export.detectors import (
    Hit,
    find,
    fingerprint,
    flagged,
    masked_copy,
    redact,
)
from agentcap_cli.export.scan import Finding, Gate, judge, leftovers, locate, state_of

# the text columns of a captures row and where their text comes from: (file, JSON path)
ROW_SOURCES: dict[str, tuple[str, str]] = {
    "request": ("request", "$.body"), "response": ("response", "$.body"),
    "request_headers": ("request", "$.headers"), "response_headers": ("response", "$.headers"),
    "error": ("response", "$.error"), "served_model": ("response", "$.served_model"),
    "finish_reason": ("response", "$.body"), "finish_reason_raw": ("response", "$.body"),
    "model": ("request", "$.body.model"),
    "upstream_url": ("request", "$.upstream_url"), "path": ("request", "$.path"), "method": ("request", "$.method"),
    "api": ("request", "$.api"), "task_id": ("request", "$.task_id"), "cell": ("request", "$.cell"),
    "run_id": ("request", "$.run_id"), "request_id": ("request", "$.request_id"),
}  # agent, provider, label: from run.json, scanned there
STREAM_TEXT = "response[sse text]"
# the fields a stream spells its text out in, one fragment per event, across the three APIs
_STREAMED = re.compile(r'"(?:content|text|arguments|partial_json|thinking|delta|reasoning|reasoning_content|refusal)"'
                       r'\s*:\s*"([^"\\]*(?:\\.[^"\\]*)*)"')


def streamed_text(raw: str) -> str:
    """The fragments of a stream's text fields joined in order (still JSON-escaped): a token split
    over events is whole here."""
    return "".join(_STREAMED.findall(raw))


def _mask_streamed(raw: str, hits: list[Hit]) -> str:
    """``raw`` with the characters of ``hits`` (offsets in :func:`streamed_text`) masked where
    they sit in the stream's events."""
    spans = [m.span(1) for m in _STREAMED.finditer(raw)]
    starts, at = [], 0
    for a, b in spans:
        starts.append(at)
        at += b - a
    chars = list(raw)
    for h in hits:
        masked = masked_copy(h.secret)
        for k in range(h.start, h.end):
            if masked[k - h.start] == "*":
                i = bisect.bisect_right(starts, k) - 1
                chars[spans[i][0] + k - starts[i]] = "*"
    return "".join(chars)


def _encoded(record: dict[str, Any], field_: str) -> str:
    enc = (header_value(record.get("headers") or {}, "content-encoding") or "").strip()
    return f"$.{field_}[base64{' ' + enc if enc else ''}]"


def _row_where(column: str, request: dict[str, Any], response: dict[str, Any], text: str) -> Callable[[Hit], str]:
    """Where a hit in this column's text is in the capture files: the JSON path, or for what the
    column holds decoded, the field and the decoding (``$.body_b64[base64 gzip]``)."""
    kind, base = ROW_SOURCES.get(column, ("response", "$.raw"))
    record = request if kind == "request" else response
    if column == STREAM_TEXT:
        return lambda h: f"$.{'raw' if 'raw' in response else 'raw_b64'}[sse text]"
    if column in ("request", "response"):
        if "body_b64" in record:
            return lambda h: _encoded(record, "body_b64")
        if "raw_b64" in record:
            return lambda h: _encoded(record, "raw_b64")
        if "raw" in record:
            return lambda h: f"$.raw[event {text.count(chr(10) * 2, 0, h.start) + 1}]"
        return lambda h: locate(record.get("body"), h.secret, "$.body")
    if column.endswith("headers"):
        return lambda h: locate(record.get("headers"), h.secret, "$.headers")
    return lambda h: base


def scan_row(values: dict[str, str | None], request: dict[str, Any], response: dict[str, Any] | None,
             file_of: Callable[[str], str], gate: Gate, out: list[Finding]) -> dict[str, str] | None:
    """One captures row that the prefilter flagged: a finding per secret and file (the first
    place it shows), and under --redact the columns to replace (``None``: nothing to mask)."""
    response = response or {}
    texts = {k: v for k, v in values.items() if v}
    if texts.get("response") and response.get("stream"):
        texts[STREAM_TEXT] = streamed_text(texts["response"])
    seen: set[tuple[str, str]] = set()
    changed: dict[str, str] = {}
    for column, text in texts.items():
        kind = ROW_SOURCES.get(column, ("response", ""))[0]
        hits = find(text)
        fresh = [h for h in hits if (kind, fingerprint(h.secret)) not in seen]
        seen.update((kind, fingerprint(h.secret)) for h in fresh)
        judge(fresh, file_of(kind), _row_where(column, request, response, text), gate, out)
        to_mask = [h for h in hits if state_of(fingerprint(h.secret), gate) == "redacted"]
        if to_mask and column == STREAM_TEXT:
            changed["response"] = _mask_streamed(changed.get("response", texts["response"]), to_mask)
        elif to_mask:
            changed[column] = redact(changed.get(column, text), to_mask)
    for column, text in changed.items():
        kind = ROW_SOURCES[column][0]
        leftovers(text, file_of(kind), _row_where(column, request, response, text), gate, out)
        if column == "response" and response.get("stream"):
            leftovers(streamed_text(text), file_of(kind), _row_where(STREAM_TEXT, request, response, text), gate, out)
    return changed or None


SCANNED = tuple(ROW_SOURCES)


def scan_batch(batch: pa.RecordBatch, records: list[tuple[dict[str, Any], dict[str, Any] | None]],
               streams: list[str | None], gate: Gate, out: list[Finding],
               prefix: str = "captures/") -> tuple[pa.RecordBatch, list[str]]:
    """Scan a batch of rows (``records``: each row's request and response records, ``streams``:
    each streamed row's :func:`streamed_text`); returns the batch to write (masked rows under
    --redact) and the request ids of the masked rows."""
    columns = [batch.column(c) for c in SCANNED] + [pa.array(streams, pa.string())]
    everything = pc.binary_join_element_wise(*columns, "\n", null_handling="replace", null_replacement="")
    updates: dict[str, dict[int, str]] = {}
    redacted = []
    for i in flagged(everything):
        values = {c: batch.column(c)[i].as_py() for c in SCANNED}
        rid = values["request_id"]
        changed = scan_row(values, *records[i], lambda kind, rid=rid: f"{prefix}{rid}.{kind}.json", gate, out)
        if changed:
            redacted.append(rid)
            for c, v in changed.items():
                updates.setdefault(c, {})[i] = v
    if not updates:
        return batch, redacted
    arrays = list(batch.columns)
    for c, new in updates.items():
        idx = batch.schema.get_field_index(c)
        values = arrays[idx].to_pylist()
        for i, v in new.items():
            values[i] = v
        arrays[idx] = pa.array(values, batch.schema.field(idx).type)
    return pa.RecordBatch.from_arrays(arrays, schema=batch.schema), redacted
