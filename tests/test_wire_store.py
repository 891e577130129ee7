"""Capture files and the key registry: the on-disk contracts."""

import base64
import json
import os
import threading

import pytest

from agentcap_addons.wire.capture.policy import (
    api_kind,
    filter_headers,
    path_matches,
    redact_url,
)
from agentcap_addons.wire.capture.records import (
    CaptureDir,
    body_fields,
    iter_captures,
    new_request_id,
    raw_fields,
)
from agentcap_addons.wire.capture.registry import Attribution, KeyRegistry, new_key
from agentcap_addons.wire.util.clock import parse_rfc3339_ns, rfc3339_ns
from agentcap_addons.wire.util.files import atomic_write_json
from agentcap_addons.wire.util.jsonio import dumps


def test_rfc3339_ns_roundtrip_and_shape():
    ns = 1_790_000_000_123_456_789
    s = rfc3339_ns(ns)
    assert s.endswith(".123456789Z") and len(s) == len("2026-09-21T12:53:20.123456789Z")
    assert parse_rfc3339_ns(s) == ns
    assert parse_rfc3339_ns("2026-01-01T00:00:00.5+01:00") == parse_rfc3339_ns("2025-12-31T23:00:00.5Z")
    with pytest.raises(ValueError):
        parse_rfc3339_ns("yesterday")


def test_seq_continues_across_writers_and_iter_is_in_seq_order(tmp_path):
    d = CaptureDir(tmp_path / "captures")
    rids = []
    for _ in range(3):
        rid = new_request_id()
        rids.append(rid)
        d.write_request({"request_id": rid, "seq": d.next_seq(), "captured_at": rfc3339_ns()})
    d2 = CaptureDir(tmp_path / "captures")  # e.g. a resumed run with a new proxy
    assert d2.next_seq() == 4
    got = [c.request_id for c in iter_captures(tmp_path)]  # run dir resolves to captures/
    assert got == rids  # file names are random; order comes from seq
    assert all(c.response is None for c in iter_captures(tmp_path))


def test_seq_is_unique_under_threads(tmp_path):
    d = CaptureDir(tmp_path)
    seen = []
    lock = threading.Lock()

    def work():
        for _ in range(200):
            s = d.next_seq()
            with lock:
                seen.append(s)

    ts = [threading.Thread(target=work) for _ in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert sorted(seen) == list(range(1, 1601))


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"b": 1, "a": 2})
    assert os.listdir(tmp_path) == ["a.json"]
    assert list(json.loads((tmp_path / "a.json").read_text())) == ["b", "a"]  # key order kept


def test_body_and_raw_fields():
    assert body_fields(b'{"z": 1, "a": [1.5, null]}') == {"body": {"z": 1, "a": [1.5, None]}}
    assert body_fields(b"<html>") == {"body_b64": base64.b64encode(b"<html>").decode()}
    assert body_fields(b"") == {"body": None}
    assert raw_fields("data: é\n\n".encode()) == {"raw": "data: é\n\n"}
    assert raw_fields(b"\xff\xfe") == {"raw_b64": "//4="}
    # a lone surrogate (legal in JSON text) still round-trips
    assert json.loads(dumps(json.loads('{"s": "\\ud800"}'))) == {"s": "\ud800"}


def test_registry_register_lookup_unregister(tmp_path):
    reg = KeyRegistry(tmp_path / "keys")
    key = new_key()
    assert key.startswith("acp-") and reg.lookup(key) is None
    a = Attribution(run_id="r1", task_id="t1", turn=2, cell="c", repeat=0, captures_dir="/x")
    reg.register(key, a)
    other = KeyRegistry(tmp_path / "keys")  # another process's view
    assert other.lookup(key) == a
    assert not any(key in p.read_text() or key in p.name for p in (tmp_path / "keys").iterdir())
    reg.register(key, Attribution(run_id="r1", turn=3))
    assert other.lookup(key).turn == 3  # changes are seen, not cached stale
    reg.unregister(key)
    assert other.lookup(key) is None
    assert other.lookup("") is None


def test_policy_paths_api_headers_urls():
    assert path_matches("/v1/chat/completions?x=1", ["/chat/completions"])
    assert path_matches("/openai/v1/responses", ["/responses"])
    assert not path_matches("/v1/messages/count_tokens", ["/messages"])
    assert path_matches("/api/generate", ["/api/*"])
    assert [api_kind(p) for p in ["/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/completions"]] == [
        "openai-chat", "openai-responses", "anthropic-messages", "other"]
    h = filter_headers([("Authorization", "Bearer s"), ("X-Api-Key", "s"), ("Cookie", "c"), ("User-Agent", "ua"),
                        ("X-Stainless-Lang", "js"), ("X-Secret-Thing", "s")], ["user-agent", "x-stainless-*", "authorization"])
    assert h == {"user-agent": "ua", "x-stainless-lang": "js"}
    assert redact_url("https://u:p@h/v1/x?key=SECRET&api-version=2") == "https://h/v1/x?key=REDACTED&api-version=2"


@pytest.mark.parametrize("value", [10**5000, [10**5000], {"a": [{"b": 10**5000}]}, {float("nan"): 1}],
                         ids=["int", "in a list", "nested", "NaN key"])
def test_dumps_refuses_what_json_cannot_hold_once_never_looping(value):
    """A value with no JSON form raises ValueError at once (it used to recurse until RecursionError)."""
    from agentcap_addons.wire.util.jsonio import dumps

    with pytest.raises(ValueError):
        dumps(value)
