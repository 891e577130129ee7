"""agentcap watchdog addon: cut a captured call whose upstream has gone quiet.

An upstream that accepts a call and then sends nothing would hold an agent's turn (and its capture
record) open forever. Every second this addon looks at the calls in flight and closes the upstream
connection of any that has been silent for ``agentcap_timeout`` seconds; mitmproxy then reports the
error on the flow, and the capture addon records it with error kind ``timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from mitmproxy import ctx, exceptions, http

from agentcap_addons.recorder import Recorder
from agentcap_addons.wire.capture.policy import redact_path

log = logging.getLogger(__name__)


class SilentUpstream:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.timeout: float = 600.0
        self._task: asyncio.Task | None = None

    def load(self, loader) -> None:
        loader.add_option(
            "agentcap_timeout",
            str,
            "600",
            "Seconds the upstream may stay silent during a captured call before it is cut off "
            "(error kind 'timeout').",
        )

    def configure(self, updated: set[str]) -> None:
        if "agentcap_timeout" in updated:
            value = ctx.options.agentcap_timeout
            try:
                timeout = float(value)
            except ValueError:
                raise exceptions.OptionsError(f"agentcap_timeout: not a number of seconds: {value!r}") from None
            if timeout <= 0:
                raise exceptions.OptionsError("agentcap_timeout: must be > 0")
            self.timeout = timeout

    def running(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _watch(self) -> None:
        """Runs until the proxy stops."""
        while True:
            await asyncio.sleep(min(1.0, self.timeout / 4))
            self.check(time.monotonic())

    def check(self, now: float) -> None:
        for flow, call in list(self.recorder.inflight.values()):
            if not call.timed_out and flow.websocket is None and now - call.last_activity > self.timeout:
                call.timed_out = True
                log.warning("agentcap: upstream silent for %.1fs on %s, cutting it off", self.timeout,
                            redact_path(flow.request.path))
                self._cut_upstream(flow)

    @staticmethod
    def _cut_upstream(flow: http.HTTPFlow) -> None:
        """Close the flow's upstream connection; mitmproxy then reports the error on the flow."""
        ps = ctx.master.addons.get("proxyserver")
        handler = ps.connections.get(flow.client_conn.id) if ps else None
        io = handler.transports.get(flow.server_conn) if handler else None
        if io is not None and io.handler is not None:
            io.handler.cancel("agentcap timeout")
        elif handler is not None:
            # not connected upstream yet: end the whole client connection instead
            client_io = handler.transports.get(flow.client_conn)
            if client_io is not None and client_io.handler is not None:
                client_io.handler.cancel("agentcap timeout")
