"""agenteval compatibility: the public API of agenteval (Minitour/agenteval) on top of agentcap.

An agenteval project runs unchanged with the ``agenteval`` command (or ``agentcap test``); provider
plugins written against agenteval import from here::

    from agenteval.providers.base import Provider, ProviderRunOutput
    from agenteval.providers.registry import register

Built-in providers are agentcap's sandboxed harnesses (``claude`` is claude-code in a podman
container); a plugin Provider runs in agentcap's runner on the host, outside the sandbox.
"""
