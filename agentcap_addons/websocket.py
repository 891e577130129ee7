"""WebSocket capture: the Responses API over a WebSocket (codex can speak it) as ordinary captures.

On a WebSocket whose handshake path is a captured LLM path, each message from the client starts
a capture (its JSON is the request ``body``, ``method`` is ``"WEBSOCKET"``); the server's messages
that follow are that capture's stream, recorded as SSE (``data: <message>\\n\\n`` each) so the
same decoders read both transports. The capture ends at a terminal event (``response.completed``,
``response.failed``, ``response.incomplete``, ``error``), at the next client message, or when the
WebSocket closes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable

from mitmproxy import ctx, http
from mitmproxy.websocket import WebSocketMessage

from agentcap_addons.keyauth import attribution_of
from agentcap_addons.recorder import LiveCall, Recorder
from agentcap_addons.wire.capture.policy import path_matches

TERMINAL = frozenset({"response.completed", "response.failed", "response.incomplete", "response.done", "error"})


def _event_type(text: str) -> str | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj.get("type") if isinstance(obj, dict) else None


class WebSocketCapture:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._calls: dict[str, LiveCall] = {}  # flow id → the call in flight (flow.metadata must stay plain data)

    def _captured(self, flow: http.HTTPFlow) -> bool:
        return flow.websocket is not None and path_matches(flow.request.path, ctx.options.agentcap_paths)

    def _finish(self, flow: http.HTTPFlow, call: LiveCall, error: dict[str, str] | None) -> None:
        status = flow.response.status_code if flow.response else None
        headers = list(flow.response.headers.items()) if flow.response else []
        self.recorder.close(call, status, headers, b"".join(call.bufs), True, error)
        self._calls.pop(flow.id, None)

    def websocket_message(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if not self._captured(flow):
            return None
        assert flow.websocket is not None
        msg = flow.websocket.messages[-1]
        call: LiveCall | None = self._calls.get(flow.id)
        if msg.from_client:
            if call is not None:
                self._finish(flow, call, None)
            call = self.recorder.open(flow, attribution_of(flow), "WEBSOCKET", msg.content)
            if call.write_error is not None:
                self._refuse(flow, msg, call)
                return None
            self._calls[flow.id] = call
            return self._on_disk(flow, msg, call) if call.written is not None else None
        if call is None:
            return None  # server chatter before any request (e.g. a session greeting)
        text = msg.text if msg.is_text else msg.content.decode("utf-8", "replace")
        if call.first_byte_ms is None:
            call.first_byte_ms = call.elapsed_ms()
            self.recorder.start_partial(call, flow.response.status_code if flow.response else None,
                                        list(flow.response.headers.items()) if flow.response else [], True)
        call.tee(f"data: {text}\n\n".encode())
        if _event_type(text) in TERMINAL:
            self._finish(flow, call, None)
        return None

    async def _on_disk(self, flow: http.HTTPFlow, msg: WebSocketMessage, call: LiveCall) -> None:
        """The message is relayed once its record is on disk; if it cannot be written, never."""
        assert call.written is not None
        if await call.written or self.recorder.retry_request(call):
            call.request_file = None
            return
        self._calls.pop(flow.id, None)
        self._refuse(flow, msg, call)

    @staticmethod
    def _refuse(flow: http.HTTPFlow, msg: WebSocketMessage, call: LiveCall) -> None:
        """Fail closed: the message is dropped, the client gets a Responses API error event."""
        msg.drop()
        event = {"type": "error", "error": {"type": "server_error", "code": "agentcap_capture_failed",
                                            "message": f"agentcap capture proxy: not forwarded, the capture "
                                                       f"record could not be written ({call.write_error})"}}
        ctx.master.commands.call("inject.websocket", flow, True, json.dumps(event).encode(), True)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        call: LiveCall | None = self._calls.get(flow.id)
        if call is None:
            return
        # a call still open here never saw its terminal event: the socket closed under it
        ws = flow.websocket
        by_client = bool(ws and ws.closed_by_client)
        error = {
            "kind": "client_disconnected" if by_client else "upstream_reset",
            "message": f"WebSocket closed ({ws.close_code if ws else '?'}) {ws.close_reason if ws else ''}".strip(),
        }
        self._finish(flow, call, error)

    def done(self) -> None:
        for flow, call in list(self.recorder.inflight.values()):
            if flow.websocket is not None:
                self._finish(flow, call, {"kind": "proxy_shutdown", "message": "the proxy stopped during the call"})
