from __future__ import annotations

from .base import Agent


class Hermes(Agent):
    name = "hermes"
    parent_image = "base"
