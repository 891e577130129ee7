"""A real mitmdump process with the capture addon, in reverse mode in front of a real streaming
upstream on loopback, driven by a real HTTP client (httpx)."""

from __future__ import annotations

import base64
import json
import socket
import threading

import httpx
import pytest

from agentcap_addons.wire.api.decode import decode_response
from agentcap_addons.wire.capture.records import read_capture
from agentcap_addons.wire.capture.registry import Attribution, KeyRegistry, new_key
from agentcap_cli.harness.proxy import start_proxy
from tests.conftest import closed_port
from tests.support.upstream import responses_ws_events

BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def captured(proxy, rid_event):
    return read_capture(proxy.run_dir, rid_event["request_id"])


def roundtrip(proxy, path, **kw):
    """POST through the proxy; return (httpx response, the capture) once both records exist."""
    r = httpx.post(proxy.base_url + path, timeout=30, **kw)
    req_ev = proxy.events.wait_for(event="request", path=path)
    proxy.events.wait_for(event="response", request_id=req_ev["request_id"])
    return r, captured(proxy, req_ev)


def test_sse_is_byte_identical(proxy, upstream):
    r, cap = roundtrip(proxy, "/sse/v1/chat/completions", json=BODY)
    wire = b"".join(upstream.sse_events)
    assert r.status_code == 200 and r.content == wire
    assert cap.response["raw"].encode() == wire and cap.response_bytes() == wire
    assert cap.request["body"] == BODY and list(cap.request["body"]) == list(BODY)
    assert cap.response["served_model"] == "test-model"
    assert len(cap.response["chunks"]) >= 1 and sum(n for _, n in cap.response["chunks"]) == len(wire)
    d = decode_response(cap)
    assert d.content.startswith("hello0 ") and d.finish_reason == "stop" and d.usage.prompt_tokens == 7


def test_stream_is_not_buffered(proxy, upstream):
    """The client holds the first event while the upstream still holds back the last one."""
    with httpx.stream("POST", proxy.base_url + "/gate/v1/chat/completions", json=BODY, timeout=30) as r:
        it = r.iter_raw()
        first = next(it)
        assert first.startswith(b"data: ") and upstream.sent_last_at is None
        upstream.gate.set()
        rest = b"".join(it)
    assert first + rest == b"".join(upstream.sse_events)
    ev = proxy.events.wait_for(event="request", path="/gate/v1/chat/completions")
    proxy.events.wait_for(event="response", request_id=ev["request_id"])


def test_non_streamed_json_and_gzip(proxy, upstream):
    upstream.gzip = True
    r, cap = roundtrip(proxy, "/json/v1/chat/completions", json={"model": "m"}, headers={"accept-encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip" and r.json()["choices"][0]["message"]["content"] == "hi there"
    assert cap.response["stream"] is False
    assert cap.response["body"]["choices"][0]["message"]["content"] == "hi there"
    assert cap.response["headers"]["content-encoding"] == "gzip" and cap.response["served_model"] == "test-model"


@pytest.mark.parametrize("code", [400, 404, 429, 500, 503])
def test_error_statuses_are_kept(proxy, code):
    r, cap = roundtrip(proxy, f"/status/{code}/v1/chat/completions", json=BODY)
    assert r.status_code == code
    assert cap.response["status_code"] == code and cap.response["error"] is None
    assert cap.response["body"]["error"]["message"] == f"status {code}"


def test_non_json_bodies_are_base64(proxy):
    r, cap = roundtrip(proxy, "/text/v1/chat/completions", content=b"not json \xff")
    assert r.status_code == 200
    assert base64.b64decode(cap.request["body_b64"]) == b"not json \xff"
    assert base64.b64decode(cap.response["body_b64"]) == b"<html>not json</html>"


def test_non_utf8_stream_is_lossless(proxy):
    r, cap = roundtrip(proxy, "/bytes/v1/chat/completions", json=BODY)
    assert "raw" not in cap.response
    assert base64.b64decode(cap.response["raw_b64"]) == r.content == b'data: {"x": "caf\xe9"}\n\ndata: \xff\xfe\n\n'


def test_other_paths_pass_untouched_and_unrecorded(proxy):
    r = httpx.get(proxy.base_url + "/v1/models", timeout=10)
    assert r.json() == {"ok": True}
    r, cap = roundtrip(proxy, "/json/v1/chat/completions", json={"model": "after"})
    assert cap.request["body"] == {"model": "after"}  # the next event is this call, not /v1/models


def test_upstream_reset_mid_stream(proxy):
    with pytest.raises(httpx.HTTPError):
        with httpx.stream("POST", proxy.base_url + "/reset/v1/chat/completions", json=BODY, timeout=30) as r:
            for _ in r.iter_raw():
                pass
    ev = proxy.events.wait_for(event="request", path="/reset/v1/chat/completions")
    done = proxy.events.wait_for(event="response", request_id=ev["request_id"])
    assert done["error"] == "upstream_reset"
    cap = captured(proxy, ev)
    assert cap.response["error"]["kind"] == "upstream_reset"
    assert cap.response["raw"].count("data: ") == 2 and cap.response["status_code"] == 200


def test_client_disconnect_mid_stream(proxy, upstream):
    with httpx.stream("POST", proxy.base_url + "/gate/v1/chat/completions", json=BODY, timeout=30) as r:
        first = next(r.iter_raw())
    # the client is gone; let the upstream finish its side
    ev = proxy.events.wait_for(event="request", path="/gate/v1/chat/completions")
    done = proxy.events.wait_for(event="response", request_id=ev["request_id"])
    upstream.gate.set()
    assert done["error"] == "client_disconnected"
    cap = captured(proxy, ev)
    assert cap.response["raw"].encode().startswith(first)
    assert cap.response["error"]["kind"] == "client_disconnected"


def test_upstream_unreachable(tmp_path):
    with start_proxy(f"http://127.0.0.1:{closed_port()}", tmp_path / "run", events=True) as p:
        r = httpx.post(p.base_url + "/v1/chat/completions", json=BODY, timeout=30)
        assert r.status_code == 502
        # in the APIs' error shape, not mitmproxy's HTML page: the agent's SDK shows the reason
        assert r.headers["content-type"] == "application/json"
        err = r.json()["error"]
        assert err["type"] == "api_error" and err["code"] == "agentcap_upstream_error"
        assert err["message"].startswith("agentcap capture proxy: ") and len(err["message"]) > 24
        ev = p.events.wait_for(event="request")
        assert p.events.wait_for(event="response", request_id=ev["request_id"])["error"] == "upstream_unreachable"
        cap = read_capture(p.run_dir, ev["request_id"])
    assert cap.response["status_code"] is None and cap.response["error"]["kind"] == "upstream_unreachable"


def test_silent_upstream_times_out(fresh_upstream, tmp_path):
    with start_proxy(fresh_upstream.url, tmp_path / "run", events=True, sets={"agentcap_timeout": "0.5"}) as p:
        with pytest.raises(httpx.HTTPError):
            with httpx.stream("POST", p.base_url + "/hang/v1/chat/completions", json=BODY, timeout=30) as r:
                for _ in r.iter_raw():
                    pass
        ev = p.events.wait_for(event="request")
        assert p.events.wait_for(event="response", request_id=ev["request_id"])["error"] == "timeout"
        cap = read_capture(p.run_dir, ev["request_id"])
    assert cap.response["raw"].count("data: ") == 1


def test_shutdown_mid_stream_still_writes_a_response(fresh_upstream, tmp_path):
    p = start_proxy(fresh_upstream.url, tmp_path / "run", events=True)
    with httpx.stream("POST", p.base_url + "/gate/v1/chat/completions", json=BODY, timeout=30) as r:
        next(r.iter_raw())
        ev = p.events.wait_for(event="request")
        assert p.stop() == 0
    done = p.events.wait_for(event="response", request_id=ev["request_id"])
    p.close()
    cap = read_capture(p.run_dir, ev["request_id"])
    assert cap.response is not None and cap.response["error"]["kind"] == done["error"]
    assert done["error"] in ("proxy_shutdown", "client_disconnected", "upstream_reset")


def test_parent_death_stops_the_proxy(fresh_upstream, tmp_path):
    p = start_proxy(fresh_upstream.url, tmp_path / "run")
    p.proc.stdin.close()  # what the OS does when the parent dies
    assert p.proc.wait(20) == 0


def _ws_client_frame(payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + masked


def test_websocket_responses_api(proxy):
    """codex's transport: Responses API events over a WebSocket, one capture per request message."""
    host, port = proxy.base_url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(
        b"GET /ws/v1/responses HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    f = s.makefile("rb")
    assert b"101" in f.readline()
    while f.readline() not in (b"\r\n", b""):
        pass
    req = {"type": "response.create", "model": "gpt-ws", "input": "hello"}
    s.sendall(_ws_client_frame(json.dumps(req).encode()))
    got = []
    for _ in responses_ws_events("gpt-ws", "hello"):
        b1, b2 = f.read(2)
        n = b2 & 0x7F
        if n == 126:
            n = int.from_bytes(f.read(2), "big")
        got.append(json.loads(f.read(n)))
    s.close()
    assert got[-1]["type"] == "response.completed"
    ev = proxy.events.wait_for(event="request", path="/ws/v1/responses")
    assert proxy.events.wait_for(event="response", request_id=ev["request_id"])["error"] is None
    cap = captured(proxy, ev)
    assert cap.request["method"] == "WEBSOCKET" and cap.request["body"] == req
    d = decode_response(cap)
    assert d.content == "ok" and d.finish_reason == "completed" and d.model == "gpt-ws"


def test_32_concurrent_streams_with_keys_attributed_and_real_key_injected(fresh_upstream, tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTCAP_TEST_REAL_KEY", "sk-REAL-never-on-disk-42")
    keys_dir = tmp_path / "keys"
    run_dir = tmp_path / "run"
    reg = KeyRegistry(keys_dir)
    keys = [new_key() for _ in range(32)]
    for i, k in enumerate(keys):
        reg.register(k, Attribution(run_id="r", task_id=f"task{i}", turn=i % 4, captures_dir=str(run_dir / "captures")))
    p = start_proxy(fresh_upstream.url, run_dir, keys_dir=keys_dir, upstream_key_env="AGENTCAP_TEST_REAL_KEY", events=True)
    results: dict[int, bytes] = {}
    barrier = threading.Barrier(32)

    def client(i: int) -> None:
        body = dict(BODY, marker=i)
        headers = {"authorization": f"Bearer {keys[i]}"} if i % 2 else {"x-api-key": keys[i]}
        barrier.wait(30)
        with httpx.Client(timeout=60) as c:
            results[i] = c.post(p.base_url + "/sse/v1/chat/completions", json=body, headers=headers).content

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    refused = httpx.post(p.base_url + "/sse/v1/chat/completions", json=BODY, headers={"authorization": "Bearer acp-nope"})
    assert refused.status_code == 401 and "not registered" in refused.json()["error"]["message"]
    rids = set()
    while len(rids) < 32:
        rids.add(p.events.wait_for(event="response")["request_id"])
    p.close()

    wire = b"".join(fresh_upstream.sse_events)
    assert all(results[i] == wire for i in range(32))
    from agentcap_addons.wire.capture.records import iter_captures

    caps = list(iter_captures(run_dir))
    assert len(caps) == 32 and {c.request_id for c in caps} == rids
    assert sorted(c.seq for c in caps) == list(range(1, 33))
    for c in caps:
        assert c.request["task_id"] == f"task{c.request['body']['marker']}"  # never mixed
        assert c.response["raw"].encode() == wire and c.response["error"] is None
    llm = [r for r in fresh_upstream.received if r.path.endswith("/chat/completions")]
    assert len(llm) == 32  # the refused call never reached the upstream
    for r in llm:
        got = r.headers.get("authorization") or r.headers.get("x-api-key")
        assert got in ("Bearer sk-REAL-never-on-disk-42", "sk-REAL-never-on-disk-42")
        assert not any(k in json.dumps(r.headers) for k in keys)
    for f in run_dir.rglob("*"):
        if f.is_file():
            text = f.read_bytes()
            assert b"sk-REAL" not in text and b"acp-" not in text, f


def test_the_sdks_read_the_proxys_own_error_and_the_html_page_stays_when_asked(tmp_path):
    import anthropic
    import openai

    with start_proxy(f"http://127.0.0.1:{closed_port()}", tmp_path / "run") as p:
        with pytest.raises(openai.APIStatusError) as o:
            openai.OpenAI(base_url=p.base_url + "/v1", api_key="x", max_retries=0).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(anthropic.APIStatusError) as a:
            anthropic.Anthropic(base_url=p.base_url, api_key="x", max_retries=0).messages.create(
                model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    for exc in (o.value, a.value):
        assert exc.status_code == 502 and "agentcap capture proxy: " in str(exc)
    with start_proxy(f"http://127.0.0.1:{closed_port()}", tmp_path / "run2", sets={"agentcap_json_errors": "false"}) as p:
        r = httpx.post(p.base_url + "/v1/chat/completions", json=BODY, timeout=30)
    assert r.status_code == 502 and r.headers["content-type"].startswith("text/html")
