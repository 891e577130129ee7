"""A test project on disk: agentcap.yaml, agents/<name>/capabilities.yaml, scenarios/<id>/scenario.yaml.

Loading validates everything a run would trip over later — unknown keys, assertion kinds and their
params, mocks that do not load, tools named in assertions that no mock offers, missing rubric / prompt /
asset files — and reports the first problem as ``file:line: key: message`` (ConfigError).
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentcap_addons.wire.yamlfile import ConfigError, Located, check_keys, load, want
from agentcap_cli.suite.assertions import Assertion, parse_assertions

CONFIG_NAMES = ("agentcap.yaml", "agenteval.yaml")
CONFIG_KEYS = {"provider", "models", "repeats", "timeout_seconds", "max_turns", "upstream", "judge", "report_dir",
               "plugins", "prices"}
SCENARIO_KEYS = {"id", "agent", "provider", "prompt", "prompt_file", "mcp", "assets", "run", "assertions", "judge",
                 "description"}
RUN_KEYS = {"models", "repeats", "timeout_seconds", "max_turns"}
CAPABILITY_KEYS = {"servers", "skills", "base_prompt", "base_prompt_file"}
JUDGE_KEYS = {"rubric", "rubric_file", "min_score", "required", "model", "upstream"}
UPSTREAM_KEYS = {"script", "url", "api_key_env"}


@dataclass
class Upstream:
    script: Path | None = None
    url: str | None = None
    api_key_env: str | None = None


@dataclass
class Judge:
    rubric: str
    min_score: float = 0.5
    required: bool = True
    model: str | None = None


@dataclass
class AgentDef:
    name: str
    servers: list[str] = field(default_factory=list)
    skills: list[Path] = field(default_factory=list)
    base_prompt: str | None = None


@dataclass
class Scenario:
    id: str
    dir: Path
    agents: list[str]
    provider: str | None
    prompt: str
    mcp: list[str]
    assets: list[Path]
    models: list[str]
    repeats: int
    timeout_s: float
    max_turns: int
    assertions: list[Assertion]
    judge: Judge | None


@dataclass
class Project:
    root: Path
    config_file: Path
    provider: str
    models: list[str]
    repeats: int
    timeout_s: float
    max_turns: int
    upstream: Upstream
    judge_model: str | None
    judge_upstream: Upstream | None
    report_dir: Path
    prices: dict[str, dict[str, float]]
    agents: dict[str, AgentDef]
    scenarios: list[Scenario]

    def provider_of(self, scenario: Scenario) -> str:
        return scenario.provider or self.provider


def _str_list(doc: Located, value: Any, key: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(x, str) and x for x in items):
        raise doc.error(key, "must be a name or a list of names")
    return list(items)


def _upstream(doc: Located, value: Any, key: str, root: Path) -> Upstream:
    if isinstance(value, str):
        value = {"url": value} if "://" in value else {"script": value}
    want(doc, value, dict, key, "a mapping {script | url, api_key_env}")
    check_keys(doc, value, key, UPSTREAM_KEYS)
    if ("script" in value) == ("url" in value):
        raise doc.error(key, "give exactly one of script or url")
    script = None
    if "script" in value:
        script = (root / value["script"]).resolve()
        if not script.is_file():
            from agentcap_cli.modelserver import resolve_script

            try:
                script = resolve_script(value["script"])
            except Exception:
                raise doc.error(f"{key}.script", f"no script file {value['script']!r}") from None
    return Upstream(script, value.get("url"), value.get("api_key_env"))


def _judge(doc: Located, value: Any, key: str, base: Path) -> Judge:
    want(doc, value, dict, key, "a mapping {rubric | rubric_file, min_score, required}")
    check_keys(doc, value, key, JUDGE_KEYS)
    if "rubric_file" in value:
        path = base / value["rubric_file"]
        if not path.is_file():
            raise doc.error(f"{key}.rubric_file", f"no file {value['rubric_file']!r}")
        rubric = path.read_text()
    else:
        rubric = want(doc, value.get("rubric"), str, f"{key}.rubric", "the rubric text (or give rubric_file)")
    score = want(doc, value.get("min_score", 0.5), (int, float), f"{key}.min_score", "a number in 0..1")
    if not 0 <= score <= 1:
        raise doc.error(f"{key}.min_score", "must be in 0..1")
    return Judge(rubric, float(score), bool(value.get("required", True)), value.get("model"))


def load_plugins(doc: Located, root: Path, names: list[str]) -> None:
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    for i, name in enumerate(names):
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise doc.error(f"plugins.{i}", f"cannot import {name!r}: {exc}") from None


def find_config(root: Path) -> Path:
    for name in CONFIG_NAMES:
        if (root / name).is_file():
            return root / name
    raise ConfigError(root / CONFIG_NAMES[0], None, "", "no agentcap.yaml (or agenteval.yaml) here")


def load_project(root: str | Path) -> Project:
    root = Path(root).resolve()
    cfg_path = find_config(root)
    doc = load(cfg_path)
    cfg = doc.data or {}
    want(doc, cfg, dict, "", "a mapping")
    check_keys(doc, cfg, "", CONFIG_KEYS)
    load_plugins(doc, root, _str_list(doc, cfg.get("plugins") or [], "plugins") if cfg.get("plugins") else [])
    from sandbox.agents import UnknownAgent, get_agent

    provider = want(doc, cfg.get("provider", "claude-code"), str, "provider", "an agent adapter name")
    try:
        get_agent(provider)
    except UnknownAgent as exc:
        raise doc.error("provider", str(exc)) from None
    models = _str_list(doc, cfg.get("models", ["agentcap-scripted"]), "models")
    repeats = want(doc, cfg.get("repeats", 1), int, "repeats", "a whole number ≥ 1")
    timeout = want(doc, cfg.get("timeout_seconds", 600), (int, float), "timeout_seconds", "seconds")
    max_turns = want(doc, cfg.get("max_turns", 1), int, "max_turns", "a whole number ≥ 1")
    upstream = _upstream(doc, cfg.get("upstream", {"script": "shell-then-answer"}), "upstream", root)
    judge_cfg = cfg.get("judge") or {}
    want(doc, judge_cfg, dict, "judge", "a mapping {model, upstream}")
    judge_up = _upstream(doc, judge_cfg["upstream"], "judge.upstream", root) if "upstream" in judge_cfg else None
    prices = cfg.get("prices") or {}
    want(doc, prices, dict, "prices", "a mapping model → {input, output} (USD per million tokens)")
    agents = _load_agents(root)
    project = Project(root, cfg_path, provider, models, repeats, float(timeout), max_turns, upstream,
                      judge_cfg.get("model"), judge_up, root / str(cfg.get("report_dir") or "reports"), prices,
                      agents, [])
    project.scenarios = _load_scenarios(project)
    return project


def _load_agents(root: Path) -> dict[str, AgentDef]:
    agents: dict[str, AgentDef] = {}
    for cap in sorted((root / "agents").glob("*/capabilities.yaml")):
        doc = load(cap)
        data = doc.data or {}
        want(doc, data, dict, "", "a mapping {servers, skills, base_prompt}")
        check_keys(doc, data, "", CAPABILITY_KEYS)
        base = data.get("base_prompt")
        if "base_prompt_file" in data:
            path = cap.parent / data["base_prompt_file"]
            if not path.is_file():
                raise doc.error("base_prompt_file", f"no file {data['base_prompt_file']!r}")
            base = path.read_text()
        skills = [cap.parent / s for s in _str_list(doc, data.get("skills") or [], "skills")] if data.get("skills") else []
        for i, s in enumerate(skills):
            if not s.is_dir():
                raise doc.error(f"skills.{i}", f"no skills dir {s}")
        servers = _str_list(doc, data["servers"], "servers") if data.get("servers") else []
        for i, s in enumerate(servers):
            if not (root / "mcp" / s / "mock.yaml").is_file():
                raise doc.error(f"servers.{i}", f"no mock mcp/{s}/mock.yaml")
        agents[cap.parent.name] = AgentDef(cap.parent.name, servers, skills, base)
    return agents


def _load_scenarios(project: Project) -> list[Scenario]:
    from mcp_mocks.engine import MockServer
    from sandbox.agents import UnknownAgent, get_agent

    out = []
    seen: dict[str, Path] = {}
    tool_names: dict[str, set[str]] = {}
    for path in sorted((project.root / "scenarios").glob("*/scenario.yaml")):
        doc = load(path)
        s = doc.data or {}
        want(doc, s, dict, "", "a mapping")
        check_keys(doc, s, "", SCENARIO_KEYS)
        sid = want(doc, s.get("id", path.parent.name), str, "id", "a name")
        if sid in seen:
            raise doc.error("id", f"{sid!r} is also the id of {seen[sid]}")
        seen[sid] = path
        agents = _str_list(doc, s.get("agent"), "agent") if s.get("agent") else ["default"]
        for i, a in enumerate(agents):
            if a != "default" and a not in project.agents:
                raise doc.error(f"agent.{i}" if isinstance(s.get("agent"), list) else "agent",
                                f"no agents/{a}/capabilities.yaml")
        provider = s.get("provider")
        if provider is not None:
            try:
                get_agent(provider)
            except UnknownAgent as exc:
                raise doc.error("provider", str(exc)) from None
        if ("prompt" in s) == ("prompt_file" in s):
            raise doc.error("prompt", "give exactly one of prompt or prompt_file")
        if "prompt_file" in s:
            pf = path.parent / s["prompt_file"]
            if not pf.is_file():
                raise doc.error("prompt_file", f"no file {s['prompt_file']!r}")
            prompt = pf.read_text()
        else:
            prompt = want(doc, s["prompt"], str, "prompt", "text")
        mcp = _str_list(doc, s["mcp"], "mcp") if s.get("mcp") else []
        for a in agents:
            mcp += [x for x in (project.agents[a].servers if a in project.agents else []) if x not in mcp]
        for i, server in enumerate(mcp):
            if server not in tool_names:
                try:
                    mock = MockServer.load(project.root / "mcp" / server)
                except ConfigError:
                    raise
                except Exception as exc:
                    raise doc.error(f"mcp.{i}", f"mock mcp/{server} does not load: {exc}") from None
                tool_names[server] = {t["name"] for t in mock.spec.tools}
        assets = []
        for i, a in enumerate(_str_list(doc, s["assets"], "assets") if s.get("assets") else []):
            p = (path.parent / a) if (path.parent / a).exists() else (project.root / a)
            if not p.exists():
                raise doc.error(f"assets.{i}", f"no file or dir {a!r} (beside the scenario or in the project)")
            assets.append(p)
        run = s.get("run") or {}
        want(doc, run, dict, "run", "a mapping")
        check_keys(doc, run, "run", RUN_KEYS)
        models = _str_list(doc, run["models"], "run.models") if "models" in run else project.models
        repeats = want(doc, run.get("repeats", project.repeats), int, "run.repeats", "a whole number ≥ 1")
        if repeats < 1:
            raise doc.error("run.repeats", "must be ≥ 1")
        timeout = want(doc, run.get("timeout_seconds", project.timeout_s), (int, float), "run.timeout_seconds", "seconds")
        max_turns = want(doc, run.get("max_turns", project.max_turns), int, "run.max_turns", "a whole number ≥ 1")
        assertions = parse_assertions(doc, s.get("assertions") or [], {k: v for k, v in tool_names.items() if k in mcp})
        judge = _judge(doc, s["judge"], "judge", path.parent) if s.get("judge") else None
        out.append(Scenario(sid, path.parent, agents, provider, prompt, mcp, assets, models, repeats, float(timeout),
                            max_turns, assertions, judge))
    if not out:
        raise ConfigError(project.root / "scenarios", None, "", "no scenarios/<id>/scenario.yaml")
    return out
