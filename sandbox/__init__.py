"""podman sandboxes for coding agents: images per agent, adapters, one turn in a fresh container.

Usable as a library on its own (docs/sandbox.md); this module is its facade::

    from sandbox import get_podman, get_agent, ensure_image, run_agent_turn, TurnInput, Bridge

``sandbox.agents`` holds the adapters (what an agent CLI needs and prints), ``sandbox.images`` builds
their images, ``sandbox.container`` runs one container, ``sandbox.turn`` runs one agent turn in one,
``sandbox.bridge`` gives a container its only way out. Never imports agentcap_cli or mcp_mocks.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.agents import Agent, TurnInput, TurnOutput, UnknownAgent, agent_names, get_agent, register
    from sandbox.bridge import Bridge
    from sandbox.container import (
        ContainerResult,
        ContainerSpec,
        Leftover,
        Mount,
        Owner,
        find_containers,
        list_containers,
        prune_containers,
        remove_containers,
        run_container,
    )
    from sandbox.images import ensure_image, image_tag, list_images
    from sandbox.podman import Podman, SandboxError, get_podman
    from sandbox.turn import TurnResult, run_agent_turn

#: name → its module, imported on first use: ``import sandbox.podman`` (which runs this file first)
#: must not pull in every adapter, the bridge's asyncio and podman-py
_WHERE = {
    **dict.fromkeys(["Agent", "TurnInput", "TurnOutput", "UnknownAgent", "agent_names", "get_agent", "register"], "agents"),
    "Bridge": "bridge",
    **dict.fromkeys(["ContainerResult", "ContainerSpec", "Leftover", "Mount", "Owner", "find_containers",
                     "list_containers", "prune_containers", "remove_containers",
                     "run_container"], "container"),
    **dict.fromkeys(["ensure_image", "image_tag", "list_images"], "images"),
    **dict.fromkeys(["Podman", "SandboxError", "get_podman"], "podman"),
    **dict.fromkeys(["TurnResult", "run_agent_turn"], "turn"),
}

__all__ = [
    "Agent",
    "Bridge",
    "ContainerResult",
    "ContainerSpec",
    "Leftover",
    "Mount",
    "Owner",
    "Podman",
    "SandboxError",
    "TurnInput",
    "TurnOutput",
    "TurnResult",
    "UnknownAgent",
    "agent_names",
    "ensure_image",
    "find_containers",
    "get_agent",
    "get_podman",
    "image_tag",
    "list_containers",
    "list_images",
    "prune_containers",
    "register",
    "remove_containers",
    "run_agent_turn",
    "run_container",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"sandbox.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
