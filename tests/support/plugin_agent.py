"""A plugin agent for the tests: registered from outside the sandbox package (AGENTCAP_AGENT_MODULES).

Its Containerfile dir is whatever ``PluginAgent.context`` names, so a test can edit it.
"""

from __future__ import annotations

import os
from pathlib import Path

from sandbox.agents import Agent, TurnInput, register


@register
class PluginAgent(Agent):
    name = "plugin-echo"
    package = "none"
    version = "0"
    api = "openai-chat"
    parent_image = "base"
    context = Path(os.environ.get("AGENTCAP_TEST_PLUGIN_DIR", "/nonexistent"))

    @classmethod
    def image_dir(cls) -> Path:
        return cls.context

    def command(self, t: TurnInput) -> list[str]:
        return ["bash", "-c", 'cat /marker; printf "%s" "$0"', t.prompt]
