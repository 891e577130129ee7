"""Record once, test forever: ``agentcap test --record-mode`` (vcrpy's modes, for whole agents).

A repeat's model calls are stored in the project as its **cassette**
(``cassettes/<scenario>/<cell>/<repeat>/``, format in agentcap_addons/wire/fake/cassettedir.py, secret-scanned
before it is written); later runs serve the agent from it through the capture proxy — the replay addon
picks the cassette by each call's attribution (cell, repeat) — so no key and no upstream are needed.

| mode | a repeat with a cassette | a repeat without one |
|---|---|---|
| ``none`` | not used (as before cassettes) | live |
| ``once`` | replayed; a miss is drift | live, recorded |
| ``new`` | replayed; a miss goes live and is added (vcrpy's new_episodes) | live, recorded |
| ``all`` | live, re-recorded | live, recorded |

A miss is **drift** (its own verdict): the first call no recording matches, found after the repeat by
the same matcher the addon used, over the repeat's captures in order. ``--on-drift``: ``fail`` the
repeat (and its cell); ``live``: the rest of the repeat goes upstream and its checks decide; ``record``:
as live, then the repeat's captures become its cassette. The direct judge's request and answer are
kept in ``cassette.json`` (a replayed verdict needs no upstream; a different judge request is drift
too); the claude-cli judge's calls are the cassette's ``judge/`` calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentcap_addons.wire.capture.records import Capture
from agentcap_addons.wire.fake import cassettedir
from agentcap_addons.wire.fake.cassette import (
    DEFAULT_IGNORE,
    DEFAULT_MATCH,
    Cassette,
    _at,
    diff_paths,
    normalise,
)
from agentcap_addons.wire.fake.cassettedir import (
    CASSETTE_JSON,
    Subs,
    run_subs,
    substitute_all,
)
from agentcap_addons.wire.util.clock import rfc3339_ns
from agentcap_cli.runs.drift import Drift, describe, short
from agentcap_cli.runs.drift import find_drift as drift_of
from agentcap_cli.suite.judge import score_of

if TYPE_CHECKING:
    from agentcap_cli.suite.runner import Unit

MODE_ALIASES = {"new_episodes": "new"}  # vcrpy's spelling
CASSETTES_DIR = "cassettes"
DIRECT_JUDGES = ("chat", "anthropic-api")
__all__ = ["Cassettes", "Drift", "Tape", "describe", "find_drift"]


def find_drift(source: Path, calls: list[Capture], subs: Subs) -> tuple[Drift | None, list[Capture]]:
    """``calls`` against the cassette at ``source`` (drift.find_drift)."""
    try:
        cassette = Cassette(source, DEFAULT_MATCH, DEFAULT_IGNORE)
    except FileNotFoundError:
        cassette = None
    judge = source.name == cassettedir.JUDGE_DIR
    return drift_of(cassette, calls, subs, f"the cassette holds no {'judge ' if judge else ''}calls")


@dataclass
class Tape:
    """One repeat's dealings with its cassette."""

    use: str  # replay | record
    dir: Path
    drift: Drift | None = None
    new_calls: int = 0  # --record-mode new: calls the cassette lacked, forwarded and added
    judge: dict[str, Any] | None = None  # the direct judge's exchange, to store


class Cassettes:
    """The project's cassettes and what this invocation does with them."""

    def __init__(self, project_root: Path, mode: str, on_drift: str = "fail") -> None:
        self.root = Path(project_root) / CASSETTES_DIR
        self.project_root = Path(project_root)
        self.mode, self.on_drift = MODE_ALIASES.get(mode, mode), on_drift

    def dir_of(self, u: Unit) -> Path:
        return cassettedir.repeat_dir(self.root, u.scenario.id, u.cell, u.repeat)

    def has(self, u: Unit) -> bool:
        return (self.dir_of(u) / CASSETTE_JSON).is_file()

    def use(self, u: Unit) -> str:
        return "replay" if self.mode in ("once", "new") and self.has(u) else "record"

    def begin(self, u: Unit) -> Tape:
        return Tape(self.use(u), self.dir_of(u))

    def proxy_options(self) -> dict[str, str] | None:
        """The replay addon's options: serve from the cassettes (none under ``all``: everything is live)."""
        if self.mode not in ("once", "new") or not self.root.is_dir():
            return None
        on_miss = "forward" if self.mode == "new" else "error" if self.on_drift == "fail" else "live"
        return {"agentcap_cassettes": str(self.root), "agentcap_replay_on_miss": on_miss}

    def offline(self, units: list[Unit]) -> bool:
        """Every repeat is served from its cassette and a miss fails it: no upstream is needed."""
        return self.mode == "once" and self.on_drift == "fail" and all(self.use(u) == "replay" for u in units)

    def notes(self, units: list[Unit]) -> list[str]:
        """Cells with fewer recordings than repeats, said (never a recording silently reused)."""
        if self.mode not in ("once", "new"):
            return []
        by_cell: dict[str, list[Unit]] = {}
        for u in units:
            by_cell.setdefault(u.cell, []).append(u)
        out = []
        for cell, us in by_cell.items():
            missing = [u.repeat for u in us if not self.has(u)]
            if missing and len(missing) < len(us):
                out.append(f"{cell}: {len(us) - len(missing)} recording(s) for {len(us)} repeat(s); repeat(s) "
                           f"{', '.join(map(str, missing))} ran live and were recorded")
        return out

    # -- after the agent ran ---------------------------------------------------------------------

    def check(self, tape: Tape, calls: list[Capture], run_dir: Path) -> None:
        """Drift (or, under ``new``, the calls to add) of a replayed repeat."""
        if tape.use != "replay":
            return
        drift, missed = find_drift(tape.dir, calls, run_subs(run_dir, run_dir.name))
        if self.mode == "new":
            tape.new_calls = len(missed)
        else:
            tape.drift = drift

    def check_judge_calls(self, tape: Tape, calls: list[Capture], run_dir: Path) -> None:
        """The claude-cli judge's calls against the cassette's judge/ calls."""
        if tape.use != "replay" or tape.drift is not None:
            return
        drift, missed = find_drift(tape.dir / cassettedir.JUDGE_DIR, calls, run_subs(run_dir, run_dir.name))
        if self.mode == "new":
            tape.new_calls += len(missed)
        elif drift is not None:
            drift.source, drift.call_seq = "judge", None
            tape.drift = drift

    def judge_answer(self, tape: Tape, backend: str, body: dict[str, Any], run_dir: Path) -> dict[str, Any] | None:
        """The recorded verdict of the direct judge when it was asked the same (normalised) request; else
        None, with the difference as the tape's drift (``new``: simply None, the judge is asked live)."""
        j = cassettedir.read_meta(tape.dir).get("judge") or {}
        if j.get("backend") != backend or "request" not in j:
            drift = Drift(None, None, None, None, None, f"the cassette holds no answer of the {backend} judge",
                          "judge")
        else:
            want = normalise(j["request"], frozenset())
            got = normalise(body, frozenset(), subs=run_subs(run_dir, run_dir.name))
            paths = diff_paths(want, got)
            if not paths:
                found = score_of(j["response"]) if j.get("response") is not None else \
                    {"score": None, "error": j.get("error") or "judge: no answer recorded"}
                return {**found, "request": body, "replayed": True}
            drift = Drift(None, None, paths[0], short(_at(want, paths[0])), short(_at(got, paths[0])),
                          f"the judge's request differs at {paths[0]}", "judge")
        if self.mode == "new":
            tape.new_calls += 1  # asked live, and kept
        elif tape.drift is None:
            tape.drift = drift
        return None

    def keep_judge(self, tape: Tape, backend: str, verdict: dict[str, Any]) -> None:
        if backend in DIRECT_JUDGES:
            tape.judge = {"backend": backend, "request": verdict.get("request"), "response": verdict.get("response"),
                          "error": verdict.get("error")}
        else:
            tape.judge = {"backend": backend}

    def finish(self, tape: Tape, u: Unit, calls: list[Capture], judge_calls: list[Capture], run_dir: Path,
               error: str | None) -> dict[str, Any]:
        """Write the cassette when this repeat records one; what results.json says about it."""
        rel = str(tape.dir.relative_to(self.project_root))
        info: dict[str, Any] = {"use": "replayed" if tape.use == "replay" else "recorded", "dir": rel}
        write = tape.use == "record" or (tape.drift is not None and self.on_drift == "record") or \
            (self.mode == "new" and tape.new_calls > 0)
        if tape.use == "replay" and tape.drift is not None:
            info["went_live"] = self.on_drift != "fail"
        if tape.new_calls:
            info["new_calls"] = tape.new_calls
        if not write:
            return info
        if tape.use == "replay":
            info["use"] = "extended" if self.mode == "new" and tape.drift is None else "re-recorded"
        if error is not None or not calls:
            info.update(written=False, why=f"not recorded: {error or 'no model calls'}")
            return info
        if info["use"] == "extended":  # vcrpy's new_episodes: the recordings stay, the new calls follow them
            calls, judge_calls = self._extend(tape.dir, calls, run_dir), \
                self._extend(tape.dir / cassettedir.JUDGE_DIR, judge_calls, run_dir)
        refused = self.store(tape, u, calls, judge_calls, run_dir)
        info["written"] = refused is None
        if refused:
            info["refused"] = refused
        return info

    @staticmethod
    def _extend(directory: Path, calls: list[Capture], run_dir: Path) -> list[Capture]:
        old = cassettedir.load(directory) if directory.is_dir() else []
        return old + find_drift(directory, calls, run_subs(run_dir, run_dir.name))[1] if old else calls

    def store(self, tape: Tape, u: Unit, calls: list[Capture], judge_calls: list[Capture],
              run_dir: Path) -> str | None:
        """Render, secret-scan, then write the cassette; the findings (masked) when the scan refuses it."""
        subs = run_subs(run_dir, run_dir.name)
        judge = tape.judge
        if judge is None and self.mode == "new" and tape.use == "replay":
            judge = cassettedir.read_meta(tape.dir).get("judge")
        # (scenario, cell and repeat are the directory's names; the calls are its files)
        meta = {"agent": u.agent, "provider": u.adapter, "model": u.model, "recorded_at": rfc3339_ns(),
                "judge": substitute_all(judge, subs)}
        files = cassettedir.render(meta, calls, subs, judge_calls, drop=DEFAULT_IGNORE)
        findings = scan(files, str(tape.dir.relative_to(self.project_root)), self.project_root)
        if findings:
            return "; ".join(findings)
        cassettedir.write(tape.dir, files)
        return None


def scan(files: dict[str, bytes], where: str, project_root: Path) -> list[str]:
    """The publish gate's secret scan over a cassette (a cassette is committed to git): its files as
    they are written, and each call as the captures row export would make of it (streams rejoined,
    bodies decoded) — one gate for everything that leaves. Each blocking finding as ``file: where:
    detector masked``. Fingerprints in the project's ``.agentcap-secrets-allow`` are allowed, as
    for an export."""
    # imported here: only a recording needs the detectors (and the export package) loaded
    from agentcap_cli.export.captures import scan_captures
    from agentcap_cli.export.scan import ALLOW_FILE, AllowlistError, Blob, Gate, load_allowlist, scan_blobs

    allow_file = project_root / ALLOW_FILE
    try:
        gate = Gate(allow=load_allowlist(allow_file) if allow_file.is_file() else frozenset())
    except AllowlistError as exc:  # fail closed: no cassette without a scan that means what it says
        return [str(exc)]
    found: list[Any] = []
    scan_blobs([Blob(f"{where}/{name}", data) for name, data in files.items()], gate, found)
    calls = []
    for name, data in files.items():
        if name != cassettedir.CASSETTE_JSON and name.endswith(".json"):
            try:
                calls.append((f"{where}/{name}", cassettedir.to_capture(Path(name).stem, json.loads(data))))
            except (ValueError, TypeError, AttributeError) as exc:
                return [f"{where}/{name}: not a cassette call ({exc})"]
    scan_captures(calls, gate, found)
    out: list[str] = []
    for f in found:
        if f.state == "blocking" and str(f) not in out:
            out.append(str(f))
    return out
