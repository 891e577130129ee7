"""aider (aider-chat): chat completions, text-only edits (whole-file blocks), resumes by restoring its
chat history; no MCP client."""

from __future__ import annotations

from pathlib import Path

from .base import Agent, TurnInput, TurnOutput

HISTORY = ".aider/chat.history.md"


class Aider(Agent):
    name = "aider"
    package = "pypi:aider-chat"
    version = "0.86.2"
    api = "openai-chat"
    supports_mcp = False
    supports_resume = True  # --restore-chat-history replays the task's earlier turns
    resumes_by_id = False
    trace_format = "aider chat history markdown + input history"
    parent_image = "base"
    instructions_file = "CONVENTIONS.md"

    def command(self, t: TurnInput) -> list[str]:
        cmd = ["aider", "--model", f"openai/{t.model}", "--openai-api-base", t.v1,
               # one edit format for every model: the reply names a file, then its whole content
               "--edit-format", "whole", "--no-git", "--yes-always", "--no-pretty", "--map-tokens", "0",
               "--no-check-update", "--analytics-disable", "--no-show-model-warnings",
               "--no-show-release-notes", "--chat-history-file", t.inside(t.home / HISTORY),
               "--input-history-file", t.inside(t.home / ".aider" / "input.history")]
        if t.base_prompt:
            cmd += ["--read", self.instructions_file or "CONVENTIONS.md"]
        if t.turn > 1:
            cmd.append("--restore-chat-history")
        return [*cmd, "--message", t.prompt]

    def configure(self, t: TurnInput) -> None:
        super().configure(t)
        (t.home / ".aider").mkdir(parents=True, exist_ok=True)

    def env(self, t: TurnInput) -> dict[str, str]:
        return {"OPENAI_API_KEY": t.api_key, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "AIDER_CHECK_UPDATE": "false"}

    def parse(self, stdout: str, stderr: str, t: TurnInput) -> TurnOutput:
        """The reply is what follows the last user lines (``#### …``) of the history, minus tool notes (``> …``)."""
        try:
            lines = (t.home / HISTORY).read_text().splitlines()
        except OSError:
            return TurnOutput(session_id=None, reply=None)
        last_user = max((i for i, line in enumerate(lines) if line.startswith("#### ")), default=-1)
        reply = "\n".join(line for line in lines[last_user + 1:] if not line.startswith(">")).strip()
        return TurnOutput(session_id=None, reply=reply or None)

    def trace_files(self, t: TurnInput, session_id: str | None) -> list[Path]:
        return [t.home / HISTORY, t.home / ".aider" / "input.history"]
