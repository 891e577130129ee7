"""agentcap replay addon: answer LLM API calls from a recorded run or a script, inside mitmproxy.

    mitmdump -s agentcap_addons/replay.py --set agentcap_replay=.agentcap/RUN
    mitmdump -s agentcap_addons/replay.py --set agentcap_script=examples/scripts/shell-then-answer.yaml
    # record what the replay served, too (capture first, so it sees every request):
    mitmdump -s agentcap_addons/capture.py -s agentcap_addons/replay.py --set agentcap_replay=RUN

The same matching and rendering code as ``agentcap model serve``. While it answers, it sets
``connection_strategy=lazy`` (no upstream connection before one is needed). Differences: bodies are sent
whole (mitmproxy cannot pace a response an addon made; the bytes are the same), and with
``agentcap_replay_on_miss=forward`` a miss simply goes on to the proxy's own upstream.
Requests that are not LLM calls pass through untouched.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

try:
    import agentcap_addons  # noqa: F401
except ImportError:  # run as `mitmdump -s path/to/agentcap_addons/replay.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitmproxy import ctx, exceptions, http

from agentcap_addons.wire.cassette import DEFAULT_IGNORE, DEFAULT_MATCH, Cassette
from agentcap_addons.wire.policy import DEFAULT_PATHS, path_matches, path_only
from agentcap_addons.wire.script import load_script
from agentcap_addons.wire.upstream import Forward, ReplayResponder, Responder, ScriptResponder
from agentcap_addons.wire.yamlfile import ConfigError

log = logging.getLogger(__name__)


class Replay:
    def __init__(self) -> None:
        self.responder: Responder | None = None

    def load(self, loader) -> None:
        loader.add_option("agentcap_replay", str, "", "Run directory (or captures/) to answer LLM calls from.")
        loader.add_option("agentcap_script", str, "", "YAML script to answer LLM calls from.")
        loader.add_option("agentcap_replay_on_miss", str, "error", "Unrecorded request: 'error' or 'forward' upstream.",
                          choices=["error", "forward"])
        loader.add_option("agentcap_replay_match", Sequence[str], list(DEFAULT_MATCH), "Replay matchers.")
        loader.add_option("agentcap_replay_ignore", Sequence[str], list(DEFAULT_IGNORE),
                          "Dotted body paths left out of replay matching.")

    def configure(self, updated: set[str]) -> None:
        if not updated & {"agentcap_replay", "agentcap_script", "agentcap_replay_on_miss",
                          "agentcap_replay_match", "agentcap_replay_ignore"}:
            return
        o = ctx.options
        if o.agentcap_replay and o.agentcap_script:
            raise exceptions.OptionsError("set one of agentcap_replay and agentcap_script, not both")
        try:
            if o.agentcap_script:
                self.responder = ScriptResponder(load_script(o.agentcap_script))
            elif o.agentcap_replay:
                cassette = Cassette(o.agentcap_replay, tuple(o.agentcap_replay_match), tuple(o.agentcap_replay_ignore))
                self.responder = ReplayResponder(cassette, "fast", o.agentcap_replay_on_miss)
                log.info("agentcap replay: %d recordings from %s", len(cassette.recordings), o.agentcap_replay)
            else:
                self.responder = None
        except ConfigError as e:
            raise exceptions.OptionsError(f"agentcap_script: {e}") from None
        except (FileNotFoundError, ValueError) as e:
            raise exceptions.OptionsError(f"agentcap_replay: {e}") from None
        if self.responder is not None and o.connection_strategy != "lazy":
            # answered here, so no upstream connection may be needed at all: do not open one eagerly
            # (with the default "eager", an unreachable upstream would drop every client at connect)
            o.update(connection_strategy="lazy")

    def request(self, flow: http.HTTPFlow) -> None:
        if self.responder is None or flow.response is not None:
            return
        req = flow.request
        is_llm = req.method == "POST" and path_matches(req.path, DEFAULT_PATHS)
        is_models = req.method == "GET" and path_only(req.path).rstrip("/").endswith("/models")
        if not (is_llm or is_models):
            return
        result = self.responder.respond(req.method, req.path, req.get_content(strict=False) or b"")
        if isinstance(result, Forward):
            return  # on to the proxy's upstream
        headers = {"content-type": result.content_type, **result.headers}
        flow.response = http.Response.make(result.status, result.body, headers)


addons = [Replay()]
