"""codex (@openai/codex): the Responses API, MCP over streamable HTTP, resumes by thread id."""

from __future__ import annotations

import json
from pathlib import Path

from .base import Agent, TurnInput, TurnOutput, json_lines

KEY_ENV = "AGENTCAP_API_KEY"


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


class Codex(Agent):
    name = "codex"
    package = "npm:@openai/codex"
    version = "0.169.0"
    api = "openai-responses"
    supports_mcp = True
    supports_resume = True
    trace_format = "codex rollout JSONL"
    parent_image = "node"

    def configure(self, t: TurnInput) -> None:
        super().configure(t)
        lines = [
            f"model = {_toml(t.model)}",
            f"model_provider = {_toml(t.provider)}",
            'approval_policy = "never"',
            'sandbox_mode = "danger-full-access"',  # the container is the sandbox
            "",
            f"[model_providers.{t.provider}]",
            f"name = {_toml(t.provider)}",
            f"base_url = {_toml(t.v1)}",
            f"env_key = {_toml(KEY_ENV)}",
            'wire_api = "responses"',
        ]
        for name, url in t.mcp_servers.items():
            lines += ["", f"[mcp_servers.{name}]", f"url = {_toml(url)}"]
        path = t.home / ".codex" / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")

    def command(self, t: TurnInput) -> list[str]:
        opts = ["--json", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox"]
        if t.turn > 1 and t.session_id:
            return ["codex", "exec", *opts, "resume", t.session_id, t.prompt]
        return ["codex", "exec", *opts, t.prompt]

    def env(self, t: TurnInput) -> dict[str, str]:
        return {KEY_ENV: t.api_key, "CODEX_HOME": t.inside(t.home / ".codex")}

    def parse(self, stdout: str, stderr: str, t: TurnInput) -> TurnOutput:
        session, reply = t.session_id, None
        for event in json_lines(stdout):
            if event.get("type") == "thread.started":
                session = event.get("thread_id") or session
            item = event.get("item") or {}
            if event.get("type") == "item.completed" and item.get("type") == "agent_message":
                reply = item.get("text") or reply
        return TurnOutput(session_id=session, reply=reply)

    def trace_files(self, t: TurnInput, session_id: str | None) -> list[Path]:
        files = sorted((t.home / ".codex" / "sessions").rglob("*.jsonl"))
        return [f for f in files if not session_id or session_id in f.name]
