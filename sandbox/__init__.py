"""podman sandboxes for coding agents: images per agent, adapters, one turn in a fresh container.

Usable as a library on its own (docs/sandbox.md): ``sandbox.turn.run_agent_turn`` runs one turn of
an adapter from ``sandbox.agents``; ``sandbox.images`` builds what it needs; ``sandbox.bridge`` gives a
container its only way out. Never imports agentcap_cli or mcp_mocks.
"""
