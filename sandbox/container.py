"""Running one command in a fresh container: the lifecycle of a single turn.

create → start → wait (bounded by the turn's timeout) → kill on timeout → remove, always, also on
Ctrl-C or an exception. Every container carries agentcap labels (run, task, turn) and its owner's
(the process that runs it: pid, that process's start time — a reused pid is not the owner —, the boot
id and the host), so that one left behind by a killed orchestrator is found and removed by
``prune_containers`` / ``agentcap sandbox prune`` while a live run's containers are kept. A container
that ends by SIGKILL / SIGTERM that neither its watchdog nor this process sent was killed from outside
the run (``podman kill``, ``podman rm -f``, the kernel's OOM killer): its result says so.
A mount goes where its ``target`` says (the same path as on the host when it names none); the
container's own files — the entry script, stdout / stderr, the forwarders' sockets — are at fixed paths
under ``/agentcap``, so its environment names no host path. The network is ``none`` (see
bridge.py), stdin is closed and stdout / stderr go straight to the session files.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
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
#: a container's exit code when its first process died of SIGKILL / SIGTERM (128 + the signal)
SIGNALLED_RCS = frozenset({128 + 9, 128 + 15})
KILLED_OUTSIDE = "killed from outside the run"
OWNER_LABELS = {"pid": f"{LABEL}.owner.pid", "start": f"{LABEL}.owner.start", "boot": f"{LABEL}.owner.boot",
                "host": f"{LABEL}.owner.host"}
#: containers this process removed itself (a run's Ctrl-C): their turns were not killed from outside
_ENDED_HERE: set[str] = set()


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22), or None: no such process."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # the command name (field 2) may hold spaces and parentheses


def boot_id() -> str:
    return (_read("/proc/sys/kernel/random/boot_id") or "").strip()


@dataclass(frozen=True)
class Owner:
    """The process that runs a container: a pid is its owner only while it has the same start time and boot."""

    pid: int
    start: str
    boot: str
    host: str

    @classmethod
    def of(cls, labels: Mapping[str, str]) -> Owner | None:
        """The owner named by a container's labels; None when it has none (made by an agentcap before owners)."""
        try:
            return cls(int(labels[OWNER_LABELS["pid"]]),
                       *(labels[OWNER_LABELS[k]] for k in ("start", "boot", "host")))
        except (KeyError, ValueError):
            return None

    def labels(self) -> dict[str, str]:
        return {OWNER_LABELS["pid"]: str(self.pid), OWNER_LABELS["start"]: self.start,
                OWNER_LABELS["boot"]: self.boot, OWNER_LABELS["host"]: self.host}

    def alive(self) -> bool:
        """Whether the owner still runs; an owner on another host (shared storage) counts as alive."""
        if self.host != socket.gethostname():
            return True
        return self.boot == boot_id() and process_start(self.pid) == self.start


@cache
def _owner(pid: int) -> Owner:
    return Owner(pid, process_start(pid) or "", boot_id(), socket.gethostname())


def current_owner() -> Owner:
    """This process as a containers' owner (computed once per pid: a forked child is its own owner)."""
    return _owner(os.getpid())


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
    killed_outside: bool = False  # ended by a signal that neither the watchdog nor this process sent


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
            labels={LABEL: "1", **current_owner().labels(), **spec.labels}, stdin_open=False, tty=False, init=True,
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
        killed = not timed_out and int(code) in SIGNALLED_RCS and name not in _ENDED_HERE
        if killed:
            log.warning("container %s (%s) was %s: exit code %d", name, _describe(spec.labels), KILLED_OUTSIDE,
                        int(code))
        return ContainerResult(returncode=int(code), duration_s=time.monotonic() - started,
                               timed_out=timed_out, name=name, killed_outside=killed)
    except SandboxError:
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("podman"):
            raise SandboxError(f"podman could not run container {name}: {exc}") from exc
        raise
    finally:
        _remove(client, name)
        _ENDED_HERE.discard(name)


def _describe(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{k.removeprefix(LABEL + '.')} {v}" for k, v in labels.items()) or "no labels"


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


@dataclass(frozen=True)
class Leftover:
    """An agentcap container as ``podman ps`` lists it."""

    name: str
    labels: dict[str, str]
    running: bool

    @property
    def owner(self) -> Owner | None:
        return Owner.of(self.labels)

    @property
    def run(self) -> str:
        return self.labels.get(f"{LABEL}.run", "")


def find_containers(podman: Podman, **labels: str) -> list[Leftover]:
    """The agentcap containers (running or not) with these ``agentcap.<key>`` labels."""
    args = ["ps", "-a", "--format", "json", "--filter", f"label={LABEL}=1"]
    for k, v in labels.items():
        args += ["--filter", f"label={LABEL}.{k}={v}"]  # podman ANDs label filters
    rows = json.loads(podman.cli(args).stdout or "[]")
    return [Leftover(name=(r.get("Names") or [r.get("Id", "")])[0], labels=r.get("Labels") or {},
                     running=r.get("State") == "running") for r in rows]


def list_containers(podman: Podman, **labels: str) -> list[str]:
    """Names of the agentcap containers (running or not) with these ``agentcap.<key>`` labels."""
    return [c.name for c in find_containers(podman, **labels)]


def _force_remove(podman: Podman, names: list[str]) -> None:
    if names:
        _ENDED_HERE.update(names)
        podman.cli(["rm", "-f", "-t", "0", *names], check=False)


def remove_containers(podman: Podman, **labels: str) -> list[str]:
    """Force-remove every agentcap container matching ``labels`` (all of them when none given)."""
    names = list_containers(podman, **labels)
    _force_remove(podman, names)
    return names


def prune_containers(podman: Podman, **labels: str) -> tuple[list[Leftover], list[Leftover]]:
    """Remove the agentcap containers whose owner is gone (or unknown: made before owners); keep those of a
    live owner. Returns (removed, kept)."""
    found = find_containers(podman, **labels)
    kept = [c for c in found if (o := c.owner) is not None and o.alive()]
    gone = [c for c in found if c not in kept]
    _force_remove(podman, [c.name for c in gone])
    return gone, kept
