"""`agentcap proxy` and `mitmdump -s agentcap_addons/capture.py` run the way a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from agentcap_addons.wire.store import iter_captures
from agentcap_cli.commands.proxy import split_upstream
from agentcap_cli.main import cli

REPO = Path(__file__).resolve().parent.parent
BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
AGENTCAP = [sys.executable, "-c", "from agentcap_cli.main import main; main()"]


def read_exports(proc: subprocess.Popen) -> dict[str, str]:
    """The ``export K=V`` lines the proxy prints, up to its closing "Ctrl-C" line."""
    env: dict[str, str] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("export "):
            k, _, v = line[len("export "):].strip().partition("=")
            env[k] = v
        elif "Ctrl-C" in line:
            break
    return env


def test_split_upstream():
    assert split_upstream("https://router.huggingface.co/v1") == ("https://router.huggingface.co", "/v1")
    assert split_upstream("http://127.0.0.1:8000") == ("http://127.0.0.1:8000", "")
    for bad in ["ftp://x", "router.huggingface.co", "https://u:p@h/v1", "https://h/v1?k=1"]:
        with pytest.raises(ValueError):
            split_upstream(bad)


def test_bad_flags_exit_2_naming_the_flag(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    r = CliRunner().invoke(cli, ["proxy", "--upstream", "ftp://x"])
    assert r.exit_code == 2 and "--upstream" in r.output
    r = CliRunner().invoke(cli, ["proxy", "--upstream", "http://127.0.0.1:1", "--upstream-key-env", "NOPE_NOT_SET",
                                 "--dir", str(tmp_path / "d")])
    assert r.exit_code == 2 and "--upstream-key-env" in r.output and "NOPE_NOT_SET" in r.output
    assert not (tmp_path / "d").exists()  # nothing half-made
    r = CliRunner().invoke(cli, ["proxy", "--upstream", "http://127.0.0.1:1", "--port", "70000"])
    assert r.exit_code == 2 and "--port" in r.output


def test_agentcap_proxy_power_user_then_ctrl_c(upstream, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(AGENTCAP + ["proxy", "--upstream", upstream.url + "/sse/v1", "--port", "0", "--dir", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        env = read_exports(proc)
        assert env["OPENAI_BASE_URL"].endswith("/sse/v1") and "OPENAI_API_KEY" not in env
        r = httpx.post(env["OPENAI_BASE_URL"] + "/chat/completions", json=BODY,
                       headers={"authorization": "Bearer sk-user-own"}, timeout=30)
        assert r.status_code == 200 and r.content == b"".join(upstream.sse_events)
        assert upstream.received[-1].headers["authorization"] == "Bearer sk-user-own"  # passed through
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "1 capture(s)" in err
    [cap] = list(iter_captures(run_dir))
    assert cap.response["error"] is None and cap.request["path"] == "/sse/v1/chat/completions"


def test_agentcap_proxy_hands_out_its_own_key(upstream, tmp_path):
    env_vars = dict(os.environ, MY_REAL_KEY="sk-real-xyz")
    proc = subprocess.Popen(AGENTCAP + ["proxy", "--upstream", upstream.url, "--port", "0", "--upstream-key-env", "MY_REAL_KEY"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env_vars)
    try:
        env = read_exports(proc)
        key = env["OPENAI_API_KEY"]
        assert key.startswith("acp-") and env["ANTHROPIC_API_KEY"] == key
        ok = httpx.post(env["ANTHROPIC_BASE_URL"] + "/json/v1/messages", json={"model": "m"},
                        headers={"x-api-key": key}, timeout=30)
        assert ok.status_code == 200 and upstream.received[-1].headers["x-api-key"] == "sk-real-xyz"
        bad = httpx.post(env["OPENAI_BASE_URL"] + "/chat/completions", json=BODY,
                         headers={"authorization": "Bearer sk-real-xyz"}, timeout=30)
        assert bad.status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    runs = list((tmp_path / ".agentcap").iterdir())  # default run dir under the workspace (cwd)
    assert len(runs) == 1 and runs[0].name.startswith("proxy-127.0.0.1-")
    [cap] = list(iter_captures(runs[0]))
    assert cap.request["api"] == "anthropic-messages" and cap.request["run_id"] == runs[0].name


def test_mitmdump_dash_s_as_documented(upstream, tmp_path):
    """The power user's way in: the real `mitmdump` console script and the addon file by path."""
    mitmdump = Path(sys.executable).parent / "mitmdump"
    r, w = os.pipe()
    proc = subprocess.Popen(
        [str(mitmdump), "-s", str(REPO / "agentcap_addons" / "capture.py"), "--mode", f"reverse:{upstream.url}",
         "--listen-host", "127.0.0.1", "--listen-port", "0", "--set", f"agentcap_dir={tmp_path / 'run'}",
         "--set", f"agentcap_ready_fd={w}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(w,), cwd=tmp_path,
    )
    os.close(w)
    with os.fdopen(r) as ready:
        import json

        port = json.loads(ready.readline())["listen"][0][1]
    try:
        resp = httpx.post(f"http://127.0.0.1:{port}/json/v1/chat/completions", json={"model": "x"}, timeout=30)
        assert resp.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    [cap] = list(iter_captures(tmp_path / "run"))
    assert cap.response["body"]["model"] == "test-model"


def test_agentcap_proxy_web_serves_mitmweb(upstream, tmp_path):
    from tests.conftest import closed_port

    web_port = closed_port()
    proc = subprocess.Popen(AGENTCAP + ["proxy", "--upstream", upstream.url, "--port", "0", "--web", "--web-port", str(web_port),
                                        "--dir", str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        env = read_exports(proc)
        httpx.post(env["OPENAI_BASE_URL"].removesuffix("/v1") + "/sse/v1/chat/completions",
                   json={"model": "w", "stream": True, "messages": [{"role": "user", "content": "hi there"}]}, timeout=30)
        web = httpx.Client(base_url=f"http://127.0.0.1:{web_port}", timeout=30)
        page = web.get("/")
        assert page.status_code in (200, 403) and "mitmproxy" in page.text.lower()
        # the LLM contentview is loaded: mitmweb renders the streamed response decoded
        [flow] = [f for f in web.get("/flows").json() if f["request"]["path"].endswith("/chat/completions")]
        shown = web.get(f"/flows/{flow['id']}/response/content/llm.json").json()
        assert shown["description"].startswith("LLM response")
        lines = ["".join(text for _, text in line) for line in shown["lines"]]
        assert any(line.startswith("model ") and "finish" in line for line in lines)
        request = web.get(f"/flows/{flow['id']}/request/content/llm.json").json()
        assert any("hi there" in "".join(t for _, t in line) for line in request["lines"])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert len(list(iter_captures(tmp_path / "run"))) == 1
