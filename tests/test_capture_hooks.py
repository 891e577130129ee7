"""The capture addons' hooks, driven with mitmproxy's own test helpers (taddons / tflow)."""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow, tutils

from agentcap_addons.capture import HTTPCapture
from agentcap_addons.keyauth import KeyAuth
from agentcap_addons.recorder import Recorder
from agentcap_addons.watchdog import SilentUpstream
from agentcap_addons.websocket import WebSocketCapture
from agentcap_addons.wire.capture.records import iter_captures
from agentcap_addons.wire.capture.registry import Attribution, KeyRegistry, new_key


def llm_flow(path="/v1/chat/completions", body=None, headers=None, method=b"POST"):
    content = json.dumps(body if body is not None else {"model": "m", "stream": True, "messages": []}).encode()
    hdrs = [(b"content-type", b"application/json"), (b"authorization", b"Bearer sk-client")]
    hdrs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    req = tutils.treq(method=method, path=path.encode(), headers=http.Headers(hdrs), content=content,
                      timestamp_start=time.time())
    return tflow.tflow(req=req)


def sse_response(status=200):
    return http.Response.make(status, b"", {"content-type": "text/event-stream"})


@dataclass
class Addons:
    """The capture addons loaded in one mitmproxy test context, writing to ``run``."""
    tctx: taddons.context
    keyauth: KeyAuth
    capture: HTTPCapture
    websocket: WebSocketCapture
    run: Path


@pytest.fixture
def addons(tmp_path) -> Iterator[Addons]:
    rec = Recorder()
    ka, cap, ws = KeyAuth(), HTTPCapture(rec), WebSocketCapture(rec)
    with taddons.context(ka, cap, ws) as tctx:
        tctx.configure(cap, agentcap_dir=str(tmp_path / "run"))
        yield Addons(tctx, ka, cap, ws, tmp_path / "run")


def run_stream(cap, f, chunks):
    cap.request(f)
    f.response = sse_response()
    f.response.timestamp_start = time.time()
    cap.responseheaders(f)
    assert callable(f.response.stream)
    out = [f.response.stream(c) for c in chunks] + [f.response.stream(b"")]
    cap.response(f)
    return out


def test_stream_is_passed_through_and_kept(addons):
    cap, run = addons.capture, addons.run
    f = llm_flow(body={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    chunks = [b'data: {"model": "served-1", "choices": []}\n\n', b"data: [DO", b"NE]\n\n"]
    out = run_stream(cap, f, chunks)
    assert out == chunks + [b""]  # forwarded unchanged, chunk for chunk
    [c] = list(iter_captures(run))
    req, resp = c.request, c.response
    assert req["seq"] == 1 and req["api"] == "openai-chat" and req["run_id"] == "run"
    assert req["body"]["messages"][0]["content"] == "hi"
    assert "authorization" not in req["headers"] and req["headers"]["content-type"] == "application/json"
    assert resp["stream"] is True and resp["raw"] == "".join(x.decode() for x in chunks)
    assert [n for _, n in resp["chunks"]] == [len(x) for x in chunks]
    assert resp["served_model"] == "served-1" and resp["error"] is None and resp["status_code"] == 200
    assert resp["timings"]["first_byte"] is not None and resp["timings"]["done"] >= 0


def test_only_llm_posts_are_captured(addons):
    cap, run = addons.capture, addons.run
    for f in [llm_flow("/v1/models", method=b"GET"), llm_flow("/v1/embeddings"), llm_flow("/v1/messages/count_tokens")]:
        cap.request(f)
        assert "agentcap.call" not in f.metadata
    assert list(iter_captures(run)) == []


def test_response_made_by_another_addon_is_recorded(addons):
    cap, run = addons.capture, addons.run
    f = llm_flow(body={"model": "m"})
    cap.request(f)
    f.response = http.Response.make(200, b'{"model": "r", "choices": []}', {"content-type": "application/json"})
    cap.response(f)
    [c] = list(iter_captures(run))
    assert c.response["body"] == {"model": "r", "choices": []} and c.response["stream"] is False
    assert c.response["served_model"] == "r"


@pytest.mark.parametrize(
    "msg,has_response,tcp_setup,kind",
    [
        ("Client disconnected.", True, 1.0, "client_disconnected"),
        ("Connection refused", False, None, "upstream_unreachable"),
        ("Server disconnected.", True, 1.0, "upstream_reset"),
        ("peer closed connection", False, 1.0, "upstream_reset"),
    ],
)
def test_error_kinds(addons, msg, has_response, tcp_setup, kind):
    cap, run = addons.capture, addons.run
    f = llm_flow()
    f.server_conn.timestamp_tcp_setup = tcp_setup
    cap.request(f)
    if has_response:
        f.response = sse_response()
        f.response.timestamp_start = time.time()
        cap.responseheaders(f)
        f.response.stream(b"data: partial\n\n")
    else:
        f.response = None
    f.error = tflow.terr(msg)
    cap.error(f)
    cap.error(f)  # a second error hook must not write twice or crash
    [c] = list(iter_captures(run))
    assert c.response["error"] == {"kind": kind, "message": msg}
    if has_response:
        assert c.response["raw"] == "data: partial\n\n"
    else:
        assert c.response["status_code"] is None


def test_shutdown_closes_calls_in_flight(addons):
    cap, run = addons.capture, addons.run
    f = llm_flow()
    cap.request(f)
    cap.done()
    [c] = list(iter_captures(run))
    assert c.response["error"]["kind"] == "proxy_shutdown"


def test_the_watchdog_cuts_only_a_silent_call_and_records_it_as_a_timeout(tmp_path):
    rec = Recorder()
    cap, dog = HTTPCapture(rec), SilentUpstream(rec)
    with taddons.context(cap, dog) as tctx:
        tctx.configure(cap, agentcap_dir=str(tmp_path / "run"))
        with pytest.raises(exceptions.OptionsError, match="agentcap_timeout: not a number"):
            tctx.configure(dog, agentcap_timeout="soon")
        with pytest.raises(exceptions.OptionsError, match="agentcap_timeout: must be > 0"):
            tctx.configure(dog, agentcap_timeout="0")
        tctx.configure(dog, agentcap_timeout="5")
        quiet, busy = llm_flow(), llm_flow()
        cap.request(quiet)
        cap.request(busy)
        calls = {f.id: c for f, c in rec.inflight.values()}
        start = time.monotonic()
        dog.check(start + 1)
        assert not any(c.timed_out for c in calls.values())
        calls[busy.id].last_activity = start + 4  # a chunk arrived since
        dog.check(start + 6)
        assert calls[quiet.id].timed_out and not calls[busy.id].timed_out
        quiet.error = tflow.terr("connection cancelled")
        cap.error(quiet)
        cap.done()
    errors = {c.request["request_id"]: c.response["error"]["kind"] for c in iter_captures(tmp_path / "run")}
    assert sorted(errors.values()) == ["proxy_shutdown", "timeout"]


def test_options_are_validated(addons):
    tctx, cap, run = addons.tctx, addons.capture, addons.run
    with pytest.raises(exceptions.OptionsError, match="agentcap_paths"):
        tctx.configure(cap, agentcap_paths=[])
    tctx.configure(cap, agentcap_paths=["/v1/generate"])
    f = llm_flow("/v1/generate")
    cap.request(f)
    cap.done()
    assert [c.request["path"] for c in iter_captures(run)] == ["/v1/generate"]


def test_registry_mode_swaps_keys_and_attributes(addons, tmp_path, monkeypatch):
    tctx, ka, cap = addons.tctx, addons.keyauth, addons.capture
    monkeypatch.setenv("REAL_KEY_FOR_TEST", "sk-real-123")
    reg = KeyRegistry(tmp_path / "keys")
    key = new_key()
    reg.register(key, Attribution(run_id="r9", task_id="t3", turn=2, cell="c1", repeat=1,
                                  captures_dir=str(tmp_path / "r9" / "captures")))
    tctx.configure(ka, agentcap_keys=str(tmp_path / "keys"), agentcap_upstream_key_env="REAL_KEY_FOR_TEST")

    bad = llm_flow(headers={})
    ka.request(bad)
    assert bad.response is not None and bad.response.status_code == 401
    assert json.loads(bad.response.content)["error"]["code"] == "agentcap_unknown_key"
    cap.request(bad)
    assert "agentcap.call" not in bad.metadata  # a refused call is not a capture

    anth = llm_flow("/v1/messages", headers={"x-api-key": key})
    del anth.request.headers["authorization"]
    ka.request(anth)
    assert anth.response is None and anth.request.headers["x-api-key"] == "sk-real-123"
    good = llm_flow()
    good.request.headers["authorization"] = f"Bearer {key}"
    ka.request(good)
    assert good.request.headers["authorization"] == "Bearer sk-real-123"
    run_stream(cap, good, [b"data: {}\n\n"])
    [c] = list(iter_captures(tmp_path / "r9"))
    r = c.request
    assert (r["run_id"], r["task_id"], r["turn"], r["cell"], r["repeat"]) == ("r9", "t3", 2, "c1", 1)
    reg.unregister(key)
    late = llm_flow()
    late.request.headers["authorization"] = f"Bearer {key}"
    ka.request(late)
    assert late.response.status_code == 401  # a key is dead as soon as its turn is over


def test_power_user_mode_leaves_headers_alone(addons):
    ka = addons.keyauth
    f = llm_flow()
    ka.request(f)
    assert f.response is None and f.request.headers["authorization"] == "Bearer sk-client"


def test_websocket_messages_become_captures(addons):
    ws, run = addons.websocket, addons.run
    f = tflow.twebsocketflow(messages=False)
    f.request.path = "/v1/responses"
    f.websocket.messages = []
    from mitmproxy.websocket import WebSocketMessage
    from wsproto.frame_protocol import Opcode

    def msg(from_client, obj):
        f.websocket.messages.append(WebSocketMessage(Opcode.TEXT, from_client, json.dumps(obj).encode()))
        ws.websocket_message(f)

    msg(False, {"type": "session.hello"})  # before any request: ignored
    msg(True, {"type": "response.create", "model": "gpt-5", "input": "a"})
    msg(False, {"type": "response.created", "response": {"id": "r1", "model": "gpt-5"}})
    msg(False, {"type": "response.completed", "response": {"id": "r1", "model": "gpt-5", "status": "completed", "output": []}})
    msg(True, {"type": "response.create", "model": "gpt-5", "input": "b"})
    msg(False, {"type": "response.created", "response": {"id": "r2", "model": "gpt-5"}})
    f.websocket.closed_by_client = False
    f.websocket.close_code = 1006
    ws.websocket_end(f)
    caps = list(iter_captures(run))
    assert [c.request["body"]["input"] for c in caps] == ["a", "b"]
    assert all(c.request["method"] == "WEBSOCKET" and c.request["api"] == "openai-responses" for c in caps)
    assert caps[0].response["error"] is None and caps[0].response["raw"].count("data: ") == 2
    assert caps[0].response["served_model"] == "gpt-5"
    assert caps[1].response["error"]["kind"] == "upstream_reset"
