"""KeyAuth: per-turn opaque keys → attribution, and the real upstream key injected instead.

With ``agentcap_keys`` set (the CLI's proxies), every request must carry a key registered in that
directory (``Authorization: Bearer …``, ``x-api-key`` or ``api-key``); the key is removed and the
attribution is attached to the flow. Anything else gets a 401 with a body that says why. Then:

* a **captured call** (what ``HTTPCapture`` records: a POST to one of ``agentcap_paths``, or a
  WebSocket handshake to one) gets the real key from the environment variable named by
  ``agentcap_upstream_key_env``, in the header the client used — or, with ``agentcap_upstream_auth=oauth``
  (a Claude subscription login), as ``Authorization: Bearer`` plus ``anthropic-beta: oauth-2025-04-20``
  added to the client's betas, the way Claude Code sends an OAuth token (any ``x-api-key`` is dropped);
* a **side endpoint** (a model list, a token count: ``policy.SIDE_ENDPOINTS``) is forwarded with no
  key at all, so an agent that asks for them gets the upstream's own answer (the scripted and replay
  upstreams answer without one) and never a paid call without its record;
* **anything else** (``POST /v1/files``, ``/v1/embeddings``, …) is refused with a 403 in the API's
  error shape and not forwarded.

Which paths are captured is decided on the normalised path (``policy.normal_path``: case, ``//``,
``..``, percent-escapes), so no spelling of a model call gets the key without its record. Without
``agentcap_keys`` (power-user mode) headers pass through unchanged.

Where the real key lives: only in this process's environment and, while the request is on its way
upstream, in the flow's request headers (mitmproxy serialises them when it sends). As soon as the
response headers arrive (or the flow fails), the headers are put back as the client sent them (its
per-turn key, its own ``anthropic-beta``), before any later addon sees the flow — so mitmweb's flow list and API, ``save_stream_file`` /
``-w`` flow files and every later hook carry the per-turn key, never the real one. While the real key
is on the flow, the flow carries the metadata marker ``IN_FLIGHT``; mitmweb started by ``agentcap
proxy --web`` filters such flows out of its view (``view_filter``), so they show once their response
has started. mitmweb's API token is still the boundary: whoever holds it can load scripts into this
process, and so can read its environment.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable

from mitmproxy import ctx, exceptions, http

from agentcap_addons.wire.api.apibase import OAUTH_BETA, oauth_headers
from agentcap_addons.wire.capture.policy import DEFAULT_PATHS, path_matches, redact_path, side_endpoint
from agentcap_addons.wire.capture.registry import Attribution, KeyRegistry, key_digest

log = logging.getLogger(__name__)

ATTRIBUTION = "agentcap.attribution"
IN_FLIGHT = "agentcap.upstream_key"
# mitmweb's view_filter that keeps a flow out of its list while the real key is on it
HIDE_IN_FLIGHT_FILTER = "!(~meta agentcap\\.upstream_key)"
KEY_HEADERS = ("authorization", "x-api-key", "api-key")
AUTH_MODES = ("key", "oauth")


def client_key(request: http.Request) -> tuple[str | None, str | None]:
    """(header name, key) of the first credential header present."""
    for name in KEY_HEADERS:
        value = request.headers.get(name)
        if value is None:
            continue
        value = value.strip()
        if name == "authorization":
            scheme, _, token = value.partition(" ")
            if scheme.lower() != "bearer":
                return name, None
            value = token.strip()
        return name, value or None
    return None, None


def error_response(status: int, kind: str, code: str, message: str) -> http.Response:
    """An answer made by the proxy itself, in the error shape both OpenAI and Anthropic clients read
    (``error.message`` / ``error.type``), so the agent shows the reason instead of a parse failure."""
    body = {"type": "error", "error": {"type": kind, "code": code, "message": message}}
    return http.Response.make(status, json.dumps(body).encode(), {"content-type": "application/json"})


def refusal(message: str) -> http.Response:
    return error_response(401, "authentication_error", "agentcap_unknown_key", message)


def is_default_call(flow: http.HTTPFlow) -> bool:
    """A model call by the default paths: a POST (or a WebSocket handshake) to one of them."""
    return (flow.request.method == "POST" or is_websocket_handshake(flow)) and path_matches(flow.request.path, DEFAULT_PATHS)


def is_websocket_handshake(flow: http.HTTPFlow) -> bool:
    return flow.request.headers.get("upgrade", "").lower() == "websocket"


def not_captured(shown: str) -> http.Response:
    return error_response(403, "permission_error", "agentcap_not_captured",
                          f"agentcap capture proxy: {shown} is not a model call agentcap captures, so it was not "
                          "forwarded (the upstream key goes only with captured calls: POST …/chat/completions, "
                          "…/completions, …/responses, …/messages and the paths given to agentcap_paths).")


class KeyAuth:
    def __init__(self, captured: Callable[[http.HTTPFlow], bool] = is_default_call) -> None:
        """``captured``: whether the capture addon records ``flow`` (the real key goes with nothing else)."""
        self.captured = captured
        self.registry: KeyRegistry | None = None
        self.upstream_key: str | None = None
        self.oauth = False
        self._sent_with: dict[str, dict[str, str | None]] = {}  # flow id → {header: the client's value or None}

    def load(self, loader) -> None:
        loader.add_option(
            "agentcap_keys",
            str,
            "",
            "Key registry directory. When set, only registered per-turn keys may use the proxy; "
            "each is swapped for the real upstream key.",
        )
        loader.add_option(
            "agentcap_upstream_key_env",
            str,
            "AGENTCAP_UPSTREAM_KEY",
            "Name of the environment variable holding the real upstream API key (registry mode).",
        )
        loader.add_option(
            "agentcap_upstream_auth",
            str,
            "key",
            "How the real credential goes upstream: key (in the header the client used) or oauth "
            f"(Authorization: Bearer + anthropic-beta: {OAUTH_BETA}, a Claude subscription login).",
            choices=AUTH_MODES,
        )

    def configure(self, updated: set[str]) -> None:
        if "agentcap_keys" in updated:
            d = ctx.options.agentcap_keys
            if d:
                if os.path.exists(d) and not os.path.isdir(d):
                    raise exceptions.OptionsError(f"agentcap_keys: {d} is not a directory")
                self.registry = KeyRegistry(d)
                self.registry.ensure()
            else:
                self.registry = None
        if "agentcap_upstream_key_env" in updated:
            name = ctx.options.agentcap_upstream_key_env
            self.upstream_key = os.environ.get(name) or None if name else None
        if "agentcap_upstream_auth" in updated:
            self.oauth = ctx.options.agentcap_upstream_auth == "oauth"

    def request(self, flow: http.HTTPFlow) -> None:
        if self.registry is None or flow.response is not None:
            return
        header, key = client_key(flow.request)
        attribution = self.registry.lookup(key) if key else None
        if attribution is None:
            who = f"key sha256:{key_digest(key)[:12]}" if key else "no key"
            log.warning("agentcap: refused %s %s (%s not registered)", flow.request.method, redact_path(flow.request.path), who)
            flow.response = refusal(
                "agentcap capture proxy: this API key is not registered (no agentcap turn is running "
                "for it), so the request was not forwarded."
                if key
                else "agentcap capture proxy: no API key (Authorization: Bearer / x-api-key) was sent."
            )
            return
        sent = flow.request.headers.get(header) if header else None
        for name in KEY_HEADERS:
            flow.request.headers.pop(name, None)
        flow.metadata[ATTRIBUTION] = attribution.to_dict()  # plain data: flow files and mitmweb copy it
        if not self.captured(flow):
            if not side_endpoint(flow.request.method, flow.request.path):
                shown = f"{flow.request.method} {redact_path(flow.request.path)}"
                log.warning("agentcap: refused %s (not a captured call: no upstream key goes with it)", shown)
                flow.response = not_captured(shown)
            return  # a side endpoint goes without any key
        if self.upstream_key and header and sent is not None:
            self._sent_with[flow.id] = self._real_headers(flow.request.headers, header, sent, self.upstream_key)
            flow.metadata[IN_FLIGHT] = "real key on the flow"
            _refresh_view(flow)

    def _real_headers(self, headers: http.Headers, header: str, sent: str, key: str) -> dict[str, str | None]:
        """Put the real credential on ``headers``; returns what to put back (None: the header was absent)."""
        if not self.oauth:
            headers[header] = f"Bearer {key}" if header == "authorization" else key
            return {header: sent}
        betas = headers.get("anthropic-beta")
        headers.update(oauth_headers(key, betas))
        return {"authorization": None, "anthropic-beta": betas, header: sent}

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._put_back(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._put_back(flow)

    def _put_back(self, flow: http.HTTPFlow) -> None:
        """The request has been sent: its header goes back to the per-turn key the client sent."""
        sent = self._sent_with.pop(flow.id, None)
        if sent is None:
            return
        for header, value in sent.items():
            if value is None:
                flow.request.headers.pop(header, None)
            else:
                flow.request.headers[header] = value
        flow.metadata.pop(IN_FLIGHT, None)
        _refresh_view(flow)


def _refresh_view(flow: http.HTTPFlow) -> None:
    """Let mitmweb's view re-apply its filter to ``flow`` (no view under mitmdump)."""
    view = ctx.master.addons.get("view")
    if view is not None:
        view.update([flow])


def attribution_of(flow: http.HTTPFlow) -> Attribution | None:
    data = flow.metadata.get(ATTRIBUTION)
    return Attribution.from_dict(data) if isinstance(data, dict) else data

