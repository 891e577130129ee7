"""The agents that have an MCP client call a real mock MCP server from inside their sandbox.

The mock (examples/mocks/slack, on the official mcp SDK over streamable HTTP) listens on the host's
loopback; the container reaches it only through the sandbox bridge, like the capture proxy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentcap_addons.wire.capture.records import iter_captures
from mcp_mocks.engine import MockServer
from mcp_mocks.serve import HTTPMock
from sandbox.agents import TurnInput, get_agent
from sandbox.bridge import Bridge
from sandbox.turn import run_agent_turn
from tests.support.sandboxes import harness

pytestmark = [pytest.mark.slow, pytest.mark.podman]

REPO = Path(__file__).resolve().parents[1]
MCP_AGENTS = ["claude-code", "codex", "opencode", "qwen-code", "hermes"]


@pytest.fixture(scope="module")
def h(tmp_path_factory):
    yield from harness(tmp_path_factory.mktemp("mcp"), script=str(REPO / "tests/support/mcp-post-then-answer.yaml"))


def test_only_these_agents_claim_mcp():
    from sandbox.agents import agent_names

    assert sorted(n for n in agent_names() if get_agent(n).supports_mcp) == sorted(MCP_AGENTS)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", MCP_AGENTS)
def test_agent_calls_a_mock_mcp_tool(name, h, tmp_path, podman):
    mock = MockServer.load(REPO / "examples/mocks/slack")
    task = f"{name}-mcp"
    with HTTPMock(mock) as served, Bridge(tmp_path / "sock") as bridge:
        key = h.turn_key("mcp-run", task, 1)
        t = TurnInput(prompt="Post hello to #general.", turn=1, base_url=h.base_url, api_key=key,
                      model="agentcap-scripted", workspace=tmp_path / "ws", home=tmp_path / "home",
                      mcp_servers={"slack": served.url})
        forwards = {**h.forwards, **bridge.forwards({"slack": served.port})}
        r = run_agent_turn(podman, get_agent(name), t, stdout=tmp_path / "out", stderr=tmp_path / "err",
                           trace_dir=tmp_path / "traces", forwards=forwards, timeout_s=300)
    assert r.returncode == 0, (tmp_path / "err").read_text()[-3000:]
    assert r.reply == "Posted the message."
    calls = mock.records()
    assert [(c["tool"], c["args"]) for c in calls] == [
        ("slack_post_message", {"channel_id": "C01GENERAL", "text": "hello from the sandbox"})]
    assert not calls[0]["is_error"]
    posted = mock.snapshot()["channels"]["C01GENERAL"]["messages"][-1]
    assert posted["text"] == "hello from the sandbox"
    h.settle()
    caps = [c for c in iter_captures(h.captures) if c.request.get("task_id") == task]
    assert len(caps) >= 2 and all(c.response["status_code"] == 200 for c in caps)
