"""`agentcap proxy` and `mitmdump -s agentcap_addons/capture.py` run the way a user runs them."""

from __future__ import annotations

import json
import os
import select
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from agentcap_addons.wire.capture.records import iter_captures
from agentcap_cli.commands.proxy import split_upstream
from agentcap_cli.main import cli
from tests.support.cli import argv, background, read_exports, start

REPO = Path(__file__).resolve().parent.parent
BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


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
    with start("proxy", "--upstream", upstream.url + "/sse/v1", "--port", "0", "--dir", str(run_dir),
               cwd=tmp_path) as proc:
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
    with start("proxy", "--upstream", upstream.url, "--port", "0", "--upstream-key-env", "MY_REAL_KEY",
               cwd=tmp_path, MY_REAL_KEY="sk-real-xyz") as proc:
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
    with background(
        [str(mitmdump), "-s", str(REPO / "agentcap_addons" / "capture.py"), "--mode", f"reverse:{upstream.url}",
         "--listen-host", "127.0.0.1", "--listen-port", "0", "--set", f"agentcap_dir={tmp_path / 'run'}",
         "--set", f"agentcap_ready_fd={w}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(w,), cwd=tmp_path,
    ) as proc:
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
    """mitmweb behind its API token (printed by agentcap with the URL), the LLM contentview loaded,
    and the real upstream key never readable from its API or a saved flow file — not even while the
    request is in flight."""
    from tests.conftest import closed_port

    web_port = closed_port()
    real_key = "sk-real-upstream-key-0123456789abcdef"
    with start("proxy", "--upstream", upstream.url, "--port", "0", "--web", "--web-port", str(web_port),
               "--dir", str(tmp_path / "run"), "--upstream-key-env", "REAL_KEY", cwd=tmp_path, REAL_KEY=real_key) as proc:
        held = None
        try:
            lines: list[str] = []
            env = read_exports(proc, lines)
            [ui] = [line.split("mitmweb UI: ", 1)[1].strip() for line in lines if "mitmweb UI: " in line]
            assert ui.startswith(f"http://127.0.0.1:{web_port}/?token=")
            token = ui.split("token=", 1)[1]
            anonymous = httpx.Client(base_url=f"http://127.0.0.1:{web_port}", timeout=30)
            assert anonymous.get("/flows").status_code == 403  # no token: refused
            web = httpx.Client(base_url=f"http://127.0.0.1:{web_port}", timeout=30,
                               headers={"Authorization": f"Bearer {token}"})
            base = env["OPENAI_BASE_URL"].removesuffix("/v1")
            agent_key = env["OPENAI_API_KEY"]
            auth = {"Authorization": f"Bearer {agent_key}"}
            r = httpx.post(base + "/sse/v1/chat/completions", headers=auth, timeout=30,
                           json={"model": "w", "stream": True, "messages": [{"role": "user", "content": "hi there"}]})
            assert r.status_code == 200
            assert upstream.received[-1].headers["authorization"] == f"Bearer {real_key}"  # injected on the wire
            # a call in flight (the upstream holds even its headers): the real key is on that flow
            # only while mitmproxy sends it, and the flow is kept out of mitmweb's list meanwhile
            upstream.gate.clear()
            n = len(upstream.received)
            import threading

            held = threading.Thread(target=lambda: httpx.post(base + "/held/v1/chat/completions", headers=auth,
                                                             json={"model": "w"}, timeout=30))
            held.start()
            while len(upstream.received) == n:  # bounded by the request's own 30 s timeout
                held.join(0.01)
                assert held.is_alive()
            for path in ("/flows", "/flows/dump"):
                assert real_key not in web.get(path).text
            upstream.gate.set()
            held.join(30)
            flows = web.get("/flows").json()
            assert len(flows) == 2  # both show once their response started
            dump = web.get("/flows/dump").content
            assert real_key.encode() not in dump and agent_key.encode() in dump
            # the LLM contentview is loaded: mitmweb renders the streamed response decoded
            [flow] = [f for f in flows if f["request"]["path"].startswith("/sse/")]
            shown = web.get(f"/flows/{flow['id']}/response/content/llm.json").json()
            assert shown["view_name"] == "LLM"
            text = "\n".join(line[0][1] if line else "" for line in shown["lines"]) if "lines" in shown else shown["text"]
            assert text.startswith("LLM response") and "finish" in text
            request = web.get(f"/flows/{flow['id']}/request/content/llm.json").json()
            assert "hi there" in str(request)
        finally:
            upstream.gate.set()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
            if held is not None:
                held.join(30)
    assert real_key not in out + err
    assert len(list(iter_captures(tmp_path / "run"))) == 2

def test_a_saved_flow_file_carries_the_per_turn_key_not_the_real_one(upstream, tmp_path):
    """mitmdump's own ``save_stream_file`` (what ``-w`` does) under a key registry: every flow it
    writes, streamed, non-streamed and failed, holds the agent's per-turn key in its header."""
    from mitmproxy.io import FlowReader

    from agentcap_addons.wire.capture.registry import Attribution, KeyRegistry, new_key
    from agentcap_cli.harness.proxy import start_proxy

    real_key, key = "sk-real-upstream-key-fedcba9876543210", new_key()
    keys = tmp_path / "keys"
    KeyRegistry(keys).register(key, Attribution(run_id="r"))
    flows_file = tmp_path / "flows.mitm"
    with start_proxy(upstream.url, tmp_path / "run", keys_dir=keys, upstream_key_env="REAL_KEY", events=True,
                     env={**os.environ, "REAL_KEY": real_key}, sets={"save_stream_file": str(flows_file)}) as p:
        for path, header in [("/sse/v1/chat/completions", {"Authorization": f"Bearer {key}"}),
                             ("/json/v1/messages", {"x-api-key": key}),
                             ("/status/500/v1/chat/completions", {"Authorization": f"Bearer {key}"})]:
            httpx.post(p.base_url + path, headers=header, json=BODY, timeout=30)
            assert real_key in str(upstream.received[-1].headers)  # the upstream got the real key
        for _ in range(3):
            p.events.wait_for(event="response")
    with open(flows_file, "rb") as f:
        flows = list(FlowReader(f).stream())
    assert len(flows) == 3
    assert [fl.request.headers.get("authorization") or fl.request.headers.get("x-api-key") for fl in flows] == \
        [f"Bearer {key}", key, f"Bearer {key}"]
    assert real_key.encode() not in flows_file.read_bytes()


def test_detach_env_file_and_the_documented_eval_recipe(upstream, tmp_path):
    """`eval "$(agentcap proxy --detach … | grep ^export)"` returns (it used to hang), the agent's env
    works, every call is logged as one line, and kill $AGENTCAP_PROXY_PID stops it cleanly."""
    agentcap = shlex.join(argv())
    script = (f'out="$({agentcap} proxy --upstream {upstream.url} --port 0 --dir {tmp_path / "run"} --detach)"\n'
              'eval "$(echo "$out" | grep ^export)"\n'
              'curl -s -o /dev/null -w "%{http_code}\\n" -H content-type:application/json '
              '-d \'{"model": "m"}\' "$OPENAI_BASE_URL/chat/completions"\n'
              'echo "pid=$AGENTCAP_PROXY_PID"\n'
              'echo "$out" | grep "^# running"\n')
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    pid = int(r.stdout.split("pid=")[1].split()[0])
    log = Path(r.stdout.split("(log: ")[1].split(")")[0])
    try:
        assert r.returncode == 0 and r.stdout.splitlines()[0] == "200", r.stdout + r.stderr
        assert len(list(iter_captures(tmp_path / "run"))) == 1
    finally:
        gone = os.pidfd_open(pid)  # readable once the proxy has exited: a wait without polling
        try:
            os.kill(pid, signal.SIGTERM)
            if not select.select([gone], [], [], 20)[0]:  # bounded: the proxy stops within seconds
                os.killpg(pid, signal.SIGKILL)  # its own session: the group is the proxy and its mitmdump
                pytest.fail("the detached proxy did not stop on SIGTERM")
        finally:
            os.close(gone)
    text = log.read_text()
    assert "#1 openai-chat model=m status=200" in text and "agentcap proxy stopped: 1 capture(s)" in text
    assert "client connect" not in text  # mitmproxy's own connection log only with -v


def test_json_ready_line_env_file_and_port_in_use(upstream, tmp_path):
    env_file = tmp_path / "proxy.env"
    with start("proxy", "--upstream", upstream.url + "/v1", "--port", "0", "--json", "--dir", str(tmp_path / "run"),
               "--env-file", str(env_file), cwd=tmp_path) as proc:
        try:
            ready = json.loads(proc.stdout.readline())
            assert ready["base_url"].endswith("/v1") and ready["env"]["OPENAI_BASE_URL"] == ready["base_url"]
            assert ready["captures"] == str(tmp_path / "run" / "captures") and ready["pid"] == proc.pid
            assert f"export OPENAI_BASE_URL={ready['base_url']}" in env_file.read_text()
            port = int(ready["base_url"].rsplit(":", 1)[1].split("/")[0])
            r = CliRunner().invoke(cli, ["proxy", "--upstream", upstream.url, "--port", str(port)])
            assert r.exit_code == 2 and "--port" in r.output and "in use" in r.output
            httpx.post(ready["base_url"] + "/chat/completions?key=SECRETVALUE", json={"model": "mm"}, timeout=30)
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
    [line] = [x for x in err.splitlines() if x.startswith("#1 ")]
    assert "model=mm" in line and "status=" in line and "SECRETVALUE" not in err


def test_an_unreachable_upstream_is_a_warning_at_start(tmp_path):
    from tests.conftest import closed_port

    with start("proxy", "--upstream", f"http://127.0.0.1:{closed_port()}", "--port", "0",
               "--dir", str(tmp_path / "run"), "--json", cwd=tmp_path) as proc:
        try:
            assert json.loads(proc.stdout.readline())["base_url"]
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
    assert "warning:" in err and "calls will fail until it answers" in err
