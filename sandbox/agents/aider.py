from __future__ import annotations

from .base import Agent


class Aider(Agent):
    name = "aider"
    parent_image = "base"
