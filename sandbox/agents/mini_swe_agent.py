from __future__ import annotations

from .base import Agent


class MiniSweAgent(Agent):
    name = "mini-swe-agent"
    parent_image = "base"
