"""Mock servers on the official ``mcp`` SDK: streamable HTTP (one port per server) and stdio.

Over HTTP, the MCP endpoint is ``/mcp``; beside it, for debugging, ``GET /_agentcap/state`` and
``GET /_agentcap/calls`` return the live state and call log, ``POST /_agentcap/reset`` resets.
The SDK's DNS-rebinding protection stays on — for the debug routes too (same Host and Origin
checks, by the SDK's own validator) — allowing the names a container uses to reach the host
(``10.0.2.2``, ``host.containers.internal``) besides loopback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import anyio
from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import (
    TransportSecurityMiddleware,
    TransportSecuritySettings,
)
from pydantic import ValidationError
from starlette.requests import Request

from agentcap_addons.wire.util.jsonio import dumps

from .engine import MockServer
from .threaded import ThreadedServer


class _QuietClosedStream(logging.Filter):
    """The SDK logs a traceback whenever a client goes away with its GET stream open; that is a
    normal end of a session here, not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (record.getMessage().startswith("Error in standalone SSE writer")
                    and isinstance(exc, anyio.ClosedResourceError))


logging.getLogger("mcp.server.streamable_http").addFilter(_QuietClosedStream())

REACHABLE_HOSTS = ["127.0.0.1", "localhost", "[::1]", "10.0.2.2", "host.containers.internal", "host.docker.internal"]


def mcp_server(mock: MockServer) -> Server:
    """The SDK's low-level server answering from ``mock``; tools are listed verbatim.

    The low-level server does not validate call arguments against the schema: every call reaches
    the mock and is recorded, malformed ones included."""
    tools = [types.Tool.model_validate(t) for t in mock.spec.tools]

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        # abandon_on_cancel: a server stopping (or a client going away) does not wait for a slow
        # call; the call still finishes, and is recorded, on its thread
        outcome = await anyio.to_thread.run_sync(mock.call, params.name, dict(params.arguments or {}),
                                                 abandon_on_cancel=True)
        return to_result(outcome.result, outcome.is_error)

    return Server(mock.name, on_list_tools=list_tools, on_call_tool=call_tool)


def to_result(result: Any, is_error: bool) -> types.CallToolResult:
    """A mock's answer as MCP content: text stays text, anything else is JSON text (and, for an
    object, ``structuredContent`` too). An object that already is a tool result — a ``content``
    list of typed blocks, as agenteval's handlers may return — is sent as it is."""
    if isinstance(result, dict) and _is_content(result.get("content")):
        try:
            res = types.CallToolResult.model_validate(result)
        except ValidationError:
            pass
        else:
            return res.model_copy(update={"is_error": True}) if is_error else res
    # strict JSON (no NaN / Infinity): the engine's results are plain JSON already, this only keeps it so
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, allow_nan=False)
    structured = result if isinstance(result, dict) and not is_error else None
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                structured_content=structured, is_error=is_error)


def _is_content(blocks: Any) -> bool:
    return isinstance(blocks, list) and bool(blocks) and all(isinstance(b, dict) and "type" in b for b in blocks)


class MockApp:
    """ASGI: the MCP endpoint plus the debugging side routes."""

    def __init__(self, mock: MockServer, extra_hosts: list[str] | None = None) -> None:
        self.mock = mock
        hosts = REACHABLE_HOSTS + list(extra_hosts or [])
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=hosts + [f"{h}:*" for h in hosts],
            allowed_origins=[f"http://{h}:*" for h in hosts],
        )
        self.manager = StreamableHTTPSessionManager(mcp_server(mock), json_response=True, security_settings=security)
        self.security = TransportSecurityMiddleware(security)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/")
        if path.startswith("/_agentcap/"):
            refused = await self.security.validate_request(Request(scope, receive))
            if refused is not None:
                await refused(scope, receive, send)
                return
            await self._side(scope, path, send)
        elif path == "/mcp":
            await self.manager.handle_request(scope, receive, send)
        else:
            await _json(send, 404, {"error": f"no route {path}; the MCP endpoint is /mcp"})

    async def _side(self, scope: dict[str, Any], path: str, send: Any) -> None:
        if path == "/_agentcap/state" and scope["method"] == "GET":
            await _json(send, 200, self.mock.snapshot())
        elif path == "/_agentcap/calls" and scope["method"] == "GET":
            await _json(send, 200, self.mock.records())
        elif path == "/_agentcap/reset" and scope["method"] == "POST":
            self.mock.reset()
            await _json(send, 200, {"ok": True})
        else:
            await _json(send, 404, {"error": f"no route {scope['method']} {path}"})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        started = False
        try:
            async with self.manager.run():
                while True:
                    msg = await receive()
                    if msg["type"] == "lifespan.startup" and not started:
                        started = True
                        await send({"type": "lifespan.startup.complete"})
                    elif msg["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
        except asyncio.CancelledError:
            # stopped while a client still held a session stream open (an agent in a container that
            # was just removed): the sessions are cancelled with the server, nothing to report
            return


async def _json(send: Any, status: int, obj: Any) -> None:
    body = dumps(obj)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class HTTPMock(ThreadedServer):
    """A mock served over streamable HTTP on a background thread; the port is bound up front."""

    def __init__(self, mock: MockServer, host: str = "127.0.0.1", port: int = 0) -> None:
        self.mock = mock
        # a stop waits at most 3 s for calls in progress (an agent's open stream, a slow handler)
        super().__init__(MockApp(mock), host, port, lifespan="on", name=f"mock-{mock.name}", graceful_s=3)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/mcp"


async def serve_stdio(mock: MockServer) -> None:
    """Serve one mock over stdin / stdout until the client closes it."""
    from mcp.server.stdio import stdio_server

    server = mcp_server(mock)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
