"""Providers: agentcap's sandboxed harnesses plus plugins registered with :func:`registry.register`."""
