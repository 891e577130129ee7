"""A test project on disk, in agentcap's dialect or agenteval's, read into one model.

``agentcap.yaml`` or ``agenteval.yaml`` (plus a ``.env`` beside it: ``KEY=VALUE`` lines, the real
environment wins), ``agents/<name>/capabilities.yaml`` (agentcap's or capa's format, see
capabilities.py), ``scenarios/<id>/scenario.yaml`` with its ``input/prompt.md``, ``rubric.md``,
``assets/`` and ``mcp/<server>/`` (agenteval keeps mocks beside the scenario; agentcap also looks in
the project's ``mcp/``). Keys of both tools are read; agentcap's own spellings stay as aliases
(``report_dir`` = ``report.dir``, ``path`` = ``jsonpath``, ``contains`` = ``values`` …).

Loading validates everything a run would trip over later — unknown keys, assertion kinds and their
params, mocks that do not load, tools named in assertions or capabilities that no mock offers, missing
rubric / prompt / asset files — and reports the first problem as ``file:line: key: message``.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentcap_addons.wire.api.apibase import checked
from agentcap_addons.wire.fake.upstream import BUILTIN_SCRIPTS, resolve_script
from agentcap_addons.wire.util.confine import confined
from agentcap_addons.wire.util.yamlfile import (
    ConfigError,
    Found,
    Located,
    check_keys,
    did_you_mean,
    each_error,
    load,
    want,
)
from agentcap_cli.console import err_console
from agentcap_cli.corpus.tasks import prompt_problem
from agentcap_cli.suite.assertions import Assertion, parse_assertions
from agentcap_cli.suite.capabilities import AgentDef, check_tools, load_agent

CONFIG_NAMES = ("agentcap.yaml", "agenteval.yaml")
CONFIG_KEYS = {"provider", "models", "repeats", "timeout_seconds", "max_turns", "turns", "upstream", "judge",
               "report", "report_dir", "plugins", "prices", "providers"}
SCENARIO_KEYS = {"id", "agent", "provider", "prompt", "prompt_file", "mcp", "assets", "run", "assertions", "judge",
                 "description", "tags", "min_pass_rate"}
RUN_KEYS = {"models", "repeats", "timeout_seconds", "max_turns", "turns"}
JUDGE_KEYS = {"enabled", "rubric", "rubric_file", "min_score", "required", "model"}
CONFIG_JUDGE_KEYS = {"enabled", "model", "min_score", "backend", "cli", "upstream"}
JUDGE_BACKENDS = ("chat", "anthropic-api", "claude-cli")
UPSTREAM_KEYS = {"script", "url", "api_key_env"}
HARNESS_ALIASES = {"claude": "claude-code"}  # agenteval's provider names → agentcap's agent adapters
DEFAULT_PROMPT_FILE = "input/prompt.md"
SCENARIO_ID = re.compile(r"\w[\w.+=,-]{0,127}")


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
    max_turns: int | None  # the cap on the agent's own turns (claude --max-turns, …)
    assertions: list[Assertion]
    judge: Judge | None
    turns: int = 1  # user turns: the prompt, then "Continue" (agentcap's addition)
    mock_dirs: dict[str, Path] = field(default_factory=dict)  # server → its mock dir
    assets_contents: list[Path] = field(default_factory=list)  # dirs whose contents go to the workspace root
    tags: list[str] = field(default_factory=list)  # for -m selection (agentcap's addition)
    min_pass_rate: float | None = None  # the cell passes when this share of its repeats pass (default: all)


@dataclass
class Project:
    root: Path
    config_file: Path
    provider: str
    models: list[str]
    repeats: int
    timeout_s: float
    max_turns: int | None
    upstream: Upstream | None  # None: what the harness itself would use (agenteval.yaml without upstream:)
    judge_model: str | None
    judge_upstream: Upstream | None
    report_dir: Path
    prices: dict[str, dict[str, float]]
    agents: dict[str, AgentDef]
    scenarios: list[Scenario]
    judge_backend: str = "chat"
    judge_enabled: bool = True
    judge_min_score: float = 0.5
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-provider config (plugins read it)
    turns: int = 1

    def provider_of(self, scenario: Scenario) -> str:
        return scenario.provider or self.provider


def harness_name(name: str) -> str:
    """The agent adapter (or plugin Provider) a provider name means: ``claude`` is claude-code."""
    from agenteval.providers.registry import plugin

    return name if plugin(name) is not None else HARNESS_ALIASES.get(name, name)


def check_provider(doc: Located, key: str, name: Any) -> str:
    from agenteval.providers.registry import available, plugin
    from sandbox.agents import UnknownAgent, get_agent

    name = want(doc, name, str, key, "a provider (harness) name, e.g. claude or pi")
    if plugin(name) is None:
        try:
            get_agent(HARNESS_ALIASES.get(name, name))
        except UnknownAgent:
            raise doc.error(key, f"unknown provider {name!r}{did_you_mean(name, available())}; "
                                 f"known: {', '.join(available())}") from None
    return name


def load_dotenv(path: Path) -> dict[str, str]:
    """agenteval's ``.env``: ``KEY=VALUE`` lines (``export`` and quotes allowed, ``#`` comments); a
    variable already in the environment is not overwritten. Returns what the file holds. A line that is
    not ``KEY=VALUE`` is skipped with a warning on stderr naming ``file:line`` (not its text: it may be
    a key), as python-dotenv (agenteval's reader) skips and warns."""
    loaded: dict[str, str] = {}
    if not path.is_file():
        return loaded
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            err_console().print(f"warning: {path}:{n}: not KEY=VALUE (no '='): the line is ignored",
                                markup=False, highlight=False, soft_wrap=True)
            continue
        line = line.removeprefix("export ").strip()
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if key:
            loaded[key] = value
            os.environ.setdefault(key, value)
    return loaded


def _str_list(doc: Located, value: Any, key: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(x, str) and x for x in items):
        raise doc.error(key, "must be a name or a list of names")
    return list(items)


def _int(doc: Located, value: Any, key: str, low: int = 1) -> int:
    n = want(doc, value, int, key, f"a whole number ≥ {low}")
    if n < low:
        raise doc.error(key, f"must be ≥ {low}")
    return n


def _upstream(doc: Located, value: Any, key: str, root: Path) -> Upstream:
    if isinstance(value, str):
        value = {"url": value} if "://" in value else {"script": value}
    want(doc, value, dict, key, "a mapping {script | url, api_key_env}")
    check_keys(doc, value, key, UPSTREAM_KEYS)
    if ("script" in value) == ("url" in value):
        raise doc.error(key, "give exactly one of script or url")
    script = None
    if "script" in value:
        script = root / want(doc, value["script"], str, f"{key}.script", "a script file or a built-in script's name")
        if script.exists() or script.is_symlink():
            script = confined(doc, f"{key}.script", root, script)
        else:  # a built-in script's name (a path that is not there is not looked for anywhere else)
            try:
                script = resolve_script(value["script"])
                if script.parent != BUILTIN_SCRIPTS:
                    raise ValueError(value["script"])
            except Exception:
                raise doc.error(f"{key}.script", f"no script file {value['script']!r} in the project, "
                                                 "nor a built-in script of that name") from None
    if "url" in value:
        try:
            checked(str(value["url"]))
        except ValueError as exc:
            raise doc.error(f"{key}.url", str(exc)) from None
    return Upstream(script, value.get("url"), value.get("api_key_env"))


def _judge(doc: Located, value: Any, key: str, base: Path, project: Project) -> Judge | None:
    want(doc, value, dict, key, "a mapping {rubric | rubric_file, min_score, required}")
    check_keys(doc, value, key, JUDGE_KEYS)
    if not value.get("enabled", True):
        return None
    if "rubric" in value:  # agenteval: an inline rubric wins over rubric_file
        rubric = want(doc, value["rubric"], str, f"{key}.rubric", "the rubric text")
    elif "rubric_file" in value:
        rel = want(doc, value["rubric_file"], str, f"{key}.rubric_file", "a file path")
        path = base / rel
        if not (path.exists() or path.is_symlink()):
            raise doc.error(f"{key}.rubric_file", f"no file {rel!r}")
        rubric = confined(doc, f"{key}.rubric_file", project.root, path).read_text()
    else:
        raise doc.error(key, "needs a rubric or a rubric_file")
    score = want(doc, value.get("min_score", project.judge_min_score), (int, float), f"{key}.min_score", "a number in 0..1")
    if not 0 <= score <= 1:
        raise doc.error(f"{key}.min_score", "must be in 0..1")
    return Judge(rubric, float(score), bool(value.get("required", True)), value.get("model"))


def load_plugins(doc: Located, root: Path, names: list[str]) -> None:
    """Import each module of ``plugins:`` (project root on sys.path): their ``register()`` calls add
    providers, assertion kinds and agent adapters before anything is resolved."""
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


def load_project(root: str | Path, errors: list[ConfigError] | None = None) -> Project:
    """Read and check a project (a ``.env`` beside the config is loaded into the environment first).

    The first problem raises ConfigError; with ``errors`` given, a broken agent or scenario file is
    added there instead and the others are still checked (``validate`` reports them all at once).
    A broken config file raises either way: nothing else can be read without it."""
    root = Path(root).resolve()
    cfg_path = find_config(root)
    agenteval = cfg_path.name == "agenteval.yaml"
    load_dotenv(root / ".env")
    doc = load(cfg_path)
    cfg = doc.data or {}
    want(doc, cfg, dict, "", "a mapping")
    check_keys(doc, cfg, "", CONFIG_KEYS)
    load_plugins(doc, root, _str_list(doc, cfg["plugins"], "plugins") if cfg.get("plugins") else [])
    default_provider = check_provider(doc, "provider", cfg.get("provider", "claude" if agenteval else "claude-code"))
    models = _str_list(doc, cfg.get("models", ["claude-opus-4-8"] if agenteval else ["agentcap-scripted"]), "models")
    repeats = _int(doc, cfg.get("repeats", 1), "repeats")
    timeout = want(doc, cfg.get("timeout_seconds", 300 if agenteval else 600), (int, float), "timeout_seconds", "seconds")
    max_turns = _int(doc, cfg["max_turns"], "max_turns") if "max_turns" in cfg else (25 if agenteval else None)
    turns = _int(doc, cfg.get("turns", 1), "turns")
    # agentcap.yaml without upstream: the embedded scripted model; agenteval.yaml: what the harness uses
    up_cfg = cfg.get("upstream", None if agenteval else {"script": "shell-then-answer"})
    upstream = _upstream(doc, up_cfg, "upstream", root) if up_cfg is not None else None
    judge_cfg = cfg.get("judge") or {}
    want(doc, judge_cfg, dict, "judge", "a mapping {enabled, model, min_score, backend, cli, upstream}")
    check_keys(doc, judge_cfg, "judge", CONFIG_JUDGE_KEYS)
    backend = judge_cfg.get("backend", "claude-cli" if agenteval else "chat")
    if backend not in JUDGE_BACKENDS:
        raise doc.error("judge.backend", f"{backend!r}: expected one of {', '.join(JUDGE_BACKENDS)}")
    judge_up = _upstream(doc, judge_cfg["upstream"], "judge.upstream", root) if "upstream" in judge_cfg else None
    judge_min = want(doc, judge_cfg.get("min_score", 0.0 if agenteval else 0.5), (int, float), "judge.min_score", "0..1")
    report = cfg.get("report") or {}
    want(doc, report, dict, "report", "a mapping {dir}")
    check_keys(doc, report, "report", {"dir"})
    report_dir = root / str(report.get("dir") or cfg.get("report_dir") or "reports")
    prices = cfg.get("prices") or {}
    want(doc, prices, dict, "prices", "a mapping model → {input, output} (USD per million tokens)")
    providers = cfg.get("providers") or {}
    want(doc, providers, dict, "providers", "a mapping provider → its settings")
    agents, broken = {}, set()
    for cap in sorted((root / "agents").glob("*/capabilities.yaml")):
        try:
            agents[cap.parent.name] = load_agent(cap, root)
        except ConfigError as exc:
            if errors is None:
                raise
            errors += each_error(exc)
            broken.add(cap.parent.name)
    project = Project(root, cfg_path, default_provider, models, repeats, float(timeout), max_turns, upstream,
                      judge_cfg.get("model"), judge_up, report_dir, prices, agents, [], judge_backend=backend,
                      judge_enabled=bool(judge_cfg.get("enabled", True)), judge_min_score=float(judge_min),
                      providers=providers, turns=turns)
    project.scenarios = _load_scenarios(project, errors, broken)
    return project


class _Mocks:
    """Mocks by server name, loaded once: the scenario's ``mcp/<name>/`` first, then the project's."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.tools: dict[Path, set[str]] = {}

    def find(self, scenario_dir: Path, name: str) -> Path | None:
        for d in (scenario_dir / "mcp" / name, self.project.root / "mcp" / name):
            if (d / "mock.yaml").is_file():
                return d
        return None

    def offered(self, doc: Located, key: str, d: Path) -> set[str]:
        from mcp_mocks.engine import MockServer

        if d not in self.tools:
            try:
                self.tools[d] = {t["name"] for t in MockServer.load(d, self.project.root).spec.tools}
            except ConfigError:
                raise
            except Exception as exc:
                raise doc.error(key, f"mock {d} does not load: {exc}") from None
        return self.tools[d]


def _load_scenarios(project: Project, errors: list[ConfigError] | None, broken: set[str]) -> list[Scenario]:
    out: list[Scenario] = []
    seen: dict[str, Path] = {}
    mocks = _Mocks(project)
    paths = sorted((project.root / "scenarios").glob("*/scenario.yaml"))
    for path in paths:
        try:
            scenario = _load_scenario(project, path, mocks, broken)
            if scenario.id in seen:
                raise load(path).error("id", f"{scenario.id!r} is also the id of {seen[scenario.id]}")
        except ConfigError as exc:
            if errors is None:
                raise
            errors += each_error(exc)
            continue
        seen[scenario.id] = path
        out.append(scenario)
    if not paths:
        raise ConfigError(project.root / "scenarios", None, "", "no scenarios/<id>/scenario.yaml")
    return out


def _load_scenario(project: Project, path: Path, mocks: _Mocks, broken: AbstractSet[str] = frozenset()) -> Scenario:
    """One scenario; its independent parts are each checked, so every problem in the file is reported
    (ConfigErrors), not just the first. A part that depends on a broken one is not checked."""
    doc = load(path)
    s = doc.data or {}
    want(doc, s, dict, "", "a mapping")
    found = Found()
    with found:
        check_keys(doc, s, "", SCENARIO_KEYS)
    base = path.parent
    sid, agents, provider, prompt, mcp = base.name, ["default"], None, "", []
    with found:
        sid = want(doc, s.get("id", base.name), str, "id", "a name")
        if not SCENARIO_ID.fullmatch(sid):
            raise doc.error("id", f"{sid!r}: a scenario id is a name of letters, digits and _ . + = , - "
                                  "(it names the run's directories), at most 128 of them")
    with found:
        agents = _str_list(doc, s["agent"], "agent") if s.get("agent") else ["default"]
    for i, a in enumerate(agents):
        if a != "default" and a not in project.agents and a not in broken:  # a broken one is reported already
            found.errors.append(doc.error(f"agent.{i}" if isinstance(s.get("agent"), list) else "agent",
                                          f"no agents/{a}/capabilities.yaml{did_you_mean(a, project.agents)}"))
    with found:
        provider = check_provider(doc, "provider", s["provider"]) if s.get("provider") is not None else None
    with found:
        prompt = _prompt(doc, s, base, project.root)
        if (problem := prompt_problem(prompt)) is not None:
            raise doc.error("prompt" if "prompt" in s else "prompt_file", f"the prompt {problem}")
    with found:
        mcp = _str_list(doc, s["mcp"], "mcp") if s.get("mcp") else []
    for a in agents:  # agentcap's capabilities name the mocks they need; capa's are wired to the scenario's
        adef = project.agents.get(a)
        if adef is not None and not adef.capa:
            mcp += [x for x in adef.servers if x not in mcp]
    n_before = len(found.errors)
    mock_dirs, tools = _scenario_mocks(project, doc, base, agents, mcp, mocks, found)
    mocks_ok = len(found.errors) == n_before
    assets: list[Path] = []
    contents: list[Path] = []
    with found:
        assets, contents = _assets(doc, s, base, project.root)
    models, repeats, timeout, max_turns, turns = _run_settings(doc, s.get("run") or {}, project, found)
    assertions: list[Assertion] = []
    judge = None
    if mocks_ok:  # an assertion on a mock that did not load would only repeat that error
        with found:
            assertions = parse_assertions(doc, s.get("assertions") or [], tools)
    with found:
        judge = _judge(doc, s["judge"], "judge", base, project) if s.get("judge") else None
    if not s.get("assertions") and not s.get("judge"):
        found.errors.append(doc.error("assertions", "neither assertions nor a judge: nothing would be checked"))
    tags: list[str] = []
    with found:
        tags = _str_list(doc, s["tags"], "tags") if s.get("tags") else []
    for i, t in enumerate(tags):
        if not re.fullmatch(r"[A-Za-z_][\w-]*", t):
            found.errors.append(doc.error(f"tags.{i}", f"{t!r}: a tag is a word (letters, digits, _ and -)"))
    gate = s.get("min_pass_rate")
    with found:
        if gate is not None and not (isinstance(want(doc, gate, (int, float), "min_pass_rate", "a number in 0..1"), (int, float))
                                     and 0 <= gate <= 1):
            raise doc.error("min_pass_rate", "must be in 0..1")
    found.raise_any()
    return Scenario(sid, base, agents, provider, prompt, mcp, assets, models, repeats, float(timeout), max_turns,
                    assertions, judge, turns=turns, mock_dirs=mock_dirs, assets_contents=contents, tags=tags,
                    min_pass_rate=float(gate) if gate is not None else None)


def _scenario_mocks(project: Project, doc: Located, base: Path, agents: list[str], mcp: list[str], mocks: _Mocks,
                    found: Found) -> tuple[dict[str, Path], dict[str, set[str]]]:
    """(mock dir, tools offered) per MCP server of the scenario; each agent's capabilities checked
    against what the mocks offer. Problems go to ``found``."""
    mock_dirs: dict[str, Path] = {}
    tools: dict[str, set[str]] = {}
    for i, server in enumerate(mcp):
        with found:
            d = mocks.find(base, server)
            if d is None:
                known = [p.parent.name for p in (*base.glob("mcp/*/mock.yaml"), *project.root.glob("mcp/*/mock.yaml"))]
                raise doc.error(f"mcp.{i}", f"no mock {server!r}{did_you_mean(server, known)}: expected "
                                            f"{base.name}/mcp/{server}/mock.yaml (or mcp/{server}/mock.yaml in the project)")
            mock_dirs[server], tools[server] = d, mocks.offered(doc, f"mcp.{i}", d)
    for adef in (project.agents[a] for a in agents if a in project.agents):
        for server in adef.servers:
            if server in tools:
                with found:
                    check_tools(adef, adef.dir / "capabilities.yaml", server, tools[server])
    return mock_dirs, tools


def _run_settings(doc: Located, run: Any, project: Project, found: Found) -> tuple[list[str], int, float, int | None, int]:
    """A scenario's ``run:`` block over the project's defaults: (models, repeats, timeout, max_turns,
    turns). Each setting is checked on its own; problems go to ``found``."""
    models, repeats, timeout = project.models, project.repeats, project.timeout_s
    max_turns, turns = project.max_turns, project.turns
    with found:
        want(doc, run, dict, "run", "a mapping")
        with found:
            check_keys(doc, run, "run", RUN_KEYS)
        with found:
            models = _str_list(doc, run["models"], "run.models") if "models" in run else project.models
        with found:
            repeats = _int(doc, run.get("repeats", project.repeats), "run.repeats")
        with found:
            timeout = want(doc, run.get("timeout_seconds", project.timeout_s), (int, float), "run.timeout_seconds", "seconds")
        with found:
            max_turns = _int(doc, run["max_turns"], "run.max_turns") if "max_turns" in run else project.max_turns
        with found:
            turns = _int(doc, run.get("turns", project.turns), "run.turns")
    return models, repeats, float(timeout), max_turns, turns


def _prompt(doc: Located, s: dict[str, Any], base: Path, root: Path) -> str:
    """agenteval: an inline ``prompt`` wins, else ``prompt_file`` (default ``input/prompt.md``)."""
    if "prompt" in s:
        return want(doc, s["prompt"], str, "prompt", "text").strip()
    rel = want(doc, s.get("prompt_file", DEFAULT_PROMPT_FILE), str, "prompt_file", "a file path")
    pf, key = base / rel, "prompt_file" if "prompt_file" in s else "prompt"
    if not (pf.exists() or pf.is_symlink()):
        raise doc.error(key, f"no file {rel!r}" if "prompt_file" in s
                        else f"no prompt: give prompt, or prompt_file (default {DEFAULT_PROMPT_FILE})")
    return confined(doc, key, root, pf).read_text().strip()


def _assets(doc: Located, s: dict[str, Any], base: Path, root: Path) -> tuple[list[Path], list[Path]]:
    """(files / dirs copied by name, dirs whose contents are copied). agenteval: ``assets: <dir>`` (or
    an ``assets/`` dir beside scenario.yaml) is copied into the workspace root; agentcap: a list of files
    or dirs (beside the scenario or in the project), each copied under its own name."""
    value = s.get("assets")
    if value is None:
        d = base / "assets"
        return [], [confined(doc, "assets", root, d, tree=True)] if d.is_dir() or d.is_symlink() else []
    if isinstance(value, str):
        p = base / value if (base / value).exists() else root / value
        if p.is_dir():
            return [], [confined(doc, "assets", root, p, tree=True)]
        value = [value]
    items, out = _str_list(doc, value, "assets"), []
    for i, a in enumerate(items):
        key = f"assets.{i}" if len(items) > 1 or isinstance(s.get("assets"), list) else "assets"
        p = (base / a) if (base / a).exists() else (root / a)
        if not (p.exists() or p.is_symlink()):
            raise doc.error(key, f"no file or dir {a!r} (beside the scenario or in the project)")
        confined(doc, key, root, p, tree=True)
        out.append(p)
    return out, []
