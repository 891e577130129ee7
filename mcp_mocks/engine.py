"""One mock MCP server's behaviour, independent of any transport: state, dispatch, recording.

Dispatch per ``tools/call``: the handler's function for the tool (``HANDLERS`` / ``tool_<name>``,
called as ``fn(args, ctx)``) → else the first declarative rule whose ``match`` holds → else the
fallback (``echo``: ``{"ok": true, "tool", "args"}``; ``error``: a tool error). Unknown tools,
handler crashes, rules with ``error``, broken templates and impossible state paths all answer as
MCP tool errors (``isError: true``) — and every call is recorded, errors included.
"""

from __future__ import annotations

import copy
import json
import random
import threading
import time
import uuid as uuidlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentcap_addons.wire.store import atomic_write_bytes, dumps, rfc3339_ns

from . import state as statelib
from . import templating
from .spec import MockSpec, Rule, load_spec


class ToolError(Exception):
    """Raise from a handler to answer with a tool error (``isError: true``) on purpose."""


@dataclass
class Context:
    """What a handler function gets besides the arguments."""

    state: dict[str, Any]
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


@dataclass
class MockServer:
    spec: MockSpec
    state: dict[str, Any] = field(init=False)
    calls: list[CallRecord] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    @classmethod
    def load(cls, target: str | Path) -> "MockServer":
        return cls(load_spec(target))

    @property
    def name(self) -> str:
        return self.spec.name

    def reset(self) -> None:
        """Fresh state from the seed (deep-copied) and an empty call log."""
        with self._lock:
            self.state = copy.deepcopy(self.spec.seed)
            self.calls = []
            self._rng = random.Random(self.spec.fault_seed)

    # ------------------------------------------------------------------ calls

    def call(self, tool: str, args: dict[str, Any] | None) -> Outcome:
        """Answer one ``tools/call`` and record it. Thread-safe (calls are serialised)."""
        args = args if isinstance(args, dict) else {}
        with self._lock:
            start = time.perf_counter()
            at = rfc3339_ns()
            fault = self._fault(tool)
            if fault is not None:
                outcome = Outcome(fault, True)
            else:
                outcome = self._dispatch(tool, args, at)
            rec = CallRecord(len(self.calls) + 1, at, self.name, tool, copy.deepcopy(args), copy.deepcopy(outcome.result),
                             outcome.is_error, round((time.perf_counter() - start) * 1000, 3), fault is not None)
            self.calls.append(rec)
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

    def _dispatch(self, tool: str, args: dict[str, Any], at: str) -> Outcome:
        if tool not in self.spec.tool_names:
            return Outcome(f"unknown tool {tool!r} (this server has: {', '.join(self.spec.tool_names)})", True)
        ident = str(uuidlib.uuid4())
        handler = self.spec.handlers.get(tool)
        if handler is not None:
            ctx = Context(self.state, self.name, tool, at, ident, self._rng)
            try:
                return Outcome(_jsonable(handler(args, ctx)), False)
            except ToolError as e:
                return Outcome(str(e), True)
            except Exception as e:  # a crash in the mock's own code: still an answer, and recorded
                return Outcome(f"handler crashed: {type(e).__name__}: {e}", True)
        tctx = {"args": args, "state": self.state, "now": at, "uuid": ident}
        for rule in self.spec.rules.get(tool, []):
            try:
                if not self._matches(rule, args, tctx):
                    continue
                return self._apply(rule, tctx)
            except (templating.TemplateError, statelib.PathError) as e:
                return Outcome(f"mock error in responses.{tool}: {e}", True)
        if self.spec.fallback == "error":
            return Outcome(f"no response rule matched this call to {tool}", True)
        return Outcome({"ok": True, "tool": tool, "args": args}, False)

    @staticmethod
    def _matches(rule: Rule, args: dict[str, Any], tctx: dict[str, Any]) -> bool:
        for path, want in rule.match.items():
            try:
                got = statelib.get(args, str(path))
            except statelib.PathError:
                return False
            if got != templating.render(want, tctx):
                return False
        return True

    def _apply(self, rule: Rule, tctx: dict[str, Any]) -> Outcome:
        # mutations are journaled: if one fails (or a template does), the state is rolled back
        undo: statelib.Undo = []
        try:
            for m in rule.mutate:
                path = templating.render(m.path, tctx)
                statelib.mutate(self.state, m.op, str(path), copy.deepcopy(templating.render(m.value, tctx)), undo)
            if rule.has_error:
                return Outcome(templating.render(rule.error, tctx), True)
            return Outcome(templating.render(rule.result, tctx), False)
        except BaseException:
            statelib.rollback(undo)
            raise

    # ------------------------------------------------------------------ output

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.state)

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
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


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))
