"""``mock.yaml``: read and checked up front, every problem named by file, line and key.

    name: slack
    schema: tools.json            # a verbatim tools/list JSON ({"tools": [...]} or a bare list)
    # or: tools: [{name, description, inputSchema}, …]
    handler: handler.py           # optional; handler.py beside mock.yaml is picked up by itself
    seed: {channels: {general: {messages: []}}}
    fallback: echo                # or "error": what a call no handler or rule answers gets
    fault_seed: 0                 # the RNG of `faults`
    faults: {post_message: {latency_ms: 20, error_rate: 0.1}}
    responses:
      post_message:
        - match: {channel: random}
          error: "channel is archived"
        - mutate:
            - {op: append, path: "channels.{{ args.channel }}.messages", value: {text: "{{ args.text }}"}}
          result: {ok: true}
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from agentcap_addons.wire.yamlfile import ConfigError, Located, check_keys, load

from . import templating
from .state import OPS

TOP_KEYS = {"name", "schema", "tools", "handler", "seed", "fallback", "responses", "faults", "fault_seed"}
RULE_KEYS = {"match", "mutate", "result", "error"}
MUTATION_KEYS = {"op", "path", "value"}


@dataclass
class Mutation:
    op: str
    path: str
    value: Any = None


@dataclass
class Rule:
    match: dict[str, Any]
    mutate: list[Mutation]
    result: Any = None
    error: Any = None
    has_error: bool = False


@dataclass
class Fault:
    latency_ms: float = 0.0
    error_rate: float = 0.0


@dataclass
class MockSpec:
    name: str
    path: Path
    tools: list[dict[str, Any]]
    seed: Any = field(default_factory=dict)
    rules: dict[str, list[Rule]] = field(default_factory=dict)
    handlers: dict[str, Callable[..., Any]] = field(default_factory=dict)
    fallback: str = "echo"
    faults: dict[str, Fault] = field(default_factory=dict)
    fault_seed: int = 0

    @property
    def tool_names(self) -> list[str]:
        return [t["name"] for t in self.tools]


def resolve(target: str | os.PathLike[str]) -> Path:
    p = Path(target)
    return p / "mock.yaml" if p.is_dir() else p


def _load_tools(doc: Located, top: dict[str, Any]) -> list[dict[str, Any]]:
    if ("schema" in top) == ("tools" in top):
        raise doc.error("schema", "give exactly one of 'schema' (a tools/list JSON file) or inline 'tools'")
    if "schema" in top:
        sp = doc.path.parent / str(top["schema"])
        try:
            data = json.loads(sp.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise doc.error("schema", f"{sp}: file not found") from None
        except ValueError as e:
            raise doc.error("schema", f"{sp}: not JSON: {e}") from None
        tools = data.get("tools") if isinstance(data, dict) else data
        key = "schema"
    else:
        tools, key = top["tools"], "tools"
    if not isinstance(tools, list) or not tools:
        raise doc.error(key, "needs a non-empty list of tools")
    names = set()
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
            raise doc.error(f"{key}.{i}" if key == "tools" else key, f"tool #{i} has no name")
        if t["name"] in names:
            raise doc.error(f"{key}.{i}" if key == "tools" else key, f"tool {t['name']!r} is listed twice")
        names.add(t["name"])
        t.setdefault("inputSchema", {"type": "object"})
    return tools


def _load_handler(doc: Located, top: dict[str, Any], names: list[str]) -> dict[str, Callable[..., Any]]:
    hp = doc.path.parent / str(top["handler"]) if "handler" in top else doc.path.parent / "handler.py"
    if "handler" not in top and not hp.exists():
        return {}
    if not hp.exists():
        raise doc.error("handler", f"{hp}: file not found")
    mod_name = f"agentcap_mock_handler_{abs(hash(str(hp.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, hp)
    assert spec and spec.loader
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(hp.parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigError(hp, e.lineno, "", f"handler does not import: SyntaxError: {e.msg}") from None
    except Exception as e:
        tb = traceback.extract_tb(e.__traceback__)
        line = next((f.lineno for f in reversed(tb) if f.filename == str(hp)), None)
        raise ConfigError(hp, line, "", f"handler does not import: {type(e).__name__}: {e}") from None
    finally:
        sys.path.remove(str(hp.parent))
    handlers: dict[str, Callable[..., Any]] = dict(getattr(module, "HANDLERS", {}) or {})
    for n in names:
        fn = getattr(module, f"tool_{n}", None)
        if callable(fn):
            handlers.setdefault(n, fn)
    for n, fn in handlers.items():
        if n not in names:
            raise ConfigError(hp, None, f"HANDLERS.{n}", f"handles a tool that is not in the schema ({', '.join(names)})")
        if not callable(fn):
            raise ConfigError(hp, None, f"HANDLERS.{n}", "is not callable")
    return handlers


def _rules(doc: Located, key: str, raw: Any) -> list[Rule]:
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, r in enumerate(items):
        rk = f"{key}.{i}" if isinstance(raw, list) else key
        if not isinstance(r, dict):
            raise doc.error(rk, "a rule is a mapping of match / mutate / result / error")
        check_keys(doc, r, rk, RULE_KEYS)
        match = r.get("match") or {}
        if not isinstance(match, dict):
            raise doc.error(f"{rk}.match", "must be a mapping of argument path to value")
        muts = []
        for j, m in enumerate(r.get("mutate") or []):
            mk = f"{rk}.mutate.{j}"
            if not isinstance(m, dict) or "op" not in m or "path" not in m:
                raise doc.error(mk, "a mutation is {op, path, value}")
            check_keys(doc, m, mk, MUTATION_KEYS)
            if m["op"] not in OPS:
                raise doc.error(f"{mk}.op", f"unknown mutation {m['op']!r} (one of {', '.join(OPS)})")
            muts.append(Mutation(m["op"], str(m["path"]), m.get("value")))
        for part, val in (("match", match), ("mutate", [(m.path, m.value) for m in muts]),
                          ("result", r.get("result")), ("error", r.get("error"))):
            try:
                templating.check(val)
            except templating.TemplateError as e:
                raise doc.error(f"{rk}.{part}", str(e)) from None
        out.append(Rule(match, muts, r.get("result"), r.get("error"), "error" in r))
    return out


def load_spec(target: str | os.PathLike[str]) -> MockSpec:
    doc = load(resolve(target))
    top = doc.data
    if not isinstance(top, dict):
        raise doc.error("", "mock.yaml is a mapping (name, schema or tools, seed, responses …)")
    check_keys(doc, top, "", TOP_KEYS)
    name = top.get("name") or doc.path.parent.name
    if not isinstance(name, str):
        raise doc.error("name", "must be a string")
    tools = _load_tools(doc, top)
    names = [t["name"] for t in tools]
    fallback = top.get("fallback", "echo")
    if fallback not in ("echo", "error"):
        raise doc.error("fallback", "must be 'echo' or 'error'")
    responses = top.get("responses") or {}
    if not isinstance(responses, dict):
        raise doc.error("responses", "must be a mapping of tool name to rule(s)")
    rules = {}
    for tool, raw in responses.items():
        if tool not in names:
            raise doc.error(f"responses.{tool}", f"no such tool in the schema (tools: {', '.join(names)})")
        rules[tool] = _rules(doc, f"responses.{tool}", raw)
    faults = {}
    for tool, f in (top.get("faults") or {}).items():
        if tool not in names and tool != "*":
            raise doc.error(f"faults.{tool}", "no such tool in the schema ('*' means every tool)")
        if not isinstance(f, dict) or set(f) - {"latency_ms", "error_rate"}:
            raise doc.error(f"faults.{tool}", "takes latency_ms and error_rate")
        rate = f.get("error_rate", 0.0)
        if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise doc.error(f"faults.{tool}.error_rate", "must be a number from 0 to 1")
        faults[tool] = Fault(float(f.get("latency_ms", 0.0)), float(rate))
    fault_seed = top.get("fault_seed", 0)
    if not isinstance(fault_seed, int) or isinstance(fault_seed, bool):
        raise doc.error("fault_seed", "must be a whole number")
    return MockSpec(name=name, path=doc.path, tools=tools, seed=top.get("seed") or {}, rules=rules,
                    handlers=_load_handler(doc, top, names), fallback=fallback, faults=faults, fault_seed=fault_seed)
