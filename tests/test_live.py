"""The optional live tier: one agent against a real (tiny, local) model, plumbing only.

Deselected by default (``-m "not live"`` in pytest's addopts); run with
``AGENTCAP_LIVE_UPSTREAM=http://127.0.0.1:8080 pytest -m live`` against a llama-cpp-python server
(docs/sandbox.md). The model's answers are noise, so only the plumbing is checked.
"""

from __future__ import annotations

import os

import pytest

from agentcap_addons.wire.registry import Attribution, KeyRegistry, new_key
from agentcap_addons.wire.store import iter_captures
from agentcap_cli.proxyproc import start_proxy
from sandbox.agents import TurnInput, get_agent
from sandbox.bridge import Bridge
from sandbox.podman import get_podman
from sandbox.session import run_agent_turn

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.podman]


@pytest.mark.timeout(900)
def test_pi_against_a_live_local_model(tmp_path):
    upstream = os.environ.get("AGENTCAP_LIVE_UPSTREAM")
    assert upstream, "set AGENTCAP_LIVE_UPSTREAM to a local OpenAI-style server (docs/sandbox.md, live tier)"
    model = os.environ.get("AGENTCAP_LIVE_MODEL", "gemma")
    with start_proxy(upstream, tmp_path / "run", keys_dir=tmp_path / "keys", events=True) as proxy, \
            Bridge(tmp_path / "sock") as bridge:
        key = new_key()
        KeyRegistry(tmp_path / "keys").register(key, Attribution(run_id="live", task_id="t1", turn=1))
        t = TurnInput(prompt="Say hello.", turn=1, base_url=f"http://127.0.0.1:{proxy.port}", api_key=key,
                      model=model, workspace=tmp_path / "ws", home=tmp_path / "home")
        r = run_agent_turn(get_podman(), get_agent("pi"), t, stdout=tmp_path / "out", stderr=tmp_path / "err",
                           trace_dir=tmp_path / "traces", forwards=bridge.forwards({"proxy": proxy.port}),
                           timeout_s=600)
        assert proxy.events is not None
        proxy.events.wait_for(timeout=60, event="response")
    assert not r.timed_out
    caps = list(iter_captures(tmp_path / "run" / "captures"))
    assert caps and caps[0].request["task_id"] == "t1" and caps[0].response["status_code"] == 200
