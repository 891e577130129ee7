"""What a local model upstream answers: the one piece shared by ``agentcap model serve`` (an ASGI
server) and ``agentcap_addons/replay.py`` (a mitmproxy addon), so both behave the same."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agentcap_addons.wire.api.render import Rendered, error_body, models_list, render
from agentcap_addons.wire.capture.policy import (
    DEFAULT_PATHS,
    api_kind,
    path_matches,
    path_only,
)
from agentcap_addons.wire.fake.cassette import (
    Cassette,
    Miss,
    miss_response,
    replay_response,
)
from agentcap_addons.wire.fake.cassettedir import Subs
from agentcap_addons.wire.fake.script import NoReply, Script, choose, load_script, seed_of, to_reply
from agentcap_addons.wire.util.yamlfile import ConfigError, did_you_mean

log = logging.getLogger(__name__)

#: the scripts shipped with agentcap, usable by name (``shell-then-answer``)
BUILTIN_SCRIPTS = Path(__file__).resolve().parent / "scripts"


@dataclass
class Forward:
    """Not answered here: send the request to the live upstream (replay with ``on_miss=forward``)."""

    reason: str


class Responder(Protocol):
    def respond(self, method: str, path: str, body: bytes, subs: Subs = ()) -> Rendered | Forward: ...


def _common(method: str, path: str, body: bytes, models: list[str]) -> Rendered | tuple[str, object]:
    """Routes every responder shares; returns (api, parsed body) for an LLM call."""
    p = path_only(path).rstrip("/")
    if method == "GET" and p.endswith("/models"):
        return models_list(models)
    if method != "POST" or not path_matches(p, DEFAULT_PATHS):
        return error_body("other", 404, f"agentcap model server: no route for {method} {p}", "not_found")
    api = api_kind(p)
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        return error_body(api, 400, "agentcap model server: the request body is not JSON", "invalid_request_error")
    return api, parsed


class ScriptResponder:
    def __init__(self, script: Script) -> None:
        self.script = script

    def respond(self, method: str, path: str, body: bytes, subs: Subs = ()) -> Rendered | Forward:
        r = _common(method, path, body, [self.script.model or "agentcap-scripted"])
        if not isinstance(r, tuple):
            return r
        api, parsed = r
        try:
            reply, ctx = choose(self.script, api, parsed)
        except NoReply as e:
            log.error("agentcap model server: %s", e)
            return error_body(api, 404, f"agentcap script: {e}", "agentcap_script_unmatched")
        seed = seed_of(body, reply.index)
        return render(api, to_reply(reply, ctx), parsed if isinstance(parsed, dict) else {}, seed, self.script.model)


class ReplayResponder:
    def __init__(self, cassette: Cassette, timing: str = "fast", on_miss: str = "error") -> None:
        if timing not in ("fast", "recorded"):
            raise ValueError("timing must be 'fast' or 'recorded'")
        if on_miss not in ("error", "forward"):
            raise ValueError("on_miss must be 'error' or 'forward'")
        self.cassette, self.timing, self.on_miss = cassette, timing, on_miss
        self.models = sorted({str(r.model) for r in cassette.recordings if r.model})

    def respond(self, method: str, path: str, body: bytes, subs: Subs = ()) -> Rendered | Forward:
        """``subs``: this run's own values (its directory and id), matched as the recording's placeholders
        and put into the response in their place."""
        r = _common(method, path, body, self.models)
        if not isinstance(r, tuple):
            return r
        api, parsed = r
        try:
            rec = self.cassette.take(method, path, parsed, subs)
        except Miss as miss:
            if self.on_miss == "forward":
                log.warning("agentcap replay: %s; forwarding to the live upstream", miss)
                return Forward(str(miss))
            log.error("agentcap replay: %s", miss)
            return miss_response(api, miss)
        return replay_response(rec, self.timing, subs, self.cassette.subs)


def resolve_script(name_or_path: str) -> Path:
    """A script file, or the name of one shipped with agentcap (``shell-then-answer``)."""
    p = Path(name_or_path)
    if p.exists() or p.suffix in (".yaml", ".yml") or "/" in name_or_path:
        return p
    builtin = BUILTIN_SCRIPTS / f"{name_or_path}.yaml"
    if not builtin.exists():
        names = sorted(f.stem for f in BUILTIN_SCRIPTS.glob("*.yaml"))
        raise ConfigError(p, None, "", f"no such script file, nor a built-in script{did_you_mean(name_or_path, names)}; "
                                       f"built-in: {', '.join(names)}")
    return builtin


def make_responder(script: str | None = None, replay: str | None = None, *, timing: str = "fast",
                   on_miss: str = "error", match_on: tuple[str, ...] | None = None,
                   ignore: tuple[str, ...] | None = None) -> ScriptResponder | ReplayResponder:
    """The one way a responder is built, by ``agentcap model serve`` and the replay addon alike:
    from a script (a file or a built-in's name) or from a recording to replay."""
    if (script is None) == (replay is None):
        raise ValueError("give exactly one of a script or a recording to replay")
    if script is not None:
        return ScriptResponder(load_script(resolve_script(script)))
    kw: dict[str, Any] = {}
    if match_on:
        kw["match_on"] = match_on
    if ignore is not None:
        kw["ignore"] = ignore
    return ReplayResponder(Cassette(replay, **kw), timing=timing, on_miss=on_miss)  # type: ignore[arg-type]
