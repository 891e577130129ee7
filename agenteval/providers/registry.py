"""agenteval's provider registry: ``register(cls, force=False)``, ``available()``, ``get_provider()``.

Built-in names are agentcap's harnesses (``claude`` = claude-code, and every agent adapter name);
registering a Provider under one of them shadows it and warns, unless ``force=True``.
"""

from __future__ import annotations

import warnings
from typing import Any

from .base import Provider

_PROVIDERS: dict[str, type[Provider]] = {}


def builtin_names() -> list[str]:
    from sandbox.agents import agent_names

    return sorted({"claude", *agent_names()})


def register(provider_cls: type[Provider], *, force: bool = False) -> None:
    name = provider_cls.name
    if name in builtin_names() and not force and _PROVIDERS.get(name) is not provider_cls:
        warnings.warn(f"provider '{name}' shadows a built-in provider; the bundled implementation will no "
                      f"longer be reachable. Rename your provider or pass force=True to silence this warning.",
                      stacklevel=2)
    _PROVIDERS[name] = provider_cls


def plugin(name: str) -> type[Provider] | None:
    """The plugin Provider registered under ``name``, if any."""
    return _PROVIDERS.get(name)


def available() -> list[str]:
    return sorted({*builtin_names(), *_PROVIDERS})


def get_provider(name: str, config: dict[str, Any] | None = None) -> Provider:
    """A plugin Provider instance. agentcap's built-in harnesses are not Provider objects (they run in
    its sandbox): asking for one of them here is a KeyError that says so."""
    if name in _PROVIDERS:
        return _PROVIDERS[name](config or {})
    if name in builtin_names():
        raise KeyError(f"provider '{name}' is agentcap's sandboxed harness, not a Provider object; "
                       f"run it with `agenteval run --provider {name}`")
    raise KeyError(f"unknown provider '{name}'. available: {available()}")
