"""`agentcap export` against hostile runs and a hostile disk (issue 25).

* Runs with no answered call — every call refused upstream (401), every call in flight when the
  proxy got kill -9, both, none at all — recorded through a real capture proxy in front of the
  scripted upstream, as a proxy run, a corpus run and a suite run: the export writes datasets whose
  every declared config loads with ``datasets.load_dataset(<dir>, <config>)`` with the features of
  a normal export, or (no call and no trace) refuses with one exit-2 line; never a traceback.
* A full disk, for real: the CLI in a subprocess with RLIMIT_FSIZE (writes fail with EFBIG) over
  limits that fail at the first parquet, a later parquet and the card, and a small tmpfs (ENOSPC)
  over its size; Ctrl-C in the middle: ``--out`` is as it was (absent, or its earlier export byte
  for byte), no temporary directory is left beside it, and a push uploads nothing.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import openai
import pytest
from datasets import Features, load_dataset
from huggingface_hub import DatasetCard

from agentcap_cli.export.captures import SCHEMA as CAPTURE_SCHEMA
from agentcap_cli.export.files import SCHEMA as FILE_SCHEMA
from agentcap_cli.export.sessions import SCHEMA as SESSION_SCHEMA
from agentcap_cli.harness.proxy import start_proxy
from agentcap_cli.runs.record import RunFile, RunRecord, TaskRecord
from agentcap_cli.sessions.schema import validate
from tests.support import cli
from tests.support.runs import make_run
from tests.support.upstream import Upstream

KINDS = ("proxy", "corpus", "suite")
FORMS = ("all-401", "all-in-flight", "mixed", "empty")
FEATURES = {("captures", "default"): CAPTURE_SCHEMA, ("captures", "sessions"): SESSION_SCHEMA}


# -- runs with no answered call, recorded for real ---------------------------------------------------

def _call(proxy_url: str, route: str, stream: bool) -> None:
    client = openai.OpenAI(base_url=f"{proxy_url}/{route}/v1", api_key="x", max_retries=0, timeout=60)
    try:
        out = client.chat.completions.create(model="m", stream=stream, messages=[{"role": "user", "content": "hi"}])
        if stream:
            list(out)
    except openai.APIError:
        pass  # a 401, or the connection dropped by the killed proxy: what the test records


def record(run_dir: Path, form: str) -> None:
    """``form``'s captures through a real proxy: 401s answered, calls held by the upstream until the
    proxy is killed (-9), both; ``empty``: the captures dir of a proxy that saw no call."""
    if form == "empty":
        (run_dir / "captures").mkdir(parents=True)
        return
    refused, held = {"all-401": (2, 0), "all-in-flight": (0, 2), "mixed": (1, 1)}[form]
    with Upstream() as up, start_proxy(up.url, run_dir, events=True) as proxy:
        for i in range(refused):
            _call(proxy.base_url, "status/401", stream=i % 2 == 0)
            rid = proxy.events.wait_for(event="request")["request_id"]
            proxy.events.wait_for(event="response", request_id=rid)
        clients = [threading.Thread(target=_call, args=(proxy.base_url, "held", i % 2 == 0)) for i in range(held)]
        for t in clients:
            t.start()
            proxy.events.wait_for(event="request")
        if held:
            proxy.kill()
        for t in clients:
            t.join(60)
            assert not t.is_alive()
    assert len(list((run_dir / "captures").glob("*.request.json"))) == refused + held


def attribute(run_dir: Path, kind: str) -> None:
    """Make the recorded proxy run a corpus or suite run: attribution in the request records (the
    documented fields), run.json, a suite's results, a corpus run's native trace."""
    if kind == "proxy":
        return
    for i, path in enumerate(sorted((run_dir / "captures").glob("*.request.json"))):
        req = json.loads(path.read_text())
        req.update({"task_id": "t0001", "turn": 1} if kind == "corpus" else
                   {"task_id": "notes", "cell": "notes", "repeat": 1 + i % 2, "turn": 1})
        path.write_text(json.dumps(req))
    tasks = [TaskRecord("t0001", "make it", 1, completed_turns=0, aborted_reason="upstream_error 401")] \
        if kind == "corpus" else [TaskRecord(f"notes#{r}", "post the note", 1) for r in (1, 2)]
    RunFile(run_dir, RunRecord(run_id=run_dir.name, kind=kind, agent="pi", model="m", provider="p", upstream="u",
                               label=None, turns_per_task=1, followup="continue", started_at="2026-11-22T00:00:00Z",
                               tasks=tasks)).save()
    if kind == "suite":
        for r in (1, 2):
            res = run_dir / "results" / "notes" / f"{r}.json"
            res.parent.mkdir(parents=True, exist_ok=True)
            res.write_text(json.dumps({"cell": "notes", "repeat": r, "passed": False, "error": "upstream 401"}))
    else:
        trace = run_dir / "traces" / "t0001" / "notes.md"
        trace.parent.mkdir(parents=True)
        trace.write_text("the agent's own notes\n")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict[str, Path]:
    """form → a proxy run dir recorded in that form (copied per kind by the tests)."""
    root = tmp_path_factory.mktemp("recorded")
    out = {}
    for form in FORMS:
        record(root / form, form)
        out[form] = root / form
    return out


def dataset_dirs(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.glob("*/README.md"))


def load_every_config(dataset: Path, cache: Path) -> dict[str, list[dict]]:
    """config → rows, for every config the dataset's card declares, loaded as a user would:
    ``load_dataset(<dir>, <config>)``; each config's features are those of its schema.

    Two limits of ``datasets`` (5.x), not of the export: it picks one builder for a whole directory
    (from its first config), so a traces dataset's parquet ``files`` config, beside its JSONL session
    files, loads by its files (``load_dataset("parquet", data_files=…)``, as the card's snippet does);
    and it reads session files only with the ``teich`` package, so those are checked against the
    Session Trace Simple Format instead (``agentcap_cli.sessions.schema.validate``)."""
    card = DatasetCard.load(dataset / "README.md")
    configs = {c["config_name"]: c["data_files"][0]["path"] for c in card.data.to_dict()["configs"]}
    assert configs, dataset
    mixed = len({Path(p).suffix for p in configs.values()}) > 1
    rows: dict[str, list[dict]] = {}
    for name, pattern in configs.items():
        if pattern.endswith(".jsonl"):
            files = sorted(dataset.glob(pattern))
            assert files and all(validate(f.read_text()) == [] for f in files), (dataset.name, name)
            rows[name] = [{"file": str(f)} for f in files]
            continue
        ds = load_dataset("parquet", data_files=str(dataset / pattern), split="train", cache_dir=str(cache)) \
            if mixed else load_dataset(str(dataset), name, split="train", cache_dir=str(cache))
        schema = FEATURES.get((dataset.name, name), FILE_SCHEMA)
        assert ds.features == Features.from_arrow_schema(schema), (dataset.name, name)
        rows[name] = ds.to_list()
    return rows


@pytest.mark.parametrize(("form", "with_failed"),  # (an empty run has no failed call for the flag to add)
                         [(f, w) for f in FORMS for w in (False, True) if not (f == "empty" and w)],
                         ids=[f"{f}-{'with-failed-calls' if w else 'default'}" for f in FORMS for w in (False, True)
                              if not (f == "empty" and w)])
@pytest.mark.parametrize("kind", KINDS)
def test_a_run_with_no_answered_call_exports_loadable_datasets_or_one_error(recorded, tmp_path, kind, form,
                                                                           with_failed):
    ws = tmp_path / "ws"
    run_dir = ws / ".agentcap" / f"{kind}-{form}"
    shutil.copytree(recorded[form], run_dir)
    attribute(run_dir, kind)
    out = tmp_path / "out"
    r = cli.agentcap("export", run_dir.name, "--out", str(out), *(["--with-failed-calls"] if with_failed else []),
                     workspace=ws)
    assert "Traceback" not in r.stderr, r.stderr
    has_traces = kind == "corpus"
    if form == "empty" and not has_traces:
        assert r.returncode == 2, r.stderr
        [line] = [x for x in r.stderr.splitlines() if x.strip()]
        assert line == f"Error: nothing to export: {run_dir.resolve()}: no captured calls and no traces"
        assert not out.exists() and list(tmp_path.iterdir()) == [ws]
        return
    assert r.returncode == 0, r.stderr
    names = [d.name for d in dataset_dirs(out)]
    assert names == (["captures"] if form != "empty" else []) + (["pi-traces"] if has_traces else []) + (
        ["wire-traces"] if with_failed else [])  # failed calls counted: the sessions rebuilt from them
    loaded = {d.name: load_every_config(d, tmp_path / "cache") for d in dataset_dirs(out)}
    if form == "empty":
        assert "no captured calls" in r.stderr
        return
    calls, sessions = loaded["captures"]["default"], loaded["captures"]["sessions"]
    assert len(calls) == len(list((run_dir / "captures").glob("*.request.json")))
    assert all(c["finish_reason"] == "error" and (c["error"] or c["status_code"] >= 400) for c in calls)
    # every session that made a call has its row, all its calls failed; they count only when asked
    assert sessions and all(s["ok"] is not True and s["finish_reason"] == "error" for s in sessions)
    assert sum(s["n_failed_calls"] for s in sessions) == len(calls)
    if with_failed:
        assert all(s["n_calls"] == s["n_failed_calls"] for s in sessions)
    else:
        assert all((s["n_calls"], s["messages"], s["request_ids"]) == (0, [], []) for s in sessions)
    assert "sessions = load_dataset(" in (out / "captures" / "README.md").read_text()


# -- a full disk, and Ctrl-C -------------------------------------------------------------------------

def words(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(7)) for _ in range(n // 8))


@pytest.fixture(scope="module")
def disk_ws(tmp_path_factory) -> Path:
    """A run whose files grow in the order export writes them: a small calls parquet first, then a
    bigger traces parquet (a 200 KB trace of random words); plus a finished export of another run
    whose card its owner made long (400 KB of their own words, which a card update keeps)."""
    ws = tmp_path_factory.mktemp("disk")
    run = make_run(ws, "big-trace", [("chat", "model-a", False)])
    (run / "traces" / "t0001" / "notes.md").write_text(words(200_000, 1))
    make_run(ws, "earlier", [("chat", "model-a", True)])
    earlier = ws / "earlier-out"
    assert cli.agentcap("export", "earlier", "--out", str(earlier), workspace=ws).returncode == 0
    card = earlier / "captures" / "README.md"
    text = card.read_text()
    assert "\n# captures\n" in text
    card.write_text(text.replace("\n# captures\n", "\n# captures\n\n" + words(400_000, 2) + "\n", 1))
    shutil.rmtree(ws / ".agentcap" / "earlier")
    return ws


def snapshot(path: Path) -> dict[str, bytes] | None:
    if not path.exists():
        return None
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(path.rglob("*"))}


LIMITED = ("import os, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
           "n = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); os.execv(sys.argv[2], sys.argv[2:])")


def limited_export(ws: Path, limit: int, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``agentcap export ARGS`` whose writes fail with EFBIG past ``limit`` bytes per file (SIGXFSZ
    ignored: the write returns the error, as a full disk's does)."""
    command = [sys.executable, "-c", LIMITED, str(limit), *cli.argv("export", *args)]
    with cli.background(command, env=cli.environ(ws, **env)) as proc:
        out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def assert_failed_whole(r: subprocess.CompletedProcess, out: Path, before: dict[str, bytes] | None, errno_text: str):
    assert r.returncode == 1, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert "Traceback" not in r.stderr and [x for x in lines if x.startswith("error:")] == [lines[-1]], r.stderr
    assert errno_text in lines[-1] and str(out) in lines[-1], lines[-1]
    assert snapshot(out) == before  # absent, or the earlier export byte for byte
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.agentcap-")]  # no temp dir left
    assert r.stdout == ""


def sizes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_size for p in out.rglob("*") if p.is_file()}


@pytest.mark.parametrize("existing", [False, True], ids=["new-out", "existing-out"])
def test_a_full_disk_is_one_error_line_and_out_stays_as_it_was(disk_ws, tmp_path, existing):
    out = tmp_path / "out"

    def reset() -> None:
        shutil.rmtree(out, ignore_errors=True)
        if existing:
            shutil.copytree(disk_ws / "earlier-out", out)

    reset()
    before = snapshot(out)
    # what a full export writes here (the cards name --out: measured in that very place), then undone
    ok = cli.agentcap("export", "big-trace", "--out", str(out), workspace=disk_ws)
    assert ok.returncode == 0, ok.stderr
    done = sizes(out)
    size = {k: v for k, v in done.items() if k not in (before or {}) or k.endswith("README.md")}  # written now
    reset()
    calls = next(v for k, v in size.items() if k.startswith("captures/data/big-trace"))
    traces = next(v for k, v in size.items() if k.startswith("pi-traces/data/"))
    card = size["captures/README.md"]
    assert calls < traces  # written first, smaller: a limit between them fails at the later parquet
    # a limit just under each file's size fails at the first file written that is as big: the calls
    # parquet, the traces parquet, and (with the owner's long card) the card, which is written last
    limits = sorted({s - 1 for s in size.values() if s > 1000})
    assert calls - 1 in limits and traces - 1 in limits and (not existing or card - 1 > max(
        v for k, v in size.items() if k.endswith(".parquet")))
    for limit in limits:
        r = limited_export(disk_ws, limit, "big-trace", "--out", str(out))
        assert_failed_whole(r, out, before, "File too large (EFBIG)")
    # and nothing stays behind: the same export without a limit still makes the files it would have
    r = cli.agentcap("export", "big-trace", "--out", str(out), workspace=disk_ws)
    assert r.returncode == 0, r.stderr
    assert sizes(out).keys() == done.keys()


def _tmpfs(mount: Path, kib: int) -> bool:
    mount.mkdir(exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(mount)],
                          capture_output=True).returncode == 0


def test_a_full_tmpfs_is_enospc_at_every_point_and_out_stays_as_it_was(disk_ws, tmp_path):
    mount = tmp_path / "mnt"
    assert _tmpfs(mount, 64), "mount -t tmpfs failed: this test needs root (as the CI machines give)"
    subprocess.run(["umount", str(mount)], check=True)
    failed = 0
    for kib in range(8, 4096, 32):  # from no room at all until the export fits
        assert _tmpfs(mount, kib)
        try:
            shutil.copytree(disk_ws / "earlier-out", mount / "out")  # an existing --out, kept as it is
            before = snapshot(mount / "out")
        except OSError:  # too small for even the earlier export: the new-out case only
            shutil.rmtree(mount / "out", ignore_errors=True)
            before = None
        try:
            r = cli.agentcap("export", "big-trace", "--out", str(mount / "out"), workspace=disk_ws)
            if r.returncode == 0:
                break
            failed += 1
            assert_failed_whole(r, mount / "out", before, "No space left on device (ENOSPC)")
        finally:
            subprocess.run(["umount", str(mount)], check=True)
    else:
        pytest.fail("the export never fitted")
    assert failed >= 8  # failed at many points (new and existing --out) before it fitted


def test_ctrl_c_in_the_middle_leaves_out_as_it_was(disk_ws, tmp_path):
    """The export is held after its files are staged, before its cards: its warnings about 600
    unreadable captures fill the stderr pipe this test stops reading after the first one."""
    ws = tmp_path / "ws"
    run = make_run(ws, "noisy", [("chat", "model-a", False)])
    for i in range(600):
        (run / "captures" / f"{i:032x}.request.json").write_text("not json")
    out = tmp_path / "out"
    shutil.copytree(disk_ws / "earlier-out", out)
    before = snapshot(out)
    with cli.start("export", "noisy", "--out", str(out), workspace=ws) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "unreadable" in line and "skipped" in line:
                break
        staged = [p for p in tmp_path.iterdir() if p.name.startswith(".out.agentcap-")]
        assert staged and list(staged[0].glob("captures/data/noisy--*.parquet"))  # in the middle
        os.killpg(proc.pid, signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in rest
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "ws"]  # the staging dir removed


@pytest.mark.parametrize("at", ["first-parquet", "card"])
def test_a_push_whose_staging_disk_is_full_uploads_nothing(disk_ws, tmp_path, hub, at):
    staging = tmp_path / "tmp"
    staging.mkdir()
    env = {**hub.env, "TMPDIR": str(staging)}
    ok = cli.agentcap("export", "big-trace", "--out", str(tmp_path / "probe"), workspace=disk_ws)
    assert ok.returncode == 0
    size = sizes(tmp_path / "probe")
    parquet = max(v for k, v in size.items() if k.endswith(".parquet"))
    limit = 1000 if at == "first-parquet" else parquet + 100
    if at == "card":  # the Hub already has the long-carded dataset: the final card is the biggest file
        seeded = cli.agentcap("export", "big-trace", "--push", "me/x", workspace=disk_ws, **env)
        assert seeded.returncode == 0, seeded.stderr
        card = hub.repos["me/x-captures"].files["README.md"].decode()
        hub.repos["me/x-captures"].files["README.md"] = (card + words(400_000, 3)).encode()
    commits = {k: len(v.commits) for k, v in hub.repos.items()}
    hub.requests.clear()
    try:
        if at == "card":
            make_run(disk_ws, "later", [("chat", "model-a", False)])
        r = limited_export(disk_ws, limit, "later" if at == "card" else "big-trace", "--push", "me/x", **env)
    finally:
        shutil.rmtree(disk_ws / ".agentcap" / "later", ignore_errors=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.splitlines()[-1].startswith("error: ") and "File too large (EFBIG)" in r.stderr
    assert "nothing was uploaded" in r.stderr.splitlines()[-1]
    assert {k: len(v.commits) for k, v in hub.repos.items()} == commits  # no commit, no new repo
    assert all(method in ("GET", "HEAD") for method, _, _ in hub.requests)
    assert list(staging.iterdir()) == []  # the staging dir removed
