"""The corpus formats, their errors, shards, run.json round trips and `agentcap run` bad input (no containers)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from agentcap_addons.wire.util.yamlfile import ConfigError
from agentcap_cli.corpus.tasks import load_tasks, parse_shard, shard
from agentcap_cli.harness.followup import CONTINUE, TEMPLATES, FollowupFailed, next_prompt
from agentcap_cli.main import cli
from agentcap_cli.runs.record import RunRecord, TaskRecord, TurnRecord
from tests.conftest import closed_port


def test_text_yaml_and_jsonl_corpora(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text("# comment\nfirst prompt\n\n  second prompt  \n")
    assert [(t.task_id, t.prompt) for t in load_tasks(txt)] == [("t0001", "first prompt"), ("t0002", "second prompt")]
    yml = tmp_path / "t.yaml"
    yml.write_text("tasks:\n  - prompt: a\n  - {id: custom, prompt: b, turns: 3, followups: [more, again]}\n  - just text\n")
    tasks = load_tasks(yml)
    assert [(t.task_id, t.turns, t.followups) for t in tasks] == [("t0001", None, []), ("custom", 3, ["more", "again"]),
                                                                  ("t0003", None, [])]
    jl = tmp_path / "t.jsonl"
    jl.write_text('{"prompt": "x"}\n\n{"id": "y1", "prompt": "y"}\n')
    assert [t.task_id for t in load_tasks(jl)] == ["t0001", "y1"]


@pytest.mark.parametrize("name,text,where", [
    ("t.yaml", "- prompt: ok\n- prompt: ''\n", "t.yaml:2: 1.prompt: must be a non-empty string"),
    ("t.yaml", "- {prompt: a, id: x}\n- {prompt: b, id: x}\n", "t.yaml:2: 1.id: 'x' is already the id of task 1"),
    ("t.yaml", "- {prompt: a, turns: 0}\n", "t.yaml:1: 0.turns: must be a whole number"),
    ("t.yaml", "- {prompt: a, colour: red}\n", "t.yaml:1: 0.colour"),
    ("t.yaml", "- {prompt: a, id: 'bad/id'}\n", "t.yaml:1: 0.id: must be letters"),
    ("t.jsonl", '{"prompt": "a"}\n{"prompt": 3}\n', "t.jsonl:2: prompt: must be a non-empty string"),
    ("t.jsonl", '{"prompt": "a"}\nnot json\n', "t.jsonl:2: not valid JSON"),
    ("t.txt", "# only a comment\n", "t.txt: no tasks in the file"),
])
def test_bad_corpora_name_file_line_and_key(tmp_path, name, text, where):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_tasks(p)
    assert str(exc.value).startswith(str(tmp_path / where.split(":")[0])) and where.split(":", 1)[1] in str(exc.value)


def test_shards_cover_the_corpus_exactly_once(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("\n".join(f"prompt {i}" for i in range(11)))
    tasks = load_tasks(p)
    parts = [shard(tasks, i, 3) for i in (1, 2, 3)]
    ids = [t.task_id for part in parts for t in part]
    assert sorted(ids) == [t.task_id for t in tasks] and len(set(ids)) == len(ids)
    assert [len(x) for x in parts] == [4, 4, 3]
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/2", "3/2", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_followups_task_list_then_mode(tmp_path):
    from agentcap_cli.corpus.tasks import Task

    t = Task("t1", "do it", None, ["first follow-up"])
    assert next_prompt("continue", t, 2, None, None).prompt == "first follow-up"
    assert next_prompt("continue", t, 3, None, None).prompt == CONTINUE
    assert next_prompt("templates", t, 3, None, None).prompt == TEMPLATES[1]

    def broken(prompt, reply):
        raise RuntimeError("upstream down")

    with pytest.raises(FollowupFailed, match="RuntimeError: upstream down"):  # never a silent "continue"
        next_prompt("synthesized", t, 3, "r", broken)
    fell = next_prompt("synthesized", t, 3, "r", broken, fallback="continue")  # only when allowed, and said
    assert (fell.prompt, fell.fallback) == (CONTINUE, "RuntimeError: upstream down")


def test_run_json_round_trip():
    rec = RunRecord(run_id="r", kind="corpus", agent="pi", model="m", provider="scripted", upstream="u", label=None,
                    turns_per_task=2, followup="continue", started_at="now",
                    tasks=[TaskRecord("t1", "p", 2, turns=[TurnRecord(1, "p", 0, 1.5, 3)], completed_turns=1)])
    again = RunRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert again == rec and rec.to_dict()["schema"] == 1


@pytest.mark.parametrize("args,expect", [
    (["--agent", "nope", "--tasks", "{tasks}"], "unknown agent 'nope'"),
    (["--agent", "pi", "--tasks", "{bad}"], "bad.yaml:1: 0.prompt: must be a non-empty string"),
    (["--agent", "pi", "--tasks", "{tasks}", "--shard", "3/2"], "I must be between 1 and N"),
    (["--agent", "pi", "--tasks", "{tasks}", "--upstream", "ftp://x"], "must be an http"),
    (["--agent", "pi", "--tasks", "{tasks}", "--upstream", "http://127.0.0.1:{port}/v1", "--model", "m"],
     "cannot connect to 127.0.0.1:{port}"),
    (["--agent", "pi"], "give --tasks"),
])
def test_bad_input_exits_2_with_one_message_and_writes_nothing(tmp_path, monkeypatch, args, expect):
    monkeypatch.setenv("AGENTCAP_WORKSPACE", str(tmp_path))
    (tmp_path / "tasks.txt").write_text("a prompt\n")
    (tmp_path / "bad.yaml").write_text("- prompt: ''\n")
    port = closed_port()
    fill = {"tasks": str(tmp_path / "tasks.txt"), "bad": str(tmp_path / "bad.yaml"), "port": port}
    result = CliRunner().invoke(cli, ["run", *[a.format(**fill) for a in args]])
    assert result.exit_code == 2, result.output
    assert expect.format(**fill) in result.output
    assert not (tmp_path / ".agentcap").exists()  # no run dir, so no container either


def test_ls_lists_runs_and_proxy_dirs(tmp_path, monkeypatch):
    home = tmp_path / ".agentcap"
    rec = RunRecord(run_id="pi-scripted-1", kind="corpus", agent="pi", model="m", provider="scripted",
                    upstream="embedded:scripted", label="l1", turns_per_task=1, followup="continue", started_at="s",
                    status="done", tasks=[TaskRecord("t1", "p", 1, completed_turns=1), TaskRecord("t2", "q", 1)])
    (home / "pi-scripted-1" / "captures").mkdir(parents=True)
    (home / "pi-scripted-1" / "run.json").write_text(json.dumps(rec.to_dict()))
    (home / "pi-scripted-1" / "captures" / "a.request.json").write_text("{}")
    (home / "proxy-x" / "captures").mkdir(parents=True)
    monkeypatch.setenv("AGENTCAP_WORKSPACE", str(tmp_path))
    out = CliRunner().invoke(cli, ["ls", "--json"])
    rows = [json.loads(line) for line in out.stdout.splitlines()]  # (the repair of a.request.json logs on stderr)
    assert [(r["run_id"], r.get("tasks_ok"), r.get("tasks"), r["captures"], r["status"]) for r in rows] == [
        ("pi-scripted-1", 1, 2, 1, "done"), ("proxy-x", None, None, 0, None)]
    table = CliRunner().invoke(cli, ["ls", "-l", str(tmp_path)])
    assert table.exit_code == 0 and "embedded:scripted" in table.output and "1/2" in table.output
    assert CliRunner().invoke(cli, ["ls", "--workspace", str(tmp_path), "--json"]).stdout == out.stdout
    missing = CliRunner().invoke(cli, ["ls", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such directory" in missing.output
