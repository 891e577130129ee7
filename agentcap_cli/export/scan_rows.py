"""The publish gate over captures rows, run by the export workers as they make the rows.

Every text column of a batch of rows, plus the text each stream spells out across its events, goes
through the RE2 prefilter in one call per batch (:func:`.detectors.flagged`: a token, or an
encoding that may hide one); only the rows it flags are read in Python, every layer of them
(:func:`.scan.examine`), where each finding gets its capture file and JSON path and, under
``--redact``, the row its masked columns.

A stream is rejoined **per channel** before it is read: per choice (``n > 1`` interleaves them),
per tool call, per Responses output item and content part, per Anthropic content block, and per
field (text, arguments, reasoning), so a key spelled out a few characters per event is whole in
its channel however the events interleave. Each channel is a layer of the raw stream: what is
found in it is masked in the events that carry it.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agentcap_addons.wire.capture.policy import header_value
from agentcap_cli.export.containers import as_text, open_bytes, undo_encodings
from agentcap_cli.export.detectors import flagged
from agentcap_cli.export.layers import Budget, BudgetExhausted, Layer, Opaque, Seg
from agentcap_cli.export.scan import Finding, Gate, apply, examine, json_where, judge, leftovers

try:
    import orjson
except ImportError:  # pragma: no cover - a dependency
    orjson = None  # type: ignore[assignment]

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
SCANNED = tuple(ROW_SOURCES)

# the fields a stream spells its text out in, one fragment per event, across the three APIs
FIELDS = ("content", "text", "arguments", "partial_json", "thinking", "delta", "reasoning", "reasoning_content",
          "refusal", "summary", "input", "output", "result", "data")
_STREAMED = re.compile(r'"(' + "|".join(FIELDS) + r')"\s*:\s*"([^"\\]*(?:\\.[^"\\]*)*)"')
_MULTI = re.compile(r'"(?:index|output_index|content_index)"\s*:\s*[1-9]')
_DATA = re.compile(r"^data:[ \t]?(.*)$", re.M)
_CHANNEL_KEYS = ("index", "output_index", "content_index", "item_id")


def _walk(value: Any, key: tuple[Any, ...] = ()) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(field, channel) of every streamed string of an event, in document order; the channel is
    the indexes on the way to it (choice, tool call, output item, content part, block)."""
    if isinstance(value, dict):
        key = key + tuple((k, value[k]) for k in _CHANNEL_KEYS if isinstance(value.get(k), (int, str)))
        for name, v in value.items():
            if isinstance(v, str) and name in FIELDS:
                yield name, key
            elif isinstance(v, (dict, list)):
                yield from _walk(v, key)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, key)


def channels(raw: str) -> list[list[tuple[int, int]]]:
    """The stream's text channels: for each, the spans of ``raw`` whose contents, joined, are its
    text (still JSON-escaped, as they stand in the events)."""
    by: dict[Any, list[tuple[int, int]]] = {}
    if not _MULTI.search(raw):  # one choice, one block: a channel per field
        for m in _STREAMED.finditer(raw):
            by.setdefault(m.group(1), []).append(m.span(2))
        return list(by.values())
    for line in _DATA.finditer(raw):
        found = list(_STREAMED.finditer(raw, line.start(1), line.end(1)))
        if not found:
            continue
        try:
            keys = list(_walk((orjson.loads if orjson else json.loads)(line.group(1))))
        except ValueError:
            keys = []
        if len(keys) != len(found):
            keys = [(m.group(1), ("?",)) for m in found]
        for (name, key), m in zip(keys, found):
            by.setdefault((key, name), []).append(m.span(2))
    return list(by.values())


def channel_layers(root: Layer) -> list[Layer]:
    """Each channel of the stream in ``root`` as a layer of it (character for character)."""
    out = []
    for spans in channels(root.text):
        segs, parts, at = [], [], 0
        for a, b in spans:
            segs.append(Seg(at, at + b - a, a, b, True))
            parts.append(root.text[a:b])
            at += b - a
        if at:
            out.append(Layer("".join(parts), "sse text", root, segs))
    return out


def streamed_text(raw: str) -> str:
    """Every channel's text, one after the other: what the batch prefilter reads of a stream."""
    return "\n".join("".join(raw[a:b] for a, b in spans) for spans in channels(raw))


def _encoded(record: dict[str, Any], field_: str) -> str:
    enc = (header_value(record.get("headers") or {}, "content-encoding") or "").strip()
    return f"$.{field_}[base64{' ' + enc if enc else ''}]"


def _row_where(column: str, record: dict[str, Any], text: str) -> Callable[[int], str]:
    """Where an offset of this column's text is in the capture files: the JSON path, or for what
    the column holds decoded, the field and the decoding (``$.body_b64[base64 gzip]``)."""
    base = ROW_SOURCES.get(column, ("response", "$.raw"))[1]
    if column in ("request", "response"):
        if "body_b64" in record:
            return lambda at: _encoded(record, "body_b64")
        if "raw_b64" in record:
            return lambda at: _encoded(record, "raw_b64")
        if "raw" in record:
            return _event_where(text)
        return json_where(text, "$.body")
    if column.endswith("headers"):
        return json_where(text, "$.headers")
    return lambda at: base


def _event_where(text: str) -> Callable[[int], str]:
    """Offset → ``$.raw[event N]`` (events end at a blank line; the ends are found on the first call)."""
    ends: list[list[int]] = []

    def where(at: int) -> str:
        if not ends:
            ends.append([m.end() for m in _EVENT_END.finditer(text)])
        return f"$.raw[event {bisect.bisect_right(ends[0], at) + 1}]"
    return where


_EVENT_END = re.compile(r"\r\n\r\n|\n\n|\r\r")


def _bytes_layers(record: dict[str, Any], root: Layer) -> tuple[list[Layer], list[Opaque]]:
    """A body the capture kept as bytes (``body_b64``, ``raw_b64``) that is not text once its
    content-encoding is undone: what it holds (an archive, a PDF …) as layers of its column —
    masked, the column is masked whole — and what cannot be read in it."""
    field_ = "body_b64" if "body_b64" in record else "raw_b64" if "raw_b64" in record else None
    if field_ is None:
        return [], []
    whole = (0, len(root.text))
    budget = Budget.for_size(len(root.text))
    try:
        data = base64.b64decode(record[field_])
        enc = header_value(record.get("headers") or {}, "content-encoding")
        try:
            data = undo_encodings(data, enc, budget)
        except ValueError as exc:
            return [], [_opaque(root, data, f"{field_}: content-encoding {enc}", str(exc))]
        if as_text(data) is not None:
            return [], []  # the column holds it as text already
        parts = open_bytes(data, budget, declared=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        return [], [_opaque(root, str(record.get(field_)).encode(), field_, f"not valid base64 ({exc})")]
    except BudgetExhausted as exc:
        return [], [_opaque(root, b"", field_, f"decode budget exhausted ({exc})")]
    layers = [Layer.whole(p.text, f"{field_} → {p.how}" if p.how else field_, root, whole) for p in parts.texts]
    return layers, [_opaque(root, o.data, f"{field_} → {o.how}" if o.how else field_, o.why) for o in parts.opaque]


def _opaque(root: Layer, data: bytes, how: str, why: str) -> Opaque:
    return Opaque(Layer.whole("", how, root, (0, len(root.text))), (0, 0), how, why, hashlib.sha256(data).hexdigest())


def _roots(values: dict[str, str | None], request: dict[str, Any], response: dict[str, Any]
           ) -> list[tuple[str, Layer, list[Layer], list[Opaque]]]:
    """(column, its text as a layer, the layers the caller makes of it, what cannot be read) of a row."""
    out = []
    for column, text in values.items():
        if not text:
            continue
        root = Layer(text)
        extra: list[Layer] = []
        opaque: list[Opaque] = []
        if column == "response" and response.get("stream"):
            extra = channel_layers(root)
        if column in ("request", "response"):
            more, opaque = _bytes_layers(request if column == "request" else response, root)
            extra += more
        out.append((column, root, extra, opaque))
    return out


def scan_rows(rows: list[tuple[dict[str, str | None], dict[str, Any], dict[str, Any] | None]],
              file_of: Callable[[str, str], str], gate: Gate, out: list[Finding]) -> list[dict[str, str] | None]:
    """Captures rows the prefilter flagged (each: its column texts, request and response records):
    a finding per secret and file (the first place it shows), and per row under --redact the
    columns to replace (``None``: nothing to mask)."""
    plan = [(values, request, response or {}, _roots(values, request, response or {}))
            for values, request, response in rows]
    roots = [r for *_, rs in plan for r in rs]
    seen = iter(examine([root for _, root, _, _ in roots], {i: r[2] for i, r in enumerate(roots)}))
    result: list[dict[str, str] | None] = []
    for values, request, response, rs in plan:
        reported: dict[str, set[tuple[str, str]]] = {"request": set(), "response": set()}
        changed: dict[str, str] = {}
        rid = str(values.get("request_id") or request.get("request_id"))
        for column, root, _, opaque in rs:
            s = next(seen)
            s.opaque += opaque
            kind = ROW_SOURCES.get(column, ("response", ""))[0]
            record = request if kind == "request" else response
            masks = judge(s, file_of(rid, kind), _row_where(column, record, root.text), gate, out,
                          reported=reported[kind])
            if masks:
                changed[column] = apply(root.text, masks)
        for column, text in changed.items():  # what is published now: the masked columns (and their channels)
            kind = ROW_SOURCES[column][0]
            record = request if kind == "request" else response
            again = Layer(text)
            layers = channel_layers(again) if column == "response" and response.get("stream") else []
            leftovers([text], file_of(rid, kind), _row_where(column, record, text), gate, out, {0: layers})
        result.append(changed or None)
    return result


_OWN = ("request", "response", "request_headers", "response_headers", "error")  # flagged column by column
_META = tuple(c for c in SCANNED if c not in _OWN)  # short ones: flagged together


def _suspects(batch: pa.RecordBatch, streams: list[str | None]) -> list[tuple[int, tuple[str, ...]]]:
    """(row, the columns to read) of the rows the RE2 prefilter flags: a column on its own for the
    long ones, the short ones together, and a stream's text as the response column's."""
    cols: dict[int, set[str]] = {}
    for c in _OWN:
        for i in flagged(batch.column(c)):
            cols.setdefault(i, set()).add(c)
    for i in flagged(pa.array(streams, pa.large_string())):
        cols.setdefault(i, set()).add("response")
    meta = pc.binary_join_element_wise(*[batch.column(c) for c in _META], "\n", null_handling="replace",
                                       null_replacement="")
    for i in flagged(meta):
        cols.setdefault(i, set()).update(_META)
    return [(i, tuple(c for c in SCANNED if c in cols[i])) for i in sorted(cols)]


def scan_batch(batch: pa.RecordBatch, records: list[tuple[dict[str, Any], dict[str, Any] | None]],
               streams: list[str | None], gate: Gate, out: list[Finding],
               file_of: Callable[[str, str], str] | None = None) -> tuple[pa.RecordBatch, list[str]]:
    """Scan a batch of rows (``records``: each row's request and response records, ``streams``:
    each streamed row's :func:`streamed_text`; ``file_of(request id, "request" | "response")``:
    what a finding names, ``captures/<rid>.<kind>.json`` by default); returns the batch to write
    (masked rows under --redact) and the request ids of the masked rows."""
    picked = _suspects(batch, streams)
    rows = [({c: batch.column(c)[i].as_py() for c in cols}, *records[i]) for i, cols in picked]
    suspects = [i for i, _ in picked]
    changes = scan_rows(rows, file_of or (lambda rid, kind: f"captures/{rid}.{kind}.json"), gate, out)  # type: ignore[arg-type]
    updates: dict[str, dict[int, str]] = {}
    redacted = []
    for i, changed in zip(suspects, changes):
        if changed:
            redacted.append(str(batch.column("request_id")[i].as_py()))
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
