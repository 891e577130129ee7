"""agentcap capture addon: every LLM API call that passes through, written as capture files.

    mitmdump -s agentcap_addons/capture.py --mode reverse:https://router.huggingface.co \\
        --set agentcap_dir=./.agentcap/my-run

Works the same under ``mitmweb -s`` and embedded in a ``DumpMaster``. Which flows: POST to a path
ending in one of ``agentcap_paths`` (and WebSocket handshakes to them); everything else passes
through untouched. The request record is on disk before the request is forwarded; the response
record is written when the response ends, the client goes away, the upstream fails or goes
quiet for ``agentcap_timeout`` seconds, or the proxy shuts down — never a request without one.
Responses are streamed chunk for chunk (never buffered) while a copy is kept, in memory and, as it
arrives, in the call's partial file: after a ``kill -9`` the next start on the directory (or
``agentcap ls`` / ``inspect`` / ``export``) turns it into a ``proxy_killed`` response record.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path

try:
    import agentcap_addons  # noqa: F401
except ImportError:  # run as `mitmdump -s path/to/agentcap_addons/capture.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitmproxy import ctx, exceptions, http
from mitmproxy import flow as mflow

from agentcap_addons.errorpages import JsonErrors
from agentcap_addons.keyauth import KeyAuth, attribution_of, error_response, is_websocket_handshake
from agentcap_addons.lifecycle import Lifecycle
from agentcap_addons.recorder import LiveCall, Recorder
from agentcap_addons.watchdog import SilentUpstream
from agentcap_addons.websocket import WebSocketCapture
from agentcap_addons.wire.capture.policy import DEFAULT_PATHS, path_matches

log = logging.getLogger(__name__)


def classify_error(flow: http.HTTPFlow, call: LiveCall) -> dict[str, str]:
    """Map mitmproxy's error message and the flow's state to the contract's error kinds."""
    msg = flow.error.msg if flow.error else "unknown error"
    low = msg.lower()
    if call.timed_out:
        kind = "timeout"
    elif msg == mflow.Error.KILLED_MESSAGE:
        kind = "killed"
    elif "client disconnected" in low or "client closed" in low or "stream reset by client" in low:
        kind = "client_disconnected"
    elif flow.response is None and flow.server_conn.timestamp_tcp_setup is None:
        kind = "upstream_unreachable"
    else:
        kind = "upstream_reset"
    return {"kind": kind, "message": msg}


def capture_failed_response(reason: str) -> http.Response:
    return error_response(500, "api_error", "agentcap_capture_failed",
                          "agentcap capture proxy: the call was not forwarded because its capture record "
                          f"could not be written ({reason}).")


def _stream_hint(headers: http.Headers) -> bool:
    return headers.get("content-type", "").lower().startswith("text/event-stream")


class HTTPCapture:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.paths: tuple[str, ...] = DEFAULT_PATHS
        # flow id → its call; kept here, not in flow.metadata, which mitmproxy copies and serialises
        # (flow files, mitmweb) and so must hold plain data only
        self._calls: dict[str, LiveCall] = {}

    def load(self, loader) -> None:
        loader.add_option("agentcap_dir", str, "", "Run directory; captures go to <dir>/captures/.")
        loader.add_option("agentcap_run_id", str, "", "run_id stamped on captures (default: the run directory's name).")
        loader.add_option(
            "agentcap_paths",
            Sequence[str],
            list(DEFAULT_PATHS),
            "Path suffixes (or globs) of LLM API calls to capture; POST only.",
        )
        loader.add_option("agentcap_headers", Sequence[str], [], "Extra header names to keep in captures.")
        loader.add_option(
            "agentcap_events_fd", int, -1, "File descriptor to announce each capture on (JSON lines)."
        )
        loader.add_option(
            "agentcap_writer",
            str,
            "process",
            "Who writes capture files: a child 'process' (keeps disk work off the proxy's event loop) "
            "or the proxy 'inline'.",
            choices=["process", "inline"],
        )

    def configure(self, updated: set[str]) -> None:
        o = ctx.options
        if updated & {"agentcap_dir", "agentcap_run_id", "agentcap_headers"}:
            self.recorder.configure(o.agentcap_dir, o.agentcap_run_id, tuple(o.agentcap_headers))
        if "agentcap_writer" in updated:
            self.recorder.set_writer(o.agentcap_writer)
        if "agentcap_events_fd" in updated:
            self.recorder.set_events_fd(o.agentcap_events_fd)
        if "agentcap_paths" in updated:
            if not o.agentcap_paths:
                raise exceptions.OptionsError("agentcap_paths: at least one path is needed")
            self.paths = tuple(o.agentcap_paths)

    def captured(self, flow: http.HTTPFlow) -> bool:
        return flow.request.method == "POST" and path_matches(flow.request.path, self.paths)

    def is_call(self, flow: http.HTTPFlow) -> bool:
        """Whether this flow is recorded: a captured POST, or a WebSocket handshake to a captured
        path (its messages are, by WebSocketCapture). KeyAuth gives the real key to these only."""
        return self.captured(flow) or (is_websocket_handshake(flow) and path_matches(flow.request.path, self.paths))

    # ------------------------------------------------------------------ hooks

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if flow.response is not None or is_websocket_handshake(flow) or not self.captured(flow):
            return None
        body = flow.request.get_content(strict=False) or b""
        call = self.recorder.open(flow, attribution_of(flow), flow.request.method, body)
        if call.write_error is not None:
            self._refuse(flow, call)
            return None
        self._calls[flow.id] = call
        if call.written is None:
            return None
        # mitmproxy awaits what a hook returns: the request goes upstream once its record is on disk
        return self._on_disk(flow, call)

    async def _on_disk(self, flow: http.HTTPFlow, call: LiveCall) -> None:
        assert call.written is not None
        ok = await call.written
        if ok or self.recorder.retry_request(call):
            call.request_file = None
            return
        self._calls.pop(flow.id, None)
        self._refuse(flow, call)

    @staticmethod
    def _refuse(flow: http.HTTPFlow, call: LiveCall) -> None:
        """Fail closed: without its request record on disk a call is answered here, in the error
        shape both OpenAI and Anthropic clients read, and never forwarded."""
        flow.response = capture_failed_response(call.write_error or "unknown error")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        call: LiveCall | None = self._calls.get(flow.id)
        if call is None or flow.response is None:
            return
        if flow.response.raw_content:
            # made whole by another addon (replay): mitmproxy emulates this hook for it, but nothing
            # streams through the tee; `response` records its body (a server's has no body yet here)
            return
        call.first_byte_ms = round(flow.response.timestamp_start * 1000 - call.sent_ms, 3)
        call.last_activity = time.monotonic()
        call.teed = True
        self.recorder.start_partial(call, flow.response.status_code, list(flow.response.headers.items()),
                                    _stream_hint(flow.response.headers))
        flow.response.stream = call.tee

    def response(self, flow: http.HTTPFlow) -> None:
        call: LiveCall | None = self._calls.get(flow.id)
        if call is None or flow.response is None:
            return
        resp = flow.response
        if call.teed:
            data = b"".join(call.bufs)
            # the upstream's stream went out unbuffered; give the flow the copy so mitmweb / the console
            # / `-w` (and the LLM contentview) show the body. Only for bodies that came from a server:
            # a response an addon made (replay) has not been sent yet, and must be left alone.
            if flow.server_conn.timestamp_start is not None:
                resp.raw_content = data
        else:  # the response was made by another addon (e.g. replay), never streamed by us
            data = resp.raw_content or b""
            if call.first_byte_ms is None:
                call.first_byte_ms = call.elapsed_ms()
            call.tee(data)
        self._calls.pop(flow.id, None)
        self.recorder.close(
            call, resp.status_code, list(resp.headers.items()), data, _stream_hint(resp.headers), None
        )

    def error(self, flow: http.HTTPFlow) -> None:
        call: LiveCall | None = self._calls.get(flow.id)
        if call is not None and not call.finished:
            self._close_failed(flow, call, classify_error(flow, call))

    def done(self) -> None:
        for flow, call in list(self.recorder.inflight.values()):
            if flow.websocket is None:
                self._close_failed(
                    flow, call, {"kind": "proxy_shutdown", "message": "the proxy stopped before the call ended"}
                )
        # WebSocketCapture.done ran before this one (it comes first in `addons`): close the writer last
        self.recorder.shutdown()

    def _close_failed(self, flow: http.HTTPFlow, call: LiveCall, error: dict[str, str]) -> None:
        """The response record of a call that did not end normally: whatever arrived, and why."""
        self._calls.pop(flow.id, None)
        resp = flow.response
        self.recorder.close(
            call,
            resp.status_code if resp is not None else None,
            list(resp.headers.items()) if resp is not None else [],
            b"".join(call.bufs),
            bool(resp is not None and _stream_hint(resp.headers)),
            error,
        )

recorder = Recorder()
_http = HTTPCapture(recorder)
addons = [Lifecycle(), KeyAuth(_http.is_call), JsonErrors(), WebSocketCapture(recorder), SilentUpstream(recorder), _http]
