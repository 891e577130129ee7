"""``agentcap model serve``: a small standalone ASGI server answering LLM API calls locally.

A bare ASGI callable (no framework routing: every request goes to the responder, which is the
code the replay addon shares) served by uvicorn. :class:`ModelServer` runs it on a background
thread (``mcp_mocks.threaded``: port bound before start) — what tests, benches and
``agentcap run``'s embedded default use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from agentcap_addons.wire.api.render import Rendered
from agentcap_addons.wire.fake.upstream import (  # noqa: F401  (make_responder, resolve_script: used from here too)
    Forward,
    Responder,
    make_responder,
    resolve_script,
)
from mcp_mocks.threaded import ThreadedServer

log = logging.getLogger(__name__)

HOP_HEADERS = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "upgrade"}


class ModelApp:
    """The ASGI application."""

    def __init__(self, responder: Responder, forward_to: str | None = None) -> None:
        self.responder = responder
        self.forward_to = forward_to.rstrip("/") if forward_to else None
        self._client: httpx.AsyncClient | None = None
        #: (method, path) of every request served, in order (tests compare it with the captures)
        self.seen: list[tuple[str, str]] = []
        #: called with (method, path) as each request arrives (tests synchronise on it)
        self.on_request: Callable[[str, str], None] | None = None
        #: called once each answer is sent: (method, path, request body, what was sent or None when
        #: forwarded, seconds) — `agentcap model serve` logs one line per call from it
        self.on_served: Callable[[str, str, bytes, Rendered | None, float], None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        path = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        self.seen.append((scope["method"], path))
        if self.on_request is not None:
            self.on_request(scope["method"], path)
        started = time.monotonic()
        result = self.responder.respond(scope["method"], path, body)
        if isinstance(result, Forward):
            await self._forward(scope, path, body, send)
        else:
            await self._send(result, send)
        if self.on_served is not None:
            self.on_served(scope["method"], path, body, None if isinstance(result, Forward) else result,
                           time.monotonic() - started)

    @staticmethod
    async def _send(r: Rendered, send: Any) -> None:
        headers = [(b"content-type", r.content_type.encode())]
        headers += [(k.encode(), v.encode()) for k, v in r.headers.items()]
        if not r.content_type.startswith("text/event-stream"):
            body = r.body
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": r.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        headers.append((b"cache-control", b"no-cache"))
        await send({"type": "http.response.start", "status": r.status, "headers": headers})
        for i, chunk in enumerate(r.chunks):
            pause = r.pauses_ms[i] if r.pauses_ms is not None and i < len(r.pauses_ms) else (r.delay_ms if i else 0)
            if pause:
                await asyncio.sleep(pause / 1000)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _forward(self, scope: dict[str, Any], path: str, body: bytes, send: Any) -> None:
        if not self.forward_to:
            await self._send(Rendered(502, "application/json", [b'{"error":{"message":"no upstream to forward to"}}']), send)
            return
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(600, connect=30))
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k.decode().lower() not in HOP_HEADERS]
        req = self._client.build_request(scope["method"], self.forward_to + path, headers=headers, content=body)
        try:
            resp = await self._client.send(req, stream=True)
        except httpx.HTTPError as e:
            await self._send(Rendered(502, "application/json", [f'{{"error":{{"message":"forward failed: {e}"}}}}'.encode()]), send)
            return
        try:
            out = [(k.encode(), v.encode()) for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS]
            await send({"type": "http.response.start", "status": resp.status_code, "headers": out})
            async for chunk in resp.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await resp.aclose()


class ModelServer(ThreadedServer):
    """The model server on a background thread (its own event loop)."""

    def __init__(self, responder: Responder, host: str = "127.0.0.1", port: int = 0, forward_to: str | None = None) -> None:
        self.app = ModelApp(responder, forward_to)
        super().__init__(self.app, host, port, name="agentcap-model-server")
