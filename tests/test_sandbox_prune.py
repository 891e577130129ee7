"""Owned containers: `agentcap sandbox prune` removes only those whose owning process is gone, and a turn
whose container is killed from outside the run is recorded as such (exit code and cause) in run.json and
on stderr.

The podman tests touch only containers they made themselves: every prune and every cleanup is filtered
by a run id unique to the test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from agentcap_cli.harness.modelserver import ModelServer, make_responder
from agentcap_cli.runs.record import load_run
from sandbox.container import (
    KILLED_OUTSIDE,
    OWNER_LABELS,
    TIMEOUT_RC,
    ContainerResult,
    ContainerSpec,
    Leftover,
    Owner,
    boot_id,
    current_owner,
    find_containers,
    process_start,
    remove_containers,
    run_container,
)
from sandbox.images import image_tag
from tests.support import cli

REPO = Path(__file__).resolve().parents[1]


# -- who owns a container (no podman) --------------------------------------------------------------------

def _dead_pid() -> int:
    """The pid of a child that ran and was reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(30)
    return child.pid


def _owners() -> list[tuple[str, Callable[[Owner], Owner], bool]]:
    """(kind, how the labels differ from a live process's, alive?)."""
    host = socket.gethostname()
    return [
        ("this process", lambda o: o, True),
        ("dead pid", lambda o: Owner(_dead_pid(), o.start, o.boot, host), False),
        ("reused pid (other start time)", lambda o: Owner(o.pid, str(int(o.start) + 1), o.boot, host), False),
        ("other boot", lambda o: Owner(o.pid, o.start, str(uuid.uuid4()), host), False),
        ("other host", lambda o: Owner(_dead_pid(), o.start, str(uuid.uuid4()), host + "-elsewhere"), True),
    ]


@pytest.mark.parametrize("kind,change,alive", _owners(), ids=[k for k, _, _ in _owners()])
def test_an_owner_is_alive_only_as_the_same_process_of_the_same_boot(kind, change, alive):
    owner = change(current_owner())
    assert owner.alive() is alive, kind
    assert Owner.of(owner.labels()) == owner  # labels round-trip


@pytest.mark.parametrize("drop", [*OWNER_LABELS.values(), "garbage pid"])
def test_labels_without_a_whole_owner_name_none(drop):
    labels = current_owner().labels()
    if drop == "garbage pid":
        labels[OWNER_LABELS["pid"]] = "12x"
    else:
        del labels[drop]
    assert Owner.of(labels) is None
    assert Leftover("c", labels, running=True).owner is None


def test_the_start_time_is_read_past_a_command_name_with_spaces_and_parentheses(tmp_path):
    exe = tmp_path / "a b) (c"
    exe.symlink_to(sys.executable)
    child = subprocess.Popen([str(exe), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        start = process_start(child.pid)
        assert start is not None and start.isdigit()
        assert Owner(child.pid, start, boot_id(), socket.gethostname()).alive()
    finally:
        child.kill()
        child.wait(30)
    assert process_start(child.pid) is None
    assert current_owner().boot == boot_id() != ""


# -- two runs in podman ----------------------------------------------------------------------------------

OWNER_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from sandbox.podman import get_podman
    from sandbox.images import image_tag
    from sandbox.container import ContainerSpec, run_container
    out = Path(sys.argv[1])
    spec = ContainerSpec(image=image_tag("base"), command=["sleep", "600"], workdir=Path("/"), stdout=out,
                         stderr=out.with_name("err"), timeout_s=600, labels={"agentcap.run": sys.argv[2]})
    run_container(get_podman(), spec)
""")


def wait_for(what: str, check: Callable[[], object], timeout: float = 120) -> object:
    """``check()``'s first truthy value, polled until ``timeout`` (a bounded wait on a real condition)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:g} s")


def running(podman, run: str) -> list[Leftover]:
    return [c for c in find_containers(podman, run=run) if c.running]


def leave_orphan(podman, tmp_path: Path, run: str) -> Leftover:
    """A container whose owner (a child process running it through the container API) was SIGKILLed."""
    with cli.background([sys.executable, "-c", OWNER_CHILD, str(tmp_path / "orphan.out"), run]) as child:
        (orphan,) = wait_for("the owner's container running", lambda: running(podman, run))  # type: ignore[misc]
        assert orphan.owner is not None and orphan.owner.pid == child.pid and orphan.owner.alive()
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(30)
    assert not orphan.owner.alive()
    assert [c.name for c in find_containers(podman, run=run)] == [orphan.name]  # nobody removed it
    return orphan


#: how a running container ends → (its exit code, killed from outside the run?)
ENDINGS: dict[str, tuple[Callable[..., object], int, bool]] = {
    "podman kill": (lambda podman, name, run: podman.cli(["kill", name]), 137, True),
    "podman kill --signal TERM": (lambda podman, name, run: podman.cli(["kill", "--signal", "TERM", name]), 143, True),
    "podman stop -t 0": (lambda podman, name, run: podman.cli(["stop", "-t", "0", name]), 137, True),
    "podman rm -f (an old prune)": (lambda podman, name, run: podman.cli(["rm", "-f", "-t", "0", name]), 137, True),
    "its own run removes it (Ctrl-C)": (lambda podman, name, run: remove_containers(podman, run=run), 137, False),
    "the agent exits 3": (lambda podman, name, run: podman.cli(["exec", name, "bash", "-c", "echo > /tmp/go"]), 3, False),
}


@pytest.mark.slow
@pytest.mark.podman
@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", list(ENDINGS))
def test_a_container_ended_from_outside_the_run_says_so(podman, tmp_path, how):
    end, code, outside = ENDINGS[how]
    run = f"ended-{uuid.uuid4().hex[:8]}"
    # exits 3 once a line is written to its fifo (the agent's own failure); until then it waits
    script = "mkfifo /tmp/go && read -r _ < /tmp/go; exit 3"
    spec = ContainerSpec(image=image_tag("base"), command=["bash", "-c", script], workdir=Path("/"),
                         stdout=tmp_path / "out", stderr=tmp_path / "err", timeout_s=240, labels={"agentcap.run": run})
    results: list[ContainerResult] = []
    turn = threading.Thread(target=lambda: results.append(run_container(podman, spec)))
    turn.start()
    try:
        (c,) = wait_for("the container running", lambda: running(podman, run))  # type: ignore[misc]
        wait_for("its fifo made", lambda: podman.cli(["exec", c.name, "test", "-p", "/tmp/go"], check=False).returncode == 0)
        end(podman, c.name, run)
        turn.join(120)
        (result,) = results
        assert (result.returncode, result.killed_outside, result.timed_out) == (code, outside, False)
    finally:
        remove_containers(podman, run=run)
        turn.join(120)
    assert find_containers(podman, run=run) == []


@pytest.mark.slow
@pytest.mark.podman
def test_a_turn_past_its_timeout_is_not_killed_from_outside(podman, tmp_path):
    spec = ContainerSpec(image=image_tag("base"), command=["sleep", "600"], workdir=Path("/"), stdout=tmp_path / "out",
                         stderr=tmp_path / "err", timeout_s=1, labels={"agentcap.run": f"ended-{uuid.uuid4().hex[:8]}"})
    result = run_container(podman, spec)
    assert (result.returncode, result.timed_out, result.killed_outside) == (TIMEOUT_RC, True, False)


@pytest.mark.slow
@pytest.mark.podman
@pytest.mark.timeout(600)
def test_prune_keeps_a_live_run_and_a_turn_killed_from_outside_says_so(podman, tmp_path):
    dead_run = f"prune-dead-{uuid.uuid4().hex[:8]}"
    corpus = tmp_path / "tasks.txt"
    corpus.write_text("Create alpha.txt please.\n")
    arrived, release = threading.Event(), threading.Event()

    def hold(method: str, path: str) -> None:  # the model call waits: the turn stays in flight
        if method == "POST":
            arrived.set()
            release.wait(300)

    server = ModelServer(make_responder(script=str(REPO / "tests/support/slow-reply.yaml"))).start()
    server.app.on_request = hold
    live_run = ""
    try:
        orphan = leave_orphan(podman, tmp_path, dead_run)
        with cli.start("run", "--agent", "pi", "--tasks", str(corpus), "--turns", "1", "--upstream",
                       server.url + "/v1", "--model", "slow", workspace=tmp_path) as proc:
            assert arrived.wait(300), "the run never called the model"
            (run_dir,) = (tmp_path / ".agentcap").iterdir()
            live_run = run_dir.name
            (turn,) = running(podman, live_run)
            assert turn.owner is not None and turn.owner.alive()

            pruned = cli.agentcap("sandbox", "prune", "--run", live_run, "--run", dead_run, timeout=120)
            assert pruned.returncode == 0, pruned.stderr
            assert find_containers(podman, run=dead_run) == []
            assert [c.name for c in running(podman, live_run)] == [turn.name]
            assert f"removed container {orphan.name}" in pruned.stderr
            kept = [line for line in pruned.stderr.splitlines() if line.startswith("kept ")]
            assert kept == [f"kept 1 container(s) of run {live_run}: its owner (pid {turn.owner.pid} on "
                            f"{turn.owner.host}) is still running: {turn.name}"], pruned.stderr

            podman.cli(["kill", turn.name])  # someone else's kill, found by the run's label
            out, err = proc.communicate(timeout=300)
        release.set()
        task = load_run(run_dir).tasks[0]
        (record,) = task.turns
        assert record.returncode == 137
        assert record.aborted_reason == f"failed: {KILLED_OUTSIDE} (exit code 137)"
        assert task.aborted_reason == record.aborted_reason
        raw = json.loads((run_dir / "run.json").read_text())
        assert KILLED_OUTSIDE in json.dumps(raw)
        assert KILLED_OUTSIDE in err and "137" in err, err
        assert proc.returncode != 0
    finally:
        release.set()
        server.stop()
        for run in (dead_run, live_run):
            if run:
                remove_containers(podman, run=run)
