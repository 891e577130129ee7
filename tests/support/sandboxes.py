"""What the sandbox tests share: the same services `agentcap run` starts (scripted model, capture proxy
with a key registry, the sandbox bridge), with a real-looking upstream key the proxy injects."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agentcap_addons.wire.capture.policy import api_kind
from agentcap_addons.wire.capture.registry import Attribution
from agentcap_cli.harness.services import Services
from sandbox.container import list_containers as containers  # noqa: F401  (the tests' name for it)

REAL_KEY = "sk-real-upstream-" + "7" * 32


@dataclass
class Harness:
    root: Path
    services: Services

    @property
    def captures(self) -> Path:
        return self.root / "run" / "captures"

    @property
    def base_url(self) -> str:
        return self.services.agent_base_url

    @property
    def forwards(self) -> dict[int, Path]:
        return self.services.forwards

    def turn_key(self, run_id: str, task_id: str, turn: int) -> str:
        """A registered per-turn key whose captures land in ``captures``."""
        return self.services.turn_key(Attribution(run_id=run_id, task_id=task_id, turn=turn,
                                                  captures_dir=str(self.captures)))

    def revoke(self, key: str) -> None:
        self.services.keys.unregister(key)

    def llm_calls(self) -> int:
        assert self.services.model_server is not None
        return sum(1 for method, path in self.services.model_server.app.seen
                   if method == "POST" and api_kind(path) != "other")

    def settle(self, timeout: float = 30.0) -> int:
        """Wait until every model call so far has its response record on disk; return the calls so far."""
        target = self.llm_calls()
        tracker = self.services.tracker
        with tracker.cond:
            if not tracker.cond.wait_for(lambda: sum(tracker.calls.values()) >= target and not tracker.pending,
                                         timeout):
                raise TimeoutError(f"{len(tracker.pending)} capture(s) never got a response record")
        return target


def harness(root: Path, script: str = "write-file-then-answer") -> Iterator[Harness]:
    """The services of one `agentcap run` invocation, on a scripted model."""
    with Services(None, REAL_KEY, script=script) as services:
        yield Harness(root, services)
