"""Drift: where a replayed agent stopped asking what it asked when it was recorded.

Found after the fact, from the replay's own captures: they are taken, in call order, from a fresh
:class:`Cassette` of the recordings with the same matcher (and the same normalisation of the run's own
values) the replay addon used while serving — so the first miss here is the call the addon could not
answer. ``agentcap test --record-mode`` reports it per repeat (results.json, junit, report.md),
``agentcap run --replay`` per task (run.json).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from agentcap_addons.wire.capture.records import Capture
from agentcap_addons.wire.fake.cassette import Cassette, Miss
from agentcap_addons.wire.fake.cassettedir import Subs


def short(value: Any, limit: int = 300) -> Any:
    """A value for a report: strings and JSON cut to ``limit`` characters."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + "…"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False)
        return value if len(text) <= limit else text[:limit] + "…"
    return value


@dataclass
class Drift:
    """The first call (or judge request) no recording matches."""

    call_seq: int | None  # the call's place among the repeat's (task's) model calls, 1-based; None: the judge
    turn: int | None
    path: str | None  # the first differing JSON path; None when every recording of that request was used up
    recorded: Any  # the values there, normalised (placeholders such as <run_dir>, <uuid> in them)
    got: Any
    message: str
    source: str = "agent"  # agent | judge

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def where(self) -> str:
        """``call 3 (turn 2)``, or ``the judge``."""
        return f"call {self.call_seq}" + (f" (turn {self.turn})" if self.turn else "") if self.call_seq else "the judge"

    def describe(self) -> str:
        where = self.where
        if self.path is None:
            return f"{where}: {self.message}"
        return (f"{where} drifted at {self.path}: recorded {json.dumps(self.recorded, ensure_ascii=False)[:120]}, "
                f"got {json.dumps(self.got, ensure_ascii=False)[:120]}")


def describe(drift: dict[str, Any]) -> str:
    """One line for a stored drift record."""
    return Drift(**drift).describe()


def find_drift(cassette: Cassette | None, calls: list[Capture], subs: Subs,
               empty: str = "no recordings") -> tuple[Drift | None, list[Capture]]:
    """Replay ``calls`` (in their order) against ``cassette``: the first miss as drift, and every call no
    recording matched. ``subs``: the replaying run's own values; ``empty``: why there is no cassette."""
    drift, missed = None, []
    for i, cap in enumerate(calls, start=1):
        req = cap.request
        body = req.get("body") if "body" in req else req.get("body_b64")
        try:
            if cassette is None:
                raise Miss(empty, None, None)
            cassette.take(req.get("method", "POST"), req.get("path", ""), body, subs)
        except Miss as m:
            missed.append(cap)
            if drift is None:
                drift = Drift(i, req.get("turn"), m.diff, short(m.recorded), short(m.got), str(m))
    return drift, missed
