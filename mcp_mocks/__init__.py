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

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import CallRecord, Context, MockServer, Outcome, ToolError
    from .serve import HTTPMock, MockApp, mcp_server, serve_stdio
    from .spec import MockSpec, load_spec
    from .state import State

#: name → its module: imported on first use, so `mcp_mocks.threaded` (the model server's HTTP
#: plumbing) does not pull in the mcp SDK, and a CLI command starts quickly
_WHERE = {"CallRecord": "engine", "Context": "engine", "MockServer": "engine", "Outcome": "engine",
          "ToolError": "engine", "HTTPMock": "serve", "MockApp": "serve", "mcp_server": "serve",
          "serve_stdio": "serve", "MockSpec": "spec", "load_spec": "spec", "State": "state"}

__all__ = ["CallRecord", "Context", "HTTPMock", "MockApp", "MockServer", "MockSpec", "Outcome", "State",
           "ToolError", "load_spec", "mcp_server", "serve_stdio"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
