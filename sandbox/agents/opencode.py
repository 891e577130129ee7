"""opencode (opencode-ai): chat completions through @ai-sdk/openai-compatible, MCP, resumes by session id."""

from __future__ import annotations

from pathlib import Path

from .base import Agent, TurnInput, TurnOutput, json_lines, write_json


class OpenCode(Agent):
    name = "opencode"
    package = "npm:opencode-ai"
    version = "1.18.33"
    api = "openai-chat"
    supports_mcp = True
    supports_resume = True
    trace_format = "opencode storage JSON (session, messages, parts)"
    parent_image = "node"

    def config_path(self, t: TurnInput) -> Path:
        return t.home / ".config" / "opencode" / "opencode.json"

    def configure(self, t: TurnInput) -> None:
        super().configure(t)
        write_json(self.config_path(t), {
            "$schema": "https://opencode.ai/config.json",
            "autoupdate": False,
            "share": "disabled",
            "provider": {t.provider: {
                "npm": "@ai-sdk/openai-compatible",
                "name": t.provider,
                "options": {"baseURL": t.v1, "apiKey": t.api_key},
                "models": {t.model: {"name": t.model, "tool_call": True}},
            }},
            "mcp": {name: {"type": "remote", "url": url, "enabled": True} for name, url in t.mcp_servers.items()},
            "permission": {"edit": "allow", "bash": "allow", "webfetch": "deny"},
        })

    def command(self, t: TurnInput) -> list[str]:
        cmd = ["opencode", "run", "--format", "json", "-m", f"{t.provider}/{t.model}"]
        if t.turn > 1 and t.session_id:
            cmd += ["--session", t.session_id]
        return [*cmd, t.prompt]

    def env(self, t: TurnInput) -> dict[str, str]:
        return {"OPENCODE_CONFIG": t.inside(self.config_path(t)), "OPENCODE_DISABLE_AUTOUPDATE": "1",
                "OPENCODE_DISABLE_SHARE": "1"}

    def parse(self, stdout: str, stderr: str, t: TurnInput) -> TurnOutput:
        session, texts = t.session_id, []
        for event in json_lines(stdout):
            session = event.get("sessionID") or session
            part = event.get("part") or {}
            if event.get("type") == "text" and part.get("text"):
                texts.append(part["text"])
        return TurnOutput(session_id=session, reply=texts[-1] if texts else None)

    def trace_files(self, t: TurnInput, session_id: str | None) -> list[Path]:
        storage = t.home / ".local" / "share" / "opencode"
        files = sorted(p for p in storage.rglob("*") if p.is_file() and p.suffix in (".json", ".db", ".sqlite"))
        return [f for f in files if not session_id or session_id in str(f) or f.suffix != ".json"]
