"""bench/mocks.py's baseline: the mcp SDK's low-level server with one fixed-answer tool, served
the same way as a mock (streamable HTTP, JSON responses, uvicorn) — the floor for any MCP server."""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn  # noqa: E402
from mcp import types  # noqa: E402
from mcp.server.lowlevel import Server  # noqa: E402
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager  # noqa: E402

from mcp_mocks.threaded import bind  # noqa: E402

TOOL = types.Tool(name="ping", description="fixed answer", input_schema={"type": "object"})


async def list_tools(ctx, params) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[TOOL])


async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text='{"ok": true}')], is_error=False)


server = Server("bare", on_list_tools=list_tools, on_call_tool=call_tool)

manager = StreamableHTTPSessionManager(server, json_response=True)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        async with manager.run():
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
    elif scope["type"] == "http":
        await manager.handle_request(scope, receive, send)


if __name__ == "__main__":
    sock = bind("127.0.0.1", 0)
    print(f"bare\thttp://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
    asyncio.run(uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)).serve(sockets=[sock]))
