"""Agent adapters, the registry and image hashing without podman: what each adapter writes and runs."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml

from sandbox import images
from sandbox.agents import TurnInput, UnknownAgent, agent_names, get_agent

ALL = ["aider", "claude-code", "codex", "hermes", "mini-swe-agent", "opencode", "pi", "qwen-code"]


def turn_input(tmp_path: Path, turn: int = 1, session: str | None = None, **kw) -> TurnInput:
    for d in ("ws", "home"):
        (tmp_path / d).mkdir(exist_ok=True)
    return TurnInput(prompt="Create hello.txt", turn=turn, base_url="http://127.0.0.1:4321", api_key="acp-test-key",
                     model="m1", workspace=tmp_path / "ws", home=tmp_path / "home", session_id=session, **kw)


def all_text(root: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


def test_the_eight_builtin_agents_are_registered():
    assert set(ALL) <= set(agent_names())
    with pytest.raises(UnknownAgent, match="unknown agent 'nope'; known: aider"):
        get_agent("nope")


@pytest.mark.parametrize("name", ALL)
def test_configure_and_command_point_the_agent_at_the_proxy_with_the_turn_key(name, tmp_path):
    agent = get_agent(name)
    t = turn_input(tmp_path, mcp_servers={"slack": "http://127.0.0.1:5555/mcp"} if agent.supports_mcp else {},
                   base_prompt="Be brief.")
    agent.configure(t)
    cmd = agent.command(t)
    env = agent.env(t)
    written = all_text(tmp_path) + json.dumps(cmd) + json.dumps(env)
    assert "http://127.0.0.1:4321" in written  # the base URL, in a config file, a flag or the env
    assert "acp-test-key" in written
    assert "Create hello.txt" in cmd[-1] or "Create hello.txt" in " ".join(cmd)
    if agent.supports_mcp:
        assert "http://127.0.0.1:5555/mcp" in written
    if agent.instructions_file:
        assert (t.workspace / agent.instructions_file).read_text() == "Be brief."
    assert agent.image.context.joinpath("Containerfile").is_file()
    assert agent.version in agent.image.context.joinpath("Containerfile").read_text()


@pytest.mark.parametrize("name", [n for n in ALL if n not in ("aider", "mini-swe-agent")])
def test_a_resumed_turn_names_the_session(name, tmp_path):
    agent = get_agent(name)
    assert agent.supports_resume
    first = agent.command(turn_input(tmp_path))
    second = agent.command(turn_input(tmp_path, turn=2, session="sess-123"))
    assert "sess-123" not in first and "sess-123" in second


def test_aider_resumes_from_its_history_and_mini_does_not_resume(tmp_path):
    aider = get_agent("aider")
    assert "--restore-chat-history" not in aider.command(turn_input(tmp_path))
    assert "--restore-chat-history" in aider.command(turn_input(tmp_path, turn=2))
    mini = get_agent("mini-swe-agent")
    assert not mini.supports_resume and not mini.supports_mcp
    assert "x" not in mini.command(turn_input(tmp_path, turn=2, session="x"))


def test_config_files_are_valid_in_their_own_formats(tmp_path):
    t = turn_input(tmp_path, mcp_servers={"slack": "http://127.0.0.1:5555/mcp"})
    for name in ALL:
        get_agent(name).configure(t)
    codex = tomllib.loads((t.home / ".codex" / "config.toml").read_text())
    assert codex["model_providers"]["agentcap"]["wire_api"] == "responses"
    assert codex["mcp_servers"]["slack"]["url"] == "http://127.0.0.1:5555/mcp"
    hermes = yaml.safe_load((t.home / ".hermes" / "config.yaml").read_text())
    assert hermes["model"]["base_url"] == "http://127.0.0.1:4321/v1"
    pi = json.loads((t.home / ".pi" / "agent" / "models.json").read_text())
    assert pi["providers"]["agentcap"]["models"] == [{"id": "m1"}]
    opencode = json.loads((t.home / ".config" / "opencode" / "opencode.json").read_text())
    assert opencode["mcp"]["slack"] == {"type": "remote", "url": "http://127.0.0.1:5555/mcp", "enabled": True}
    claude = json.loads((t.home / ".agentcap-mcp.json").read_text())
    assert claude["mcpServers"]["slack"]["type"] == "http"
    qwen = json.loads((t.home / ".qwen" / "settings.json").read_text())
    assert qwen["mcpServers"]["slack"] == {"httpUrl": "http://127.0.0.1:5555/mcp"}


PARSE_CASES = {
    "pi": ('{"type":"session","id":"abc"}\n{"type":"agent_end","messages":[{"role":"assistant","content":'
           '[{"type":"text","text":"Done it."}]}]}\n', "", "abc", "Done it."),
    "claude-code": ('{"type":"result","result":"Done it.","session_id":"abc"}', "", "abc", "Done it."),
    "codex": ('{"type":"thread.started","thread_id":"abc"}\n{"type":"item.completed","item":'
              '{"type":"agent_message","text":"Done it."}}\n', "", "abc", "Done it."),
    "opencode": ('{"type":"text","sessionID":"abc","part":{"type":"text","text":"Done it."}}\n', "", "abc", "Done it."),
    "qwen-code": ('[{"type":"system","session_id":"abc"},{"type":"result","result":"Done it.","session_id":"abc"}]',
                  "", "abc", "Done it."),
    "hermes": ("  ⚠ a notice\nDone it.\n", "session_id: abc\n", "abc", "Done it."),
}


@pytest.mark.parametrize("name", sorted(PARSE_CASES))
def test_parse_reads_session_and_reply(name, tmp_path):
    stdout, stderr, session, reply = PARSE_CASES[name]
    out = get_agent(name).parse(stdout, stderr, turn_input(tmp_path))
    assert (out.session_id, out.reply) == (session, reply)


def test_parse_of_garbage_gives_no_reply(tmp_path):
    for name in ALL:
        out = get_agent(name).parse("not json at all {", "", turn_input(tmp_path, session="keep"))
        assert out.reply in (None, "not json at all {")
        assert out.session_id in (None, "keep")


def test_aider_reply_comes_from_its_chat_history(tmp_path):
    t = turn_input(tmp_path)
    (t.home / ".aider").mkdir()
    (t.home / ".aider" / "chat.history.md").write_text(
        "#### first prompt\n\nold reply\n\n#### Create hello.txt\n\n> Applied edit to hello.txt\nNew reply.\n")
    assert get_agent("aider").parse("", "", t).reply == "New reply."


def test_export_trace_copies_native_files_keeping_their_paths(tmp_path):
    t = turn_input(tmp_path)
    session = t.home / ".claude" / "projects" / "-ws" / "abc.jsonl"
    session.parent.mkdir(parents=True)
    session.write_text('{"x": 1}\n')
    (session.parent / "other.jsonl").write_text("{}\n")
    written = get_agent("claude-code").export_trace(t, "abc", tmp_path / "traces")
    assert written == [tmp_path / "traces" / ".claude" / "projects" / "-ws" / "abc.jsonl"]
    assert written[0].read_text() == '{"x": 1}\n'


# -- plugins and image hashes -------------------------------------------------------------------------

def test_a_plugin_module_adds_an_agent_without_core_changes(plugin):
    assert "plugin-echo" in agent_names()
    agent = get_agent("plugin-echo")
    assert agent.image.context == plugin
    assert agent.image.parent == "base"


def test_image_hash_changes_with_the_containerfile_and_only_then(plugin):
    first = images.input_hash("plugin-echo")
    assert images.input_hash("plugin-echo") == first
    (plugin / "Containerfile").write_text("ARG BASE\nFROM ${BASE}\nRUN echo two > /marker\n")
    second = images.input_hash("plugin-echo")
    assert second != first
    (plugin / "extra.txt").write_text("a file the build can COPY")
    assert images.input_hash("plugin-echo") not in (first, second)


def test_an_agent_image_hash_follows_its_parents(monkeypatch):
    before = images.input_hash("pi")
    monkeypatch.setitem(images.BASE_SPECS, "node", images.ImageSpec(
        "node", images.BASE_SPECS["node"].context, parent="base", build_args=(("NODE_VERSION", "24.0.0"),)))
    assert images.input_hash("pi") != before
    assert images.input_hash("hermes") == images.input_hash("hermes")  # not on node: unchanged by it


def test_debian_mirror_comes_from_the_hosts_apt_sources(monkeypatch):
    monkeypatch.setenv("AGENTCAP_DEBIAN_MIRROR", "http://mirror.example/debian")
    assert images.debian_mirror() == "http://mirror.example/debian"
    assert images.rootfs_source()[1].startswith("bookworm http://mirror.example/debian ")


def test_a_wal_mode_trace_database_is_exported_whole(tmp_path):
    """opencode and hermes keep SQLite in WAL mode: the exported trace holds what is still in -wal."""
    import sqlite3

    from sandbox.agents import TurnInput, get_agent

    t = TurnInput(prompt="p", turn=2, base_url="http://127.0.0.1:1", api_key="k", model="m",
                  workspace=tmp_path / "ws", home=tmp_path / "home")
    db = t.home / ".local" / "share" / "opencode" / "opencode.db"
    db.parent.mkdir(parents=True)
    live = sqlite3.connect(db)  # the agent's connection, still open: turn 2 is only in the -wal file
    live.execute("PRAGMA journal_mode=WAL")
    live.execute("CREATE TABLE message (turn INTEGER)")
    live.executemany("INSERT INTO message VALUES (?)", [(1,), (2,)])
    live.commit()
    try:
        assert (db.parent / "opencode.db-wal").stat().st_size > 0
        [out] = get_agent("opencode").export_trace(t, None, tmp_path / "traces")
        copy = sqlite3.connect(out)
        assert copy.execute("SELECT count(*) FROM message").fetchone() == (2,)
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        copy.close()
        assert sorted(p.name for p in out.parent.iterdir()) == ["opencode.db"]
    finally:
        live.close()
