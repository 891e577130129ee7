"""Shared fixtures: a real scriptable upstream and real capture proxies (mitmdump processes) on loopback."""

from __future__ import annotations

import socket

import pytest

from agentcap_cli.proxyproc import ProxyProcess, start_proxy
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
def _reset_upstream(request):
    if "upstream" in request.fixturenames:
        up = request.getfixturevalue("upstream")
        up.gate.clear()
        up.sent_last_at = None
        up.gzip = False
    yield


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
