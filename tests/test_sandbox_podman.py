"""The podman layer for real: isolation, timeouts, cleanup after Ctrl-C, image rebuilds, doctor."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from agentcap_cli.main import cli
from sandbox.bridge import Bridge
from sandbox.container import TIMEOUT_RC, ContainerSpec, Mount, run_container
from sandbox.images import ensure_image, ensure_rootfs, image_tag
from tests.conftest import closed_port
from tests.support.cli import background
from tests.support.sandboxes import containers
from tests.support.upstream import Upstream

pytestmark = [pytest.mark.slow, pytest.mark.podman]


def host_addresses() -> list[str]:
    """This machine's own IPv4 addresses other than loopback (never anything off this machine)."""
    found = set()
    try:
        out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
        found |= {line.split()[3].split("/")[0] for line in out.splitlines()}
    except OSError:
        pass
    try:
        found |= set(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    return sorted(a for a in found if not a.startswith("127."))


class Listener:
    """A TCP server on 0.0.0.0 that counts connections: the thing a container must not reach."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_a_container_reaches_its_forwarded_endpoints_and_nothing_else(podman, tmp_path):
    forbidden = Listener()
    targets = ["10.0.2.2", "host.containers.internal", "127.0.0.1", *host_addresses()]
    probe = "; ".join(
        f"if timeout 3 bash -c 'exec 3<>/dev/tcp/{a}/{forbidden.port}' 2>/dev/null; then echo OPEN {a}; "
        f"else echo CLOSED {a}; fi" for a in targets)
    try:
        with Upstream() as up, Bridge(tmp_path / "sock") as bridge:
            forwards = bridge.forwards({"allowed": up.port})
            script = (f"curl -sS -o /dev/null -w 'ALLOWED %{{http_code}}\\n' -X POST http://127.0.0.1:{up.port}/json/x; "
                      f"{probe}; getent hosts example.com >/dev/null && echo DNS || echo NODNS")
            spec = ContainerSpec(image=image_tag("base"), command=["bash", "-c", script], workdir=Path("/"),
                                 stdout=tmp_path / "out", stderr=tmp_path / "err", forwards=forwards, timeout_s=90)
            result = run_container(podman, spec)
    finally:
        forbidden.close()
    out = (tmp_path / "out").read_text()
    assert result.returncode == 0, (tmp_path / "err").read_text()
    assert "ALLOWED 200" in out
    assert "OPEN" not in out and out.count("CLOSED") == len(targets)
    assert "NODNS" in out
    assert forbidden.accepted == 0
    assert [(r.method, r.path) for r in up.received] == [("POST", "/json/x")]


def test_a_turn_past_its_timeout_is_killed_and_its_container_removed(podman, tmp_path):
    spec = ContainerSpec(image=image_tag("base"), command=["sleep", "600"], workdir=Path("/"),
                         stdout=tmp_path / "out", stderr=tmp_path / "err", timeout_s=2,
                         labels={"agentcap.run": "timeout-test"})
    result = run_container(podman, spec)
    assert result.timed_out and result.returncode == TIMEOUT_RC
    assert result.duration_s < 60
    assert containers(podman, run="timeout-test") == []


CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from sandbox.podman import get_podman
    from sandbox.images import image_tag
    from sandbox.container import ContainerSpec, run_container
    out = Path(sys.argv[1])
    spec = ContainerSpec(image=image_tag("base"), command=["bash", "-c", "echo up; exec sleep 600"], workdir=Path("/"),
                         stdout=out, stderr=out.with_name("err"), timeout_s=300, labels={"agentcap.run": sys.argv[2]})
    try:
        run_container(get_podman(), spec)
    except KeyboardInterrupt:
        sys.exit(130)
""")


def test_ctrl_c_leaves_no_container_behind(podman, tmp_path):
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    with background([sys.executable, "-c", CHILD, str(fifo), "ctrl-c-test"], stdout=None, stderr=None) as child:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        ready, _, _ = select.select([fd], [], [], 60)  # the container's first line: it is running
        assert ready and os.read(fd, 100).startswith(b"up")
        assert len(containers(podman, run="ctrl-c-test")) == 1
        child.send_signal(signal.SIGINT)
        assert child.wait(60) == 130
    assert containers(podman, run="ctrl-c-test") == []


def test_prune_removes_leftover_containers(podman):
    run = f"orphan-{uuid.uuid4().hex[:8]}"
    podman.cli(["run", "-d", "--network", "none", "--label", "agentcap=1", "--label", f"agentcap.run={run}",
                image_tag("base"), "sleep", "600"])
    assert len(containers(podman, run=run)) == 1
    try:  # --run: the machine is shared, this test prunes only what it made
        result = CliRunner().invoke(cli, ["sandbox", "prune", "--run", run])
        assert result.exit_code == 0, result.output
        assert containers(podman, run=run) == []
    finally:
        left = containers(podman, run=run)
        if left:
            podman.cli(["rm", "-f", *left], check=False)


def test_an_edited_containerfile_rebuilds_and_an_unchanged_one_does_not(podman, plugin, tmp_path):
    def build() -> tuple[str, list[str]]:
        said: list[str] = []
        return ensure_image(podman, "plugin-echo", progress=said.append), said

    def marker(tag: str) -> str:
        spec = ContainerSpec(image=tag, command=["cat", "/marker"], workdir=Path("/"), stdout=tmp_path / "o",
                             stderr=tmp_path / "e", timeout_s=60)
        assert run_container(podman, spec).returncode == 0
        return (tmp_path / "o").read_text().strip()

    tags = []
    try:
        first, said = build()
        tags.append(first)
        assert any(line.startswith("building") for line in said)
        again, said = build()
        assert again == first and not any(line.startswith("building") for line in said)
        (plugin / "Containerfile").write_text("ARG BASE\nFROM ${BASE}\nRUN echo two > /marker\n")
        second, said = build()
        tags.append(second)
        assert second != first and any(line.startswith("building") for line in said)
        assert marker(first) == "one" and marker(second) == "two"
    finally:
        for tag in tags:
            podman.cli(["rmi", "-f", tag], check=False)


def test_doctor_is_green_here(podman):
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "container run" in result.output and "fail" not in result.output
    as_json = CliRunner().invoke(cli, ["doctor", "--json"])  # docs/cli.md: one {check, status, detail, fix} per line
    checks = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert as_json.exit_code == 0 and checks and all(set(c) == {"check", "status", "detail", "fix"} for c in checks)
    assert {c["status"] for c in checks} <= {"ok", "warn"} and "podman" in {c["check"] for c in checks}


def test_an_unreachable_registry_falls_back_to_the_local_root(podman, monkeypatch):
    # a registry on a closed loopback port: the pull fails at once and nothing leaves this machine
    local = podman.cli(["image", "inspect", "--format", "{{.Id}}", ensure_rootfs(podman)]).stdout.strip()
    monkeypatch.setenv("AGENTCAP_BASE_IMAGE", f"127.0.0.1:{closed_port()}/agentcap/none:1")
    tag = ensure_rootfs(podman)
    try:
        assert podman.cli(["image", "inspect", "--format", "{{.Id}}", tag]).stdout.strip() == local
    finally:
        podman.cli(["untag", tag, tag], check=False)  # just that name (no name: every name)


def test_sandbox_cli_build_ls_and_bad_names(podman):
    runner = CliRunner()
    built = runner.invoke(cli, ["sandbox", "build", "base"])
    assert built.exit_code == 0 and built.stdout.strip() == image_tag("base")
    listed = runner.invoke(cli, ["sandbox", "ls"])
    assert listed.exit_code == 0 and "base" in listed.output and "✓" in listed.output
    as_json = runner.invoke(cli, ["sandbox", "ls", "--json"])  # docs/cli.md: {image, tag, current, size, created}
    rows = {r["image"]: r for r in map(json.loads, as_json.stdout.splitlines())}
    assert as_json.exit_code == 0 and rows["base"]["tag"] == image_tag("base") and rows["base"]["current"] is True
    assert all(set(r) == {"image", "tag", "current", "size", "created"} for r in rows.values())
    bad = runner.invoke(cli, ["sandbox", "build", "no-such-agent"])
    assert bad.exit_code == 2 and "unknown agent 'no-such-agent'" in bad.output


def test_tool_dirs_are_read_only_and_first_on_path(podman, tmp_path):
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "ls").write_text("#!/bin/sh\necho agentcap-tool\n")
    (tools / "ls").chmod(0o755)
    spec = ContainerSpec(image=image_tag("base"), workdir=Path("/"), stdout=tmp_path / "out", stderr=tmp_path / "err",
                         command=["bash", "-c", f"ls; touch {tools}/new 2>/dev/null && echo WRITABLE || echo READONLY"],
                         env={"AGENTCAP_PATH_PREPEND": str(tools)}, mounts=[Mount(tools, read_only=True)], timeout_s=60)
    assert run_container(podman, spec).returncode == 0
    assert (tmp_path / "out").read_text().split() == ["agentcap-tool", "READONLY"]


def test_the_shared_service_does_not_depend_on_the_directory_it_was_started_from(podman, tmp_path, monkeypatch):
    """The API service outlives the process that started it; started from a directory that is then deleted
    (a test's tmp dir, a CI checkout), it must still run containers (conmon inherits its cwd)."""
    import dataclasses
    import shutil

    from sandbox.podman import Podman

    own = Podman(binary=podman.binary, state=tmp_path / "state", conf=podman.conf)  # its own socket and service
    own.state.mkdir()
    doomed = tmp_path / "checkout"
    doomed.mkdir()
    monkeypatch.chdir(doomed)
    try:
        own.ensure_service()
        monkeypatch.chdir(tmp_path)
        shutil.rmtree(doomed)
        spec = ContainerSpec(image=image_tag("base"), command=["true"], workdir=Path("/"), stdout=tmp_path / "out",
                             stderr=tmp_path / "err", timeout_s=120, labels={"agentcap.run": "cwd-test"})
        assert run_container(dataclasses.replace(own, _client=None), spec).returncode == 0, (tmp_path / "err").read_text()
    finally:
        subprocess.run(["pkill", "-f", f"system service .*{own.socket}"], check=False)
