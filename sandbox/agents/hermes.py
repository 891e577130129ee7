"""hermes (hermes-agent): chat completions, MCP over HTTP, resumes by session id."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path

import yaml

from .base import Agent, TurnInput, TurnOutput


class Hermes(Agent):
    name = "hermes"
    package = "pypi:hermes-agent"
    version = "0.19.0"
    api = "openai-chat"
    supports_mcp = True
    supports_resume = True
    trace_format = "hermes session JSON/JSONL + state.db"
    parent_image = "base"

    def configure(self, t: TurnInput) -> None:
        super().configure(t)
        config = {
            "model": {"provider": "custom", "default": t.model, "base_url": t.v1, "api_key": t.api_key},
            "mcp_servers": {name: {"url": url} for name, url in t.mcp_servers.items()},
        }
        path = t.home / ".hermes" / "config.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))

    def command(self, t: TurnInput) -> list[str]:
        # `chat -Q -q` rather than `-z`: the one-shot mode cannot resume a session
        cmd = ["hermes", "chat", "--quiet", "--yolo"]
        if t.turn > 1 and t.session_id:
            cmd += ["--resume", t.session_id]
        return [*cmd, "--query", t.prompt]

    def parse(self, stdout: str, stderr: str, t: TurnInput) -> TurnOutput:
        # quiet chat prints the reply on stdout (after "⚠ …" notices) and "session_id: …" on stderr;
        # hermes' own state.db is the fallback for the id
        found = re.findall(r"^session_id:\s*(\S+)", stderr, re.M)
        lines = [line for line in stdout.strip().splitlines() if not line.lstrip().startswith("⚠")]
        return TurnOutput(session_id=(found[-1] if found else None) or self._newest_session(t) or t.session_id,
                          reply="\n".join(lines).strip() or None)

    @staticmethod
    def _newest_session(t: TurnInput) -> str | None:
        db = t.home / ".hermes" / "state.db"
        if not db.is_file():
            return None
        try:
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                row = conn.execute("SELECT id FROM sessions ORDER BY started_at DESC LIMIT 1").fetchone()
        except sqlite3.Error:
            return None
        return str(row[0]) if row else None

    def trace_files(self, t: TurnInput, session_id: str | None) -> list[Path]:
        root = t.home / ".hermes"
        files = [*sorted((root / "sessions").rglob("*")), root / "state.db"]
        return [f for f in files if f.is_file() and (not session_id or session_id in f.name or f.suffix == ".db")]
