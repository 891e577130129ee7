"""The small interface every agent adapter has.

An adapter is pure knowledge about one agent CLI: its image, how to point it at a base URL and a key,
the headless command for a first and a resumed turn, how to read the session id and the final reply
from what it printed, how to give it MCP servers and a base prompt, and where its native trace is.
It never starts a container itself (sandbox/container.py does); it only writes files into the turn's
workspace / home and says what to run, so an adapter is testable without podman.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from ..images import ImageSpec

AGENTS_DIR = Path(__file__).parent
#: where the container sees the turn's dirs: fixed paths, so no host path (the user's home, the run
#: dir and its run id) reaches the agent, its prompts or its traces
WORKSPACE_IN = PurePosixPath("/workspace")
HOME_IN = PurePosixPath("/home/agent")
SKILLS_IN = PurePosixPath("/agentcap/skills")


def fixed_targets(root: PurePosixPath, dirs: Sequence[Path]) -> list[PurePosixPath]:
    """Container paths for ``dirs`` under ``root``: each by its name, a repeated name numbered
    (``name-2``), so they are the same in every run wherever the dirs are on the host."""
    seen: dict[str, int] = {}
    out = []
    for d in dirs:
        n = seen[d.name] = seen.get(d.name, 0) + 1
        out.append(root / (d.name if n == 1 else f"{d.name}-{n}"))
    return out


@dataclass
class TurnInput:
    """One turn, as the adapter needs it. URLs are as the container sees them; ``workspace``,
    ``home`` and ``skills`` are the host's dirs (what the adapter writes and reads), mounted at fixed
    container paths: what the agent is told (a command line, an env var, a config naming a file)
    goes through :meth:`inside`."""

    prompt: str
    turn: int  # 1-based
    base_url: str  # the capture proxy's root, e.g. http://127.0.0.1:41234 (no /v1)
    api_key: str  # the per-turn key (never the real upstream key)
    model: str
    workspace: Path  # the agent's working directory, /workspace inside
    home: Path  # the agent's state dir, HOME (/home/agent) inside (sessions survive across turns)
    session_id: str | None = None  # from the previous turn, for agents that resume by id
    provider: str = "agentcap"  # the provider name written into the agent's own config
    mcp_servers: dict[str, str] = field(default_factory=dict)  # name → streamable HTTP URL
    base_prompt: str | None = None  # written where the agent reads project instructions
    skills: list[Path] = field(default_factory=list)  # read-only skill dirs (agents that load skills get them)
    max_turns: int | None = None  # cap on the agent's own turns, for harnesses that have one (claude --max-turns)

    @property
    def v1(self) -> str:
        return self.base_url.rstrip("/") + "/v1"

    def mounts(self) -> dict[Path, PurePosixPath]:
        """Host dir → where the container sees it: the workspace, the home, each skill."""
        return {self.workspace: WORKSPACE_IN, self.home: HOME_IN,
                **dict(zip(self.skills, fixed_targets(SKILLS_IN, self.skills)))}

    def inside(self, path: Path) -> str:
        """The container's path for ``path``, a host path in one of the :meth:`mounts` (the deepest
        that holds it)."""
        holding = [(src, target) for src, target in self.mounts().items() if path.is_relative_to(src)]
        if not holding:
            raise ValueError(f"{path} is in no dir the container mounts")
        src, target = max(holding, key=lambda m: len(m[0].parts))
        return str(target / path.relative_to(src))


@dataclass
class TurnOutput:
    session_id: str | None
    reply: str | None
    cost_usd: float | None = None  # what the harness itself reports (claude's result JSON), if it does
    num_turns: int | None = None  # the agent's own turns, as the harness reports them


class Agent:
    """Subclass, set the class attributes, override what differs; register with ``register``."""

    name: ClassVar[str]
    package: ClassVar[str]  # "npm:…" or "pypi:…"
    version: ClassVar[str]
    api: ClassVar[str]  # openai-chat | openai-responses | anthropic-messages
    supports_mcp: ClassVar[bool] = False
    supports_resume: ClassVar[bool] = False
    #: a resumed turn needs the session id the first turn printed (aider resumes from its history file)
    resumes_by_id: ClassVar[bool] = True
    trace_format: ClassVar[str] = ""
    parent_image: ClassVar[str] = "base"  # "node" for npm agents
    #: the file the agent reads project instructions from, in the workspace
    instructions_file: ClassVar[str | None] = "AGENTS.md"

    @property
    def image(self) -> ImageSpec:
        return ImageSpec(self.name, self.image_dir(), parent=self.parent_image)

    @classmethod
    def image_dir(cls) -> Path:
        """The dir holding this agent's Containerfile (beside the builtin adapters by default)."""
        return AGENTS_DIR / cls.name

    # -- before the container starts -----------------------------------------------------------

    def configure(self, t: TurnInput) -> None:
        """Write the agent's config (base URL, key, MCP servers, base prompt) into home / workspace."""
        if t.base_prompt and self.instructions_file:
            (t.workspace / self.instructions_file).write_text(t.base_prompt)

    def command(self, t: TurnInput) -> list[str]:
        raise NotImplementedError

    def env(self, t: TurnInput) -> dict[str, str]:
        return {}

    # -- after it ended -------------------------------------------------------------------------

    def parse(self, stdout: str, stderr: str, t: TurnInput) -> TurnOutput:
        text = stdout.strip()
        return TurnOutput(session_id=t.session_id, reply=text or None)

    def trace_files(self, t: TurnInput, session_id: str | None) -> list[Path]:
        """The agent's native session files for this task, under ``t.home`` / ``t.workspace``."""
        return []

    def export_trace(self, t: TurnInput, session_id: str | None, dest: Path) -> list[Path]:
        """Copy the native trace into ``dest`` (``traces/<task>/``), keeping paths relative to home."""
        written = []
        for src in self.trace_files(t, session_id):
            if not src.is_file():
                continue
            base = t.home if src.is_relative_to(t.home) else t.workspace
            target = dest / src.relative_to(base)
            target.parent.mkdir(parents=True, exist_ok=True)
            if src.suffix in (".db", ".sqlite") and _sqlite_snapshot(src, target):
                written.append(target)
                continue
            shutil.copyfile(src, target)
            written.append(target)
        return written


def _sqlite_snapshot(src: Path, target: Path) -> bool:
    """A self-contained copy of a SQLite database: opencode and hermes keep theirs in WAL mode, so the
    main file alone misses what is still in ``-wal`` (a copy of it lost the last turns). SQLite's
    backup API reads both; False (then a plain copy) when ``src`` is not a database it can open."""
    import sqlite3

    tmp = target.with_name(target.name + ".tmp")
    try:
        a, b = sqlite3.connect(src), sqlite3.connect(tmp)
        try:
            a.backup(b)
            b.execute("PRAGMA journal_mode=DELETE")  # one self-contained file: no -wal beside it for readers
        finally:
            a.close()
            b.close()
        tmp.replace(target)
        return True
    except sqlite3.Error:
        tmp.unlink(missing_ok=True)
        return False


# -- helpers adapters share -------------------------------------------------------------------------

def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among the lines of ``text`` (agents mix them with plain log lines)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


def last_json(text: str) -> Any:
    """The last complete JSON value in ``text`` (an object or array printed at the end)."""
    text = text.strip()
    for start in [i for i, ch in enumerate(text) if ch in "[{"][:200]:
        try:
            return json.loads(text[start:])
        except ValueError:
            continue
    return None

