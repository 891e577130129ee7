"""`agentcap inspect` through textual's own pilot: real runs, exported parquet, a Hub stand-in."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from agentcap_cli.commands.inspect import hub_level, resolve
from agentcap_cli.export.captures import RunInfo, write_run
from agentcap_cli.inspect.app import InspectApp
from agentcap_cli.inspect.query import fuzzy
from agentcap_cli.main import cli
from tests.support.fakehub import FakeHub, Repo
from tests.support.runs import make_run

pytestmark = pytest.mark.anyio  # textual's pilot is async: run the async tests on asyncio via anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("inspect")
    make_run(ws, "pi-scripted-1", [("chat", "model-a", True), ("anthropic", "model-a", True), ("chat", "model-b", False)])
    return ws


@pytest.fixture(scope="module")
def parquet(workspace, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pq")
    [f] = [f for f in write_run(workspace / ".agentcap" / "pi-scripted-1" / "captures", RunInfo("pi-scripted-1", "pi"),
                                out, "test", workers=1) if f.model == "model-a"]
    return f.path


def table_rows(app: InspectApp) -> list[list[str]]:
    table = app.query_one("#table")
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(app: InspectApp, widget: str) -> str:
    return str(app.query_one(widget).render())


async def test_workspace_drill_down_preview_and_walk_back(workspace):
    app = InspectApp(resolve(None, workspace))
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        assert [r[0] for r in table_rows(app)] == ["pi-scripted-1"]
        assert "Create hello.txt" in text_of(app, "#preview")  # run.json's task list
        await pilot.press("enter")
        await pilot.pause()
        rows = table_rows(app)
        assert [r[1] for r in rows] == ["-.1", "-.2", "-.3"]  # task.call position (no task: power-user captures)
        assert [r[4] for r in rows] == ["model-a", "model-a", "model-b"]
        # three conversations with no task: each its own thread, none "+0 msgs" of the one before
        assert [r[2] for r in rows] == ["1", "2", "3"] and [r[8] for r in rows] == [
            "1 msgs (first)", "1 msgs (new thread)", "1 msgs (new thread)"]
        preview = text_of(app, "#preview")
        assert "── first user prompt ──" in preview and "task for model-a" in preview
        assert "→ bash(" in preview and "ls -la" in preview  # the decoded tool call of the response
        await pilot.press("down", "down")
        await pilot.pause()
        assert "model model-b" in text_of(app, "#preview") or "model-b" in text_of(app, "#preview")
        await pilot.press("enter")
        await pilot.pause()
        assert [r[1] for r in table_rows(app)] == ["user", "response"]
        assert "messages of" in text_of(app, "#title")
        await pilot.press("escape")
        await pilot.pause()
        assert len(table_rows(app)) == 3 and app.query_one("#table").cursor_row == 2  # back where it was
        await pilot.press("escape")
        await pilot.pause()
        assert "runs in" in text_of(app, "#title") and " › " not in text_of(app, "#title")
        await pilot.press("escape")
        await pilot.pause()
    assert app.return_code == 0 or app.return_code is None


async def test_filter_is_fuzzy_smart_case_and_highlighted(workspace):
    app = InspectApp(resolve(str(workspace / ".agentcap" / "pi-scripted-1"), workspace))
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        await pilot.press("m", "d", "l", "b")  # fuzzy: m…d…l…b matches "model-b" only
        await pilot.pause()
        assert [r[4] for r in table_rows(app)] == ["model-b"] and "filter: mdlb" in text_of(app, "#filter")
        cell = app.query_one("#table").get_row_at(0)[4]
        assert any("reverse" in str(span.style) for span in cell.spans)  # matched letters highlighted
        await pilot.press("backspace", "backspace", "backspace", "backspace", "M")  # capital: case-sensitive
        await pilot.pause()
        assert table_rows(app) == []
        await pilot.press("escape")  # clears the filter, stays on the level
        await pilot.pause()
        assert len(table_rows(app)) == 3 and "type to filter" in text_of(app, "#filter")
    assert fuzzy("mb", "model-b") == [0, 6] and fuzzy("MB", "model-b") is None


async def test_parquet_file_rows_and_preview(parquet):
    app = InspectApp(resolve(str(parquet), parquet.parent))
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        rows = table_rows(app)
        assert [r[1] for r in rows] == ["-.1", "-.2"] and rows[0][8] == "1"  # one tool call
        assert "→ bash(" in text_of(app, "#preview")
        await pilot.press("enter")
        await pilot.pause()
        assert [r[1] for r in table_rows(app)] == ["user", "response"]


async def test_hub_dataset_footers_by_ranged_reads(parquet):
    with FakeHub() as hub:
        repo = hub.repos["me/calls"] = Repo(private=True)
        repo.files[f"data/{parquet.name}"] = parquet.read_bytes()
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_" + "t" * 34}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            level = hub_level("me/calls")
            listing = list(hub.requests)
            app = InspectApp(level)
            async with app.run_test(size=(200, 50)) as pilot:
                await pilot.pause()
                assert [r[1:] for r in table_rows(app)] == [["captures", "pi-scripted-1", "pi", "model-a", "2"]]
                await pilot.press("enter")  # now (only now) the file is downloaded
                await pilot.pause()
                assert [r[1] for r in table_rows(app)] == ["-.1", "-.2"]
        finally:
            for k, v in old.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    gets = [p for m, p, _ in listing if m == "GET" and "/resolve/" in p]
    assert gets and hub.ranged and all(p.endswith(parquet.name) for p, _, _ in hub.ranged)


async def test_corrupt_inputs_show_errors_not_crashes(workspace, tmp_path):
    run = tmp_path / ".agentcap" / "broken"
    (run / "captures").mkdir(parents=True)
    good = workspace / ".agentcap" / "pi-scripted-1" / "captures"
    first = sorted(good.glob("*.request.json"))[0]
    for p in (first, first.with_name(first.name.replace(".request.", ".response."))):  # one whole capture
        (run / "captures" / p.name).write_bytes(p.read_bytes())
    rid = "f" * 32
    (run / "captures" / f"{rid}.request.json").write_text('{"seq": 99, "captured_at": "2026-11-22T00:00:00Z", "body": {')
    headless = "e" * 32  # not even a seq to sort it by
    (run / "captures" / f"{headless}.request.json").write_bytes(b"\x00\x01 garbage")
    app = InspectApp(resolve(str(run), tmp_path))
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        rows = table_rows(app)
        assert [r[-1] for r in rows].count("unreadable, skipped") == 2 and len(rows) == 3
        assert f"skipped: captures/{headless}.request.json: unreadable" in text_of(app, "#preview")  # listed first
        await pilot.press(*["down"] * (len(rows) - 1))  # the broken one sorts last (seq 99)
        await pilot.pause()
        assert f"skipped: captures/{rid}.request.json: unreadable (" in text_of(app, "#preview")
        await pilot.press("enter")  # nothing to open: stays on the level
        await pilot.pause()
        assert "requests of broken" in text_of(app, "#title")
    printed = CliRunner(env={"AGENTCAP_WORKSPACE": str(tmp_path)}).invoke(cli, ["inspect", "ffffffff"])
    assert printed.exit_code == 2 and f"broken/captures/{rid}.request.json: unreadable" in printed.output
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    result = CliRunner().invoke(cli, ["inspect", str(bad)])
    assert result.exit_code == 2 and "not a readable parquet file" in result.output


def test_a_corrupt_file_in_a_dataset_dir_is_skipped_with_a_warning(parquet, tmp_path, capsys):
    data = tmp_path / "ds" / "data"
    data.mkdir(parents=True)
    (data / parquet.name).write_bytes(parquet.read_bytes())
    (data / "zz-broken.parquet").write_bytes(b"PAR1 truncated")
    level = resolve(str(tmp_path / "ds"), tmp_path)
    assert [name.rsplit("/", 1)[-1] for name, _ in level.files] == [parquet.name]
    assert "zz-broken.parquet: not a readable parquet file" in capsys.readouterr().err
    # an `export --out` directory opens its captures dataset
    out = tmp_path / "out" / "captures" / "data"
    out.mkdir(parents=True)
    (out / parquet.name).write_bytes(parquet.read_bytes())
    assert [f["rows"] for _, f in resolve(str(tmp_path / "out"), tmp_path).files] == [2]


def test_hub_names_the_base_or_the_captures_dataset(parquet, monkeypatch):
    with FakeHub() as hub:
        hub.repos["me/calls-captures"] = Repo(private=True, files={f"data/{parquet.name}": parquet.read_bytes()})
        hub.repos["me/old"] = Repo(private=True, files={f"data/{parquet.name}": parquet.read_bytes()})
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_" + "t" * 34)
        for target, title in (("me/calls", "me/calls-captures"), ("me/calls-captures", "me/calls-captures"),
                              ("hf://datasets/me/calls", "me/calls-captures"), ("me/old", "me/old")):
            level = resolve(target, Path("."))
            assert level.title == f"hf://datasets/{title}" and len(level.files) == 1, target
        with pytest.raises(click.BadParameter, match="me/nothing: .*me/nothing-captures: "):
            resolve("me/nothing", Path("."))


def test_request_id_prefix_prints_the_call(workspace):
    rid = sorted((workspace / ".agentcap" / "pi-scripted-1" / "captures").glob("*.request.json"))[0].name[:10]
    env = {"AGENTCAP_WORKSPACE": str(workspace)}
    text = CliRunner(env=env).invoke(cli, ["inspect", rid])
    assert text.exit_code == 0 and "══ response ══" in text.output and "── user ──" in text.output
    data = json.loads(CliRunner(env=env).invoke(cli, ["inspect", rid, "--json"]).output)
    assert data["request"]["request_id"].startswith(rid) and data["decoded"]["finish_reason"]
    missing = CliRunner(env=env).invoke(cli, ["inspect", "abcdef0123"])
    assert missing.exit_code == 2 and "no request with this id prefix" in missing.output
