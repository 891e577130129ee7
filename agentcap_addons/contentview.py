"""An "LLM" contentview for mitmweb and the mitmproxy console.

LLM API request bodies show as their message list (system, user, assistant tool calls, tool results),
responses — JSON or server-sent events — as the decoded answer: content, reasoning, tool calls with
arguments, finish reason, usage. Load it with ``-s agentcap_addons/contentview.py`` (``agentcap proxy
--web`` does). Streamed bodies pass through the capture addon unbuffered; when the stream has ended
the capture addon hands the copy it kept back to the flow, so this view has something to show.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

try:
    import agentcap_addons  # noqa: F401
except ImportError:  # run as `mitmweb -s path/to/agentcap_addons/contentview.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitmproxy import contentviews, http
from mitmproxy.contentviews import Metadata

from agentcap_addons.wire.api.pretty import (
    decode_response_bytes,
    request_lines,
    response_lines,
)
from agentcap_addons.wire.capture.policy import API_OTHER, api_kind
from agentcap_addons.wire.util.jsonio import parse_json_body


def _api(flow: Any) -> str:
    req = getattr(flow, "request", None)
    return api_kind(req.path) if req is not None and req.method == "POST" else API_OTHER


class LLMContentview(contentviews.Contentview):
    """mitmproxy 12's contentview protocol: ``prettify`` returns plain text (views no longer style
    their lines), ``render_priority`` above the JSON view's 1.0 for LLM API paths only."""

    name = "LLM"

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        api = _api(metadata.flow)
        if isinstance(metadata.http_message, http.Request):
            ok, body = parse_json_body(data)
            lines = request_lines(api, body) if ok else [("error", "request body is not JSON")]
            title = f"LLM request ({api})"
        else:
            lines = response_lines(decode_response_bytes(api, data))
            title = f"LLM response ({api})"
        return "\n".join([title, *(text for _, text in lines)])

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        return 2.0 if data and _api(metadata.flow) != API_OTHER else -1.0


class LLMContentViewAddon:
    """Registers the view while loaded. mitmproxy 12's registry keys views by name, so a script
    reload replaces the previous instance instead of adding a second one (there is no removal API)."""

    def __init__(self) -> None:
        self.view = LLMContentview()

    def load(self, loader: Any) -> None:
        contentviews.add(self.view)


addons = [LLMContentViewAddon()]
