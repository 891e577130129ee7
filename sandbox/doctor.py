"""What the sandbox needs, checked one by one, each with the exact command that fixes it."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .agents import agent_names
from .images import host_ca, image_tag, is_built, rootfs_source
from .podman import APT_FIX, Podman, SandboxError, get_podman

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str | None = None


def _tool(name: str, why: str, package: str | None = None) -> Check:
    path = shutil.which(name)
    if path:
        return Check(name, OK, path)
    return Check(name, FAIL, f"not found ({why})", f"apt-get install -y {package or name}")


def run_checks(podman: Podman | None = None) -> list[Check]:
    """Every check, in order; later ones are skipped (warn) when an earlier one they need failed."""
    checks: list[Check] = []
    try:
        podman = podman or get_podman()
    except SandboxError as exc:
        return [Check("podman", FAIL, str(exc).splitlines()[0], exc.fix or APT_FIX)]
    version = podman.cli(["--version"], check=False).stdout.strip()
    checks.append(Check("podman", OK, f"{version} ({podman.binary})"))
    conf = str(podman.conf) if podman.conf else "podman's defaults (no runc found)"
    checks.append(Check("containers.conf", OK if podman.conf else WARN, conf,
                        None if podman.conf else "apt-get install -y runc"))
    checks.append(_tool("runc", "the runtime agentcap configures"))
    checks.append(_tool("iptables", "podman build's network needs it"))
    kind, what = rootfs_source()
    if kind == "debootstrap":
        checks.append(_tool("debootstrap", "builds the base image without a registry"))
        if os.geteuid() != 0:
            checks.append(Check("root", WARN, "debootstrap needs root for the first base-image build",
                                "run `agentcap sandbox build` once as root, or set AGENTCAP_BASE_IMAGE"))
    else:
        checks.append(Check("base image source", OK, f"pulled from {what}"))
    try:
        checks.append(Check("host CA bundle", OK, host_ca()))
    except SandboxError as exc:
        checks.append(Check("host CA bundle", FAIL, str(exc).splitlines()[0], exc.fix))
    try:
        started = time.monotonic()
        url = podman.ensure_service()
        checks.append(Check("podman API service", OK, f"{url} ({time.monotonic() - started:.2f} s)"))
    except SandboxError as exc:
        checks.append(Check("podman API service", FAIL, str(exc), f"see {podman.state / 'podman-service.log'}"))
        return checks
    checks.append(_container_check(podman))
    for name in agent_names():
        try:
            built = is_built(podman, name)
        except Exception as exc:  # a plugin agent whose Containerfile dir is missing
            checks.append(Check(f"image {name}", FAIL, str(exc)))
            continue
        checks.append(Check(f"image {name}", OK if built else WARN,
                            image_tag(name) + ("" if built else " (built on first use)"),
                            None if built else f"agentcap sandbox build {name}"))
    return checks


def _container_check(podman: Podman) -> Check:
    """A real container from the base image: no network but loopback, exits 0."""
    if not is_built(podman, "base"):
        return Check("container run", WARN, "skipped: the base image is not built yet", "agentcap sandbox build base")
    from .container import ContainerSpec, run_container

    scratch = podman.state / "doctor"
    scratch.mkdir(exist_ok=True)
    spec = ContainerSpec(image=image_tag("base"), command=["bash", "-c", "! (exec 3<>/dev/tcp/10.0.2.2/80) 2>/dev/null"],
                         workdir=Path("/"), stdout=scratch / "out", stderr=scratch / "err", timeout_s=60)
    try:
        result = run_container(podman, spec)
    except SandboxError as exc:
        # a service started by an older agentcap from a directory deleted since fails every run; a new one does not
        restart = f"pkill -f 'podman system service.*{podman.socket}' (agentcap starts it again), else: {APT_FIX}"
        return Check("container run", FAIL, str(exc).splitlines()[0], restart)
    if result.returncode != 0:
        err = (scratch / "err").read_text(errors="replace").strip()[-300:]
        return Check("container run", FAIL, f"exit {result.returncode}: {err}", APT_FIX)
    return Check("container run", OK, f"base image, --network none, {result.duration_s:.2f} s")
