"""One mock MCP server's behaviour, independent of any transport: state, dispatch, recording.

Dispatch per ``tools/call``: the handler's function for the tool (``HANDLERS`` / ``tool_<name>``,
called as ``fn(args, ctx)``) → else the first declarative rule whose ``match`` and ``when`` hold →
else, if the tool has rules, a ``no_matching_rule`` tool error, if it has none the fallback
(``echo``: ``{"ok": true, "tool", "args"}``; ``error``: a tool error). Unknown tools, handler
crashes and timeouts, rules with ``error``, broken or (``strict``) undefined templates and
impossible state paths all answer as MCP tool errors (``isError: true``) — and every call is
recorded, errors included.

Guarantees:

- **A call changes the state completely or not at all.** Rules apply their mutations through a
  journal and roll back on the first failure. A handler works on a copy of the state
  (``ctx.state``, also ``ctx.state.data``) that replaces the state only when it returns; a crash,
  a ``ToolError`` or a timeout leaves the state as it was.
- **The state is always plain JSON**: templates render to plain JSON, and what a handler leaves
  is checked (and made plain) before it is kept — ``snapshot()`` and ``write()`` cannot fail.
- **A stuck handler cannot stop the server**: calls are answered one at a time, a handler runs on
  a worker thread with a deadline (``handler_timeout``, default 30 s) and is abandoned past it
  (its copy of the state is thrown away, whatever it does later). ``snapshot()``, ``records()``,
  ``write()`` and ``reset()`` never wait for a call in progress.
"""

from __future__ import annotations

import copy
import json
import marshal
import queue
import random
import threading
import time
import traceback
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from agentcap_addons.wire.util.clock import rfc3339_ns
from agentcap_addons.wire.util.files import atomic_write_bytes
from agentcap_addons.wire.util.jsonio import dumps

from . import state as statelib
from . import templating
from .spec import OK, MockSpec, Mutation, Rule, load_spec
from .state import State


class ToolError(Exception):
    """Raise from a handler to answer with a tool error (``isError: true``) on purpose."""


@dataclass
class Context:
    """What a handler function gets besides the arguments."""

    state: State  # a dict (the state); agenteval's ctx.state.data / ctx.state.mutate(fn) work too
    server: str
    tool: str
    now: str
    uuid: str
    rng: random.Random


@dataclass
class Outcome:
    result: Any
    is_error: bool


@dataclass
class CallRecord:
    seq: int
    at: str
    server: str
    tool: str
    args: Any
    result: Any
    is_error: bool
    duration_ms: float
    fault: bool = False


class HandlerTimeout(Exception):
    pass


class _Worker:
    """Runs handler calls on a daemon thread, one at a time, each with a deadline. A call past
    its deadline leaves its thread behind (a daemon: it cannot keep the process alive; it exits
    if the call ever returns) and the next call gets a fresh thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Any] | None = None

    def run(self, fn: Callable[[], Any], timeout: float) -> Any:
        if self._jobs is None:
            self._jobs = queue.SimpleQueue()
            threading.Thread(target=self._loop, args=(self._jobs,), name=self.name, daemon=True).start()
        done, box = threading.Event(), cast(list[Any], [])
        self._jobs.put((fn, box, done))
        if not done.wait(timeout):
            self._jobs.put(None)
            self._jobs = None
            raise HandlerTimeout
        ok, value = box[0]
        if not ok:
            raise value
        return value

    @staticmethod
    def _loop(jobs: queue.SimpleQueue[Any]) -> None:
        while (job := jobs.get()) is not None:
            fn, box, done = job
            try:
                box.append((True, fn()))
            except BaseException as e:  # noqa: BLE001 — handed to the caller, which reports it
                box.append((False, e))
            done.set()


@dataclass
class MockServer:
    spec: MockSpec
    state: dict[str, Any] = field(init=False)
    calls: list[CallRecord] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        #: called with each call's record once it is logged (``agentcap mock serve`` prints one line)
        self.on_call: Callable[[CallRecord], None] | None = None
        self._serial = threading.Lock()  # one call at a time
        self._data = threading.Lock()    # state / calls / generation: held only briefly
        self._worker = _Worker(f"mock-{self.spec.name}-handler")
        self._gen = 0
        self.reset()

    @classmethod
    def load(cls, target: str | Path) -> MockServer:
        return cls(load_spec(target))

    @property
    def name(self) -> str:
        return self.spec.name

    def reset(self) -> None:
        """Fresh state from the seed and an empty call log. A call in progress is forgotten: its
        changes and its record are dropped."""
        with self._data:
            self.state = copy.deepcopy(self.spec.seed)
            self.calls = []
            self._rng = random.Random(self.spec.fault_seed)
            self._gen += 1
            self._frozen: bytes | None = None  # the state, marshalled, for the next handler's copy

    # ------------------------------------------------------------------ calls

    def call(self, tool: str, args: dict[str, Any] | None) -> Outcome:
        """Answer one ``tools/call`` and record it. Thread-safe (calls are serialised)."""
        args = args if isinstance(args, dict) else {}
        with self._serial:
            gen = self._gen
            start = time.perf_counter()
            at = rfc3339_ns()
            sent = copy.deepcopy(args)  # as the agent sent them, whatever a handler does to its dict
            fault = self._fault(tool)
            outcome = Outcome(fault, True) if fault is not None else self._dispatch(tool, args, at, gen)
            rec = CallRecord(0, at, self.name, tool, sent, outcome.result, outcome.is_error,
                             round((time.perf_counter() - start) * 1000, 3), fault is not None)
            with self._data:
                if gen == self._gen:
                    rec.seq = len(self.calls) + 1
                    self.calls.append(rec)
            if self.on_call is not None:
                self.on_call(rec)
            latency = self._latency(tool)
        if latency:
            time.sleep(latency / 1000)  # an injected slow tool: the transport layer runs this in a worker thread
        return outcome

    def _fault(self, tool: str) -> str | None:
        f = self.spec.faults.get(tool) or self.spec.faults.get("*")
        if f and f.error_rate and self._rng.random() < f.error_rate:
            return f"injected fault: {tool} failed (error_rate {f.error_rate})"
        return None

    def _latency(self, tool: str) -> float:
        f = self.spec.faults.get(tool) or self.spec.faults.get("*")
        return f.latency_ms if f else 0.0

    def _dispatch(self, tool: str, args: dict[str, Any], at: str, gen: int) -> Outcome:
        if tool not in self.spec.tool_names:
            return Outcome(f"unknown tool {tool!r} (this server has: {', '.join(self.spec.tool_names)})", True)
        ident = str(uuidlib.uuid4())
        handler = self.spec.handlers.get(tool)
        if handler is not None:
            return self._handle(handler, tool, args, at, ident, gen)
        rules = self.spec.rules.get(tool)
        if rules:
            with self._data:
                return self._rules(tool, rules, {"args": args, "state": self.state, "now": at, "uuid": ident})
        if self.spec.fallback == "error":
            return Outcome(f"no response rule or handler answers {tool}", True)
        return Outcome({"ok": True, "tool": tool, "args": copy.deepcopy(args)}, False)

    # ------------------------------------------------------------------ handlers

    def _handle(self, handler: Callable[..., Any], tool: str, args: dict[str, Any], at: str, ident: str,
                gen: int) -> Outcome:
        with self._data:
            base = self.state
            if self._frozen is None:
                self._frozen = marshal.dumps(base)
            frozen = self._frozen
        # the handler's own copy of the state: marshal is the fastest deep copy of plain data (C,
        # several times faster than a JSON round trip or copy.deepcopy)
        ctx = Context(State(marshal.loads(frozen)), self.name, tool, at, ident, self._rng)
        timeout = self.spec.handler_timeout
        try:
            value = self._worker.run(lambda: handler(args, ctx), timeout)
            result = OK.copy() if value is None else templating.plain(value)
        except HandlerTimeout:
            return Outcome(f"handler timed out: {tool} did not return within {timeout:g} s (handler_timeout); "
                           "the state is unchanged", True)
        except ToolError as e:
            return Outcome(str(e), True)
        except Exception as e:  # a crash in the mock's own code: still an answer, and recorded
            return Outcome(f"handler crashed: {type(e).__name__}: {e}{_where(e, handler)}", True)
        left = ctx.state
        if isinstance(left, dict) and left == base:  # read only (the usual case): nothing to keep
            return Outcome(result, False)
        try:  # what it left, as plain JSON (a tuple becomes a list, a datetime its str() …)
            new_state = json.loads(json.dumps(left, default=templating.json_default))
        except (TypeError, ValueError, RecursionError) as e:
            return Outcome(f"handler error: {tool} left a state with no JSON form ({e}); the state is unchanged", True)
        if not isinstance(new_state, dict):
            return Outcome(f"handler error: {tool} left a {type(new_state).__name__} as the state, not a mapping; "
                           "the state is unchanged", True)
        with self._data:
            if gen == self._gen:
                self.state, self._frozen = new_state, None
        return Outcome(result, False)

    # ------------------------------------------------------------------ rules

    def _rules(self, tool: str, rules: list[Rule], tctx: dict[str, Any]) -> Outcome:
        strict = self.spec.strict
        for rule in rules:
            try:
                if not self._matches(rule, tctx, strict):
                    continue
                return self._apply(rule, tctx, strict)
            except (templating.TemplateError, statelib.PathError) as e:
                return Outcome(f"mock error in responses.{tool}: {e}", True)
        return Outcome(f"no_matching_rule: no response rule of {tool} matches these arguments", True)

    @staticmethod
    def _matches(rule: Rule, tctx: dict[str, Any], strict: bool) -> bool:
        args = tctx["args"]
        for path, want in rule.match.items():
            if path in args:
                got = args[path]
            else:
                try:
                    got = statelib.get(args, str(path))
                except statelib.PathError:
                    got = None  # as agenteval: a missing argument equals null
            if got != templating.render(want, tctx, strict):
                return False
        return rule.when is None or bool(templating.evaluate(rule.when, tctx, strict))

    def _apply(self, rule: Rule, tctx: dict[str, Any], strict: bool) -> Outcome:
        # mutations are journaled: if one fails (or a template does), the state is rolled back
        undo: statelib.Undo = []
        try:
            for m in rule.mutate:
                statelib.mutate(self.state, m.op, _path(m, tctx, strict), templating.render(m.value, tctx, strict),
                                undo)
            if rule.has_error:
                return Outcome(templating.render(rule.error, tctx, strict), True)
            return Outcome(templating.render(rule.result, tctx, strict), False)
        except BaseException:
            statelib.rollback(undo)
            raise
        finally:
            if undo:
                self._frozen = None

    # ------------------------------------------------------------------ output

    def snapshot(self) -> dict[str, Any]:
        with self._data:
            return copy.deepcopy(self.state)

    def records(self) -> list[dict[str, Any]]:
        with self._data:
            return [asdict(c) for c in self.calls]

    def write(self, directory: str | Path) -> None:
        """``<server>.state.json`` (final state) and this server's lines of ``calls.jsonl``.

        Several servers may share one ``mocks/`` directory; each rewrites its own state file and
        ``calls.jsonl`` gets the union, in call time order."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(d / f"{self.name}.state.json", dumps(self.snapshot()))
        calls_path = d / "calls.jsonl"
        others = []
        if calls_path.exists():
            for line in calls_path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    rec = json.loads(line)
                    if rec.get("server") != self.name:
                        others.append(rec)
        allrecs = sorted(others + self.records(), key=lambda r: (r["at"], r["server"], r["seq"]))
        atomic_write_bytes(calls_path, b"".join(dumps(r) + b"\n" for r in allrecs))


def _path(m: Mutation, tctx: dict[str, Any], strict: bool) -> list[str]:
    """The mutation's path with each templated segment rendered to one key."""
    out = []
    for seg in m.path:
        if templating.is_template(seg):
            value = templating.render(seg, tctx, strict)
            if value is None or value == "":
                raise statelib.PathError(f"{'.'.join(m.path)}: segment {seg!r} is empty for this call")
            seg = value if isinstance(value, str) else json.dumps(value)
        out.append(seg)
    return out


def _where(e: BaseException, handler: Callable[..., Any]) -> str:
    """`` (handler.py:17)``: the innermost line of the handler's file in the traceback."""
    code = getattr(handler, "__code__", None)
    if code is None:
        return ""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == code.co_filename]
    return f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
