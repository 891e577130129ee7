"""Turn a capture into messages and a decoded response, whatever API it spoke."""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

from agentcap_addons.wire.api.messages import DecodedResponse, Message, qualified_name
from agentcap_addons.wire.api.sse import SSEEvent, parse_sse
from agentcap_addons.wire.capture.policy import (
    API_ANTHROPIC,
    API_OPENAI_CHAT,
    API_OPENAI_RESPONSES,
    header_value,
)
from agentcap_addons.wire.capture.records import Capture

from . import anthropic, openai


def decode_content_encoding(data: bytes, encoding: str | None) -> bytes:
    """Undo gzip / deflate / br / zstd as named by a Content-Encoding header, every coding of a list
    (``gzip, zstd``: applied in that order, so undone last first). Best effort: the bytes come back
    unchanged when they do not decode (e.g. a truncated stream)."""
    codings = [c.strip().lower() for c in (encoding or "").split(",") if c.strip().lower() not in ("", "identity")]
    if not data or not codings:
        return data
    try:
        out = data
        for enc in reversed(codings):
            out = _undo(out, enc)
        return out
    except Exception:
        return data


def _undo(data: bytes, enc: str) -> bytes:
    if enc in ("gzip", "x-gzip"):
        if data[:2] != b"\x1f\x8b":
            raise ValueError("not gzip")
        out = bytearray()
        while data[:2] == b"\x1f\x8b":  # several members: one gzip file
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += d.decompress(data) + d.flush()
            data = d.unused_data
        return bytes(out)
    if enc == "deflate":
        try:
            return zlib.decompress(data)
        except zlib.error:
            return zlib.decompress(data, -zlib.MAX_WBITS)
    if enc == "br":
        import brotli  # type: ignore[import-not-found]

        return brotli.decompress(data)
    if enc == "zstd":
        return _zstd_decompress(data)
    raise ValueError(f"unknown content-encoding {enc!r}")


def _zstd_decompress(data: bytes) -> bytes:
    """zstd from the standard library (3.14), else backports.zstd (a mitmproxy dependency), else zstandard."""
    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        try:
            from backports import zstd  # type: ignore[import-not-found, no-redef]
        except ImportError:
            import zstandard  # type: ignore[import-not-found]

            return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return zstd.decompress(data)


def request_messages(api: str, body: Any) -> list[Message]:
    if not isinstance(body, dict):
        return []
    if api == API_OPENAI_RESPONSES:
        return openai.responses_request_messages(body)
    if api == API_ANTHROPIC:
        return anthropic.request_messages(body)
    if "prompt" in body and "messages" not in body:  # legacy completions
        p = body["prompt"]
        return [Message(role="user", content=p if isinstance(p, str) else json.dumps(p))]
    return openai.chat_request_messages(body)


def _tool_entries(body: Any) -> list[tuple[str, str | None, str, dict[str, Any]]]:
    """(flat name, namespace, name, argument schema) of every tool a request offers, all three APIs."""
    out: list[tuple[str, str | None, str, dict[str, Any]]] = []

    def walk(tools: Any, namespace: str | None) -> None:
        for t in tools or []:
            if not isinstance(t, dict):
                continue
            if t.get("type") == "namespace" and isinstance(t.get("tools"), list):
                walk(t["tools"], str(t.get("name") or ""))
                continue
            fn: dict[str, Any] = t["function"] if isinstance(t.get("function"), dict) else t
            name = fn.get("name")
            if not name:
                continue
            schema = fn.get("parameters") or fn.get("input_schema") or {}
            out.append((qualified_name(namespace, str(name)), namespace, str(name),
                        schema if isinstance(schema, dict) else {}))

    walk(body.get("tools") if isinstance(body, dict) else None, None)
    return out


def request_tools(body: Any) -> list[str]:
    """Names of the tools a request offered (all three APIs' shapes; namespaced ones flattened)."""
    return [flat for flat, _, _, _ in _tool_entries(body)]


def request_tool_schemas(body: Any) -> dict[str, dict[str, Any]]:
    """Tool name → its JSON schema for the arguments (chat, Responses and Anthropic shapes)."""
    return {flat: schema for flat, _, _, schema in _tool_entries(body)}


def request_tool_namespaces(body: Any) -> dict[str, tuple[str, str]]:
    """Flat name → (namespace, name) for the tools a Responses request offers inside a namespace."""
    return {flat: (ns, name) for flat, ns, name, _ in _tool_entries(body) if ns}


def response_body_bytes(capture: Capture) -> bytes:
    """The response body with any content-encoding undone."""
    resp = capture.response or {}
    data = capture.response_bytes()
    if "raw" in resp or "raw_b64" in resp or "body_b64" in resp:
        # a stream is kept encoded; a body is decoded when captured — unless that failed (an encoding
        # the capture could not undo then), in which case its bytes are still encoded: try again
        return decode_content_encoding(data, header_value(resp.get("headers") or {}, "content-encoding"))
    return data


def decode_events(api: str, events: list[SSEEvent]) -> DecodedResponse:
    if api == API_OPENAI_RESPONSES:
        return openai.responses_stream(events)
    if api == API_ANTHROPIC:
        return anthropic.stream(events)
    return openai.chat_stream(events)


def decode_body(api: str, body: Any) -> DecodedResponse:
    if api == API_OPENAI_RESPONSES:
        return openai.responses_response(body)
    if api == API_ANTHROPIC:
        return anthropic.response(body)
    return openai.chat_response(body)


def decode_response(capture: Capture) -> DecodedResponse:
    api = capture.request.get("api") or API_OPENAI_CHAT
    resp = capture.response
    if resp is None:
        return DecodedResponse(error="no response record (call in flight)")
    if resp.get("stream"):
        r = decode_events(api, parse_sse(response_body_bytes(capture)))
    elif "body" in resp:
        r = decode_body(api, resp.get("body"))
    else:
        r = DecodedResponse()
    if r.error is None and resp.get("error"):
        err = resp["error"]
        r.error = f"{err.get('kind')}: {err.get('message')}" if isinstance(err, dict) else str(err)
    return r


def decode_request(capture: Capture) -> list[Message]:
    return request_messages(capture.request.get("api") or API_OPENAI_CHAT, capture.request.get("body"))


_MODEL = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.){1,200})"')


def sniff_model(data: bytes) -> str | None:
    """The served model of a stream: the first ``"model": "…"`` in it.

    In all three APIs the first event names the model (the chat chunk itself, Responses'
    ``response.created``, Anthropic's ``message_start``), before any generated text, so a regex
    over the bytes is exact and costs microseconds on the capture path.
    """
    m = _MODEL.search(data)
    if not m:
        return None
    try:
        return json.loads(b'"' + m.group(1) + b'"')
    except ValueError:
        return None


def body_model(body: Any) -> str | None:
    if isinstance(body, dict):
        m = body.get("model")
        if isinstance(m, str):
            return m
        r = body.get("response")
        if isinstance(r, dict) and isinstance(r.get("model"), str):
            return r["model"]
    return None
