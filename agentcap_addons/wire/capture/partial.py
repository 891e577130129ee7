"""The response record, and the partial file it replaces: what a call's response is made of on disk.

While a response arrives, the recorder appends it to ``captures/<rid>.response.partial`` (no reader
of captures opens that name: they all look for ``.request.json`` / ``.response.json``), so a proxy
killed mid-call (``kill -9``) leaves the bytes its clients already had. When the call ends the
response record is written whole and the partial file removed; a repair
(:mod:`agentcap_addons.wire.capture.repair`) turns a partial file left behind into a response
record. Both are built by :func:`response_record`, so they have the same fields.

Format: a sequence of frames, appended and never rewritten. Each frame is ``!cdI`` (kind, ms since
the request was sent, payload length) and the payload:

* ``H``: the response head, once, first: JSON ``{"status_code", "headers", "stream", "sent",
  "first_byte"}`` (headers already allowlisted, ``sent`` in epoch ms);
* ``D``: one network chunk of the body, exactly as it passed.

A frame cut short (the writer itself died mid-write) is ignored: a reader takes the whole frames
before it. No mitmproxy import here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentcap_addons.wire.api.decode import body_model, decode_content_encoding, sniff_model
from agentcap_addons.wire.capture.records import SCHEMA, body_fields, raw_fields
from agentcap_addons.wire.util.jsonio import dumps, fast_loads

FRAME = struct.Struct("!cdI")
HEAD, DATA = b"H", b"D"


def head_frame(status_code: int | None, headers: dict[str, str], stream: bool, sent_ms: float,
               first_byte_ms: float | None) -> bytes:
    """The first frame of a partial file: the response's status and (allowlisted) headers."""
    meta = dumps({"status_code": status_code, "headers": headers, "stream": stream, "sent": round(sent_ms, 3),
                  "first_byte": first_byte_ms})
    return FRAME.pack(HEAD, first_byte_ms or 0.0, len(meta)) + meta


def data_head(ms: float, n: int) -> bytes:
    """The frame header of a body chunk of ``n`` bytes (its payload is the chunk itself)."""
    return FRAME.pack(DATA, ms, n)


@dataclass
class Partial:
    """What a partial file holds: the head (None when the proxy died before it was written), the
    body so far and its time line."""

    head: dict[str, Any] | None = None
    data: bytes = b""
    chunks: list[list[float | int]] = field(default_factory=list)


def read_partial(path: Path) -> Partial:
    """The whole frames of ``path`` (a missing file is an empty :class:`Partial`)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Partial()
    out = Partial()
    parts: list[bytes] = []
    pos = 0
    while len(raw) - pos >= FRAME.size:
        kind, ms, n = FRAME.unpack_from(raw, pos)
        start = pos + FRAME.size
        if len(raw) - start < n:
            break
        payload = raw[start : start + n]
        pos = start + n
        if kind == HEAD and out.head is None:
            try:
                head = fast_loads(payload)
            except ValueError:
                break
            out.head = head if isinstance(head, dict) else None
        elif kind == DATA:
            parts.append(payload)
            out.chunks.append([round(ms, 3), n])
        else:
            break  # not a frame of ours: what follows cannot be trusted
    out.data = b"".join(parts)
    return out


def response_record(rid: str, status_code: int | None, headers: dict[str, str], stream: bool, data: bytes,
                    chunks: list[list[float | int]], timings: dict[str, float | None],
                    error: dict[str, str] | None) -> dict[str, Any]:
    """A ``<rid>.response.json`` record (docs/capture.md) from what arrived: ``headers`` already
    allowlisted, ``data`` the body as received (a stream is kept as is, a body has its
    content-encoding undone)."""
    record: dict[str, Any] = {"schema": SCHEMA, "request_id": rid, "status_code": status_code, "headers": headers,
                              "stream": stream}
    if stream:
        record.update(raw_fields(data))
    else:
        record.update(body_fields(decode_content_encoding(data, headers.get("content-encoding"))))
    record["chunks"] = chunks
    record["timings"] = timings
    record["served_model"] = served_model(record, data, headers, stream)
    record["error"] = error
    return record


def served_model(record: dict[str, Any], data: bytes, headers: dict[str, str], stream: bool) -> str | None:
    if stream:
        return sniff_model(decode_content_encoding(data, headers.get("content-encoding"))) or headers.get("openai-model")
    return body_model(record.get("body")) or headers.get("openai-model")
