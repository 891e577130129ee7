"""agentcap replay addon: answer LLM API calls from a recorded run or a script, inside mitmproxy.

    mitmdump -s agentcap_addons/replay.py --set agentcap_replay=.agentcap/RUN
    mitmdump -s agentcap_addons/replay.py --set agentcap_script=examples/scripts/shell-then-answer.yaml
    # record what the replay served, too (capture first, so it sees every request):
    mitmdump -s agentcap_addons/capture.py -s agentcap_addons/replay.py --set agentcap_replay=RUN
    # a test project's cassettes, each call from the one its key's attribution (cell, repeat) names:
    mitmdump -s agentcap_addons/capture.py -s agentcap_addons/replay.py --set agentcap_keys=KEYS \\
        --set agentcap_cassettes=my-eval/cassettes

Per attribution (``agentcap_cassettes``, or ``agentcap_replay`` with ``agentcap_replay_per=task``) a
call is served from its own repeat's (task's) recordings, its run's directory and id matched as the
recording's (wire/fake/cassette.py) and put back into the response; a call with no recordings for it goes
upstream. ``agentcap_replay_on_miss``: ``error`` answers a miss with a 404 naming the nearest recording
and the first differing JSON path (drift), ``forward`` sends the miss upstream (vcrpy's
new_episodes), ``live`` sends it and every later call of the same repeat (task) upstream.

The same matching and rendering code as ``agentcap model serve``. While it answers, it sets
``connection_strategy=lazy`` (no upstream connection before one is needed). Differences: bodies are sent
whole (mitmproxy cannot pace a response an addon made; the bytes are the same), and with
``agentcap_replay_on_miss=forward`` a miss simply goes on to the proxy's own upstream.
Requests that are not LLM calls pass through untouched.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

try:
    import agentcap_addons  # noqa: F401
except ImportError:  # run as `mitmdump -s path/to/agentcap_addons/replay.py` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitmproxy import ctx, exceptions, http

from agentcap_addons.keyauth import attribution_of
from agentcap_addons.wire.capture.policy import DEFAULT_PATHS, path_matches, path_only
from agentcap_addons.wire.capture.records import (
    Capture,
    iter_captures,
    resolve_captures_dir,
)
from agentcap_addons.wire.capture.registry import Attribution
from agentcap_addons.wire.fake import cassettedir
from agentcap_addons.wire.fake.cassette import DEFAULT_IGNORE, DEFAULT_MATCH, Cassette
from agentcap_addons.wire.fake.cassettedir import Subs, run_subs
from agentcap_addons.wire.fake.upstream import Forward, ReplayResponder, Responder, make_responder
from agentcap_addons.wire.util.yamlfile import ConfigError

log = logging.getLogger(__name__)
OPTIONS = {"agentcap_replay", "agentcap_script", "agentcap_replay_on_miss", "agentcap_replay_match",
           "agentcap_replay_ignore", "agentcap_cassettes", "agentcap_replay_per"}


def run_dir_of(a: Attribution) -> Path | None:
    """The run directory of an attributed call: the ancestor of its captures dir named by its run id
    (a judge's captures live in ``<run>/judge/captures``)."""
    if not a.captures_dir:
        return None
    p = Path(a.captures_dir)
    return next((q for q in p.parents if q.name == a.run_id), p.parent)


class Tape:
    """One repeat's (task's) recordings while it runs; ``live``: it drifted, the rest goes upstream;
    ``subs``: its run's path placeholders, worked out once (every call of a tape has the same run).
    (No dataclass: mitmproxy loads this file as a script, outside sys.modules.)"""

    __slots__ = ("responder", "live", "subs")

    def __init__(self, responder: ReplayResponder | None, subs: Subs = ()) -> None:
        self.responder, self.live, self.subs = responder, False, subs


class PerAttribution:
    """Recordings chosen by each call's attribution: a project's cassettes by (cell, repeat), or one
    recorded run's captures by task."""

    def __init__(self, match: tuple[str, ...], ignore: tuple[str, ...], on_miss: str,
                 cassettes: str = "", run: str = "") -> None:
        self.match, self.ignore, self.on_miss = match, ignore, on_miss
        self.cassettes = Path(cassettes) if cassettes else None
        self.tapes: dict[tuple, Tape] = {}
        self.lock = threading.Lock()
        self.by_task: dict[str, list[Capture]] = {}
        self.run_subs: Subs = ()
        if run:
            d = resolve_captures_dir(run)
            if not d.is_dir():
                raise FileNotFoundError(f"{run}: no captures directory here")
            run_id = None
            for cap in iter_captures(d):  # in seq order
                run_id = run_id or cap.request.get("run_id")
                self.by_task.setdefault(str(cap.request.get("task_id")), []).append(cap)
            run_dir = d.parent if d.name == "captures" else d
            # its paths as they were when it ran: under its own name, even if its directory was renamed
            self.run_subs = run_subs(run_dir.parent / run_id if run_id else run_dir, run_id)

    def tape(self, a: Attribution) -> Tape:
        key = (a.run_id, a.cell, a.repeat) if self.cassettes else (a.run_id, a.task_id)
        with self.lock:
            tape = self.tapes.get(key)
            if tape is None:
                tape = self.tapes[key] = Tape(self._load(a), run_subs(run_dir_of(a), a.run_id))
            return tape

    def _load(self, a: Attribution) -> ReplayResponder | None:
        try:
            if self.cassettes is not None:
                found = cassettedir.find_repeat(self.cassettes, a.cell or "", int(a.repeat or 0)) if a.cell else None
                if found is None:
                    log.info("agentcap replay: no cassette for %s#%s: it goes upstream", a.cell, a.repeat)
                    return None
                cassette = Cassette(found, self.match, self.ignore)
            else:
                caps = self.by_task.get(str(a.task_id))
                if not caps:
                    log.info("agentcap replay: no recordings of task %s: it goes upstream", a.task_id)
                    return None
                cassette = Cassette(f"task {a.task_id}", self.match, self.ignore, captures=caps, subs=self.run_subs)
        except FileNotFoundError as e:  # a cassette without calls: nothing to serve
            log.info("agentcap replay: %s", e)
            return None
        return ReplayResponder(cassette, "fast", "error" if self.on_miss == "error" else "forward")


class Replay:
    def __init__(self) -> None:
        self.responder: Responder | None = None
        self.per: PerAttribution | None = None

    def load(self, loader) -> None:
        loader.add_option("agentcap_replay", str, "", "Run directory (or captures/) to answer LLM calls from.")
        loader.add_option("agentcap_script", str, "", "YAML script to answer LLM calls from.")
        loader.add_option("agentcap_cassettes", str, "",
                          "A test project's cassettes dir (<scenario>/<cell>/<repeat>/): each call is answered from "
                          "the cassette its attribution (cell, repeat) names; a cell without one goes upstream.")
        loader.add_option("agentcap_replay_per", str, "run",
                          "With agentcap_replay: one pool for every call ('run'), or each call from the recordings "
                          "of its attribution's task ('task').", choices=["run", "task"])
        loader.add_option("agentcap_replay_on_miss", str, "error",
                          "Unrecorded request: 'error' (404, drift), 'forward' it upstream, or 'live': it and the "
                          "rest of its repeat (task) go upstream.", choices=["error", "forward", "live"])
        loader.add_option("agentcap_replay_match", Sequence[str], list(DEFAULT_MATCH), "Replay matchers.")
        loader.add_option("agentcap_replay_ignore", Sequence[str], list(DEFAULT_IGNORE),
                          "Dotted body paths left out of replay matching.")

    def configure(self, updated: set[str]) -> None:
        if not updated & OPTIONS:
            return
        o = ctx.options
        if sum(map(bool, (o.agentcap_replay, o.agentcap_script, o.agentcap_cassettes))) > 1:
            raise exceptions.OptionsError("set one of agentcap_replay, agentcap_script and agentcap_cassettes")
        match, ignore = tuple(o.agentcap_replay_match), tuple(o.agentcap_replay_ignore)
        self.responder, self.per = None, None
        try:
            if o.agentcap_script:
                self.responder = make_responder(script=o.agentcap_script)
            elif o.agentcap_cassettes:
                if not Path(o.agentcap_cassettes).is_dir():
                    raise FileNotFoundError(f"{o.agentcap_cassettes}: no such directory")
                self.per = PerAttribution(match, ignore, o.agentcap_replay_on_miss, cassettes=o.agentcap_cassettes)
            elif o.agentcap_replay and o.agentcap_replay_per == "task":
                self.per = PerAttribution(match, ignore, o.agentcap_replay_on_miss, run=o.agentcap_replay)
                log.info("agentcap replay: %d task(s) from %s", len(self.per.by_task), o.agentcap_replay)
            elif o.agentcap_replay:
                on_miss = "error" if o.agentcap_replay_on_miss == "error" else "forward"
                replay = make_responder(replay=o.agentcap_replay, on_miss=on_miss, match_on=match, ignore=ignore)
                assert isinstance(replay, ReplayResponder)
                self.responder = replay
                log.info("agentcap replay: %d recordings from %s", len(replay.cassette.recordings), o.agentcap_replay)
        except ConfigError as e:
            raise exceptions.OptionsError(f"agentcap_script: {e}") from None
        except (FileNotFoundError, ValueError) as e:
            name = "agentcap_cassettes" if o.agentcap_cassettes else "agentcap_replay"
            raise exceptions.OptionsError(f"{name}: {e}") from None
        if (self.responder is not None or self.per is not None) and o.connection_strategy != "lazy":
            # answered here, so no upstream connection may be needed at all: do not open one eagerly
            # (with the default "eager", an unreachable upstream would drop every client at connect)
            o.update(connection_strategy="lazy")

    def request(self, flow: http.HTTPFlow) -> None:
        if (self.responder is None and self.per is None) or flow.response is not None:
            return
        req = flow.request
        is_llm = req.method == "POST" and path_matches(req.path, DEFAULT_PATHS)
        is_models = req.method == "GET" and path_only(req.path).rstrip("/").endswith("/models")
        if not (is_llm or is_models):
            return
        responder: Responder | None = self.responder
        subs: Subs = ()
        tape: Tape | None = None
        if self.per is not None:
            a = attribution_of(flow)
            if a is None:
                return  # not a registered turn's call: nothing of ours to serve it from
            tape = self.per.tape(a)
            if tape.responder is None or tape.live:
                return  # upstream
            responder, subs = tape.responder, tape.subs
        assert responder is not None
        result = responder.respond(req.method, req.path, req.get_content(strict=False) or b"", subs)
        if isinstance(result, Forward):
            if tape is not None and self.per is not None and self.per.on_miss == "live":
                tape.live = True
            return  # on to the proxy's upstream
        headers = {"content-type": result.content_type, **result.headers}
        flow.response = http.Response.make(result.status, result.body, headers)


addons = [Replay()]
