"""qwen-code (@qwen-code/qwen-code): chat completions, MCP, resumes by session id, JSONL chat records."""

from __future__ import annotations

from pathlib import Path

from .base import Agent, TurnInput, TurnOutput, last_json, write_json


class QwenCode(Agent):
    name = "qwen-code"
    package = "npm:@qwen-code/qwen-code"
    version = "0.24.4"
    api = "openai-chat"
    supports_mcp = True
    supports_resume = True
    trace_format = "qwen-code chat recording JSONL"
    parent_image = "node"
    instructions_file = "QWEN.md"

    def configure(self, t: TurnInput) -> None:
        super().configure(t)
        write_json(t.home / ".qwen" / "settings.json", {
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False},
            "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
            "mcpServers": {name: {"httpUrl": url} for name, url in t.mcp_servers.items()},
        })

    def command(self, t: TurnInput) -> list[str]:
        cmd = ["qwen", "--auth-type", "openai", "--openai-base-url", t.v1, "-m", t.model, "--yolo",
               "-o", "json", "--chat-recording"]
        if t.turn > 1 and t.session_id:
            cmd += ["--resume", t.session_id]
        return [*cmd, t.prompt]

    def env(self, t: TurnInput) -> dict[str, str]:
        return {"OPENAI_API_KEY": t.api_key, "QWEN_CODE_SUPPRESS_YOLO_WARNING": "1"}

    def parse(self, stdout: str, stderr: str, t: TurnInput) -> TurnOutput:
        data = last_json(stdout)
        events = data if isinstance(data, list) else [data]
        session, reply = t.session_id, None
        for event in events:
            if not isinstance(event, dict):
                continue
            session = event.get("session_id") or event.get("sessionId") or session
            if event.get("type") == "result":
                reply = event.get("result") or reply
            elif "response" in event:
                reply = event.get("response") or reply
        return TurnOutput(session_id=session, reply=reply)

    def trace_files(self, t: TurnInput, session_id: str | None) -> list[Path]:
        files = sorted((t.home / ".qwen").rglob("*.jsonl"))
        return [f for f in files if not session_id or session_id in f.name]
