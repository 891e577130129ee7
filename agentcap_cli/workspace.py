"""Where runs live: ``$AGENTCAP_WORKSPACE/.agentcap/<name>`` (cwd when the variable is unset)."""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path


def workspace_root() -> Path:
    return Path(os.environ.get("AGENTCAP_WORKSPACE") or os.getcwd())


def agentcap_home() -> Path:
    return workspace_root() / ".agentcap"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-").lower() or "x"


def new_run_dir(*parts: str, now: datetime | None = None) -> Path:
    """Create ``.agentcap/<parts…>-<UTC yyyymmdd-HHMMSS>[-<n>]`` atomically (mkdir never races)."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
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
