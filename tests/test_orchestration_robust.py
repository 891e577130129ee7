"""Orchestration that must not fail quietly or for a passing reason (issue 27): a handler named for no
declared tool is an error at its line, the judge and the follow-up synthesizer outlast a rate limit,
and an upstream that does not speak the model API stops `run` before the first task."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.cli import REPO, agentcap

TOOLS = ["slack_list_channels", "slack_post_message", "slack_delete_message"]
NEAR = {  # a typo of slack_post_message: did-you-mean names it
    "dropped": "slack_post_mesage", "plural": "slack_post_messages", "swapped": "slack_psot_message",
    "singular": "slack_post_messag", "case": "Slack_post_message",
}
FAR = {"unrelated": "frobnicate", "short": "x"}  # no declared name is close: no did-you-mean
HELPERS = "import json\n\n\ndef _fmt(x):\n    return json.dumps(x)\n\n\n"  # the handler's line is not 1
FORMS = {  # handler.py whose typo'd binding is on the last line written before the body
    "def": lambda n: (HELPERS + f"def tool_{n}(args, ctx):\n    return {{'ok': True}}\n", 8, f"tool_{n}"),
    "async def": lambda n: (HELPERS + f"async def tool_{n}(args, ctx):\n    return {{'ok': True}}\n", 8, f"tool_{n}"),
    "HANDLERS literal": lambda n: (HELPERS + f"HANDLERS = {{\n    'slack_list_channels': lambda a, c: 1,\n    {n!r}: lambda a, c: 1,\n}}\n",
                                   10, f"HANDLERS.{n}"),
    "HANDLERS item": lambda n: (HELPERS + f"HANDLERS = {{}}\nHANDLERS[{n!r}] = lambda a, c: 1\n", 9, f"HANDLERS.{n}"),
}


def _project(tmp_path: Path, handler: str) -> Path:
    project = tmp_path / "p"
    shutil.copytree(REPO / "examples" / "my-eval", project, ignore=shutil.ignore_patterns("reports", ".agentcap"))
    (project / "mcp" / "slack" / "handler.py").write_text(handler)
    return project


@pytest.mark.parametrize("command", ["validate", "mock tools"])
@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("typo", [*NEAR, *FAR])
def test_a_handler_naming_no_declared_tool_is_an_error_at_its_line_with_did_you_mean(tmp_path, command, form, typo):
    name = {**NEAR, **FAR}[typo]
    body, line, key = FORMS[form](name)
    project = _project(tmp_path, body)
    slack = project / "mcp" / "slack"
    args = ["validate", "--root", str(project)] if command == "validate" else ["mock", "tools", str(slack)]
    r = agentcap(*args, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    hint = " (did you mean 'slack_post_message'?)" if typo in NEAR else ""
    want = f"{slack / 'handler.py'}:{line}: {key}: no tool {name!r} in the schema{hint}"
    assert want in r.stderr, r.stderr
    assert typo in NEAR or "did you mean" not in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_every_unmatched_handler_is_named_at_once_and_matched_ones_still_load(tmp_path):
    body = HELPERS + ("def tool_slack_post_message(args, ctx):\n    return 1\n\n\n"
                      "def tool_slack_list_chanels(args, ctx):\n    return 1\n\n\n"
                      "HANDLERS = {'slack_delete_mesage': lambda a, c: 1}\n")
    project = _project(tmp_path, body)
    handler = project / "mcp" / "slack" / "handler.py"
    r = agentcap("validate", "--root", str(project), timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"{handler}:12: tool_slack_list_chanels: no tool 'slack_list_chanels' in the schema (did you mean 'slack_list_channels'?)" in r.stderr
    assert f"{handler}:16: HANDLERS.slack_delete_mesage: no tool 'slack_delete_mesage' in the schema (did you mean 'slack_delete_message'?)" \
        in r.stderr, r.stderr
    assert "tool_slack_post_message" not in r.stderr
    (handler).write_text(HELPERS + "def tool_slack_post_message(args, ctx):\n    return 1\n")
    ok = agentcap("mock", "tools", str(handler.parent), "--json", timeout=60)
    assert ok.returncode == 0, ok.stderr
