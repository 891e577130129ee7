"""Crash repair: a capture proxy killed with SIGKILL mid-call leaves request records that get a
``proxy_killed`` response record holding every byte its client had received — on the next proxy
start on the directory, and on ``agentcap ls`` / ``inspect`` / ``export`` of the run — while a
live proxy's calls in flight are left alone.

Real mitmdump / ``agentcap proxy`` processes, each in its own process group killed with SIGKILL,
a real streaming client, a real loopback upstream that holds each response at a known byte (the
test waits on the bytes the client has, never on time)."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from agentcap_addons.wire.capture.partial import FRAME, data_head, head_frame
from agentcap_addons.wire.capture.records import CaptureDir, iter_captures, new_request_id
from agentcap_addons.wire.capture.repair import Repaired, repair
from agentcap_addons.wire.util.clock import rfc3339_ns
from agentcap_addons.wire.util.jsonio import dumps
from agentcap_addons.writer_child import APPEND, CREATE, HEAD, REPLACE
from agentcap_cli.harness.proxy import CaptureEvents, proxy_argv
from agentcap_cli.inspect.data import RunLevel
from tests.support.cli import agentcap, background, start
from tests.support.upstream import CHAT_JSON, Upstream, chat_sse_events

FORMS = ("sse", "json")
POINTS = ("head", "mid")  # killed before the first response byte / with half the body at the client
ENTRIES = ("restart", "ls", "inspect", "export")
HOLD = 60  # seconds the upstream holds a response at most (the test releases it long before)


def body_of(form: str) -> bytes:
    return b"".join(chat_sse_events(6)) if form == "sse" else json.dumps(CHAT_JSON).encode()


@dataclass
class HoldingUpstream(Upstream):
    """``/hold/<form>/<point>/…``: the response (SSE or JSON) held before its head (``head``) or
    after the first half of its body (``mid``) until ``release`` is set; ``reached`` counts the
    responses that got to their hold."""

    reached: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.release = threading.Event()
        self.at_hold = threading.Semaphore(0)

    async def _hold(self, path: str) -> None:
        self.reached.append(path)
        self.at_hold.release()
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait, HOLD)

    async def _respond(self, method, path, headers, body, reader, writer) -> bool:
        parts = path.strip("/").split("/")
        if parts[0] != "hold":
            return await super()._respond(method, path, headers, body, reader, writer)
        form, point = parts[1], parts[2]
        data = body_of(form)
        if point == "head":
            await self._hold(path)
        ctype = b"text/event-stream" if form == "sse" else b"application/json"
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n" % (ctype, len(data)))
        half = first_half(form)
        writer.write(data[:half])
        await writer.drain()
        if point == "mid":
            await self._hold(path)
        writer.write(data[half:])
        await writer.drain()
        return True


def first_half(form: str) -> int:
    """Where a held body stops: after three whole SSE events, or mid-way through the JSON."""
    if form == "sse":
        return len(b"".join(chat_sse_events(6)[:3]))
    return len(body_of(form)) // 2


@pytest.fixture
def up():
    with HoldingUpstream() as u:
        yield u
        u.release.set()


# --------------------------------------------------------------------------- proxies in their own process group


@dataclass
class Proxy:
    proc: subprocess.Popen
    base_url: str

    def kill9(self) -> None:
        """SIGKILL to the proxy's whole process group (the capture writer has a session of its own)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


@contextmanager
def mitmdump(upstream: str, run_dir: Path) -> Iterator[Proxy]:
    """``mitmdump -s agentcap_addons/capture.py`` as a power user starts it, in its own process group."""
    r, w = os.pipe()
    try:
        argv = proxy_argv(upstream, run_dir, ready_fd=w)
        with background(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        pass_fds=(w,)) as proc:
            os.close(w)
            w = -1
            ready = CaptureEvents(r).next(60)
            assert ready is not None, "the proxy did not come up"
            host, port = ready["listen"][0][:2]
            yield Proxy(proc, f"http://127.0.0.1:{port}")
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


@contextmanager
def agentcap_proxy(upstream: str, run_dir: Path) -> Iterator[Proxy]:
    """``agentcap proxy --json``: the CLI and its mitmdump child, in one process group."""
    with start("proxy", "--upstream", upstream, "--port", "0", "--dir", str(run_dir), "--json", "-q",
               stdin=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "agentcap proxy printed nothing"
        yield Proxy(proc, json.loads(proc.stdout.readline())["base_url"].rsplit("/v1", 1)[0])


LAUNCHERS = {"mitmdump": mitmdump, "agentcap proxy": agentcap_proxy}


# --------------------------------------------------------------------------- a client in the middle of a call


@dataclass
class Client:
    """One streamed POST in a thread; ``got`` is every body byte received so far."""

    url: str
    got: bytearray = field(default_factory=bytearray)
    arrived: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        try:
            with httpx.stream("POST", self.url, json=body, timeout=HOLD) as r:
                for chunk in r.iter_raw():
                    self.got += chunk
                    self.arrived.release()
        except httpx.HTTPError as e:  # the proxy was killed under it
            self.error = e
        finally:
            self.arrived.release()

    def wait_bytes(self, n: int) -> bytes:
        """Block until the client holds ``n`` body bytes (bounded)."""
        while len(self.got) < n:
            assert self.arrived.acquire(timeout=60), f"the client got {len(self.got)} of {n} bytes"
            assert self.thread.is_alive() or len(self.got) >= n, f"the call ended with {len(self.got)} bytes"
        return bytes(self.got)

    def join(self) -> None:
        self.thread.join(HOLD + 10)
        assert not self.thread.is_alive()


def call_in_flight(up: HoldingUpstream, proxy: Proxy, form: str, point: str) -> tuple[Client, bytes]:
    """A call held at ``point``, and the bytes its client has when it is held there."""
    client = Client(f"{proxy.base_url}/hold/{form}/{point}/v1/chat/completions")
    assert up.at_hold.acquire(timeout=60), "the call never reached the upstream"
    got = client.wait_bytes(first_half(form)) if point == "mid" else b""
    return client, got


# --------------------------------------------------------------------------- the entry points that repair


def repair_by(entry: str, up: HoldingUpstream, ws: Path, run_dir: Path, out: Path) -> None:
    if entry == "restart":
        with mitmdump(up.url, run_dir):
            pass  # the ready line comes after the repair on start
    elif entry == "ls":
        r = agentcap("ls", "--json", workspace=ws)
        assert r.returncode == 0, r.stderr
        assert run_dir.name in r.stdout
    elif entry == "inspect":
        level = RunLevel(run_dir)
        calls = [level.call(row.key) for chunk in level.chunks() for row in chunk]
        assert [c.meta["error"]["kind"] for c in calls if c.meta["error"]] == ["proxy_killed"]
    else:
        r = agentcap("export", str(run_dir), "--out", str(out), "--no-scan", workspace=ws)
        assert r.returncode == 0, r.stderr + r.stdout


def assert_repaired(run_dir: Path, got: bytes, form: str, point: str) -> dict:
    """Every request record has a response record; the killed call's says proxy_killed and holds at
    least what its client received; no partial or lock file is left."""
    caps = list(iter_captures(run_dir))
    assert caps and all(c.response is not None for c in caps), "a request record without a response record"
    killed = [c for c in caps if (c.response["error"] or {}).get("kind") == "proxy_killed"]
    assert len(killed) == 1
    resp = killed[0].response
    held = killed[0].response_bytes()
    assert held.startswith(got) and len(held) >= len(got), resp
    if point == "mid":
        assert resp["status_code"] == 200 and resp["stream"] is (form == "sse")
        assert ("raw" in resp) if form == "sse" else ("body_b64" in resp)  # the fields a normal record uses
        assert sum(n for _, n in resp["chunks"]) == len(held)
        assert resp["timings"]["first_byte"] is not None
    else:
        assert resp["status_code"] is None and held == b""
    assert "kill -9" in resp["error"]["message"]
    leftovers = [p.name for p in (run_dir / "captures").iterdir() if not p.name.endswith(".json")]
    assert leftovers == []
    return resp


CASES = [(launcher, form, point, entry) for form in FORMS for point in POINTS for entry in ENTRIES
         for launcher in LAUNCHERS if launcher == "mitmdump" or (entry == "restart" and point == "mid")]


@pytest.mark.parametrize(("launcher", "form", "point", "entry"), CASES,
                         ids=["-".join(c).replace(" ", "_") for c in CASES])
def test_a_killed_proxy_s_calls_get_a_proxy_killed_record(up, tmp_path, launcher, form, point, entry):
    ws = tmp_path / "ws"
    run_dir = ws / ".agentcap" / "crash-run"
    run_dir.mkdir(parents=True)
    with LAUNCHERS[launcher](up.url, run_dir) as proxy:
        done = httpx.post(proxy.base_url + "/json/v1/chat/completions", json={"model": "m"}, timeout=30)
        assert done.status_code == 200  # a call that ended: its record must stay as it is
        client, got = call_in_flight(up, proxy, form, point)
        proxy.kill9()
    client.join()
    assert client.error is not None and bytes(client.got) == got  # the client never got more
    repair_by(entry, up, ws, run_dir, tmp_path / "out")
    resp = assert_repaired(run_dir, got, form, point)
    before = {p.name: p.read_bytes() for p in (run_dir / "captures").iterdir()}
    r = agentcap("ls", "--json", workspace=ws)  # a second repair changes nothing
    assert r.returncode == 0 and {p.name: p.read_bytes() for p in (run_dir / "captures").iterdir()} == before
    if entry == "export":
        [table] = [pq.read_table(f) for f in (tmp_path / "out" / "captures" / "data").glob("*.parquet")]
        [row] = [r for r in table.to_pylist() if (r["error"] or "").startswith("proxy_killed")]
        assert row["response"].encode().startswith(got) and row["status_code"] == resp["status_code"]


def test_a_live_proxy_s_call_in_flight_is_never_repaired(up, tmp_path):
    """Two proxies record into one run at once; one is killed mid-call. Its call is repaired by
    `agentcap ls` and the inspect data layer; the live one's call in flight is not — neither by
    them nor by the second proxy's start — and ends with its own, complete record."""
    ws = tmp_path / "ws"
    run_dir = ws / ".agentcap" / "shared-run"
    run_dir.mkdir(parents=True)
    with mitmdump(up.url, run_dir) as live:
        live_client, _ = call_in_flight(up, live, "sse", "mid")
        with mitmdump(up.url, run_dir) as doomed:  # its start repairs nothing of the live proxy's
            assert all(c.response is None for c in iter_captures(run_dir))
            doomed_client, got = call_in_flight(up, doomed, "sse", "mid")
            doomed.kill9()
        doomed_client.join()
        assert agentcap("ls", "--json", workspace=ws).returncode == 0
        list(RunLevel(run_dir).chunks())
        caps = list(iter_captures(run_dir))
        assert len(caps) == 2
        [killed] = [c for c in caps if c.response is not None]
        [in_flight] = [c for c in caps if c.response is None]
        assert killed.response["error"]["kind"] == "proxy_killed" and killed.response_bytes().startswith(got)
        up.release.set()
        live_client.join()
        assert live_client.error is None and bytes(live_client.got) == body_of("sse")
    [finished] = [c for c in iter_captures(run_dir) if c.request_id == in_flight.request_id]
    assert finished.response["error"] is None and finished.response_bytes() == body_of("sse")
    assert [p.name for p in (run_dir / "captures").iterdir() if not p.name.endswith(".json")] == []



# --------------------------------------------------------------------------- the parts, without a proxy


def orphan(d: Path, instance: str = "") -> str:
    """A request record with no response record, as a killed proxy leaves it."""
    rid = new_request_id(instance)
    d.mkdir(parents=True, exist_ok=True)
    CaptureDir(d).write_request({"schema": 1, "request_id": rid, "seq": 1, "captured_at": rfc3339_ns(),
                                 "method": "POST", "path": "/v1/chat/completions", "api": "openai-chat",
                                 "body": {"model": "m"}})
    return rid


@pytest.mark.parametrize("cut", [0, 1, FRAME.size, FRAME.size + 3])
def test_repair_keeps_the_whole_frames_of_a_partial_file(tmp_path, cut):
    """A partial file whose last frame was cut short (the writer died mid-write too) gives the bytes
    of the whole frames before it; a second repair finds nothing to do."""
    d = tmp_path / "captures"
    rid = orphan(d)
    events = chat_sse_events(2)
    frames = head_frame(200, {"content-type": "text/event-stream"}, True, 1.0e12, 2.5)
    frames += b"".join(data_head(3.0 + i, len(e)) + e for i, e in enumerate(events))
    tail = data_head(9.0, 100) + b"x" * 50  # a frame that never finished
    CaptureDir(d).partial_path(rid).write_bytes(frames + tail[:cut] if cut else frames)
    assert repair(d, "a test").repaired == [rid]
    [cap] = list(iter_captures(d))
    assert cap.response_bytes() == b"".join(events)
    assert cap.response["chunks"] == [[3.0 + i, len(e)] for i, e in enumerate(events)]
    assert cap.response["served_model"] == "test-model" and cap.response["timings"]["done"] == 2.0 + len(events)
    assert sorted(p.name for p in d.iterdir()) == [f"{rid}.request.json", f"{rid}.response.json"]
    assert repair(d, "a test") == Repaired()


def test_the_writer_process_appends_and_a_response_record_supersedes_the_partial_file(tmp_path):
    """Appends come on a pipe of their own, which the writer reads before the records it woke for:
    a response record never overtakes the chunks before it, a superseded partial file is never
    written, and what waits is written when the proxy's pipes close."""
    def frame(op: bytes, path: str, data: bytes = b"") -> bytes:
        return HEAD.pack(op, 1 if op in (CREATE, REPLACE) else 0, len(path.encode()), len(data)) + path.encode() + data

    kept, gone = tmp_path / "kept.partial", tmp_path / "gone.partial"
    appends = frame(APPEND, str(kept), b"ab") + frame(APPEND, str(gone), b"12") + frame(APPEND, str(kept), b"cd")
    r, w = os.pipe()
    try:
        with background([sys.executable, "-c", f"from agentcap_addons.writer_child import serve; serve(0, 1, {r})"],
                        stdin=subprocess.PIPE, text=False, pass_fds=(r,)) as proc:
            os.close(r)
            r = -1
            os.write(w, appends)  # before the record that supersedes one of them
            proc.stdin.write(frame(REPLACE, f"{tmp_path / 'record.json'}\0{gone}", b"{}"))
            proc.stdin.flush()
            assert proc.stdout.readline() == b"1\n"  # only the record is acknowledged
            os.write(w, frame(APPEND, str(gone), b"late") + frame(APPEND, str(kept), b"ef"))
            os.close(w)
            w = -1
            proc.communicate(timeout=30)  # the records pipe closes: what waits is written
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
    assert kept.read_bytes() == b"abcdef" and not gone.exists() and (tmp_path / "record.json").read_bytes() == b"{}"


CLAIM_AND_DIE = """
import os, subprocess, sys
from pathlib import Path
from agentcap_addons.wire.capture.repair import claim
c = claim(Path(sys.argv[1]), sys.argv[2])
subprocess.Popen([sys.executable, "-c", "from agentcap_addons.writer import serve; serve()"], stdin=0,
                 stdout=subprocess.DEVNULL, pass_fds=[c.fd], start_new_session=True)
os._exit(0)  # as under kill -9: the lock file stays, no release
"""


def test_a_dead_proxy_s_writer_still_writing_is_waited_for(tmp_path):
    """The proxy is gone but its writer process (which holds the lock too) still has a response
    record to write: a repair leaves the call alone while the writer lives, and once it has ended
    the writer's own record is what the call keeps."""
    d = tmp_path / "captures"
    instance = "abcdef01"
    rid = orphan(d, instance)
    r, w = os.pipe()
    try:
        subprocess.run([sys.executable, "-c", CLAIM_AND_DIE, str(d), instance], stdin=r, check=True, timeout=60)
        os.close(r)
        r = -1
        assert repair(d, "a test", wait=0) == Repaired(live=[rid])
        record = dumps({"schema": 1, "request_id": rid, "status_code": 200, "error": None})
        path = f"{d / (rid + '.response.json')}\0{CaptureDir(d).partial_path(rid)}".encode()
        os.write(w, HEAD.pack(REPLACE, 1, len(path), len(record)) + path + record)
    finally:
        os.close(w)  # the writer drains and exits
        if r >= 0:
            os.close(r)
    assert repair(d, "a test", wait=60) == Repaired(cleaned=1)  # its lock file, once the writer let go
    [cap] = list(iter_captures(d))
    assert cap.response["error"] is None
    assert sorted(p.name for p in d.iterdir()) == [f"{rid}.request.json", f"{rid}.response.json"]
