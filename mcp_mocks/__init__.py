"""Mock MCP servers built from ``mock.yaml`` (see docs/mocks.md), on the official ``mcp`` SDK.

Library use::

    from mcp_mocks import MockServer, HTTPMock
    mock = MockServer.load("examples/mocks/slack")
    with HTTPMock(mock) as server:        # streamable HTTP on a free port: server.url
        ...                               # point an agent at it
    mock.calls, mock.snapshot()           # what it was asked, and the final state
    mock.write("run/mocks")               # calls.jsonl + slack.state.json
"""

from .engine import CallRecord, Context, MockServer, Outcome, ToolError
from .serve import HTTPMock, MockApp, mcp_server, serve_stdio
from .spec import MockSpec, load_spec

__all__ = ["CallRecord", "Context", "HTTPMock", "MockApp", "MockServer", "MockSpec", "Outcome", "ToolError",
           "load_spec", "mcp_server", "serve_stdio"]
