"""Mock MCP servers built from ``mock.yaml`` (see docs/mocks.md), on the official ``mcp`` SDK.

Library use::

    from mcp_mocks import MockServer, HTTPMock
    mock = MockServer.load("examples/mocks/slack")
    with HTTPMock(mock) as server:        # streamable HTTP on a free port: server.url
        ...                               # point an agent at it
    mock.calls, mock.snapshot()           # what it was asked, and the final state
    mock.write("run/mocks")               # calls.jsonl + slack.state.json

A handler (``handler.py``) is ``fn(args, ctx)``; it changes ``ctx.state.data`` (a :class:`State`,
the state dict itself) and returns the result, or raises :class:`ToolError`.
"""

from .engine import CallRecord, Context, MockServer, Outcome, ToolError
from .serve import HTTPMock, MockApp, mcp_server, serve_stdio
from .spec import MockSpec, load_spec
from .state import State

__all__ = ["CallRecord", "Context", "HTTPMock", "MockApp", "MockServer", "MockSpec", "Outcome", "State", "ToolError",
           "load_spec", "mcp_server", "serve_stdio"]
