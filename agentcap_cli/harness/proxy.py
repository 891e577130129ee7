"""The capture proxy as a child process: exactly ``mitmdump -s agentcap_addons/capture.py …``.

The orchestrator never shares state with the proxy except through files the proxy reads per
request (the key registry) and the capture files it writes. Readiness arrives on a pipe
(``agentcap_ready_fd``), so there is no port guessing and no polling; stdin is a pipe too
(``agentcap_parent_watch``), so the proxy stops by itself if its parent dies.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import agentcap_addons
from agentcap_addons.wire.util.errors import AgentcapError

CAPTURE_SCRIPT = Path(agentcap_addons.__file__).resolve().parent / "capture.py"
CONTENTVIEW_SCRIPT = Path(agentcap_addons.__file__).resolve().parent / "contentview.py"
REPLAY_SCRIPT = Path(agentcap_addons.__file__).resolve().parent / "replay.py"


class ProxyStartError(AgentcapError, RuntimeError):
    pass


class CaptureEvents:
    """The read end of the proxy's capture-event pipe: one dict per request / response record."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = b""
        self._lines: list[dict] = []

    def next(self, timeout: float) -> dict | None:
        """The next event, or None when none arrives within ``timeout`` seconds (or the proxy exited)."""
        deadline = time.monotonic() + timeout
        while not self._lines:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
            *lines, self._buf = self._buf.split(b"\n")
            self._lines += [json.loads(x) for x in lines if x]
        return self._lines.pop(0)

    def idle(self) -> bool:
        """Every event written so far has been returned by ``next`` (nothing buffered, nothing in the pipe)."""
        return not self._lines and not select.select([self.fd], [], [], 0)[0]

    def wait_for(self, timeout: float = 30.0, **match: object) -> dict:
        """Skip events until one has every ``key=value`` of ``match``; raise TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next(max(0.0, deadline - time.monotonic()))
            if ev is None:
                raise TimeoutError(f"no capture event matching {match} within {timeout}s")
            if all(ev.get(k) == v for k, v in match.items()):
                return ev

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


@dataclass
class ProxyProcess:
    proc: subprocess.Popen
    host: str
    port: int
    run_dir: Path
    web_url: str | None = None
    argv: list[str] = field(default_factory=list)
    events: CaptureEvents | None = None

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 15.0) -> int:
        """Ask for a clean shutdown (every in-flight capture gets its response record), then wait."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        return self.proc.returncode

    def close(self) -> None:
        """Stop, then release the event pipe (events still buffered after a stop can be read until then)."""
        self.stop()
        if self.events is not None:
            self.events.close()

    def kill(self) -> None:
        """Hard stop (for tests of crash behaviour)."""
        self.proc.kill()
        self.proc.wait(10)

    def __enter__(self) -> ProxyProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mitm_command(tool: str) -> list[str]:
    """``mitmdump`` / ``mitmweb`` run by this interpreter (no reliance on PATH)."""
    code = f"import sys; from mitmproxy.tools.main import {tool}; sys.argv[0] = {tool!r}; sys.exit({tool}())"
    return [sys.executable, "-c", code]


def proxy_argv(upstream: str, run_dir: Path, *, ready_fd: int, events_fd: int = -1, host: str = "127.0.0.1",
               port: int = 0, keys_dir: str | os.PathLike[str] | None = None, upstream_key_env: str | None = None,
               web: bool = False, web_port: int = 8081, sets: dict[str, str] | None = None,
               script: Path = CAPTURE_SCRIPT, addons: Sequence[Path] = ()) -> list[str]:
    """The mitmdump (or mitmweb) command line of a capture proxy: exactly what a power user would type
    (``mitmdump -s agentcap_addons/capture.py --mode reverse:URL --set …``), plus the two pipes it
    reports on (ready line, capture events)."""
    argv = mitm_command("mitmweb" if web else "mitmdump") + [
        "-s",
        str(script),
        *[arg for extra in addons for arg in ("-s", str(extra))],
        "--mode",
        f"reverse:{upstream}",
        "--listen-host",
        host,
        "--listen-port",
        str(port),
        "--set",
        "connection_strategy=lazy",
        "--set",
        f"agentcap_ready_fd={ready_fd}",
        "--set",
        "agentcap_parent_watch=true",
        "--set",
        "flow_detail=0",
    ]
    capture = Path(script) == CAPTURE_SCRIPT
    if capture:
        argv += ["--set", f"agentcap_dir={run_dir}"]
    if web:
        if CONTENTVIEW_SCRIPT.exists():
            argv[argv.index("-s") : argv.index("-s")] = ["-s", str(CONTENTVIEW_SCRIPT)]
        from agentcap_addons.keyauth import HIDE_IN_FLIGHT_FILTER

        # mitmweb generates its API token and prints it only in its log; the ready line relays it.
        # Flows that carry the real upstream key (in flight) stay out of its list.
        argv += ["--set", "web_open_browser=false", "--web-host", "127.0.0.1", "--web-port", str(web_port),
                 "--set", f"view_filter={HIDE_IN_FLIGHT_FILTER}"]
    if keys_dir is not None:
        argv += ["--set", f"agentcap_keys={keys_dir}"]
    if upstream_key_env:
        argv += ["--set", f"agentcap_upstream_key_env={upstream_key_env}"]
    if events_fd >= 0:
        argv += ["--set", f"agentcap_events_fd={events_fd}"]
    for k, v in (sets or {}).items():
        argv += ["--set", f"{k}={v}"]
    return argv


def start_proxy(
    upstream: str,
    run_dir: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    keys_dir: str | os.PathLike[str] | None = None,
    upstream_key_env: str | None = None,
    web: bool = False,
    web_port: int = 8081,
    sets: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    log: IO[bytes] | int | None = None,
    events: bool = False,
    ready_timeout: float = 30.0,
    script: Path = CAPTURE_SCRIPT,
    addons: Sequence[Path] = (),
) -> ProxyProcess:
    """Start a capture proxy in reverse mode in front of ``upstream`` and wait until it listens.

    ``events=True`` opens the capture-event pipe (:class:`CaptureEvents`); its reader must keep
    reading, or events are dropped (the proxy never blocks on it). ``script`` replaces the capture
    addon (bench/proxy.py's baseline); it must load :class:`agentcap_addons.lifecycle.Lifecycle`.
    ``addons`` are more scripts loaded after it, in order (``REPLAY_SCRIPT``: calls answered from
    recordings are still captured, since the capture addon sees each request first); their options go
    in ``sets``.
    """
    run_dir = Path(run_dir)
    r, w = os.pipe()
    ev_r = ev_w = -1
    if events:
        ev_r, ev_w = os.pipe()
    argv = proxy_argv(upstream, run_dir, ready_fd=w, events_fd=ev_w, host=host, port=port, keys_dir=keys_dir,
                      upstream_key_env=upstream_key_env, web=web, web_port=web_port, sets=sets, script=script,
                      addons=addons)
    child_env = dict(os.environ if env is None else env)
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=log if log is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
        pass_fds=(w,) if ev_w < 0 else (w, ev_w),
        env=child_env,
    )
    os.close(w)
    if ev_w >= 0:
        os.close(ev_w)
    try:
        info = _wait_ready(r, proc, ready_timeout)
    except BaseException:
        if ev_r >= 0:
            os.close(ev_r)
        raise
    finally:
        os.close(r)
    listen = info.get("listen") or [[host, port]]
    return ProxyProcess(
        proc=proc,
        host=listen[0][0],
        port=int(listen[0][1]),
        run_dir=run_dir,
        web_url=info.get("web_url") or (f"http://127.0.0.1:{web_port}/" if web else None),
        argv=argv,
        events=CaptureEvents(ev_r) if ev_r >= 0 else None,
    )


def _wait_ready(fd: int, proc: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            raise ProxyStartError(f"capture proxy did not come up within {timeout:.0f}s")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:  # the child closed the pipe without a line: it exited
            code = proc.wait(10)
            raise ProxyStartError(f"capture proxy exited (code {code}) before listening; see its log")
        buf += chunk
    return json.loads(buf.split(b"\n", 1)[0])
