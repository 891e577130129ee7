"""An ASGI app served by uvicorn on a background thread, its port bound before it starts.

Binding first means the port is known at once (``port=0`` works) and no request can arrive "too
early": the kernel queues connections until the server accepts them. Used for the mocks, and by
``agentcap model serve``'s embedded form (which may import this package; not the reverse).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Literal, Self

import uvicorn


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit this: without it, a response sent as headers + body waits for
    # the client's delayed ACK (Nagle), capping 32 connections near 800 requests/s
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()  # a port in use must not leak the socket
        raise
    return sock


def uvicorn_server(app: Any, lifespan: Literal["auto", "on", "off"] = "off",
                   graceful_s: int | None = None) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, lifespan=lifespan, access_log=False, log_level="warning",
                                         timeout_keep_alive=30, timeout_graceful_shutdown=graceful_s))


class ThreadedServer:
    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, lifespan: Literal["auto", "on", "off"] = "off",
                 name: str = "asgi-server", graceful_s: int | None = None) -> None:
        self.sock = bind(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self.server = uvicorn_server(app, lifespan, graceful_s)
        self._thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])),
                                        name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(15)
        self.sock.close()

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
