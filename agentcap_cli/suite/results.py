"""One repeat's result, typed: what ``SuiteRun`` returns and what ``<run>/results/<cell>/<repeat>.json``
and the ``records`` of results.json hold (agenteval's keys; ``provider`` is the adapter that ran the agent)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RepeatResult:
    cell: str
    scenario: str
    agent: str
    provider: str  # the adapter, under agenteval's key
    model: str
    repeat: int
    passed: bool
    error: str | None = None
    duration_s: float = 0.0
    turns: int = 0  # user turns run
    num_turns: int | None = None  # the agent's own turns, as its harness reports them
    model_calls: int = 0
    tokens: int = 0
    cost_usd: float | None = None
    cost_source: str = "prices"  # "harness" when the agent reported its own cost
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {server, tool, args} on the mocks
    output: str = ""
    assertions: list[dict[str, Any]] = field(default_factory=list)  # evaluate()'s checks
    judge: dict[str, Any] | None = None
    finished_at: str | None = None
    verdict: str = "failed"  # passed | failed | drift
    stop: str | None = None  # why the agent stopped short: max_turns | timeout (the error says it in words)
    handler_timeouts: list[dict[str, Any]] = field(default_factory=list)  # {server, tool, detail}: a mock's
    # handler that missed its handler_timeout (the agent got a tool error; the assertions decide the verdict)
    drift: dict[str, Any] | None = None
    cassette: dict[str, Any] | None = None  # with --record-mode: what was recorded / replayed (absent otherwise)

    @property
    def key(self) -> str:
        """``cell#repeat``: the repeat's task id in run.json."""
        return f"{self.cell}#{self.repeat}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.cassette is None:
            del d["cassette"]
        return d


STOPS = {"max_turns": "max turns reached", "timeout": "timed out"}  # RepeatResult.stop, in words


def warnings_of(r: dict[str, Any]) -> list[str]:
    """What a record notes without failing on it: ``required: false`` checks that failed (a judge too)
    and handler timeouts, one line each."""
    out = [f"(optional) {a['name']}: {a['detail']}" for a in r.get("assertions") or []
           if not a["required"] and not a["passed"]]
    j = r.get("judge") or {}
    if j and not j.get("required", True) and not j.get("passed", True):
        out.append(f"(optional) judge: score {j.get('score')} < {j.get('min_score')}")
    out += [f"handler timeout: {h['server']}.{h['tool']}: {h['detail']}" for h in r.get("handler_timeouts") or []]
    return out
