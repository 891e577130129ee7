"""Running one command in a fresh container: the lifecycle of a single turn.

create → start → wait (bounded by the turn's timeout) → kill on timeout → remove, always, also on
Ctrl-C or an exception. Every container carries agentcap labels (run, task, turn) so that one left
behind by a killed orchestrator is found and removed by ``remove_containers`` / ``agentcap sandbox
prune``. A mount goes where its ``target`` says (the same path as on the host when it names none);
the container's own files — the entry script, stdout / stderr, the forwarders' sockets — are at fixed
paths under ``/agentcap``, so its environment names no host path. The network is ``none`` (see
bridge.py), stdin is closed and stdout / stderr go straight to the session files.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .images import LABEL
from .podman import Podman, SandboxError

log = logging.getLogger("agentcap.sandbox")

ENTRY = Path(__file__).with_name("entry.sh")
ENTRY_IN_CONTAINER = "/agentcap/entry.sh"
STDOUT_IN, STDERR_IN = "/agentcap/io/stdout", "/agentcap/io/stderr"
SOCKETS_IN = PurePosixPath("/agentcap/sockets")  # the n-th socket dir at SOCKETS_IN/n
#: returncode reported for a turn killed at its timeout (as `timeout(1)` does)
TIMEOUT_RC = 124


@dataclass(frozen=True)
class Mount:
    source: Path
    read_only: bool = False
    target: str | None = None  # default: the same path as on the host

    def as_podman(self) -> dict[str, object]:
        return {"type": "bind", "source": str(self.source), "target": self.target or str(self.source),
                "read_only": self.read_only}


@dataclass
class ContainerSpec:
    image: str
    command: list[str]
    workdir: PurePosixPath | Path  # as the container sees it
    stdout: Path
    stderr: Path
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    forwards: Mapping[int, Path] = field(default_factory=dict)  # port inside → unix socket on the host
    labels: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 600.0
    name: str | None = None


@dataclass
class ContainerResult:
    returncode: int
    duration_s: float
    timed_out: bool
    name: str


def run_container(podman: Podman, spec: ContainerSpec) -> ContainerResult:
    """Run ``spec`` to completion in a fresh container that is always removed afterwards."""
    client = podman.client()
    name = spec.name or f"agentcap-{uuid.uuid4().hex[:12]}"
    spec.stdout.parent.mkdir(parents=True, exist_ok=True)
    for path in (spec.stdout, spec.stderr):
        path.touch()
    mounts = [Mount(ENTRY, read_only=True, target=ENTRY_IN_CONTAINER), Mount(spec.stdout, target=STDOUT_IN),
              Mount(spec.stderr, target=STDERR_IN), *spec.mounts]
    sockets = {d: SOCKETS_IN / str(n) for n, d in enumerate(sorted({p.parent for p in spec.forwards.values()}))}
    mounts += [Mount(d, target=str(target)) for d, target in sockets.items()]
    env = {**spec.env, "AGENTCAP_STDOUT": STDOUT_IN, "AGENTCAP_STDERR": STDERR_IN,
           "AGENTCAP_FORWARDS": " ".join(f"{port}={sockets[sock.parent] / sock.name}"
                                         for port, sock in spec.forwards.items())}
    started = time.monotonic()
    timed_out = False
    try:
        container = client.containers.create(
            spec.image, command=["/bin/bash", ENTRY_IN_CONTAINER, *spec.command], name=name,
            environment=env, mounts=_dedupe(mounts), network_mode="none", working_dir=str(spec.workdir),
            labels={LABEL: "1", **spec.labels}, stdin_open=False, tty=False, init=True,
            log_config={"Type": "none"})
        expired = threading.Event()

        def on_timeout() -> None:
            expired.set()
            log.warning("container %s passed its %g s timeout: killed", name, spec.timeout_s)
            _kill(container)

        watchdog = threading.Timer(spec.timeout_s, on_timeout)
        watchdog.daemon = True
        container.start()
        watchdog.start()
        try:
            # the HTTP timeout only guards a hung service: the watchdog ends the container first
            code = container.wait(condition="exited", timeout=spec.timeout_s + 120)
        finally:
            watchdog.cancel()
        if expired.is_set():
            timed_out, code = True, TIMEOUT_RC
        if isinstance(code, dict):  # some podman versions answer {"StatusCode": n}
            code = int(code.get("StatusCode", -1))
        return ContainerResult(returncode=int(code), duration_s=time.monotonic() - started,
                               timed_out=timed_out, name=name)
    except SandboxError:
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("podman"):
            raise SandboxError(f"podman could not run container {name}: {exc}") from exc
        raise
    finally:
        _remove(client, name)


def _dedupe(mounts: list[Mount]) -> list[dict[str, object]]:
    seen: dict[str, Mount] = {}
    for m in mounts:
        key = m.target or str(m.source)
        if key not in seen or (seen[key].read_only and not m.read_only):
            seen[key] = m
    return [m.as_podman() for m in seen.values()]


def _kill(container: object) -> None:
    try:
        container.kill(signal="KILL")  # type: ignore[attr-defined]
    except Exception as exc:  # already gone
        log.debug("kill: %s", exc)


def _remove(client: object, name: str) -> None:
    try:
        client.containers.get(name).remove(force=True)  # type: ignore[attr-defined]
    except Exception as exc:  # never created, or already removed
        log.debug("remove %s: %s", name, exc)


def list_containers(podman: Podman, **labels: str) -> list[str]:
    """Names of the agentcap containers (running or not) with these ``agentcap.<key>`` labels."""
    args = ["ps", "-a", "--format", "{{.Names}}", "--filter", f"label={LABEL}=1"]
    for k, v in labels.items():
        args += ["--filter", f"label={LABEL}.{k}={v}"]  # podman ANDs label filters
    return podman.cli(args).stdout.split()


def remove_containers(podman: Podman, **labels: str) -> list[str]:
    """Force-remove every agentcap container matching ``labels`` (all of them when none given)."""
    names = list_containers(podman, **labels)
    if names:
        podman.cli(["rm", "-f", "-t", "0", *names], check=False)
    return names
