from __future__ import annotations

from .base import Agent


class QwenCode(Agent):
    name = "qwen-code"
    parent_image = "node"
