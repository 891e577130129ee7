"""One mock MCP server's behaviour, independent of any transport: state, dispatch, recording.

Dispatch per ``tools/call``: arguments with no strict JSON form (NaN, Infinity) → a tool error;
else the handler's function for the tool (``HANDLERS`` / ``tool_<name>``, called as
``fn(args, ctx)``) → else the first declarative rule whose ``match`` and ``when`` hold → else, if
the tool has rules, a ``no_matching_rule`` tool error, if it has none the fallback (``echo``:
``{"ok": true, "tool", "args"}``; ``error``: a tool error). Unknown tools, handler crashes and
timeouts, rules with ``error``, broken or (``strict``) undefined templates and impossible state
paths all answer as MCP tool errors (``isError: true``) — and every call is
recorded, errors included.

Guarantees:

- **A call changes the state completely or not at all.** Rules apply their mutations through a
  journal and roll back on the first failure. A handler works on a copy of the state
  (``ctx.state``, also ``ctx.state.data``) that replaces the state only when it returns; a crash,
  a ``ToolError`` or a timeout leaves the state as it was.
- **The state and every result are plain, strict JSON**: templates render to it, and what a handler
  returns or leaves is made plain (a set becomes a list, an object its ``str()``) on its worker
  thread, under its deadline; what has no JSON form even so (NaN, a >4300-digit integer, a cycle) is
  a tool error saying where — so ``snapshot()``, ``write()`` and the call log cannot fail.
- **A handler cannot take the server down**: whatever it raises — ``SystemExit``,
  ``KeyboardInterrupt`` and ``GeneratorExit`` included (it runs on a worker thread, where no signal
  or cancellation of the server arrives) — is its call's tool error.
- **A stuck handler cannot stop the server**: calls are answered one at a time, a handler runs on
  a worker thread with a deadline (``handler_timeout``, default 30 s) and is abandoned past it
  (its copy of the state is thrown away, whatever it does later). ``snapshot()``, ``records()``,
  ``write()`` and ``reset()`` never wait for a call in progress.
- **With** :meth:`MockServer.record_to` **a kill -9 loses at most the call in flight**: each call's
  state and record are written to the ``--out`` directory (:mod:`.outdir`) before it is answered.
"""

from __future__ import annotations

import copy
import json
import logging
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
from agentcap_addons.wire.util.jsonio import dumps

from . import state as statelib
from . import templating
from .outdir import CALLS, OutDir, OutsideOut
from .spec import OK, MockSpec, Mutation, Rule, load_spec
from .state import State

log = logging.getLogger(__name__)


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
        self._version = 0     # bumped by every change of the state
        self._saved = -1      # the version last written to ``out``
        self.out: OutDir | None = None
        self.reset()

    @classmethod
    def load(cls, target: str | Path, root: str | Path | None = None) -> MockServer:
        """``root``: where the files the mock names must be (see :func:`load_spec`)."""
        return cls(load_spec(target, root))

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
            self._version += 1
            self._frozen: bytes | None = None  # the state, marshalled, for the next handler's copy
            if self.out is not None:
                self._persist(None)

    # ------------------------------------------------------------------ calls

    def call(self, tool: str, args: dict[str, Any] | None) -> Outcome:
        """Answer one ``tools/call`` and record it. Thread-safe (calls are serialised)."""
        args = args if isinstance(args, dict) else {}
        with self._serial:
            gen = self._gen
            start = time.perf_counter()
            at = rfc3339_ns()
            sent, not_json = _as_sent(args)  # as the agent sent them, whatever a handler does to its dict
            fault = self._fault(tool)
            if fault is not None:
                outcome = Outcome(fault, True)
            elif not_json is not None:
                outcome = Outcome(f"arguments are not JSON: {not_json}", True)
            else:
                outcome = self._dispatch(tool, args, at, gen)
            rec = CallRecord(0, at, self.name, tool, sent, outcome.result, outcome.is_error,
                             round((time.perf_counter() - start) * 1000, 3), fault is not None)
            with self._data:
                if gen == self._gen:
                    rec.seq = len(self.calls) + 1
                    self.calls.append(rec)
                    if self.out is not None:
                        self._persist(rec)
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
        return Outcome({"ok": True, "tool": tool, "args": templating.plain(args)}, False)

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
        try:  # the handler, and making what it returns and leaves plain JSON, under one deadline
            outcome, new_state = self._worker.run(lambda: _answer(handler, tool, args, ctx, base), timeout)
        except HandlerTimeout:
            return Outcome(f"handler timed out: {tool} did not return within {timeout:g} s (handler_timeout); "
                           "the state is unchanged", True)
        if new_state is not None:
            with self._data:
                if gen == self._gen:
                    self.state, self._frozen = new_state, None
                    self._version += 1
        return outcome

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
                self._version += 1

    # ------------------------------------------------------------------ output

    def snapshot(self) -> dict[str, Any]:
        with self._data:
            return copy.deepcopy(self.state)

    def records(self) -> list[dict[str, Any]]:
        with self._data:
            return [asdict(c) for c in self.calls]

    def write(self, directory: str | Path | OutDir) -> None:
        """``<server>.state.json`` (final state) and this server's lines of ``calls.jsonl``.

        Several servers may share one ``mocks/`` directory; each rewrites its own state file and
        ``calls.jsonl`` gets the union, in call time order."""
        out = directory if isinstance(directory, OutDir) else OutDir(directory)
        with self._data:
            out.write_state(self.name, self.state)
            out.replace_calls(self.name, [asdict(c) for c in self.calls])
            self._saved = self._version if out is self.out else self._saved
        if out is not self.out:
            out.close()

    def record_to(self, out: OutDir) -> None:
        """From now on, write each call to ``out`` as it completes (and the state whenever it changed),
        before the call is answered; this server's lines from an earlier run are dropped now."""
        out.file(CALLS), out.state_file(self.name)  # OutsideOut now, not at the first call
        with self._data:
            self.out = out
            self._persist(None)

    def _persist(self, rec: CallRecord | None) -> None:
        """(holding ``_data``) the state if it changed, then the call — or, with no call (a start or a
        reset), this server's whole log. A failing disk is logged; the next write tries again."""
        assert self.out is not None
        try:
            if self._saved != self._version:
                self.out.write_state(self.name, self.state)
                self._saved = self._version
            if rec is None:
                self.out.replace_calls(self.name, [asdict(c) for c in self.calls])
            else:
                self.out.append(asdict(rec))
        except (OSError, OutsideOut) as e:
            log.warning("mock %s: cannot write --out %s: %s", self.name, self.out.root, e)


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


def _as_sent(args: dict[str, Any]) -> tuple[Any, str | None]:
    """The arguments as recorded (a plain copy) and, when they have no strict JSON form (an agent
    may send NaN or Infinity), why — the record then keeps them as the strings "NaN", "Infinity"."""
    try:
        return templating.plain(args, "args"), None
    except templating.NoJSONForm as e:
        why = str(e)
    try:
        return json.loads(dumps(args)), why
    except (TypeError, ValueError, RecursionError):  # in-process callers only: the JSON-RPC parser refuses worse
        return {}, why


def _answer(handler: Callable[..., Any], tool: str, args: dict[str, Any], ctx: Context,
            base: dict[str, Any]) -> tuple[Outcome, dict[str, Any] | None]:
    """(on the worker thread) the handler's outcome and the state it leaves (None: unchanged).
    Never raises: on this thread, whatever a BaseException says came from the mock's own code."""
    try:
        value = handler(args, ctx)
    except ToolError as e:
        return Outcome(_text(e), True), None
    except BaseException as e:  # noqa: BLE001 — SystemExit, KeyboardInterrupt, GeneratorExit …: the handler's
        return Outcome(f"handler crashed: {_describe(e)}{_where(e, handler)}", True), None
    try:
        result = OK.copy() if value is None else templating.plain(value, "result")
    except BaseException as e:  # noqa: BLE001 — NoJSONForm, or a __str__ / __iter__ of the handler's that fails
        return Outcome(f"handler error: {tool} returned a result with no JSON form: {_why(e)}; "
                       "the state is unchanged", True), None
    if not isinstance(ctx.state, dict):  # ctx.state = something else
        return Outcome(f"handler error: {tool} left a {type(ctx.state).__name__} as the state, not a mapping; "
                       "the state is unchanged", True), None
    try:
        new_state = _left(ctx.state, base)
    except BaseException as e:  # noqa: BLE001 — as above, in what it left
        return Outcome(f"handler error: {tool} left a state with no JSON form ({_why(e)}); the state is unchanged",
                       True), None
    return Outcome(result, False), new_state


def _left(left: dict[str, Any], base: dict[str, Any]) -> dict[str, Any] | None:
    """What a handler left as the state, as plain JSON (a tuple becomes a list, a datetime its
    str() …); None when it is the state it got (read only: the usual case)."""
    try:
        if left == base:
            return None
    except (RecursionError, TypeError, ValueError):  # a cycle, an == of the handler's own that fails
        pass
    return templating.plain(left, "state")


def _why(e: BaseException) -> str:
    return _text(e) if isinstance(e, templating.NoJSONForm) else _describe(e)


def _describe(e: BaseException) -> str:
    """``SystemExit: 3``; just the type when there is no message (``GeneratorExit``)."""
    text = _text(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _text(e: BaseException) -> str:
    try:
        return str(e)
    except BaseException:  # noqa: BLE001 — an exception whose __str__ fails still answers the call
        return f"(a {type(e).__name__} whose message cannot be shown)"
