"""One log line per LLM call, for the servers a user watches (``agentcap proxy``, ``agentcap model
serve``): ``#12 openai-chat model=m status=200 ttft=143ms tokens=812/57 tools=bash,read 1.9s``.

Read from the capture files the proxy announced (never from the proxy's memory), so what is logged is
what is on disk. Query values never appear: the path is the capture's own (already redacted).
"""

from __future__ import annotations

from pathlib import Path

from agentcap_addons.wire.decode import decode_response
from agentcap_addons.wire.store import Capture, read_capture


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
