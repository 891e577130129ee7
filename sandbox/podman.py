"""Finding podman, giving it a configuration that runs here, and its API service started on demand.

agentcap never edits /etc: where podman's defaults cannot run a container (crun refusing rlimits or
hybrid cgroups, as on Debian 12 VMs), it writes a containers.conf of its own (runc, pinned ulimits)
into its state dir and points ``CONTAINERS_CONF`` at it for every podman it starts. Containers are
driven with podman-py against ``podman system service`` on a socket in the same state dir; the
service is started once and shared by every agentcap process until it has been idle for a while.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentcap_addons.wire.util.errors import AgentcapError
from agentcap_addons.wire.util.files import (
    atomic_write_bytes,  # the pure wire library: allowed everywhere
)

#: what podman needs on a fresh Debian 12 machine (see docs/sandbox.md)
APT_PACKAGES = "podman runc iptables slirp4netns fuse-overlayfs uidmap debootstrap"
APT_FIX = f"apt-get install -y {APT_PACKAGES}"
#: how long the shared API service lingers with nothing to do
SERVICE_IDLE_S = 600

CONTAINERS_CONF = """\
# Written by agentcap (sandbox/podman.py); used through CONTAINERS_CONF, never copied to /etc.
# runc instead of crun (crun cannot set rlimits / hybrid cgroups on some VMs); ulimits pinned
# below the host's hard limits so the runtime never has to raise them.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
"""


class SandboxError(AgentcapError, RuntimeError):
    """Something the sandbox cannot do; ``fix`` is the command or step that would help."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\n  fix: {self.fix}" if self.fix else text


def state_dir() -> Path:
    """agentcap's own state (podman socket, containers.conf, build logs): not per run."""
    explicit = os.environ.get("AGENTCAP_STATE_DIR")
    if explicit:
        path = Path(explicit)
    else:
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        path = Path(base) / "agentcap"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock shared by every agentcap process (image builds, service start)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_if_changed(path: Path, text: str) -> None:
    if not (path.exists() and path.read_text() == text):
        atomic_write_bytes(path, text.encode())


@dataclass
class Podman:
    """One podman installation with the configuration agentcap gives it."""

    binary: str
    state: Path
    conf: Path | None
    _client: Any = field(default=None, repr=False)

    @property
    def socket(self) -> Path:
        return self.state / "podman.sock"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.conf is not None:
            env["CONTAINERS_CONF"] = str(self.conf)
        return env

    def cli(self, args: Sequence[str], *, check: bool = True, timeout: float | None = 120,
            input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``podman ARGS`` to completion; a failure raises SandboxError with podman's stderr."""
        try:
            done = subprocess.run([self.binary, *args], env=self.env(), capture_output=True,
                                  timeout=timeout, input=input.decode() if input else None, text=True)
        except subprocess.TimeoutExpired as exc:
            raise SandboxError(f"podman {' '.join(args[:3])} did not finish in {timeout:g} s") from exc
        if check and done.returncode != 0:
            raise SandboxError(f"podman {' '.join(args[:3])} failed ({done.returncode}): "
                               f"{done.stderr.strip()[-2000:]}")
        return done

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen([self.binary, *args], env=self.env(), **kwargs)

    # -- the API service ------------------------------------------------------------------------

    def _ping(self) -> bool:
        from podman import PodmanClient

        if not self.socket.exists():
            return False
        try:
            with PodmanClient(base_url=f"unix://{self.socket}", timeout=5) as client:
                return bool(client.ping())
        except Exception:
            return False

    def ensure_service(self, wait_s: float = 20.0) -> str:
        """Start ``podman system service`` on our socket unless one answers; return its URL."""
        url = f"unix://{self.socket}"
        if self._ping():
            return url
        with file_lock(self.state / "podman-service.lock"):
            if self._ping():
                return url
            self.socket.unlink(missing_ok=True)
            log = open(self.state / "podman-service.log", "ab")
            # its own session: the service outlives this process and is shared by the next one. Its working
            # directory is the state dir, never ours: conmon inherits it, and once a deleted directory (a
            # test's, a CI checkout's) it fails every container run ("write child: broken pipe")
            self.popen(["system", "service", f"--time={SERVICE_IDLE_S}", url], stdin=subprocess.DEVNULL,
                       stdout=log, stderr=log, start_new_session=True, cwd=self.state)
            log.close()
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if self._ping():
                    return url
                time.sleep(0.05)
        raise SandboxError(f"podman system service did not answer on {self.socket} within {wait_s:g} s "
                           f"(see {self.state / 'podman-service.log'})")

    def client(self) -> Any:
        """A podman-py client on the shared service (started on demand)."""
        from podman import PodmanClient

        if self._client is None or not self._ping():
            self._client = PodmanClient(base_url=self.ensure_service(), timeout=60)
        return self._client


def find_podman() -> str:
    binary = os.environ.get("AGENTCAP_PODMAN") or shutil.which("podman")
    if not binary:
        raise SandboxError("podman is not installed", fix=APT_FIX)
    return binary


def own_containers_conf(state: Path) -> Path | None:
    """agentcap's containers.conf when runc is there (see module docstring); AGENTCAP_CONTAINERS_CONF wins."""
    explicit = os.environ.get("AGENTCAP_CONTAINERS_CONF")
    if explicit is not None:
        return Path(explicit) if explicit else None
    if not shutil.which("runc"):
        return None
    path = state / "containers.conf"
    _write_if_changed(path, CONTAINERS_CONF)
    return path


_PODMAN: Podman | None = None


def get_podman() -> Podman:
    """The process-wide Podman (found once)."""
    global _PODMAN
    if _PODMAN is None:
        state = state_dir()
        _PODMAN = Podman(binary=find_podman(), state=state, conf=own_containers_conf(state))
    return _PODMAN
