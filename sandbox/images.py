"""Images built lazily, tagged with a hash of their inputs, with no registry needed.

The chain is rootfs → base → (node →) agent. The rootfs is pulled when ``AGENTCAP_BASE_IMAGE`` names
an image and the pull works, else made here with debootstrap (minbase) and ``podman import``. Every
later image is ``podman build`` of a Containerfile dir with ``--build-arg BASE=<parent tag>``; its tag
is ``localhost/agentcap-<name>:<hash>`` where the hash covers the Containerfile dir's files, the extra
files copied into its context, the build args and the parent's hash. An edited Containerfile (or a new
parent) gives a new tag and so a rebuild; an unchanged one is found by tag and never rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .podman import Podman, SandboxError, file_lock

log = logging.getLogger("agentcap.sandbox")

LABEL = "agentcap"
IMAGES_DIR = Path(__file__).parent / "images"
SUITE = "bookworm"
#: what every agent image has; debootstrap includes them, a pulled root gets them by apt
PACKAGES = ("ca-certificates", "curl", "socat", "git", "python3", "python3-venv", "procps", "ripgrep",
            "less", "file")
HOST_CA_CANDIDATES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImageSpec:
    """One buildable image: a dir with a Containerfile, built on its parent."""

    name: str
    context: Path
    parent: str | None = "base"  # None: built on the rootfs
    build_args: tuple[tuple[str, str], ...] = ()
    extra_files: tuple[tuple[str, str], ...] = field(default=())  # (name in context, host path)


def host_ca() -> str:
    explicit = os.environ.get("AGENTCAP_HOST_CA")
    for path in ([explicit] if explicit else HOST_CA_CANDIDATES):
        if path and os.path.exists(path):
            return path
    raise SandboxError("no CA bundle on this host to copy into images",
                       fix="apt-get install -y ca-certificates (or set AGENTCAP_HOST_CA)")


BASE_SPECS: dict[str, ImageSpec] = {
    "base": ImageSpec("base", IMAGES_DIR / "base", parent=None,
                      build_args=(("PACKAGES", " ".join(PACKAGES)),),
                      extra_files=(("host-ca.crt", "@host-ca"),)),
    "node": ImageSpec("node", IMAGES_DIR / "node", parent="base"),
}


def _spec(name: str) -> ImageSpec:
    if name in BASE_SPECS:
        return BASE_SPECS[name]
    from .agents import get_agent

    return get_agent(name).image


def _hash_files(digest: Any, root: Path) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")


def _extra_path(host_path: str) -> str:
    return host_ca() if host_path == "@host-ca" else host_path


# -- the rootfs -------------------------------------------------------------------------------------

def debian_mirror() -> str:
    """The mirror apt uses on this host (so debootstrap works where only that mirror is reachable)."""
    explicit = os.environ.get("AGENTCAP_DEBIAN_MIRROR")
    if explicit:
        return explicit
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        match = re.search(r"^URIs:\s*(\S+)", text, re.M) or re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M)
        if match and "security" not in match.group(1):
            return match.group(1)
    return "http://deb.debian.org/debian"


def _debootstrap_inputs() -> str:
    return f"{SUITE} {debian_mirror()} {','.join(PACKAGES)}"


def rootfs_source() -> tuple[str, str]:
    """("pull", image) or ("debootstrap", "suite mirror packages"): what the rootfs is made from."""
    pulled = os.environ.get("AGENTCAP_BASE_IMAGE")
    if pulled:
        return "pull", pulled
    return "debootstrap", _debootstrap_inputs()


def _source_hash(kind: str, what: str) -> str:
    return hashlib.sha256(f"rootfs\0{kind}\0{what}".encode()).hexdigest()[:16]


def _rootfs_hash() -> str:
    return _source_hash(*rootfs_source())


def _debootstrap_hash() -> str:
    return _source_hash("debootstrap", _debootstrap_inputs())


def _exists(podman: Podman, tag: str) -> bool:
    return podman.cli(["image", "exists", tag], check=False).returncode == 0


def ensure_rootfs(podman: Podman, progress: Progress | None = None) -> str:
    """The root filesystem image's tag: pulled when configured and reachable, else debootstrapped.

    A failed pull falls back to debootstrap, and the result is tagged as the configured source too,
    so the images built on it keep one hash and the pull is not retried on every call (``agentcap
    sandbox prune --all`` forgets it).
    """
    tag = f"localhost/agentcap-rootfs:{_rootfs_hash()}"
    if _exists(podman, tag):
        return tag
    with file_lock(podman.state / "locks" / "rootfs.lock"):
        if _exists(podman, tag):
            return tag
        kind, what = rootfs_source()
        if kind == "pull":
            (progress or log.info)(f"pulling {what}")
            done = podman.cli(["pull", what], check=False, timeout=600)
            if done.returncode == 0:
                podman.cli(["tag", what, tag])
                return tag
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            log.warning("pulling %s failed (%s); building the root filesystem with debootstrap", what, last)
            local = f"localhost/agentcap-rootfs:{_debootstrap_hash()}"
            if not _exists(podman, local):
                _debootstrap_import(podman, local, progress)
            podman.cli(["tag", local, tag])
            return tag
        _debootstrap_import(podman, tag, progress)
        return tag


def _debootstrap_import(podman: Podman, tag: str, progress: Progress | None) -> None:
    debootstrap = shutil.which("debootstrap")
    if not debootstrap:
        raise SandboxError("no base image: debootstrap is not installed and no registry image was given",
                           fix="apt-get install -y debootstrap (or set AGENTCAP_BASE_IMAGE=<image ref>)")
    if os.geteuid() != 0:
        raise SandboxError("debootstrap needs root to build the base image",
                           fix="run `agentcap sandbox build` once as root, or set AGENTCAP_BASE_IMAGE")
    say = progress or log.info
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=podman.state))
    logfile = podman.state / "build" / "rootfs.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    try:
        say(f"debootstrap {SUITE} (minbase) from {debian_mirror()}")
        with open(logfile, "wb") as out:
            done = subprocess.run([debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}",
                                   SUITE, str(work / "root"), debian_mirror()],
                                  stdout=out, stderr=subprocess.STDOUT, timeout=1800)
        if done.returncode != 0:
            raise SandboxError(f"debootstrap failed ({done.returncode}); log: {logfile}\n"
                               + _tail(logfile))
        say("importing the root filesystem into podman")
        tar = subprocess.Popen(["tar", "-C", str(work / "root"), "-c", "."], stdout=subprocess.PIPE)
        imp = podman.popen(["import", "--change", f"LABEL {LABEL}=1", "--change",
                            f"LABEL {LABEL}.image=rootfs", "-", tag],
                           stdin=tar.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert tar.stdout is not None
        tar.stdout.close()
        _, err = imp.communicate(timeout=600)
        if tar.wait() != 0 or imp.returncode != 0:
            raise SandboxError(f"podman import failed: {err.decode(errors='replace').strip()[-1000:]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- built images -----------------------------------------------------------------------------------

def input_hash(name: str) -> str:
    """The hash of everything that goes into image ``name`` (recursively through its parents)."""
    spec = _spec(name)
    digest = hashlib.sha256(f"image\0{spec.name}\0".encode())
    digest.update((input_hash(spec.parent) if spec.parent else _rootfs_hash()).encode())
    _hash_files(digest, spec.context)
    for key, value in spec.build_args:
        digest.update(f"arg\0{key}\0{value}\0".encode())
    for target, source in spec.extra_files:
        digest.update(f"file\0{target}\0".encode() + Path(_extra_path(source)).read_bytes())
    return digest.hexdigest()[:16]


def image_tag(name: str) -> str:
    return f"localhost/agentcap-{name}:{input_hash(name)}"


def is_built(podman: Podman, name: str) -> bool:
    return _exists(podman, image_tag(name))


def ensure_image(podman: Podman, name: str, progress: Progress | None = None, *,
                 rebuild: bool = False) -> str:
    """The tag of image ``name``, building it (and its parents) first when its inputs are new."""
    spec = _spec(name)
    parent = ensure_image(podman, spec.parent, progress) if spec.parent else ensure_rootfs(podman, progress)
    tag = image_tag(name)
    if not rebuild and _exists(podman, tag):
        return tag
    with file_lock(podman.state / "locks" / f"image-{name}.lock"):
        if not rebuild and _exists(podman, tag):
            return tag
        _build(podman, spec, parent, tag, progress)
    return tag


def _build(podman: Podman, spec: ImageSpec, parent: str, tag: str, progress: Progress | None) -> None:
    say = progress or log.info
    logfile = podman.state / "build" / f"{spec.name}-{tag.rsplit(':', 1)[1]}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"ctx-{spec.name}-", dir=podman.state) as ctx:
        shutil.copytree(spec.context, ctx, dirs_exist_ok=True)
        for target, source in spec.extra_files:
            shutil.copyfile(_extra_path(source), Path(ctx) / target)
        args = ["build", "--layers", "-t", tag, "--label", f"{LABEL}=1", "--label", f"{LABEL}.image={spec.name}",
                "--label", f"{LABEL}.inputs={tag.rsplit(':', 1)[1]}", "--build-arg", f"BASE={parent}"]
        for key, value in spec.build_args:
            args += ["--build-arg", f"{key}={value}"]
        args += ["-f", str(Path(ctx) / "Containerfile"), ctx]
        say(f"building {tag}")
        with open(logfile, "wb") as out:
            proc = podman.popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                out.flush()
                text = line.decode(errors="replace").rstrip()
                if text.startswith("STEP ") or text.startswith("COMMIT"):
                    say(f"{spec.name}: {text[:120]}")
            code = proc.wait()
    if code != 0:
        raise SandboxError(f"building image {spec.name} failed ({code}); log: {logfile}\n{_tail(logfile)}")


# -- listing and pruning ----------------------------------------------------------------------------

@dataclass
class ImageInfo:
    name: str
    tag: str
    current: bool
    size: int
    created: str


def list_images(podman: Podman) -> list[ImageInfo]:
    import json

    done = podman.cli(["images", "--filter", f"label={LABEL}=1", "--format", "json"])
    rows = []
    for item in json.loads(done.stdout or "[]"):
        labels = item.get("Labels") or {}
        name = labels.get(f"{LABEL}.image", "?")
        for tag in item.get("Names") or [item.get("Id", "")[:12]]:
            try:
                current = tag == (image_tag(name) if name != "rootfs" else f"localhost/agentcap-rootfs:{_rootfs_hash()}")
            except Exception:
                current = False
            rows.append(ImageInfo(name=name, tag=tag, current=current, size=int(item.get("Size") or 0),
                                  created=str(item.get("CreatedAt") or item.get("Created") or "")))
    return sorted(rows, key=lambda r: (r.name, not r.current, r.tag))
