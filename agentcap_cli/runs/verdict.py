"""A turn judged by the wire, not only by the agent's exit code.

Agent CLIs commonly exit 0 after their model calls failed (an expired key: 401, a wrong model name:
404, a rate limit: 429, an upstream down), so a run would record such turns — and publish their
captures — as real. A turn is ``failed`` when it made no model call at all, or when its last call
(by request order) failed: an HTTP status >= 400, or a transport error in the response record
(``upstream_unreachable``, ``upstream_reset``, ``timeout`` …). Earlier failures the agent recovered
from (a retry after a 429, hermes' probes) do not fail the turn. The reason names the status and the
upstream's own message, e.g. ``upstream_error 401: invalid api key``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentcap_addons.wire.api.decode import decode_content_encoding
from agentcap_addons.wire.capture.policy import header_value
from agentcap_addons.wire.capture.records import Capture, read_capture

NO_CALL = "no_model_call"
UPSTREAM_KINDS = ("upstream_unreachable", "upstream_reset", "timeout")


@dataclass(frozen=True)
class CallOutcome:
    """One model call as the proxy's events (or its response record) tell it."""

    request_id: str
    seq: int
    status_code: int | None = None
    error: str | None = None  # the response record's error kind
    answered: bool = False  # its response record is on disk (or the proxy said why there is none)
    message: str | None = None  # what the proxy's event said, when there is no record to read it from

    @property
    def ok(self) -> bool:
        # 101: a WebSocket (codex's Responses API transport) that was accepted. A client that hangs up
        # once the upstream has answered (codex closes right after response.completed, before the server
        # ends the body) is not an upstream failure: the call counts as answered
        return (self.answered and self.status_code is not None and self.status_code < 400
                and self.error in (None, "client_disconnected"))

    @classmethod
    def of(cls, capture: Capture) -> CallOutcome:
        resp = capture.response
        err = (resp or {}).get("error")
        return cls(capture.request_id, capture.seq,
                   (resp or {}).get("status_code"), err.get("kind") if isinstance(err, dict) else err,
                   resp is not None)


def turn_failure(calls: Sequence[CallOutcome], captures_dir: str | Path | None = None) -> str | None:
    """Why a turn failed on the wire, or None. ``calls`` in any order; the captures give the message."""
    if not calls:
        return NO_CALL
    known = sorted((c for c in calls if c.answered), key=lambda c: c.seq)
    if not known or known[-1].ok:  # nothing known (records still in flight) is no evidence of failure
        return None
    last = known[-1]
    capture = None
    if captures_dir is not None:
        try:
            capture = read_capture(captures_dir, last.request_id)
        except (OSError, ValueError):
            pass
    return call_failure(last, capture)


def call_failure(call: CallOutcome, capture: Capture | None) -> str:
    """``upstream_error 401: invalid api key`` / ``upstream_error upstream_unreachable: …`` / ``call_error …``."""
    resp = (capture.response if capture else None) or {}
    if call.error:
        err = resp.get("error")
        message = (err.get("message") if isinstance(err, dict) else None) or call.message
        word = "upstream_error" if call.error in UPSTREAM_KINDS else "call_error"
        return f"{word} {call.error}: {message or 'no message'}"
    return f"upstream_error {call.status_code}: {record_message(resp) or 'no message'}"


def record_message(resp: dict[str, Any]) -> str:
    """The upstream's own error message in a response record (its JSON body, else its text)."""
    if "body" in resp:
        body = resp["body"]
        return message_of(body) or ("" if body is None else short(json.dumps(body, ensure_ascii=False)))
    encoding = header_value(resp.get("headers") or {}, "content-encoding")
    return error_text(decode_content_encoding(Capture({}, resp).response_bytes(), encoding))


def error_text(data: bytes) -> str:
    """The message of an error body as an HTTP client received it (JSON or not)."""
    try:
        return message_of(json.loads(data)) or short(data.decode("utf-8", "replace"))
    except ValueError:
        return short(data.decode("utf-8", "replace"))


def message_of(body: Any) -> str | None:
    """``{"error": {"message": m}}`` (OpenAI, Anthropic), ``{"error": m}`` (HF router), ``{"detail": m}`` …"""
    if isinstance(body, list):
        return message_of(body[0]) if body else None
    if not isinstance(body, dict):
        return None
    for key in ("error", "message", "detail", "msg", "error_description"):
        v = body.get(key)
        if isinstance(v, str) and v.strip():
            return short(v)
        if isinstance(v, (dict, list)) and (m := message_of(v)):
            return m
    return None


def short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
