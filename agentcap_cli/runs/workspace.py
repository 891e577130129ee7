"""Where runs live: ``$AGENTCAP_WORKSPACE/.agentcap/<name>`` (cwd when the variable is unset), and
what is there: one summary per run dir (``agentcap ls``, ``inspect``, ``export`` read it from here)."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentcap_addons.wire.capture.repair import repair
from agentcap_cli.runs.record import RUN_JSON


def workspace_root() -> Path:
    return Path(os.environ.get("AGENTCAP_WORKSPACE") or os.getcwd())


def agentcap_home() -> Path:
    return workspace_root() / ".agentcap"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-").lower() or "x"


def new_run_dir(*parts: str, now: datetime | None = None) -> Path:
    """Create ``.agentcap/<parts…>-<UTC yyyymmdd-HHMMSS>[-<n>]`` atomically (mkdir never races)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    base = "-".join([*(slug(p) for p in parts), stamp])
    home = agentcap_home()
    home.mkdir(parents=True, exist_ok=True)
    n = 0
    while True:
        name = base if n == 0 else f"{base}-{n}"
        try:
            (home / name).mkdir()
            return home / name
        except FileExistsError:
            n += 1


def count_captures(run_dir: Path) -> int:
    try:
        return sum(1 for e in os.scandir(run_dir / "captures") if e.name.endswith(".request.json"))
    except FileNotFoundError:
        return 0


def list_runs(workspace: Path) -> list[dict[str, Any]]:
    """One summary per run dir under ``workspace/.agentcap`` (a proxy-only dir has no run.json).
    Calls a killed proxy left without a response record get one first (wire/capture/repair.py)."""
    home = workspace / ".agentcap"
    rows = []
    for d in sorted(p for p in home.iterdir() if p.is_dir()) if home.is_dir() else []:
        if (d / "captures").is_dir():
            repair(d / "captures", "agentcap ls")
        row: dict[str, Any] = {"run_id": d.name, "path": str(d), "captures": count_captures(d)}
        try:
            rec = json.loads((d / RUN_JSON).read_text())
        except FileNotFoundError:
            if not (d / "captures").is_dir():
                continue
            row.update(kind="proxy", status=None)
        except ValueError:
            row.update(status="unreadable")
        else:
            tasks = rec.get("tasks") or []
            ok = sum(1 for t in tasks if not t.get("aborted_reason")
                     and (t.get("completed_turns") or 0) >= (t.get("turns_planned") or rec.get("turns_per_task") or 1))
            row.update({k: rec.get(k) for k in ("kind", "agent", "model", "provider", "upstream", "label",
                                                "status", "started_at", "finished_at", "shard", "replay_of")})
            # a replay (`agentcap run --replay`): how many of its tasks drifted from the recording
            row.update(tasks_ok=ok, tasks=len(tasks),
                       drifted=sum(1 for t in tasks if t.get("drift")) if rec.get("replay_of") else None)
        rows.append(row)
    return rows
