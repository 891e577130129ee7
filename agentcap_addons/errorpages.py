"""agentcap error pages addon: what the proxy answers itself when the upstream fails, as JSON.

When the upstream cannot be reached, resets the connection or is cut off for silence before it
answered, mitmproxy answers the client itself — with an HTML page. An agent's SDK cannot read that:
it reports "unexpected response" or retries on a body it does not understand. With this addon (on by
default: ``agentcap_json_errors``) the same status comes with a body in the error shape both the
OpenAI and the Anthropic clients read::

    {"type": "error", "error": {"type": "api_error", "code": "agentcap_upstream_error",
                                "message": "agentcap capture proxy: upstream: Connection refused"}}

mitmproxy builds that page in its HTTP/1 layer, after the ``error`` hook and with no hook of its own,
so the addon swaps the one function that renders it while it is loaded and puts it back in ``done``.
When that function is not where this mitmproxy version keeps it, the addon logs a warning and
mitmproxy's page stays (nothing else changes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mitmproxy import ctx, version
from mitmproxy.net.http import http1

from agentcap_addons.keyauth import error_response

log = logging.getLogger(__name__)

try:
    from mitmproxy.proxy.layers.http import _http1 as _layer
except ImportError:  # pragma: no cover - a mitmproxy without this module
    _layer = None  # type: ignore[assignment]

_ORIGINAL: Callable[..., bytes] | None = getattr(_layer, "make_error_response", None)


def json_error_response(status_code: int, message: str = "") -> bytes:
    """The raw HTTP/1 response mitmproxy sends for an error, with a JSON body instead of HTML."""
    client_side = 400 <= status_code < 500
    resp = error_response(status_code, "invalid_request_error" if client_side else "api_error",
                          "agentcap_bad_request" if client_side else "agentcap_upstream_error",
                          f"agentcap capture proxy: {message}" if message else "agentcap capture proxy: error")
    resp.headers["Server"] = version.MITMPROXY
    resp.headers["Connection"] = "close"
    return http1.assemble_response(resp)


class JsonErrors:
    def load(self, loader) -> None:
        loader.add_option(
            "agentcap_json_errors", bool, True,
            "Answer errors the proxy makes itself (upstream unreachable, reset, timed out) with a JSON body "
            "in the LLM APIs' error shape instead of mitmproxy's HTML page.",
        )

    def configure(self, updated: set[str]) -> None:
        if "agentcap_json_errors" not in updated:
            return
        if _layer is None or _ORIGINAL is None:
            if ctx.options.agentcap_json_errors:
                log.warning("agentcap: this mitmproxy renders its error pages elsewhere; they stay HTML")
            return
        _layer.make_error_response = json_error_response if ctx.options.agentcap_json_errors else _ORIGINAL

    def done(self) -> None:
        if _layer is not None and _ORIGINAL is not None:
            _layer.make_error_response = _ORIGINAL
