"""The key registry: per-turn opaque API keys → attribution, shared between processes.

The orchestrator (another process) registers a key before a turn starts; the capture proxy looks
it up on every request. The registry is a directory with one small JSON file per key, named by
the SHA-256 of the key, so:

* registration is one atomic rename: a request that arrives after ``register()`` returned always
  finds its key, with no polling, no socket and no shared "current task" anywhere;
* unregistering deletes the file and takes effect on the very next request (lookups stat the file);
* the key itself never reaches disk, only its hash.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from agentcap_addons.wire.util.files import atomic_write_json
from agentcap_addons.wire.util.jsonio import read_json

KEY_PREFIX = "acp-"


@dataclass(frozen=True)
class Attribution:
    """Where a call belongs. ``captures_dir`` overrides the proxy's own ``agentcap_dir``."""

    run_id: str | None = None
    task_id: str | None = None
    turn: int | None = None
    cell: str | None = None
    repeat: int | None = None
    captures_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attribution:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def new_key() -> str:
    """A fresh opaque per-turn key, shaped like a provider key so agents accept it."""
    return KEY_PREFIX + secrets.token_hex(24)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRegistry:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._cache: dict[str, tuple[int, Attribution]] = {}
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.directory / f"{key_digest(key)}.json"

    def ensure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    def register(self, key: str, attribution: Attribution) -> None:
        """Make ``key`` valid. Returns only once any proxy reading this directory will accept it."""
        if not key:
            raise ValueError("empty key")
        self.ensure()
        atomic_write_json(self._path(key), attribution.to_dict())

    def unregister(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def lookup(self, key: str) -> Attribution | None:
        """The attribution for ``key``, or None when it is not (or no longer) registered."""
        if not key:
            return None
        path = self._path(key)
        try:
            mtime = path.stat().st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
            return None
        digest = path.stem
        with self._lock:
            hit = self._cache.get(digest)
        if hit and hit[0] == mtime:
            return hit[1]
        try:
            attribution = Attribution.from_dict(read_json(path))
        except (OSError, ValueError):
            return None
        with self._lock:
            self._cache[digest] = (mtime, attribution)
        return attribution
