"""agenteval's Provider interface, as its plugins subclass it.

A Provider installs an agent's capabilities into a workspace and runs one prompt there, returning
normalized metrics. agentcap calls a plugin Provider from its suite runner **on the host** (not in a
podman sandbox): ``install(agent_dir, workspace, mock_endpoints)``, then ``run(...)``, then
``teardown(workspace)``; ``preflight()`` before anything runs. The ``env`` given to ``run`` points the
OpenAI / Anthropic base URL variables at agentcap's capture proxy with a per-run key, so a harness
that honours them has its model calls captured and attributed; the real upstream key is not in it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ProviderRunOutput:
    """Normalized result of a single agent invocation (agenteval's fields)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    total_cost_usd: float = 0.0
    num_turns: int = 0
    final_output: str = ""
    exit_code: int | None = None
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


class Provider(ABC):
    name: str = "base"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}

    @abstractmethod
    def install(self, *, agent_dir: Path, workspace: Path, mock_endpoints: dict[str, str]) -> None:
        """Compile the agent's capabilities.yaml into the workspace, wiring its MCP servers to the
        local mock endpoints (server id → streamable HTTP URL)."""

    @abstractmethod
    def run(self, *, prompt: str, workspace: Path, model: str, timeout: int, max_turns: int,
            env: dict[str, str]) -> ProviderRunOutput:
        """Run one prompt in the workspace and return normalized metrics."""

    def teardown(self, *, workspace: Path) -> None:  # noqa: B027 (a default that does nothing, as in agenteval)
        """Undo what install() registered outside the workspace (best effort)."""

    def preflight(self) -> list[str]:
        """Missing prerequisites (binaries, env); empty when ready."""
        return []
