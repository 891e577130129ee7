"""One log line per LLM call, for the servers a user watches (``agentcap proxy``, ``agentcap model
serve``): ``#12 openai-chat model=m status=200 ttft=143ms tokens=812/57 tools=bash,read 1.9s``.

Read from the capture files the proxy announced (never from the proxy's memory), so what is logged is
what is on disk. Query values never appear: the path is the capture's own (already redacted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentcap_addons.wire.api.decode import decode_response
from agentcap_addons.wire.capture.records import Capture, read_capture


def call_line(capture: Capture) -> str:
    req, resp = capture.request, capture.response or {}
    body = req.get("body") if isinstance(req.get("body"), dict) else {}
    d = decode_response(capture)
    timings = resp.get("timings") or {}
    parts = [f"#{req.get('seq')}", str(req.get("api")), f"model={body.get('model') or '-'}",
             f"status={resp.get('status_code') if resp.get('status_code') is not None else '-'}"]
    if timings.get("first_byte") is not None:
        parts.append(f"ttft={timings['first_byte']:.0f}ms")
    if d.usage.prompt_tokens is not None:
        parts.append(f"tokens={d.usage.prompt_tokens}/{d.usage.completion_tokens or 0}")
    if d.tool_calls:
        parts.append("tools=" + ",".join(c.name for c in d.tool_calls))
    if timings.get("done") is not None:
        parts.append(f"{timings['done'] / 1000:.1f}s")
    err = resp.get("error")
    if isinstance(err, dict):
        parts.append(f"error={err.get('kind')}")
    return " ".join(parts)


def line_for_event(captures: Path, event: dict) -> str | None:
    """The line for a ``response`` / ``capture_failed`` event of the proxy's event pipe, else None."""
    kind = event.get("event")
    if kind == "capture_failed":
        return f"capture failed ({event.get('record')} record): {event.get('reason')} — {event.get('path') or ''}".rstrip(" —")
    if kind != "response":
        return None
    try:
        return call_line(read_capture(captures, event["request_id"]))
    except (OSError, ValueError, KeyError) as exc:
        return f"#? {event.get('request_id')}: capture unreadable ({exc})"


def served_line(n: int, method: str, path: str, body: bytes, rendered: Any, seconds: float) -> str:
    """``agentcap model serve``'s line for one answer: ``#3 openai-chat model=m status=200 tools=bash 0.004s``
    (``forwarded`` when a replay miss went to the live upstream)."""
    from agentcap_addons.wire.api.pretty import decode_response_bytes
    from agentcap_addons.wire.capture.policy import api_kind, redact_path
    from agentcap_addons.wire.util.jsonio import parse_json_body

    api = api_kind(path) if method == "POST" else "other"
    ok, req = parse_json_body(body)
    model = req.get("model") if ok and isinstance(req, dict) else None
    parts = [f"#{n}", api, f"model={model or '-'}"]
    if rendered is None:
        parts.append(f"forwarded {method} {redact_path(path)}")
    else:
        parts.append(f"status={rendered.status}")
        if api != "other" and rendered.status < 400:
            d = decode_response_bytes(api, b"".join(rendered.chunks))
            if d.tool_calls:
                parts.append("tools=" + ",".join(c.name for c in d.tool_calls))
    return " ".join(parts) + f" {seconds:.3f}s"
