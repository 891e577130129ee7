"""Registry mode: the real upstream key goes only with what is captured (issue 25).

A real capture proxy with a key registry in front of a real loopback upstream that records every
request it gets. Requests are sent byte for byte (``http.client``: no client-side path cleaning)
over every class of path — model calls in every spelling a lenient server may route (case, ``//``,
``.``, ``..``, percent-escapes, ``;params``, a trailing slash), side endpoints, and everything else
— × the three key headers. The invariant, checked on every request: if the upstream received the
real key, the call has a capture record. Then per class: a model call is captured and forwarded
with the key; a side endpoint is forwarded with no key and no record; anything else is a 403 in
the API's error shape and never reaches the upstream.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentcap_addons.wire.capture.records import iter_captures
from agentcap_addons.wire.capture.registry import Attribution, KeyRegistry, new_key
from agentcap_cli.harness.proxy import ProxyProcess, start_proxy

REAL_KEY = "sk-real-upstream-0123456789abcdef0123"
KEY = new_key()
HEADERS = {
    "authorization": lambda k: f"Bearer {k}",
    "x-api-key": lambda k: k,
    "api-key": lambda k: k,
}

CALLS = ["/json/v1/chat/completions", "/json/v1/messages", "/json/v1/responses", "/json/v1/completions"]
SPELLINGS = {
    "as is": lambda p: p,
    "upper case": lambda p: p.upper().replace("/JSON/", "/json/"),
    "mixed case": lambda p: p.replace("/v1/", "/V1/").replace("completions", "Completions").replace("messages", "Messages"),
    "double slash": lambda p: p.replace("/v1/", "/v1//"),
    "trailing slash": lambda p: p + "/",
    "dot segment": lambda p: p.replace("/v1/", "/v1/./"),
    "dot-dot detour": lambda p: p.replace("/v1/", "/v1/files/../"),
    "percent-escaped letter": lambda p: p[:-1] + f"%{ord(p[-1]):02X}",
    "percent-escaped slash": lambda p: p.replace("/v1/", "/v1%2F"),
    "matrix param": lambda p: p + ";x=1",
    "with a query": lambda p: p + "?stream=false",
}
SIDE = [("GET", "/json/v1/models"), ("GET", "/json/v1/MODELS/"), ("GET", "/json/v1/models/claude-x"),
        ("POST", "/json/v1/messages/count_tokens"), ("POST", "/json/v1/responses/input_tokens")]
OTHER = [("POST", "/json/v1/files"), ("POST", "/json/v1/FILES"), ("POST", "/json/v1/embeddings"),
         ("POST", "/json/v1/audio/transcriptions"), ("GET", "/json/v1/chat/completions"),
         ("PUT", "/json/v1/messages"), ("DELETE", "/json/v1/files/file-1"), ("POST", "/json/v1/batches"),
         ("POST", "/json/v1/chat/completions/extra"), ("POST", "/json/v1/messages/batches"),
         ("POST", "/json/v1/chat/completions/../../files"), ("GET", "/json/"), ("OPTIONS", "/json/v1/messages")]


@dataclass
class Gate:
    proxy: ProxyProcess
    upstream: object


@pytest.fixture(scope="module")
def gate(upstream, tmp_path_factory) -> Iterator[Gate]:
    tmp = tmp_path_factory.mktemp("keygate")
    KeyRegistry(tmp / "keys").register(KEY, Attribution(run_id="r", task_id="t"))
    with start_proxy(upstream.url, tmp / "run", keys_dir=tmp / "keys", upstream_key_env="REAL_KEY",
                     env={**os.environ, "REAL_KEY": REAL_KEY}) as p:
        yield Gate(p, upstream)


def _send(g: Gate, method: str, path: str, header: str) -> tuple[int, bytes, list, int]:
    """(status, body, what the upstream received for it, captures added)."""
    before_up, before_caps = len(g.upstream.received), _n_caps(g.proxy.run_dir)
    conn = http.client.HTTPConnection(g.proxy.host, g.proxy.port, timeout=30)
    try:
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
        conn.request(method, path, body=body if method in ("POST", "PUT") else None,
                     headers={header: HEADERS[header](KEY), "content-type": "application/json"})
        resp = conn.getresponse()
        status, data = resp.status, resp.read()
    finally:
        conn.close()
    return status, data, g.upstream.received[before_up:], _n_caps(g.proxy.run_dir) - before_caps


def _n_caps(run_dir: Path) -> int:
    return sum(1 for _ in iter_captures(run_dir)) if (run_dir / "captures").is_dir() else 0


def _keys_in(received) -> list[str]:
    return [v for r in received for k, v in r.headers.items() if k in HEADERS]


def _holds_real_key(received) -> bool:
    return any(REAL_KEY in v for v in _keys_in(received))


@pytest.mark.parametrize("header", list(HEADERS))
@pytest.mark.parametrize("spelling", list(SPELLINGS))
@pytest.mark.parametrize("path", CALLS)
def test_a_model_call_in_any_spelling_is_captured_with_the_key(gate, path, spelling, header):
    status, _, received, added = _send(gate, "POST", SPELLINGS[spelling](path), header)
    assert added == 1, (status, received)
    assert len(received) == 1 and _holds_real_key(received), received
    assert KEY not in str(received)


@pytest.mark.parametrize("header", list(HEADERS))
@pytest.mark.parametrize(("method", "path"), SIDE)
def test_a_side_endpoint_goes_without_any_key(gate, method, path, header):
    status, _, received, added = _send(gate, method, path, header)
    assert len(received) == 1 and not _keys_in(received), received
    assert added == 0 and status == 200


@pytest.mark.parametrize("header", list(HEADERS))
@pytest.mark.parametrize(("method", "path"), OTHER)
def test_anything_else_is_refused_and_never_forwarded(gate, method, path, header):
    status, body, received, added = _send(gate, method, path, header)
    assert status == 403 and received == [] and added == 0, (status, received)
    error = json.loads(body)["error"]
    assert error["code"] == "agentcap_not_captured" and error["type"] == "permission_error"
    assert REAL_KEY not in body.decode() and KEY not in body.decode()


def test_a_path_added_to_agentcap_paths_is_captured_with_the_key_and_the_rest_refused(upstream, tmp_path):
    """The gate asks the capture addon, so it follows ``agentcap_paths`` (here only ``/embeddings``)."""
    KeyRegistry(tmp_path / "keys").register(KEY, Attribution(run_id="r"))
    with start_proxy(upstream.url, tmp_path / "run", keys_dir=tmp_path / "keys", upstream_key_env="REAL_KEY",
                     env={**os.environ, "REAL_KEY": REAL_KEY}, sets={"agentcap_paths": "/embeddings"}) as p:
        g = Gate(p, upstream)
        status, _, received, added = _send(g, "POST", "/json/v1/Embeddings", "authorization")
        assert added == 1 and _holds_real_key(received), (status, received)
        status, _, received, added = _send(g, "POST", "/json/v1/chat/completions", "authorization")
        assert status == 403 and received == [] and added == 0
