"""What one ``agentcap run`` invocation starts once and every turn shares.

The upstream (the embedded scripted model server when none is given), one capture proxy child process
with a key registry (attribution travels with each request's key, never through shared state), the
sandbox bridge to it, and a tracker that counts each turn's captures from the proxy's event pipe.
With ``replay`` the proxy also loads the replay addon after the capture addon, so calls answered from
recordings are captured like any other; ``offline`` means every call is expected to be answered there
(no upstream is started or checked).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from agentcap_addons.wire.api.apibase import api_root, split_api_base
from agentcap_addons.wire.capture.registry import Attribution, KeyRegistry, new_key
from agentcap_addons.wire.util.errors import AgentcapError
from agentcap_cli.harness.modelserver import ModelServer, make_responder
from agentcap_cli.harness.proxy import (
    REPLAY_SCRIPT,
    CaptureEvents,
    ProxyProcess,
    start_proxy,
)
from agentcap_cli.runs.verdict import CallOutcome
from sandbox.bridge import Bridge
from sandbox.images import ensure_image
from sandbox.podman import Podman

log = logging.getLogger("agentcap.run")

EMBEDDED_SCRIPT = "shell-then-answer"
EMBEDDED_MODEL = "agentcap-scripted"
#: where an offline proxy would forward a call nothing answered: nothing listens there, so such a
#: call fails fast as upstream_unreachable (the replay addon never lets one through on its own)
OFFLINE_UPSTREAM = "http://127.0.0.1:9"
KEY_ENV = "AGENTCAP_UPSTREAM_KEY"  # only in the proxy child's environment, never on disk
TurnKey = tuple[str, str, int, str | None, int | None]  # (run, task, turn, cell, repeat)


class UpstreamUnreachable(AgentcapError, RuntimeError):
    pass


def provider_of(upstream: str | None) -> str:
    """A short provider name for the run directory: ``scripted``, ``huggingface``, ``local`` …"""
    if not upstream:
        return "scripted"
    host = urlsplit(upstream).hostname or "upstream"
    if host in ("localhost", "::1") or host.startswith("127."):
        return "local"
    parts = [p for p in host.split(".") if p not in ("www", "api", "router")]
    return parts[-2] if len(parts) >= 2 else parts[0]


def check_reachable(origin: str, timeout: float = 5.0) -> None:
    """Fail fast (before any container starts) when nothing answers at the upstream's address."""
    parts = urlsplit(origin)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise UpstreamUnreachable(f"cannot connect to {parts.hostname}:{port} ({exc.strerror or exc})") from None


class CallTracker:
    """Counts captures per (run, task, turn) from the proxy's events and keeps each call's outcome (status
    code, error kind), so a turn can be judged by the wire; ``settle_turn`` waits for stragglers."""

    def __init__(self, events: CaptureEvents, proxy: ProxyProcess) -> None:
        self.events, self.proxy = events, proxy
        self.calls: Counter[tuple[str, str, int]] = Counter()
        self.pending: dict[str, tuple[str, str, int]] = {}
        self.by_cell: dict[tuple[str, str, int], list[str]] = {}  # (run, cell, repeat) → request ids (suites)
        self.by_turn: dict[TurnKey, list[str]] = {}  # (run, task, turn, cell, repeat) → request ids
        self.outcomes: dict[str, CallOutcome] = {}  # request id → what its response record said
        self.cond = threading.Condition()
        #: when every event written until then had been handled: a settle waits for one after it began,
        #: since a turn's request events are in the pipe before its agent gets an answer
        self.drained_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agentcap-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._read()
        finally:  # no more events will come: nobody waits for them
            with self.cond:
                self.drained_at = float("inf")
                self.cond.notify_all()

    def _read(self) -> None:
        while not self._stop.is_set():
            if self.events.idle():
                with self.cond:
                    self.drained_at = time.monotonic()
                    self.cond.notify_all()
            ev = self.events.next(0.05)
            if ev is None:
                if self.proxy.proc.poll() is not None:
                    return
                continue
            with self.cond:
                self._on_event(ev)
                self.cond.notify_all()

    def _on_event(self, ev: dict) -> None:
        kind, rid = ev.get("event"), ev.get("request_id")
        if not isinstance(rid, str):  # every event the capture proxy sends names its call
            return
        key = (str(ev.get("run_id")), str(ev.get("task_id")), int(ev.get("turn") or 0))
        if kind == "request" or (kind == "capture_failed" and ev.get("record") == "request"):
            self.by_turn.setdefault((*key, ev.get("cell"), ev.get("repeat")), []).append(rid)
            self.outcomes[rid] = CallOutcome(rid, int(ev.get("seq") or 0))
        if kind == "request":
            self.calls[key] += 1
            self.pending[rid] = key
            if ev.get("cell") is not None:
                cell = (str(ev.get("run_id")), str(ev["cell"]), int(ev.get("repeat") or 0))
                self.by_cell.setdefault(cell, []).append(rid)
            return
        self.pending.pop(rid, None)  # a response record, or the proxy saying why there is none
        if rid not in self.outcomes:
            return
        if kind == "response":
            self.outcomes[rid] = replace(self.outcomes[rid], status_code=ev.get("status_code"), error=ev.get("error"),
                                         answered=True)
        elif kind == "capture_failed":  # the call was refused (no request record), or its response record is lost
            self.outcomes[rid] = replace(self.outcomes[rid], error="capture_failed", answered=True,
                                         message=str(ev.get("reason") or ""))

    def settle_turn(self, run_id: str, task_id: str, turn: int, cell: str | None = None, repeat: int | None = None,
                    timeout: float = 15.0) -> list[CallOutcome]:
        """The turn's calls (in request order) once none of them waits for its response record."""
        key, began = (run_id, task_id, turn, cell, repeat), time.monotonic()
        with self.cond:
            self.cond.wait_for(lambda: self.drained_at > began and
                               not any(r in self.pending for r in self.by_turn.get(key, ())), timeout)
            rids = self.by_turn.pop(key, [])
            return sorted((self.outcomes.pop(r) for r in rids if r in self.outcomes), key=lambda c: c.seq)

    def settle_cell(self, run_id: str, cell: str, repeat: int, timeout: float = 15.0) -> list[str]:
        """The request ids of a suite repeat, once each has its response record."""
        key, began = (run_id, cell, repeat), time.monotonic()
        with self.cond:
            self.cond.wait_for(lambda: self.drained_at > began and
                               not any(r in self.pending for r in self.by_cell.get(key, ())), timeout)
            return list(self.by_cell.get(key, ()))

    def total(self, run_id: str) -> int:
        with self.cond:
            return sum(n for (r, _, _), n in self.calls.items() if r == run_id)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Services:
    """Upstream + capture proxy + bridge + tracker, for the whole invocation (a context manager)."""

    def __init__(self, upstream: str | None, api_key: str | None, *, verbose: bool = False,
                 script: str | None = None, replay: dict[str, str] | None = None, offline: bool = False,
                 oauth: bool = False) -> None:
        """``replay``: the replay addon's options (``agentcap_cassettes`` …); ``offline``: do not start
        the scripted upstream nor check ``upstream`` (every call is answered from recordings); ``oauth``:
        ``api_key`` is a Claude subscription login, sent upstream as Claude Code sends it (keyauth.py)."""
        self.work = Path(tempfile.mkdtemp(prefix="agentcap-run-"))
        os.chmod(self.work, 0o700)
        self.model_server: ModelServer | None = None
        self.judge_base_url: str | None = None  # set by `agentcap test` when the judge has its own upstream
        self._images: dict[str, str] = {}
        self._images_lock = threading.Lock()
        try:
            if upstream is None and offline:
                upstream = OFFLINE_UPSTREAM
            elif upstream is None:
                self.model_server = ModelServer(make_responder(script=script or EMBEDDED_SCRIPT)).start()
                upstream = self.model_server.url + "/v1"
            self.upstream = upstream
            origin, root = split_api_base(upstream)  # https://host, …/v1 and …/v1/ alike
            if not offline:
                check_reachable(origin)
            self.api_key = api_key
            self.oauth = oauth
            self.keys = KeyRegistry(self.work / "keys")
            self.keys.ensure()
            env = dict(os.environ)
            if api_key:
                env[KEY_ENV] = api_key
            self.proxy = start_proxy(origin, self.work / "unattributed", keys_dir=self.keys.directory,
                                     upstream_key_env=KEY_ENV if api_key else None, env=env, events=True,
                                     log=2 if verbose else None, addons=[REPLAY_SCRIPT] if replay else (),
                                     sets={**(replay or {}), **({"agentcap_upstream_auth": "oauth"} if oauth else {})})
            assert self.proxy.events is not None
            self.tracker = CallTracker(self.proxy.events, self.proxy)
            self.bridge = Bridge(self.work / "sock")
            self.forwards = self.bridge.forwards({"proxy": self.proxy.port})
            # what an agent in a container is given: the proxy, plus the upstream's API root path
            self.agent_base_url = f"http://127.0.0.1:{self.proxy.port}{root}"
        except BaseException:
            self.close()
            raise

    def image(self, podman: Podman, agent: str) -> str:
        """The agent's image tag, resolved (and built when its inputs are new) once per invocation:
        every later turn reuses it instead of hashing the inputs and asking podman again."""
        with self._images_lock:
            if agent not in self._images:
                self._images[agent] = ensure_image(podman, agent)
            return self._images[agent]

    @property
    def direct_base_url(self) -> str:
        """The upstream's API root (for the synthesizer and the judge: their calls never pass the proxy)."""
        return api_root(self.upstream)

    def turn_key(self, attribution: Attribution) -> str:
        key = new_key()
        self.keys.register(key, attribution)
        return key

    def close(self) -> None:
        for step in ("tracker", "bridge", "proxy", "model_server"):
            obj = getattr(self, step, None)
            if obj is None:
                continue
            try:
                obj.stop() if step in ("tracker", "model_server") else obj.close()
            except Exception as exc:  # best effort: the others must still stop
                log.debug("stopping %s: %s", step, exc)
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
