"""`agentcap inspect` (issue 26) through textual's own pilot, on runs recorded through a real capture
proxy with per-turn keys (the attribution a suite gives: task, cell, repeat) and their real export:

* a suite run with two repeats of one cell: each repeat its own conversation (no "+0 msgs", no
  "history rewritten" between them), in the run dir and in its captures parquet;
* the sessions parquet of the export and its wire trace files: a sessions level, messages, outcomes;
* full-text search: a text that is only in a message body is found at every level that holds it
  (run, captures parquet, sessions parquet, trace file, one call's messages) × forms of the text;
* a task-id filter over ids that are prefixes of each other (t1, t10, t11), plain and ``task:``;
* ``OWNER/NAME`` tries ``OWNER/NAME`` then ``OWNER/NAME-captures`` for any name, on the Hub stand-in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from agentcap_addons.wire.capture.registry import Attribution, KeyRegistry, new_key
from agentcap_cli.commands.inspect import hub_names, resolve
from agentcap_cli.export.exporter import Target, run_info, stage
from agentcap_cli.harness.modelserver import ModelServer, make_responder
from agentcap_cli.harness.proxy import start_proxy
from agentcap_cli.inspect.app import InspectApp
from agentcap_cli.inspect.data import DatasetLevel, ParquetLevel, RunLevel, SessionsLevel, TraceLevel
from agentcap_cli.main import cli
from agentcap_cli.runs.record import RunFile, RunRecord, TaskRecord
from tests.support.fakehub import Repo
from tests.support.runs import TOOLS

pytestmark = pytest.mark.anyio

BODY_TEXT = 'Zebra "quartz" café-42'
TOOL_RESULT = "listing:" + " ." * 50 + " " + BODY_TEXT  # past what any column shows of a message (80 characters)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Recorded:
    run_dir: Path
    out: Path  # its export (--out)


def conversation(proxy, key: str, prompt: str, tool_result: str) -> None:
    """One agent loop through the proxy with a per-turn key: the prompt, a tool call, its result, the answer."""
    messages: list[dict] = [{"role": "user", "content": prompt}]
    for _ in range(2):
        r = httpx.post(proxy.base_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                       json={"model": "m", "messages": messages, "tools": TOOLS}, timeout=30)
        r.raise_for_status()
        proxy.events.wait_for(event="response")
        reply = r.json()["choices"][0]["message"]
        messages.append(reply)
        messages += [{"role": "tool", "tool_call_id": c["id"], "content": tool_result} for c in reply.get("tool_calls") or []]


def record(ws: Path, name: str, kind: str, turns: list[tuple[Attribution, str, str]]) -> Recorded:
    """A run of ``turns`` (attribution, prompt, tool result) through a real proxy and scripted model,
    its run.json and (for a suite) its results, exported to ``<ws>/out``."""
    run_dir = ws / ".agentcap" / name
    keys = KeyRegistry(ws / "keys")
    with ModelServer(make_responder(script="shell-then-answer")) as server, \
            start_proxy(server.url, run_dir, keys_dir=keys.directory, events=True) as proxy:
        for attribution, prompt, result in turns:
            key = new_key()
            keys.register(key, attribution)
            conversation(proxy, key, prompt, result)
            keys.unregister(key)
    tasks = [TaskRecord(f"{a.task_id}#{a.repeat}" if a.repeat else a.task_id, p, 1, completed_turns=1)
             for a, p, _ in turns]
    RunFile(run_dir, RunRecord(run_id=name, kind=kind, agent="pi", model="m", provider="scripted", upstream="u",
                               label=None, turns_per_task=1, followup="continue",
                               started_at="2026-11-22T00:00:00Z", status="done", tasks=tasks)).save()
    for a, _, _ in turns:
        if a.repeat:
            res = run_dir / "results" / a.cell / f"{a.repeat}.json"
            res.parent.mkdir(parents=True, exist_ok=True)
            res.write_text(json.dumps({"cell": a.cell, "repeat": a.repeat, "passed": a.repeat == 1, "error": None}))
    out = ws / "out"
    stage([Target(run_dir, run_info(run_dir))], out)
    return Recorded(run_dir, out)


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Recorded:
    """One cell, two repeats, the same prompt (the case a suite is made of)."""
    ws = tmp_path_factory.mktemp("suite")
    captures = str(ws / ".agentcap" / "suite-1" / "captures")
    at = [Attribution(run_id="suite-1", task_id="notes", turn=1, cell="notes", repeat=r, captures_dir=captures)
          for r in (1, 2)]
    return record(ws, "suite-1", "suite", [(at[0], "Post the release note", TOOL_RESULT),
                                           (at[1], "Post the release note", "a.txt")])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Recorded:
    """Tasks whose ids are prefixes of each other."""
    ws = tmp_path_factory.mktemp("corpus")
    return record(ws, "corpus-1", "corpus", [(Attribution(run_id="corpus-1", task_id=t, turn=1), f"do {t}", "ok")
                                             for t in ("t1", "t10", "t11")])


def rows_of(app: InspectApp) -> list[list[str]]:
    table = app.query_one("#table")
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(app: InspectApp, widget: str) -> str:
    return str(app.query_one(widget).render())


def files(out: Path, kind: str) -> Path:
    pattern = {"captures": "captures/data/*.parquet", "sessions": "captures/sessions/*.parquet",
               "trace": "wire-traces/sessions/*/*.jsonl"}[kind]
    return sorted(out.glob(pattern))[0]


async def typed(app: InspectApp, pilot, text: str) -> list[list[str]]:
    app.filter = text  # what typing it does (the key handling is tested below), without a key per character
    app.show()
    await pilot.pause()
    return rows_of(app)


# -- a suite run: repeats are conversations of their own ------------------------------------------

@pytest.mark.parametrize("form", ["run dir", "captures parquet"])
async def test_each_repeat_of_a_cell_is_its_own_conversation(suite, form):
    target = suite.run_dir if form == "run dir" else files(suite.out, "captures")
    level = resolve(str(target), suite.run_dir.parent.parent)
    assert isinstance(level, RunLevel if form == "run dir" else ParquetLevel)
    app = InspectApp(level)
    async with app.run_test(size=(220, 50)) as pilot:
        await pilot.pause()
        rows = rows_of(app)
        assert [r[1] for r in rows] == ["notes#1.1", "notes#1.2", "notes#2.1", "notes#2.2"]
        assert [r[2] for r in rows] == ["1"] * 4  # one thread per repeat
        if form == "run dir":
            assert [r[8] for r in rows] == ["1 msgs (first)", "+2 msgs ← bash", "1 msgs (first)", "+2 msgs ← bash"]
        await pilot.press("down", "down")  # repeat 2's first call: new in it is its whole request
        await pilot.pause()
        preview = text_of(app, "#preview")
        assert "repeat 2" in preview and "── new in this call (1) ──" in preview
        assert [r[1] for r in await typed(app, pilot, "notes#2")] == ["notes#2.1", "notes#2.2"]
        assert [r[1] for r in await typed(app, pilot, "repeat:1")] == ["notes#1.1", "notes#1.2"]
        assert "(task:notes repeat:2)" not in text_of(app, "#filter")


# -- the sessions level: the sessions config and the trace files ------------------------------------

async def test_the_export_dir_lists_captures_sessions_and_trace_files(suite):
    level = resolve(str(suite.out), suite.out)
    assert isinstance(level, DatasetLevel)
    app = InspectApp(level)
    async with app.run_test(size=(220, 50)) as pilot:
        await pilot.pause()
        kinds = [r[1] for r in rows_of(app)]
        assert kinds.count("captures") == 1 and kinds.count("sessions") == 1 and kinds.count("trace") == 2
        await pilot.press(*["down"] * kinds.index("sessions"), "enter")
        await pilot.pause()
        assert "sessions of" in text_of(app, "#title")
        rows = rows_of(app)
        assert [(r[1], r[4], r[5], r[6], r[8]) for r in rows] == [("notes#1", "1", "2", "1", "passed"),
                                                                  ("notes#2", "1", "2", "1", "failed")]
        preview = text_of(app, "#preview")
        assert "no response recorded" not in preview and "Post the release note" in preview
        assert "── messages (4) ──" in preview and "→ bash(" in preview
        await pilot.press("enter")
        await pilot.pause()
        assert [r[1] for r in rows_of(app)] == ["user", "assistant", "tool", "assistant"]
        await pilot.press("down", "down")
        await pilot.pause()
        assert "answers bash(" in text_of(app, "#preview")  # the tool result names the call it answers


async def test_a_sessions_parquet_and_a_trace_file_open_directly(suite):
    sessions = resolve(str(files(suite.out, "sessions")), suite.out)
    trace = resolve(str(files(suite.out, "trace")), suite.out)
    assert isinstance(sessions, SessionsLevel) and isinstance(trace, TraceLevel)
    app = InspectApp(trace)
    async with app.run_test(size=(220, 50)) as pilot:
        await pilot.pause()
        rows = rows_of(app)  # whichever trace format the export writes: a header, then a line per entry
        assert rows[0][1] == "session" and len(rows) == len(files(suite.out, "trace").read_text().splitlines())
        assert ["user", "Post the release note"] in [r[1:] for r in rows] and "assistant" in [r[1] for r in rows]
        assert '"harness": "agentcap"' in text_of(app, "#preview")


# -- full-text search over bodies ------------------------------------------------------------------

def body_trace(s: Recorded) -> Path:
    return next(p for p in sorted(s.out.glob("wire-traces/sessions/*/*.jsonl")) if "quartz" in p.read_text())


LEVELS = {  # where the body text is, and the row that holds it (the cell in this column)
    "run dir": (lambda s: s.run_dir, lambda s: "notes#1.2", 1),
    "captures parquet": (lambda s: files(s.out, "captures"), lambda s: "notes#1.2", 1),
    "sessions parquet": (lambda s: files(s.out, "sessions"), lambda s: "notes#1", 1),
    "trace file": (body_trace, lambda s: str(next(n for n, line in enumerate(body_trace(s).read_text().splitlines(), 1)
                                                 if "quartz" in line)), 0),
}
QUERIES = {  # query → found (smart case, JSON escaping, non-ASCII, inside a word, with a space)
    "zebra": True, "Zebra": True, "ZEBRA": False, '"quartz"': True, "café-42": True, "uart": True,
    "quartz\" café": True, "zebra-nowhere": False,
}


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("where", LEVELS)
async def test_search_finds_text_only_in_a_message_body(suite, where, query):
    path, row, column = LEVELS[where]
    app = InspectApp(resolve(str(path(suite)), suite.out))
    async with app.run_test(size=(220, 50)) as pilot:
        await pilot.pause()
        assert all("Zebra" not in c and "quartz" not in c for r in rows_of(app) for c in r)  # no column shows it
        found = await typed(app, pilot, query)
        assert [r[column] for r in found] == ([row(suite)] if QUERIES[query] else [])


async def test_search_in_one_calls_messages_and_as_typed(suite):
    app = InspectApp(resolve(str(suite.run_dir), suite.out))
    async with app.run_test(size=(220, 50)) as pilot:
        await pilot.pause()
        await pilot.press("down", "enter")  # notes#1.2: its messages
        await pilot.pause()
        await pilot.press(*"zebra")  # typed key by key: found once 3 letters are in, narrowed after
        await pilot.pause()
        assert [r[1] for r in rows_of(app)] == ["tool"]
        assert "filter: zebra" in text_of(app, "#filter")


# -- a task id filter ------------------------------------------------------------------------------

FILTERS = {"t1": ["t1"], "t10": ["t10"], "t11": ["t11"], "task:t1": ["t1"], "task:t10": ["t10"],
           "task:t2": [], "t1 ": ["t1"], "t1x": []}


@pytest.mark.parametrize("typed_filter", FILTERS)
@pytest.mark.parametrize("form", ["run dir", "captures parquet", "sessions parquet"])
async def test_a_task_id_matches_that_task_only(corpus, form, typed_filter):
    target = {"run dir": corpus.run_dir, "captures parquet": files(corpus.out, "captures"),
              "sessions parquet": files(corpus.out, "sessions")}[form]
    app = InspectApp(resolve(str(target), corpus.out))
    async with app.run_test(size=(220, 50)) as pilot:
        await pilot.pause()
        rows = await typed(app, pilot, typed_filter)
        tasks = sorted({r[1].split(".")[0] for r in rows})
        assert tasks == FILTERS[typed_filter], rows
        if form != "sessions parquet":
            assert len(rows) == 2 * len(FILTERS[typed_filter])  # both calls of the task


async def test_the_old_fuzzy_filter_still_works_and_the_plain_id_is_said(corpus):
    app = InspectApp(resolve(str(corpus.run_dir), corpus.out))
    async with app.run_test(size=(220, 50)) as pilot:
        await pilot.pause()
        await pilot.press("t", "1")
        await pilot.pause()
        assert {r[1].split(".")[0] for r in rows_of(app)} == {"t1"} and "(task:t1)" in text_of(app, "#filter")
        await pilot.press("escape")
        await pilot.pause()
        assert {r[1].split(".")[0] for r in await typed(app, pilot, "t1.2")} == {"t1", "t10", "t11"}  # fuzzy


# -- OWNER/NAME and OWNER/NAME-captures ------------------------------------------------------------

BASES = ["me/calls", "me/my-captures"]  # a base name that ends in -captures (the README's) and one that does not
HOLDS = {"given": ["{b}"], "captures": ["{b}-captures"], "both": ["{b}", "{b}-captures"], "neither": []}


@pytest.mark.parametrize("holds", HOLDS)
@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("form", ["{b}", "hf://datasets/{b}"])
def test_a_name_opens_itself_else_its_captures_dataset(suite, hub, monkeypatch, base, holds, form):
    data = files(suite.out, "captures")
    for name in HOLDS[holds]:
        hub.repos[name.format(b=base)] = Repo(private=True, files={f"data/{data.name}": data.read_bytes()})
    for k, v in hub.env.items():
        monkeypatch.setenv(k, v)
    target = form.format(b=base)
    assert hub_names(base) == [base, f"{base}-captures"]
    if holds == "neither":
        result = CliRunner().invoke(cli, ["inspect", target])
        assert result.exit_code == 2 and f"{base}: " in result.output and f"{base}-captures: " in result.output
        assert "Traceback" not in result.output
        return
    level = resolve(target, Path("."))
    opened = HOLDS[holds][0].format(b=base)
    assert level.title == f"hf://datasets/{opened}" and [f["rows"] for _, f in level.files] == [4]


def test_the_hub_lists_a_captures_datasets_sessions_and_a_traces_datasets_files(suite, hub, monkeypatch):
    for k, v in hub.env.items():
        monkeypatch.setenv(k, v)
    cap, ses, trace = files(suite.out, "captures"), files(suite.out, "sessions"), files(suite.out, "trace")
    hub.repos["me/x-captures"] = Repo(private=True, files={f"data/{cap.name}": cap.read_bytes(),
                                                           f"sessions/{ses.name}": ses.read_bytes()})
    hub.repos["me/x-wire-traces"] = Repo(private=True, files={f"sessions/suite-1/{trace.name}": trace.read_bytes()})
    level = resolve("me/x", Path("."))
    assert sorted(n.rsplit("/", 1)[-1] for n, _ in level.files) == sorted([cap.name, ses.name])
    assert isinstance(level.child(next(n for n, _ in level.files if n.endswith(ses.name))), SessionsLevel)
    traces = resolve("me/x-wire-traces", Path("."))
    [(name, _)] = traces.files
    assert name.endswith(trace.name) and isinstance(traces.child(name), TraceLevel)

