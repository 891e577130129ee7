"""Agent adapters: the eight builtin ones, plus any a plugin module registers.

A plugin adds an agent without touching this package, either through the entry point group
``agentcap.agents`` (each entry point names an ``Agent`` subclass) or by listing modules in
``AGENTCAP_AGENT_MODULES`` (comma separated) that call ``register`` when imported. Its Containerfile
lives wherever its ``image_dir()`` says.
"""

from __future__ import annotations

import importlib
import os

from agentcap_addons.wire.util.errors import InputError

from .base import Agent, TurnInput, TurnOutput

__all__ = ["Agent", "TurnInput", "TurnOutput", "UnknownAgent", "agent_names", "get_agent", "register"]

BUILTIN: dict[str, str] = {
    "pi": "sandbox.agents.pi:Pi",
    "opencode": "sandbox.agents.opencode:OpenCode",
    "qwen-code": "sandbox.agents.qwen_code:QwenCode",
    "hermes": "sandbox.agents.hermes:Hermes",
    "mini-swe-agent": "sandbox.agents.mini_swe_agent:MiniSweAgent",
    "aider": "sandbox.agents.aider:Aider",
    "codex": "sandbox.agents.codex:Codex",
    "claude-code": "sandbox.agents.claude_code:ClaudeCode",
}

_registered: dict[str, type[Agent]] = {}
_plugins_loaded = False


class UnknownAgent(InputError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown agent {name!r}; known: {', '.join(agent_names())}")


def register(cls: type[Agent]) -> type[Agent]:
    """Make ``cls`` available by its ``name`` (usable as a class decorator)."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__qualname__} has no name")
    _registered[cls.name] = cls
    return cls


def _load(ref: str) -> type[Agent]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points  # ~30 ms: only when an agent is looked up

    for ep in entry_points(group="agentcap.agents"):
        register(ep.load())
    for module in filter(None, (m.strip() for m in os.environ.get("AGENTCAP_AGENT_MODULES", "").split(","))):
        importlib.import_module(module)


def agent_names() -> list[str]:
    _load_plugins()
    return sorted(set(BUILTIN) | set(_registered))


def get_agent(name: str) -> Agent:
    _load_plugins()
    if name in _registered:
        return _registered[name]()
    if name in BUILTIN:
        return register(_load(BUILTIN[name]))()
    raise UnknownAgent(name)
