"""mini-swe-agent: chat completions (non-streamed, every reply a tool call), one run per task: no resume."""

from __future__ import annotations

import json
from pathlib import Path

from .base import Agent, TurnInput, TurnOutput

TRAJECTORY = "trajectory_turn_{turn:02d}.json"


class MiniSweAgent(Agent):
    name = "mini-swe-agent"
    package = "pypi:mini-swe-agent"
    version = "2.4.6"
    api = "openai-chat"
    supports_mcp = False  # no MCP client
    supports_resume = False  # every `mini` run is a fresh task; a follow-up starts a new trajectory
    resumes_by_id = False
    trace_format = "mini-swe-agent trajectory JSON"
    parent_image = "base"
    instructions_file = None  # mini reads no project instructions file

    def _trajectory(self, t: TurnInput) -> Path:
        return t.home / ".mini" / TRAJECTORY.format(turn=t.turn)

    def command(self, t: TurnInput) -> list[str]:
        prompt = t.prompt if not t.base_prompt else f"{t.base_prompt}\n\n{t.prompt}"
        return ["mini", "-y", "--exit-immediately", "-m", f"openai/{t.model}", "-l", "0", "-t", prompt,
                "-o", t.inside(self._trajectory(t))]

    def env(self, t: TurnInput) -> dict[str, str]:
        return {"OPENAI_BASE_URL": t.v1, "OPENAI_API_KEY": t.api_key, "MSWEA_CONFIGURED": "true",
                "MSWEA_COST_TRACKING": "ignore_errors", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}

    def parse(self, stdout: str, stderr: str, t: TurnInput) -> TurnOutput:
        try:
            data = json.loads(self._trajectory(t).read_text())
        except (OSError, ValueError):
            return TurnOutput(session_id=None, reply=None)
        info = data.get("info") or {}
        reply = info.get("submission") or None
        if not reply:
            for m in reversed(data.get("messages") or []):
                if m.get("role") == "assistant" and isinstance(m.get("content"), str) and m["content"].strip():
                    reply = m["content"].strip()
                    break
        return TurnOutput(session_id=None, reply=reply)

    def trace_files(self, t: TurnInput, session_id: str | None) -> list[Path]:
        return sorted((t.home / ".mini").glob("trajectory_turn_*.json"))
