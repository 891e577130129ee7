"""The only way out of a sandbox: unix sockets that forward to chosen host TCP ports.

Containers run with ``--network none`` (nothing but their own loopback), so nothing on the host or
beyond is reachable by construction. For each allowed endpoint (the capture proxy, each MCP mock) the
host side listens on a unix socket in a directory that is bind-mounted into the container, and forwards
every connection to that endpoint on the host's loopback. Inside, the entry script (``entry.sh``) runs
a ``socat`` per endpoint on the container's 127.0.0.1 with the same port number, so an agent is
configured with ``http://127.0.0.1:<port>`` exactly as it would be on the host.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Mapping
from pathlib import Path

CHUNK = 1 << 16


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


class Bridge:
    """Unix sockets under ``directory``, each forwarding to one host TCP endpoint (own event-loop thread)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.new_event_loop()
        self._servers: dict[str, asyncio.AbstractServer] = {}
        self._thread = threading.Thread(target=self._loop.run_forever, name="agentcap-bridge", daemon=True)
        self._thread.start()

    def add(self, name: str, port: int, host: str = "127.0.0.1") -> Path:
        """Listen on ``<directory>/<name>.sock``, forwarding to ``host:port``; return the socket path."""
        path = self.directory / f"{name}.sock"

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            for w in (writer, up_writer):
                w.close()

        async def start() -> asyncio.AbstractServer:
            path.unlink(missing_ok=True)
            server = await asyncio.start_unix_server(handle, str(path))
            os.chmod(path, 0o666)  # a rootless container's root maps to another uid
            return server

        self._servers[name] = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        return path

    def forwards(self, ports: Mapping[str, int]) -> dict[int, Path]:
        """``add`` each name → port; the port → socket map the container's entry script needs."""
        return {port: self.add(name, port) for name, port in ports.items()}

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers.values():
                server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        for name in self._servers:
            (self.directory / f"{name}.sock").unlink(missing_ok=True)
        self._servers.clear()

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
