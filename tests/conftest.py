"""Shared fixtures: a real scriptable upstream and real capture proxies (mitmdump processes) on loopback."""

from __future__ import annotations

import socket
import sys

import pytest

from agentcap_cli.harness.proxy import ProxyProcess, start_proxy
from tests.support import cli
from tests.support.fakehub import FakeHub
from tests.support.upstream import Upstream


@pytest.fixture(scope="module")
def upstream():
    with Upstream() as up:
        yield up


@pytest.fixture
def fresh_upstream():
    with Upstream() as up:
        yield up


@pytest.fixture(scope="module")
def proxy(upstream, tmp_path_factory) -> ProxyProcess:
    """A power-user-mode capture proxy (no key registry) in front of ``upstream``."""
    run_dir = tmp_path_factory.mktemp("run") / "power-run"
    with start_proxy(upstream.url, run_dir, events=True) as p:
        yield p


@pytest.fixture(autouse=True)
def _no_claude_login(monkeypatch, tmp_path_factory):
    """No test (nor the commands it starts) finds the host's Claude login and sends it to a test upstream:
    a test that wants one makes its own (tests/test_subscription_auth.py)."""
    monkeypatch.delenv("CLAUDE_CODE_OAUTH_TOKEN", raising=False)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path_factory.getbasetemp() / "no-claude-login"))


@pytest.fixture(autouse=True)
def _reset_upstream(request):
    if "upstream" in request.fixturenames:
        up = request.getfixturevalue("upstream")
        up.gate.clear()
        up.sent_last_at = None
        up.gzip = False
    yield


@pytest.fixture
def hub(tmp_path):
    """The local Hub stand-in, and the environment that points huggingface_hub at it."""
    with FakeHub() as hub:
        hub.env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_" + "t" * 34, "HF_HOME": str(tmp_path / "hf")}
        yield hub


@pytest.fixture(scope="session")
def podman():
    """The machine's podman, its API service up and the base image built (once per session)."""
    from sandbox.images import ensure_image
    from sandbox.podman import get_podman

    p = get_podman()
    p.ensure_service()
    ensure_image(p, "base")
    return p


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The plugin agent of tests/support/plugin_agent.py, registered the way users do (an env var),
    with a Containerfile dir of its own the test may edit."""
    import sandbox.agents as agents_mod

    ctx = tmp_path / "plugin-image"
    ctx.mkdir()
    (ctx / "Containerfile").write_text("ARG BASE\nFROM ${BASE}\nRUN echo one > /marker\n")
    monkeypatch.setenv("AGENTCAP_TEST_PLUGIN_DIR", str(ctx))
    monkeypatch.setenv("AGENTCAP_AGENT_MODULES", "tests.support.plugin_agent")
    monkeypatch.setattr(agents_mod, "_plugins_loaded", False)
    monkeypatch.setattr(agents_mod, "_registered", {})
    sys.modules.pop("tests.support.plugin_agent", None)
    yield ctx
    sys.modules.pop("tests.support.plugin_agent", None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that runs containers is ``slow`` too, so ``pytest -m "not slow"`` is the quick loop."""
    for item in items:
        if item.get_closest_marker("podman") is not None and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def init_project(tmp_path_factory):
    """The project ``agentcap init`` writes (copy it before changing it)."""
    root = tmp_path_factory.mktemp("init") / "proj"
    r = cli.agentcap("init", str(root), cwd=root.parent)
    assert r.returncode == 0, r.stderr
    return root
