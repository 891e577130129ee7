"""podman sandboxes for coding agents: images per agent, adapters, one turn in a fresh container.

Usable as a library on its own (docs/sandbox.md); this module is its facade::

    from sandbox import get_podman, get_agent, ensure_image, run_agent_turn, TurnInput, Bridge

``sandbox.agents`` holds the adapters (what an agent CLI needs and prints), ``sandbox.images`` builds
their images, ``sandbox.container`` runs one container, ``sandbox.turn`` runs one agent turn in one,
``sandbox.bridge`` gives a container its only way out. Never imports agentcap_cli or mcp_mocks.
"""

from sandbox.agents import Agent, TurnInput, TurnOutput, UnknownAgent, agent_names, get_agent, register
from sandbox.bridge import Bridge
from sandbox.container import ContainerResult, ContainerSpec, Mount, list_containers, remove_containers, run_container
from sandbox.images import ensure_image, image_tag, list_images
from sandbox.podman import Podman, SandboxError, get_podman
from sandbox.turn import TurnResult, run_agent_turn

__all__ = [
    "Agent",
    "Bridge",
    "ContainerResult",
    "ContainerSpec",
    "Mount",
    "Podman",
    "SandboxError",
    "TurnInput",
    "TurnOutput",
    "TurnResult",
    "UnknownAgent",
    "agent_names",
    "ensure_image",
    "get_agent",
    "get_podman",
    "image_tag",
    "list_containers",
    "list_images",
    "register",
    "remove_containers",
    "run_agent_turn",
    "run_container",
]
