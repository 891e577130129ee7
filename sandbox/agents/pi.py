"""pi (@mariozechner/pi-coding-agent): chat completions, resumes by session id, JSONL sessions."""

from __future__ import annotations

from pathlib import Path

from .base import Agent, TurnInput, TurnOutput, json_lines, write_json


class Pi(Agent):
    name = "pi"
    package = "npm:@mariozechner/pi-coding-agent"
    version = "0.73.1"
    api = "openai-chat"
    supports_mcp = False  # pi has no MCP client by design (extensions only)
    supports_resume = True
    trace_format = "pi session JSONL"
    parent_image = "node"

    def configure(self, t: TurnInput) -> None:
        super().configure(t)
        write_json(t.home / ".pi" / "agent" / "models.json", {"providers": {t.provider: {
            "baseUrl": t.v1, "api": "openai-completions", "apiKey": t.api_key,
            "compat": {"supportsDeveloperRole": False, "supportsReasoningEffort": False},
            "models": [{"id": t.model}]}}})

    def command(self, t: TurnInput) -> list[str]:
        cmd = ["pi", "--provider", t.provider, "--model", t.model, "--mode", "json", "--offline"]
        if t.turn > 1 and t.session_id:
            cmd += ["--session", t.session_id]
        for skill in t.skills:
            cmd += ["--skill", t.inside(skill)]
        return [*cmd, "-p", t.prompt]

    def env(self, t: TurnInput) -> dict[str, str]:
        return {"PI_OFFLINE": "1"}

    def parse(self, stdout: str, stderr: str, t: TurnInput) -> TurnOutput:
        session, reply = t.session_id, None
        for event in json_lines(stdout):
            kind = event.get("type")
            if kind == "session":
                session = event.get("id") or session
            elif kind == "agent_end":
                for message in event.get("messages") or []:
                    if message.get("role") == "assistant":
                        text = "".join(c.get("text", "") for c in message.get("content") or []
                                       if isinstance(c, dict) and c.get("type") == "text")
                        reply = text or reply
        return TurnOutput(session_id=session, reply=reply)

    def trace_files(self, t: TurnInput, session_id: str | None) -> list[Path]:
        files = sorted((t.home / ".pi" / "agent" / "sessions").rglob("*.jsonl"))
        return [f for f in files if not session_id or session_id in f.name]
