"""What the sandbox tests share: podman, and a capture proxy + scripted model + bridge harness."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agentcap_addons.wire.policy import api_kind
from agentcap_addons.wire.registry import KeyRegistry
from agentcap_cli.modelserver import ModelServer, make_responder
from agentcap_cli.proxyproc import ProxyProcess, start_proxy
from sandbox.bridge import Bridge
from sandbox.turn import list_containers as containers  # noqa: F401  (the tests' name for it)

REAL_KEY_ENV = "AGENTCAP_TEST_UPSTREAM_KEY"
REAL_KEY = "sk-real-upstream-" + "7" * 32


@dataclass
class Harness:
    root: Path
    model: ModelServer
    proxy: ProxyProcess
    keys: KeyRegistry
    forwards: dict[int, Path]
    settled: int = 0  # model calls whose response records were already awaited

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"

    def llm_calls(self) -> int:
        return sum(1 for method, path in self.model.app.seen if method == "POST" and api_kind(path) != "other")

    def settle(self, timeout: float = 30.0) -> int:
        """Wait until every model call so far has its response record on disk; return the calls so far."""
        assert self.proxy.events is not None
        target = self.llm_calls()
        while self.settled < target:
            ev = self.proxy.events.next(timeout)
            if ev is None:
                raise TimeoutError(f"{target - self.settled} capture(s) never got a response record")
            if ev.get("event") == "response":
                self.settled += 1
        return target


def harness(root: Path, script: str = "write-file-then-answer") -> Iterator[Harness]:
    """A scripted model server, a capture proxy with a key registry in front of it, and a bridge to it."""
    env = {**os.environ, REAL_KEY_ENV: REAL_KEY}
    with ModelServer(make_responder(script=script)) as model:
        with start_proxy(model.url, root / "run", keys_dir=root / "keys", upstream_key_env=REAL_KEY_ENV,
                         env=env, events=True) as proxy, Bridge(root / "sock") as bridge:
            yield Harness(root, model, proxy, KeyRegistry(root / "keys"), bridge.forwards({"proxy": proxy.port}))
