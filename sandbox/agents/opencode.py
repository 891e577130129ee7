from __future__ import annotations

from .base import Agent


class OpenCode(Agent):
    name = "opencode"
    parent_image = "node"
