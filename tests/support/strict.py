"""A loopback model upstream that, like a real API, answers only under ``<prefix>/v1/…``.

The scripted model server alone matches paths by suffix (``/chat/completions`` anywhere), so it
cannot tell a client that dropped ``/v1`` from one that did not; this one 404s anything outside
``<prefix>/v1/``. ``fail`` turns chosen calls into API-shaped errors (401, 404, 429, 5xx …) with the
upstream's own message. Serve it with ``ModelServer(StrictUpstream(...))``; ``server.app.seen`` lists
every (method, path) it got.
"""

from __future__ import annotations

from collections.abc import Callable

from agentcap_addons.wire.api.render import Rendered, error_body
from agentcap_addons.wire.capture.policy import api_kind, path_only
from agentcap_addons.wire.fake.upstream import Forward
from agentcap_cli.harness.modelserver import make_responder

#: (path, body) → (status, message) for a call that must fail, or None
Failure = Callable[[str, bytes], "tuple[int, str] | None"]


def always(status: int, message: str) -> Failure:
    return lambda path, body: (status, message)


class StrictUpstream:
    def __init__(self, prefix: str = "", script: str = "shell-then-answer", fail: Failure | None = None) -> None:
        self.prefix, self.fail = prefix.rstrip("/"), fail
        self.inner = make_responder(script=script)

    def respond(self, method: str, path: str, body: bytes) -> Rendered | Forward:
        p = path_only(path)
        if not p.startswith(self.prefix + "/v1/"):
            return error_body(api_kind(p), 404, f"no route for {method} {p}", "not_found")
        failure = self.fail(p, body) if self.fail else None
        if failure:
            return error_body(api_kind(p), failure[0], failure[1], "invalid_request_error")
        return self.inner.respond(method, p[len(self.prefix):], body)
