"""Lifecycle: how a parent process knows the proxy is up, and how the proxy knows the parent died.

* ``agentcap_ready_fd``: a pipe the parent passed in; once the proxy listens, one JSON line
  ``{"pid", "listen": [[host, port], …]}`` is written to it and it is closed. No polling, no
  guessing of ports (``listen_port=0`` works). Under mitmweb the line also holds ``web_url``: the UI's
  address with the API token mitmweb generated (the token never appears in an argv or a file).
* ``agentcap_parent_watch``: stdin is a pipe from the parent; when it reaches EOF (the parent
  exited, even by ``kill -9``) the proxy shuts down cleanly, finishing every capture record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

from mitmproxy import ctx

log = logging.getLogger(__name__)


class Lifecycle:
    def load(self, loader) -> None:
        loader.add_option(
            "agentcap_ready_fd", int, -1, "File descriptor to write a JSON 'ready' line to once listening."
        )
        loader.add_option(
            "agentcap_parent_watch", bool, False, "Shut down when stdin reaches EOF (the parent process is gone)."
        )

    def running(self) -> None:
        fd = ctx.options.agentcap_ready_fd
        if fd >= 0:
            ps = ctx.master.addons.get("proxyserver")
            listen = [list(addr[:2]) for addr in ps.listen_addrs()] if ps else []
            info: dict = {"pid": os.getpid(), "listen": listen}
            web_url = getattr(ctx.master, "web_url", None)
            if isinstance(web_url, str):
                info["web_url"] = web_url
            line = json.dumps(info) + "\n"
            try:
                os.write(fd, line.encode())
                os.close(fd)
            except OSError as e:
                log.warning("agentcap: could not signal readiness on fd %d: %s", fd, e)
            # once only: a script reload calls running() again, and the fd number may be reused by then
            ctx.options.update(agentcap_ready_fd=-1)
        # One watcher per process, kept on the master: a script reload makes new addon objects
        # and calls running() again, and must neither lose nor double the watcher.
        if ctx.options.agentcap_parent_watch and getattr(ctx.master, "_agentcap_parent_watch", None) is None:
            setattr(ctx.master, "_agentcap_parent_watch", asyncio.get_running_loop().create_task(self._watch_stdin()))  # noqa: B010

    async def _watch_stdin(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        try:
            pipe = os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0)
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        except (OSError, ValueError) as e:
            log.warning("agentcap: parent watch unavailable: %s", e)
            return
        while await reader.read(4096):
            pass
        log.info("agentcap: parent process gone (stdin closed), shutting down")
        ctx.master.shutdown()

