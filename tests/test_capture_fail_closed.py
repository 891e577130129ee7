"""The capture proxy fails closed: a call whose request record cannot be written is answered with a
5xx in the API's error shape and never forwarded; a captures directory that disappears is made
again. Real mitmdump processes, a real loopback upstream, a real tmpfs filled up by the test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from agentcap_addons.wire.capture.policy import HeaderFilter, looks_like_credential
from agentcap_addons.wire.capture.records import iter_captures
from agentcap_addons.wire.util.jsonio import dumps, parse_json_body
from agentcap_cli.harness.proxy import start_proxy
from tests.support.cli import start

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def post(proxy, path: str = "/json/v1/chat/completions") -> httpx.Response:
    return httpx.post(proxy.base_url + path, json=BODY, timeout=30)


def test_a_removed_captures_directory_is_made_again(upstream, tmp_path):
    with start_proxy(upstream.url, tmp_path / "run", events=True) as p:
        assert post(p).status_code == 200
        p.events.wait_for(event="response")
        shutil.rmtree(tmp_path / "run" / "captures")
        n = len(upstream.received)
        r = post(p)
        assert r.status_code == 200 and len(upstream.received) == n + 1
        p.events.wait_for(event="response")
    [cap] = list(iter_captures(tmp_path / "run"))  # the second call, in the directory made anew
    assert cap.response["status_code"] == 200 and cap.request["body"] == BODY


def fill(path: Path) -> None:
    """Write to ``path`` until the filesystem is full (unbuffered: nothing is left to flush)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == 28  # ENOSPC
    finally:
        os.close(fd)


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs, mounted by the test and filled to the last byte."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "run" / "captures").mkdir(parents=True)
        fill(mnt / "filler")
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def assert_refused(r: httpx.Response) -> None:
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["code"] == "agentcap_capture_failed" and "could not be written" in err["message"]
    # the OpenAI and Anthropic SDKs read this shape as an API error with that message
    assert r.json()["type"] == "error"


def test_a_full_disk_refuses_the_call_and_forwards_nothing(upstream, full_disk):
    with start_proxy(upstream.url, full_disk / "run", events=True) as p:
        n = len(upstream.received)
        r = post(p)
        assert_refused(r)
        ev = p.events.wait_for(event="capture_failed")
        assert ev["record"] == "request" and "No space left" in ev["reason"]
        assert ev["path"] == "/json/v1/chat/completions" and ev["run_id"] == "run"
        assert len(upstream.received) == n  # never forwarded
        # anything that is not a captured call still passes
        assert httpx.get(p.base_url + "/health", timeout=30).status_code == 200
        # space again: calls go through and are recorded
        (full_disk / "filler").unlink()
        assert post(p).status_code == 200
        p.events.wait_for(event="response")
    caps = list(iter_captures(full_disk / "run"))
    assert len(caps) == 1 and caps[0].response["status_code"] == 200


def test_a_full_disk_refuses_calls_written_by_the_writer_process_too(upstream, tmp_path):
    """With two calls in flight, request records go through the writer process; when that process
    cannot write one (the disk filled up meanwhile), the proxy retries itself, then refuses."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    held: list[threading.Thread] = []
    try:
        with start_proxy(upstream.url, mnt / "run", events=True) as p:
            upstream.gate.clear()
            base = len(upstream.received)
            for _ in range(2):  # two calls held in flight by the upstream
                t = threading.Thread(target=post, args=(p, "/held/v1/chat/completions"))
                t.start()
                held.append(t)
                p.events.wait_for(event="request")
            fill(mnt / "filler")
            assert_refused(post(p))
            assert p.events.wait_for(event="capture_failed")["record"] == "request"
            (mnt / "filler").unlink()
            upstream.gate.set()
            for t in held:
                t.join(30)
            for _ in range(2):
                p.events.wait_for(event="response")
            assert len(upstream.received) == base + 2  # the two held calls; the refused one never went
        assert sorted(c.response["status_code"] for c in iter_captures(mnt / "run")) == [200, 200]
    finally:
        upstream.gate.set()
        for t in held:
            t.join(30)
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_credential_headers_are_never_kept_whatever_the_allowlist():
    f = HeaderFilter(["x-*", "x-portkey-api-key", "authorization"])
    kept = f([("x-portkey-api-key", "s1"), ("X-Goog-Api-Key", "s2"), ("x-amz-security-token", "s3"),
              ("x-auth-token", "s4"), ("authorization", "s5"), ("x-title", "mine"),
              ("x-ratelimit-remaining-tokens", "42")])
    assert kept == {"x-title": "mine", "x-ratelimit-remaining-tokens": "42"}
    assert not looks_like_credential("session_id") and looks_like_credential("cf-access-client-secret")


def test_non_finite_numbers_are_written_as_strict_json():
    ok, body = parse_json_body(b'{"temperature": NaN, "top_p": Infinity, "x": [-Infinity, 1.5]}')
    assert ok and body == {"temperature": "NaN", "top_p": "Infinity", "x": ["-Infinity", 1.5]}
    text = dumps({"a": float("nan"), "b": [float("inf")], "c": 2.5})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict {c}")) == \
        {"a": "NaN", "b": ["Infinity"], "c": 2.5}


def test_a_non_strict_request_body_gives_a_strict_capture(proxy, upstream):
    r = httpx.post(proxy.base_url + "/json/v1/chat/completions", timeout=30,
                   content=b'{"model": "m", "temperature": NaN}', headers={"content-type": "application/json"})
    assert r.status_code == 200
    ev = proxy.events.wait_for(event="request", path="/json/v1/chat/completions")
    path = Path(proxy.run_dir) / "captures" / f"{ev['request_id']}.request.json"
    record = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict {c}"))
    assert record["body"] == {"model": "m", "temperature": "NaN"}
    proxy.events.wait_for(event="response", request_id=ev["request_id"])


def test_the_refusal_log_line_redacts_query_keys(upstream, tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    log = open(tmp_path / "proxy.log", "wb")
    try:
        with start_proxy(upstream.url, tmp_path / "run", keys_dir=keys, events=True, log=log) as p:
            r = httpx.post(p.base_url + "/json/v1/chat/completions?key=AIzaSySecretValue123&api-version=2",
                           json=BODY, headers={"authorization": "Bearer nope"}, timeout=30)
            assert r.status_code == 401
    finally:
        log.close()
    text = (tmp_path / "proxy.log").read_text()
    assert "refused POST /json/v1/chat/completions?" in text and "api-version=2" in text
    assert "AIzaSySecretValue123" not in text


def test_sigterm_removes_the_proxy_key_directory(upstream, tmp_path):
    """``agentcap proxy --upstream-key-env`` makes a private key directory; a SIGTERM (CI timeout,
    ``kill``) must not leave it behind."""
    import signal

    with start("proxy", "--upstream", upstream.url, "--port", "0", "--dir", str(tmp_path / "run"),
               "--upstream-key-env", "REAL", REAL="sk-real", TMPDIR=str(tmp_path)) as proc:
        for line in proc.stdout:
            if "Ctrl-C" in line:
                break
        assert [d.name for d in tmp_path.glob("agentcap-keys-*")]  # made while it runs
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert list(tmp_path.glob("agentcap-keys-*")) == []


