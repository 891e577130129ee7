"""claude-code (@anthropic-ai/claude-code): Anthropic Messages, MCP over HTTP, resumes by session id.

Skills go where Claude Code finds personal skills (``$HOME/.claude/skills/<name>/SKILL.md``), so the
workspace the test inspects holds only what the agent wrote; ``max_turns`` is ``--max-turns``; cost
and turns come from its own result JSON (``total_cost_usd``, ``num_turns``)."""

from __future__ import annotations

import shutil
from pathlib import Path

from .base import Agent, TurnInput, TurnOutput, last_json, write_json

MCP_CONFIG = ".agentcap-mcp.json"


class ClaudeCode(Agent):
    name = "claude-code"
    package = "npm:@anthropic-ai/claude-code"
    version = "2.1.330"
    api = "anthropic-messages"
    supports_mcp = True
    supports_resume = True
    trace_format = "claude-code project JSONL"
    parent_image = "node"
    instructions_file = "CLAUDE.md"

    def configure(self, t: TurnInput) -> None:
        super().configure(t)
        write_json(t.home / MCP_CONFIG, {"mcpServers": {
            name: {"type": "http", "url": url} for name, url in t.mcp_servers.items()}})
        for skill in t.skills:
            target = t.home / ".claude" / "skills" / skill.name
            if not target.exists():
                shutil.copytree(skill, target)

    def command(self, t: TurnInput) -> list[str]:
        cmd = ["claude", "-p", "--output-format", "json", "--model", t.model, "--dangerously-skip-permissions",
               "--mcp-config", t.inside(t.home / MCP_CONFIG), "--strict-mcp-config"]
        if t.max_turns:
            cmd += ["--max-turns", str(t.max_turns)]
        if t.turn > 1 and t.session_id:
            cmd += ["--resume", t.session_id]
        return [*cmd, "--", t.prompt]

    def env(self, t: TurnInput) -> dict[str, str]:
        return {
            "ANTHROPIC_BASE_URL": t.base_url,
            "ANTHROPIC_API_KEY": t.api_key,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "IS_SANDBOX": "1",  # lets --dangerously-skip-permissions run as the container's root
        }

    def parse(self, stdout: str, stderr: str, t: TurnInput) -> TurnOutput:
        result = last_json(stdout)
        if isinstance(result, list):  # stream of messages: the result one is last
            result = next((m for m in reversed(result) if isinstance(m, dict) and m.get("type") == "result"), None)
        if not isinstance(result, dict):
            return TurnOutput(session_id=t.session_id, reply=None)
        cost, turns = result.get("total_cost_usd"), result.get("num_turns")
        return TurnOutput(session_id=result.get("session_id") or t.session_id, reply=result.get("result"),
                          cost_usd=float(cost) if isinstance(cost, (int, float)) else None,
                          num_turns=int(turns) if isinstance(turns, int) else None)

    def trace_files(self, t: TurnInput, session_id: str | None) -> list[Path]:
        files = sorted((t.home / ".claude" / "projects").rglob("*.jsonl"))
        return [f for f in files if not session_id or f.stem == session_id]
