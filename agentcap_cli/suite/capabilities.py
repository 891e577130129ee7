"""``agents/<name>/capabilities.yaml`` in both dialects, read into one :class:`AgentDef`.

* agentcap's own: ``servers: [slack]`` (mock names), ``skills: [skills/x]`` (dirs), ``base_prompt`` /
  ``base_prompt_file``.
* capa's (what agenteval users bring, compiled by ``capa install -p <provider>`` there; here by the
  agent adapters): ``providers`` / ``clients``, ``options.toolExposure``, ``agents.base {type: local,
  path} | {type: inline, content}``, ``skills[] {id, type: local | inline, def.path | def.content,
  def.requires, description}``, ``servers[] {id, type: mcp, def.url | def.cmd/args/env}``, ``tools[] {id,
  type: mcp, def.server: '@srv', def.tool}``. ``rules``, ``hooks``, ``plugins``, ``subagents`` and
  ``agents.additional`` are kept as they are (they configure the harness, not the test) and do not fail.

The dialect is decided per entry (a server given as a name or as a mapping), so a file may mix them.
As in agenteval, a capa server is wired to the mock of the same id that the scenario starts; servers
without a mock are left out (the sandbox reaches nothing else anyway).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentcap_addons.wire.util.confine import confined
from agentcap_addons.wire.util.yamlfile import Located, check_keys, load, want

AGENTCAP_KEYS = {"servers", "skills", "base_prompt", "base_prompt_file"}
CAPA_KEYS = {"providers", "clients", "options", "agents", "tools", "rules", "hooks", "plugins", "subagents",
             "security", "env"}
SKILL_TYPES = ("local", "inline")
SKILL_ID = re.compile(r"\w[\w.-]{0,127}")


@dataclass
class AgentDef:
    name: str
    dir: Path
    servers: list[str] = field(default_factory=list)  # mock names this agent is wired to
    skills: list[Path] = field(default_factory=list)  # skill dirs (each holds a SKILL.md)
    inline_skills: dict[str, str] = field(default_factory=dict)  # skill id → SKILL.md text (capa `inline`)
    base_prompt: str | None = None
    tools: list[tuple[str, str, str]] = field(default_factory=list)  # (yaml key, server, tool) declared by capa
    capa: bool = False  # written in capa's dialect: only the servers it declares get a mock


def load_agent(cap: Path, root: Path | None = None) -> AgentDef:
    """An agent's capabilities; every file it names must resolve inside ``root`` (the project; by
    default the agent's own directory)."""
    doc = load(cap)
    root = root or cap.parent
    data = doc.data or {}
    want(doc, data, dict, "", "a mapping (agentcap: servers, skills, base_prompt; or capa's format)")
    check_keys(doc, data, "", AGENTCAP_KEYS | CAPA_KEYS)
    agent = AgentDef(cap.parent.name, cap.parent)
    agent.base_prompt = _base_prompt(doc, data, cap.parent, root)
    for i, s in enumerate(_list(doc, data, "servers")):
        _server(doc, agent, s, f"servers.{i}")
    for i, s in enumerate(_list(doc, data, "skills")):
        _skill(doc, agent, s, f"skills.{i}", root)
    for i, t in enumerate(_list(doc, data, "tools")):
        _tool(doc, agent, t, f"tools.{i}")
    options = data.get("options") or {}
    want(doc, options, dict, "options", "a mapping (e.g. {toolExposure: expose-all})")
    if options.get("toolExposure", "expose-all") not in ("expose-all", "on-demand"):
        raise doc.error("options.toolExposure", "must be expose-all or on-demand")
    agent.capa = agent.capa or any(k in data for k in CAPA_KEYS)
    return agent


def _list(doc: Located, data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key) or []
    return want(doc, value, list, key, "a list")


def _base_prompt(doc: Located, data: dict[str, Any], base: Path, root: Path) -> str | None:
    if "base_prompt_file" in data:
        rel = want(doc, data["base_prompt_file"], str, "base_prompt_file", "a file path")
        return _read(doc, base, root, rel, "base_prompt_file")
    if "base_prompt" in data:
        return want(doc, data["base_prompt"], str, "base_prompt", "text")
    agents = data.get("agents") or {}
    want(doc, agents, dict, "agents", "a mapping {base, additional}")
    b = agents.get("base")
    if b is None:
        return None
    want(doc, b, dict, "agents.base", "a mapping {type: local, path} or {type: inline, content}")
    kind = b.get("type", "local")
    if kind == "inline" or "content" in b:
        return want(doc, b.get("content"), str, "agents.base.content", "the instructions text")
    if kind != "local":
        raise doc.error("agents.base.type", f"{kind!r} is not supported here (local or inline)")
    return _read(doc, base, root, want(doc, b.get("path"), str, "agents.base.path", "a file path"), "agents.base.path")


def _read(doc: Located, base: Path, root: Path, rel: str, key: str) -> str:
    path = base / rel
    if not (path.exists() or path.is_symlink()):
        raise doc.error(key, f"no file {rel!r} (beside {doc.path.name})")
    return confined(doc, key, root, path, shown=rel).read_text()



def _server(doc: Located, agent: AgentDef, s: Any, key: str) -> None:
    if isinstance(s, str) and s:  # agentcap: a mock name
        agent.servers.append(s)
        return
    want(doc, s, dict, key, "a mock name, or a capa server {id, type: mcp, def: {url | cmd}}")
    sid = want(doc, s.get("id"), str, f"{key}.id", "the server id (the mock of the same name answers it)")
    if s.get("type", "mcp") != "mcp":
        raise doc.error(f"{key}.type", f"{s.get('type')!r}: only mcp servers are supported")
    want(doc, s.get("def") or {}, dict, f"{key}.def", "a mapping {url} or {cmd, args, env}")
    agent.capa = True
    agent.servers.append(sid)


def _skill(doc: Located, agent: AgentDef, s: Any, key: str, root: Path) -> None:
    if isinstance(s, str) and s:  # agentcap: a skills dir
        path = agent.dir / s
        if not path.is_dir():
            raise doc.error(key, f"no skills dir {s!r}")
        agent.skills.append(confined(doc, key, root, path, tree=True, shown=s))
        return
    want(doc, s, dict, key, "a skills dir, or a capa skill {id, type, def}")
    sid = want(doc, s.get("id"), str, f"{key}.id", "the skill id")
    if not SKILL_ID.fullmatch(sid):
        raise doc.error(f"{key}.id", f"{sid!r}: a skill id is a name of letters, digits, _ . and - (it names a directory)")
    kind = s.get("type", "local")
    d = s.get("def") or {}
    want(doc, d, dict, f"{key}.def", "a mapping {path | content, requires}")
    agent.capa = True
    if kind == "inline":
        agent.inline_skills[sid] = want(doc, d.get("content"), str, f"{key}.def.content", "the SKILL.md text")
    elif kind == "local":
        rel = want(doc, d.get("path"), str, f"{key}.def.path", "the skill's directory")
        path = agent.dir / rel
        if not path.is_dir() or not (path / "SKILL.md").is_file():
            raise doc.error(f"{key}.def.path", f"no skill dir with a SKILL.md at {rel!r}")
        agent.skills.append(confined(doc, f"{key}.def.path", root, path, tree=True, shown=rel))
    else:  # github / remote skills need the network, which a test run has not got
        raise doc.error(f"{key}.type", f"{kind!r} skills are not supported (one of: {', '.join(SKILL_TYPES)}); "
                                       "vendor the skill into the project and use type: local")


def _tool(doc: Located, agent: AgentDef, t: Any, key: str) -> None:
    want(doc, t, dict, key, "a capa tool {id, type: mcp, def: {server: '@srv', tool}}")
    d = want(doc, t.get("def") or {}, dict, f"{key}.def", "a mapping {server, tool}")
    if t.get("type", "mcp") != "mcp":  # capa's command tools run on the host: not in a sandboxed test
        raise doc.error(f"{key}.type", f"{t.get('type')!r} tools are not supported (only mcp)")
    server = want(doc, d.get("server"), str, f"{key}.def.server", "'@<server id>'").lstrip("@")
    tool = want(doc, d.get("tool") or t.get("id"), str, f"{key}.def.tool", "the tool name")
    if server not in agent.servers:
        raise doc.error(f"{key}.def.server", f"'@{server}' is not one of this file's servers "
                                             f"({', '.join(agent.servers) or 'none'})")
    agent.capa = True
    agent.tools.append((key, server, tool))


def check_tools(agent: AgentDef, cap: Path, server: str, offered: set[str]) -> None:
    """A capa ``tools`` entry naming a tool the mock does not offer is an error (the agent would miss it)."""
    for key, srv, tool in agent.tools:
        if srv == server and tool not in offered:
            raise load(cap).error(f"{key}.def.tool", f"the {server} mock offers no tool {tool!r}")
