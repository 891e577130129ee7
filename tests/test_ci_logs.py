"""Off a terminal (a CI log, a pipe): `run` prints a line per finished turn as it happens and a heartbeat
while waiting; `export` does not fold lines at 80 columns; `ls -l` fits 100 columns."""

from __future__ import annotations

import itertools
import json
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentcap_cli.harness.modelserver import ModelServer, make_responder
from tests.support import cli
from tests.support.runs import make_run

ANSI = re.compile(r"\x1b\[")
TURN_LINE = re.compile(r"^pi (t000\d) turn ([12])/(\d): (\S[^,]*), (\d+) calls, (\d+\.\d)s$")
HEARTBEAT = re.compile(r"^… pi: \d+/\d+ tasks done, \d+ running, \d+ failed, \d+ calls, (\d+)s$")


# -- ls -l and export: no podman --------------------------------------------------------------------

MODELS = ["m", "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8-with-a-really-long-suffix"]
UPSTREAMS = [None, "embedded:scripted", "https://router.huggingface.co/v1/a/very/long/path/to/some/deployment"]
LABELS = [None, "nightly", "a label that is long enough to need folding in a hundred columns, surely"]
ENDS = [None, "same-day", "next-day"]


def write_run(ws: Path, i: int, model: str, upstream: str | None, label: str | None, end: str | None,
              replay: bool) -> str:
    run_id = f"pi-scripted-20261122-04{i:04d}"
    d = ws / ".agentcap" / run_id
    d.mkdir(parents=True)
    finished = {None: None, "same-day": "2026-11-22T05:10:00.000000000Z",
                "next-day": "2026-11-23T01:00:00.000000000Z"}[end]
    tasks = [{"task_id": f"t000{k}", "prompt": "p", "turns_planned": 1, "completed_turns": 1,
              "drift": {"at": 1} if replay and k == 1 else None} for k in range(1, 4)]
    (d / "run.json").write_text(json.dumps({
        "run_id": run_id, "kind": "corpus", "agent": "pi", "model": model, "provider": "scripted",
        "upstream": upstream, "label": label, "status": "done" if finished else "running",
        "started_at": "2026-11-22T04:32:49.000000000Z", "finished_at": finished,
        "replay_of": "pi-scripted-20261121-000000" if replay else None, "tasks": tasks}))
    return run_id


def ls_forms(ws: Path) -> Iterator[tuple[str | None, ...]]:
    for p in sorted((ws / ".agentcap").glob("*/run.json")):
        try:
            rec = json.loads(p.read_text())
        except ValueError:
            continue
        yield rec["model"], rec["upstream"], rec["label"], rec["replay_of"]


def ls_workspaces(tmp: Path) -> Iterator[tuple[Path, list[str]]]:
    """Workspaces over the class of rows: one with a row of each model × upstream × label × end × replay
    form together (a proxy dir and an unreadable run.json too), and one per form of the fields that decide
    the layout alone (short or long model, upstream, label; replay or not), where empty columns drop out."""
    forms = list(itertools.product(MODELS, UPSTREAMS, LABELS, ENDS, [False, True]))
    every = tmp / "every"
    ids = [write_run(every, i, *f) for i, f in enumerate(forms)]
    (every / ".agentcap" / "proxy-host-20261122-000000" / "captures").mkdir(parents=True)  # a proxy dir
    bad = every / ".agentcap" / "pi-scripted-20261122-999999"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    yield every, [*ids, "proxy-host-20261122-000000", bad.name]
    alone = itertools.product(MODELS, UPSTREAMS[::2], LABELS[::2], ENDS[2:], [False, True])
    for n, f in enumerate(alone):
        ws = tmp / f"one-{n}"
        yield ws, [write_run(ws, 0, *f)]


@pytest.mark.timeout(120)
def test_ls_long_fits_100_columns_off_a_terminal(tmp_path):
    for ws, ids in ls_workspaces(tmp_path):
        r = cli.agentcap("ls", "-l", workspace=ws, COLUMNS=None)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert max(map(len, lines)) <= 100, "\n".join(line for line in lines if len(line) > 100)
        assert not ANSI.search(r.stdout)
        assert lines[0].split()[:6] == ["run", "agent", "model", "tasks", "ok", "captures"], r.stdout
        for run_id in ids:  # the run id, what a user copies, is never folded
            assert any(line.split()[:1] == [run_id] for line in lines), (run_id, r.stdout)
        words = " ".join(r.stdout.split())
        for f in ls_forms(ws):  # every field is there, whole (a field is never cut inside a line)
            assert all(v is None or " ".join(v.split()) in words for v in f), (f, r.stdout)
        if len(ids) == 1:  # a column empty in every row is left out
            rec = json.loads((ws / ".agentcap" / ids[0] / "run.json").read_text())
            assert ("label" in r.stdout) == bool(rec["label"]), r.stdout
            assert ("drift" in r.stdout) == bool(rec["replay_of"]), r.stdout


def test_ls_long_keeps_the_terminal_width_given_by_columns(tmp_path):
    ws, _ = next(ls_workspaces(tmp_path))
    r = cli.agentcap("ls", "-l", workspace=ws, COLUMNS="200")
    assert r.returncode == 0, r.stderr
    assert 100 < max(map(len, r.stdout.splitlines())) <= 200


@pytest.mark.timeout(120)
def test_export_off_a_terminal_does_not_fold_a_long_path(tmp_path):
    deep = tmp_path.joinpath(*(["a-directory-with-a-long-name"] * 5))
    make_run(deep, "pi-scripted-1", [("chat", "model-a", True)])
    out = deep / "the-export-directory-with-a-name-long-enough-to-pass-eighty-columns"
    assert len(str(out)) > 160
    r = cli.agentcap("export", "pi-scripted-1", "--out", str(out), workspace=deep, COLUMNS=None)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert any(f"exported to {out}" in line for line in lines), r.stderr
    assert not ANSI.search(r.stderr)


# -- run through a pipe: podman ---------------------------------------------------------------------

class Lines:
    """A child's stderr read line by line as it comes, each line with the time it arrived and whether
    the child was still running then."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.q = proc, queue.Queue[tuple[float, bool, str] | None]()
        self.got: list[tuple[float, bool, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.q.put((time.monotonic(), self.proc.poll() is None, line.rstrip("\n")))
        self.q.put(None)

    def until(self, pattern: re.Pattern[str], deadline: float) -> tuple[float, bool, str] | None:
        """The next line matching ``pattern`` before ``deadline`` (monotonic), or None at EOF/deadline."""
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if item is None:
                return None
            self.got.append(item)
            if pattern.search(item[2]):
                return item
        return None

    def rest(self, deadline: float) -> list[str]:
        self.until(re.compile(r"(?!)"), deadline)
        return [line for _, _, line in self.got]


@pytest.mark.slow
@pytest.mark.podman
@pytest.mark.timeout(600)
def test_a_piped_run_prints_each_turn_as_it_ends(tmp_path):
    corpus = tmp_path / "tasks.txt"
    corpus.write_text("Create alpha.txt please.\nCreate beta.txt please.\nCreate gamma.txt please.\n")
    with cli.start("run", "--agent", "pi", "--tasks", str(corpus), "--turns", "2", "-j", "1",
                   workspace=tmp_path, COLUMNS=None) as proc:
        lines = Lines(proc)
        first = lines.until(TURN_LINE, time.monotonic() + 300)
        assert first is not None, "\n".join(x for _, _, x in lines.got)
        _, running, text = first
        # printed while the run was still going: tasks 2 and 3 had not even started (-j 1)
        assert running and TURN_LINE.match(text).group(1, 2) == ("t0001", "1"), text  # type: ignore[union-attr]
        log = lines.rest(time.monotonic() + 300)
        assert proc.wait(timeout=60) == 0, "\n".join(log)
    (tmp_path / "ci-log.txt").write_text("\n".join(log) + "\n")
    print("\n".join(log))
    assert not any(ANSI.search(x) for x in log)
    turns = [m.group(1, 2, 4) for x in log if (m := TURN_LINE.match(x))]
    assert sorted(turns) == [(f"t000{t}", str(n), "ok") for t in (1, 2, 3) for n in (1, 2)], log
    assert sum(1 for x in log if x.startswith("pi t000")) == 6  # no record folded onto a second line
    summary = next(i for i, x in enumerate(log) if "— done" in x)
    assert summary > max(i for i, x in enumerate(log) if TURN_LINE.match(x))
    assert all(re.search(rf"\b{t}\b.*2/2", "\n".join(log[summary:])) for t in ("t0001", "t0002", "t0003"))


SLOW = """\
model: slow
chunk_size: 1
delay_ms: 1000
replies:
  - match: {tools: true}
    text: "%s"
  - text: "A title."
""" % ("x" * 70)  # one turn of ~70 s: streamed a character a second


@pytest.mark.slow
@pytest.mark.podman
@pytest.mark.timeout(600)
def test_a_piped_run_beats_every_30_seconds_while_a_turn_is_slow(tmp_path):
    script = tmp_path / "slow.yaml"
    script.write_text(SLOW)
    corpus = tmp_path / "tasks.txt"
    corpus.write_text("Say something.\n")
    with ModelServer(make_responder(script=str(script))) as server, \
            cli.start("run", "--agent", "pi", "--tasks", str(corpus), "--upstream", server.url + "/v1",
                      "--model", "slow", "--timeout", "300", workspace=tmp_path, COLUMNS=None) as proc:
        lines = Lines(proc)
        started = time.monotonic()
        beats = []
        while len(beats) < 2 and (beat := lines.until(HEARTBEAT, time.monotonic() + 40)) is not None:
            beats.append(beat[0])
        got = "\n".join(x for _, _, x in lines.got)
        print("\n".join(f"{t - started:6.1f}s  {x}" for t, _, x in lines.got))
        assert len(beats) == 2, got
        assert beats[0] - started <= 40, got  # the image check, then at most 30 s of silence
        assert beats[1] - beats[0] >= 29.5, got  # not more often than every 30 s
        done = lines.until(TURN_LINE, time.monotonic() + 120)
        assert done is not None, "\n".join(x for _, _, x in lines.got)
        assert proc.wait(timeout=60) == 0
    assert not any(ANSI.search(x) for _, _, x in lines.got)


TRIAL_LINE = re.compile(r"^trial (\S+)#(\d+): (PASS|FAIL|DRIFT), (\d+) calls, (\d+\.\d)s$")


@pytest.mark.slow
@pytest.mark.podman
@pytest.mark.timeout(600)
def test_a_piped_suite_prints_each_trial_as_it_ends(tmp_path):
    project = tmp_path / "p"
    assert cli.agentcap("init", str(project)).returncode == 0
    with cli.start("test", "--repeat", "3", "-j", "1", "--no-judge", cwd=project, workspace=tmp_path,
                   COLUMNS=None) as proc:
        lines = Lines(proc)
        first = lines.until(TRIAL_LINE, time.monotonic() + 300)
        assert first is not None, "\n".join(x for _, _, x in lines.got)
        assert first[1], first  # printed while the later repeats were still to run (-j 1)
        log = lines.rest(time.monotonic() + 300)
        assert proc.wait(timeout=60) == 0, "\n".join(log)
    print("\n".join(log))
    assert not any(ANSI.search(x) for x in log)
    trials = [m.group(1, 2, 3) for x in log if (m := TRIAL_LINE.match(x))]
    assert sorted(trials) == [(trials[0][0], str(n), "PASS") for n in (1, 2, 3)], log
