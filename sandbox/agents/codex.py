from __future__ import annotations

from .base import Agent


class Codex(Agent):
    name = "codex"
    parent_image = "node"
