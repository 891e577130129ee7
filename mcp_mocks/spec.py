"""``mock.yaml``: read and checked up front, every problem named by file, line and key.

One reader for both dialects — agenteval's, exactly as its README documents it, and agentcap's
additions — into one model (:class:`MockSpec`)::

    name: slack                   # letters, digits, _ and -: it names the files --out writes
    schema: schema.json           # a verbatim tools/list JSON ({"tools": [...]} or a bare list)
    # or: tools: [{name, description, inputSchema}, …]   (inline tools win when both are given)
    handler: handler.py           # optional; handler.py beside mock.yaml is picked up by itself
    seed: {channels: {general: {messages: []}}}
    strict: false                 # true: a template using an undefined name is a tool error
    handler_timeout: 30           # seconds a handler may take before the call is a tool error
    import_timeout: 10            # seconds handler.py may take to import (checked in a child process)
    fallback: echo                # or "error": what a call to a tool without rules gets
    fault_seed: 0                 # the RNG of `faults`
    faults: {post_message: {latency_ms: 20, error_rate: 0.1}}
    responses:
      post_message:
        - match: {channel: random}
          error: "channel is archived"
        - when: "args.channel not in state.channels"     # agentcap: a Jinja condition
          error: "channel_not_found"
        - mutate:
            - append: {path: "channels.{{ args.channel }}.messages", value: {text: "{{ args.text }}"}}
            - increment: {path: posts, by: 1}
            - {op: set, path: last, value: "{{ now }}"}   # agentcap's spelling of the same
          result: {ok: true}
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from agentcap_addons.wire.util.confine import confined
from agentcap_addons.wire.util.yamlfile import ConfigError, ConfigErrors, Located, check_keys, did_you_mean, load

from . import templating
from .state import OPS

TOP_KEYS = {"name", "schema", "tools", "handler", "seed", "strict", "handler_timeout", "import_timeout", "fallback",
            "responses", "faults", "fault_seed"}
RULE_KEYS = {"match", "when", "mutate", "result", "error"}
MUTATION_BODY_KEYS = {"path", "value", "by"}
DEFAULT_HANDLER_TIMEOUT = 30.0
DEFAULT_IMPORT_TIMEOUT = 10.0
# a server's name names its files in --out (<name>.state.json): ASCII letters, digits, _ and -, not
# starting with - (nor a dot: no hidden file, no ..), short enough for any file system
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}", re.ASCII)
NAME_RULE = "letters, digits, _ and - (ASCII), at most 64, not starting with -"
OK = {"ok": True}  # what a rule without result, or a handler returning None, answers (as agenteval)


@dataclass
class Mutation:
    op: str
    path: list[str]  # segments, each a literal key or a template (see templating.split_path)
    value: Any = None


@dataclass
class Rule:
    match: dict[str, Any]
    mutate: list[Mutation]
    result: Any = field(default_factory=lambda: dict(OK))
    error: Any = None
    has_error: bool = False
    when: str | None = None  # a Jinja expression that must be truthy


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
    strict: bool = False
    handler_timeout: float = DEFAULT_HANDLER_TIMEOUT

    @property
    def tool_names(self) -> list[str]:
        return [t["name"] for t in self.tools]


def resolve(target: str | os.PathLike[str]) -> Path:
    p = Path(target)
    return p / "mock.yaml" if p.is_dir() else p


def _load_tools(doc: Located, top: dict[str, Any], root: Path) -> list[dict[str, Any]]:
    if "schema" not in top and "tools" not in top:
        raise doc.error("", "give the tools: 'schema' (a tools/list JSON file) or inline 'tools'")
    if "tools" not in top:  # as agenteval: when both are given, the inline tools win
        sp = doc.path.parent / str(top["schema"])
        if sp.exists() or sp.is_symlink():
            sp = confined(doc, "schema", root, sp, shown=str(top["schema"]))
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
    return _plain(doc, key, tools)


def _load_handler(doc: Located, top: dict[str, Any], names: list[str],
                  import_timeout: float, root: Path) -> dict[str, Callable[..., Any]]:
    hp = doc.path.parent / str(top["handler"]) if "handler" in top else doc.path.parent / "handler.py"
    if "handler" not in top and not hp.exists():
        return {}
    if not (hp.exists() or hp.is_symlink()):
        raise doc.error("handler", f"{hp}: file not found")
    hp = confined(doc, "handler", root, hp, shown=str(top.get("handler", "handler.py")))
    module = _import_handler(hp, import_timeout)
    registered = getattr(module, "HANDLERS", None) or {}
    if not isinstance(registered, dict):
        raise ConfigError(hp, None, "HANDLERS", "must be a dict of tool name to function")
    handlers: dict[str, Callable[..., Any]] = dict(registered)
    for n in names:
        fn = getattr(module, f"tool_{n}", None)
        if callable(fn):
            handlers.setdefault(n, fn)
    lines = _handler_lines(hp)
    _check_unmatched(hp, lines, names, registered, module)
    for n, fn in handlers.items():
        key = f"HANDLERS.{n}" if n in registered else f"tool_{n}"
        if not callable(fn):
            raise ConfigError(hp, lines.get(key), key, "is not callable")
        _check_signature(hp, key, fn)
    return handlers


def _check_unmatched(hp: Path, lines: dict[str, int], names: list[str], registered: dict[Any, Any],
                     module: ModuleType) -> None:
    """Every ``HANDLERS`` key and ``tool_<name>`` callable that names no declared tool (agenteval's
    convention: a ``tool_`` function *is* a handler, so ``tool_add_label`` for ``add_labels`` is a typo,
    not a helper) — one error each, at its line, with the closest declared name."""
    keys = [(f"HANDLERS.{n}", n) for n in registered if n not in names]
    keys += [(a, a.removeprefix("tool_")) for a in dir(module)
             if a.startswith("tool_") and callable(getattr(module, a)) and a.removeprefix("tool_") not in names]
    errors = [ConfigError(hp, lines.get(key), key, f"no tool {n!r} in the schema{did_you_mean(n, names)}")
              for key, n in keys]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)


def _handler_lines(hp: Path) -> dict[str, int]:
    """Where ``handler.py`` binds each ``tool_<name>`` and ``HANDLERS`` key (top level, as written), for
    errors that name a line; a binding made another way (``setattr``, a loop) has none."""
    try:
        tree = ast.parse(hp.read_bytes(), str(hp))
    except (SyntaxError, ValueError, OSError):  # it imported, so this is a file changed since
        return {}
    lines: dict[str, int] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            lines.setdefault(node.name, node.lineno)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                lines.update({k: n for k, n in _bound(t, node.value).items() if k not in lines})
    return lines


def _bound(target: ast.expr, value: ast.expr | None) -> dict[str, int]:
    """The names one top-level assignment binds: ``tool_x = …``, ``HANDLERS = {"x": …}`` (each key at its
    own line), ``HANDLERS["x"] = …``."""
    if isinstance(target, ast.Name):
        keys = value.keys if target.id == "HANDLERS" and isinstance(value, ast.Dict) else []
        return {target.id: target.lineno, **{f"HANDLERS.{k.value}": k.lineno for k in keys
                                             if isinstance(k, ast.Constant) and isinstance(k.value, str)}}
    if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and target.value.id == "HANDLERS" \
            and isinstance(target.slice, ast.Constant) and isinstance(target.slice.value, str):
        return {f"HANDLERS.{target.slice.value}": target.lineno}
    return {}


def _import_handler(hp: Path, timeout: float) -> ModuleType:
    """``handler.py`` imported, after a child process showed that its import ends within ``timeout``
    (a thread cannot stop an import spinning in C with the GIL held; a process can be). Whatever it
    raises, ``SystemExit`` included, is a :class:`ConfigError` at its line in ``handler.py``."""
    here = str(hp.parent.resolve())  # absolute: a relative entry would follow the working directory
    _probe(hp, timeout, [here, *sys.path])
    spec = importlib.util.spec_from_file_location(f"agentcap_mock_handler_{abs(hash(str(hp.resolve())))}", hp)
    assert spec and spec.loader
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.path.insert(0, here)
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # noqa: BLE001 — sys.exit() in a handler must not end `agentcap validate` with 0
        raise _import_error(hp, e) from None
    finally:
        sys.path.remove(here)
    return module


# The child: import the handler under faulthandler's watchdog, a C thread that needs no GIL — past the
# deadline it prints where every thread is (the handler's line among them) and exits 1.
_PROBE = """\
import faulthandler, importlib.util, json, os, sys
path, timeout = sys.argv[1], float(sys.argv[2])
sys.path[:] = json.loads(sys.argv[3])
faulthandler.dump_traceback_later(timeout, exit=True)
spec = importlib.util.spec_from_file_location("agentcap_mock_handler_probe", path)
try:
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
except BaseException:
    pass  # the import in the parent says what is wrong, at its line
os._exit(0)
"""
_PROBED: dict[tuple[str, str, float], ConfigError | None] = {}  # (handler, sha256, timeout) → its probe's end


def _probe(hp: Path, timeout: float, search: list[str]) -> None:
    real = hp.resolve()
    key = (str(real), hashlib.sha256(real.read_bytes()).hexdigest(), timeout)
    if key not in _PROBED:
        _PROBED[key] = _probe_child(hp, real, timeout, search)
    failed = _PROBED[key]
    if failed is not None:
        raise failed


def _probe_child(hp: Path, real: Path, timeout: float, search: list[str]) -> ConfigError | None:
    try:
        child = subprocess.run([sys.executable, "-c", _PROBE, str(real), repr(timeout), json.dumps(search)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               timeout=timeout + 10, check=False)
    except subprocess.TimeoutExpired as e:  # the watchdog itself did not get to run
        return _import_timeout(hp, real, e.stderr or b"", timeout)
    except OSError:  # no child process here: the import is tried without a deadline
        return None
    if child.returncode == 1 and b"Timeout (" in child.stderr:
        return _import_timeout(hp, real, child.stderr, timeout)
    return None


def _import_timeout(hp: Path, real: Path, dump: bytes, timeout: float) -> ConfigError:
    """Where the import was when the watchdog fired: the newest frame in handler.py."""
    frames = re.findall(rb'File "(.*?)", line (\d+)', dump)  # most recent call first
    line = next((int(n) for f, n in frames if _same_file(os.fsdecode(f), real)), None)
    return ConfigError(hp, line, "", f"handler does not import within {timeout:g}s (import_timeout)")


def _import_error(hp: Path, e: BaseException) -> ConfigError:
    """``handler.py:LINE: handler does not import: …``, LINE in handler.py itself — where it fails, or
    the import statement that reached the module failing (a library, a sibling file)."""
    frames = [f.lineno for f in traceback.extract_tb(e.__traceback__) if _same_file(f.filename, hp)]
    line = frames[-1] if frames else None
    if isinstance(e, SyntaxError):
        if e.filename and _same_file(e.filename, hp):
            return ConfigError(hp, e.lineno, "", f"handler does not import: {type(e).__name__}: {e.msg}")
        where = f" in {e.filename}:{e.lineno}" if e.filename else ""
        return ConfigError(hp, line, "", f"handler does not import: {type(e).__name__}{where}: {e.msg}")
    try:
        text = str(e)
    except BaseException:  # noqa: BLE001 — a message that cannot be shown is not a traceback either
        text = ""
    return ConfigError(hp, line, "", f"handler does not import: {type(e).__name__}{': ' + text if text else ''}")


def _same_file(name: str, path: Path) -> bool:
    try:
        return os.path.realpath(name) == os.path.realpath(path)
    except (OSError, ValueError):
        return False


def _check_signature(hp: Path, key: str, fn: Callable[..., Any]) -> None:
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        code = getattr(fn, "__code__", None)
        line = code.co_firstlineno if code else None
        raise ConfigError(hp, line, key, "a handler is called as fn(args, ctx)") from None
    except ValueError:  # a builtin without a signature: it will say so when called
        pass


def _mutation(doc: Located, mk: str, m: Any) -> Mutation:
    """``- append: {path, value}`` (agenteval: one key naming the op) or ``{op, path, value}``."""
    if isinstance(m, dict) and "op" in m:
        op, body, bk, opk = m["op"], {k: v for k, v in m.items() if k != "op"}, mk, f"{mk}.op"
    elif isinstance(m, dict) and len(m) == 1:
        [(op, body)] = m.items()
        bk = opk = f"{mk}.{op}"
    else:
        raise doc.error(mk, f"a mutation is '- <op>: {{path, value}}' ({', '.join(OPS)}) or {{op, path, value}}")
    if op not in OPS:
        raise doc.error(opk, f"unknown mutation {op!r} (one of {', '.join(OPS)})")
    if not isinstance(body, dict):
        raise doc.error(bk, f"{op} takes {{path, value}}")
    check_keys(doc, body, bk, MUTATION_BODY_KEYS)
    path = body.get("path")
    if not isinstance(path, str) or not path:
        raise doc.error(f"{bk}.path", "needs a dotted path into the state (messages, channels.C01.messages …)")
    segs = templating.split_path(path)
    if "" in segs:
        raise doc.error(f"{bk}.path", f"bad path {path!r}: an empty segment")
    if "by" in body and op != "increment":
        raise doc.error(f"{bk}.by", "only increment takes 'by'")
    if "by" in body and "value" in body:
        raise doc.error(f"{bk}.by", "give 'by' or 'value', not both")
    for part, val in (("path", segs), ("value", body.get("value", body.get("by")))):
        try:
            templating.check(val)
        except templating.TemplateError as e:
            raise doc.error(f"{bk}.{part}", str(e)) from None
    return Mutation(op, segs, _plain(doc, bk, body.get("value", body.get("by"))))


def _rules(doc: Located, key: str, raw: Any) -> list[Rule]:
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, r in enumerate(items):
        rk = f"{key}.{i}" if isinstance(raw, list) else key
        r = {} if r is None else r
        if not isinstance(r, dict):
            raise doc.error(rk, "a rule is a mapping of match / when / mutate / result / error")
        check_keys(doc, r, rk, RULE_KEYS)
        match = r.get("match") or {}
        if not isinstance(match, dict):
            raise doc.error(f"{rk}.match", "must be a mapping of argument name (or dotted path) to value")
        when = r.get("when")
        if when is not None:
            if not isinstance(when, str) or not when.strip():
                raise doc.error(f"{rk}.when", "must be a Jinja expression (args.n > 1)")
            when = templating.condition(when)
            try:
                templating.check_expression(when)
            except templating.TemplateError as e:
                raise doc.error(f"{rk}.when", str(e)) from None
        mutate = r.get("mutate") or []
        if not isinstance(mutate, list):
            raise doc.error(f"{rk}.mutate", "must be a list of mutations")
        muts = [_mutation(doc, f"{rk}.mutate.{j}", m) for j, m in enumerate(mutate)]
        for part, val in (("match", match), ("result", r.get("result")), ("error", r.get("error"))):
            try:
                templating.check(val)
            except templating.TemplateError as e:
                raise doc.error(f"{rk}.{part}", str(e)) from None
        result = _plain(doc, f"{rk}.result", r["result"]) if "result" in r else dict(OK)
        out.append(Rule(_plain(doc, f"{rk}.match", match), muts, result, _plain(doc, f"{rk}.error", r.get("error")),
                        "error" in r, when))
    return out


def load_spec(target: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> MockSpec:
    """The mock of ``target`` (a mock dir or its mock.yaml). The files it names (schema, handler)
    must resolve inside ``root``: the project it belongs to, by default the mock's own directory."""
    doc = load(resolve(target))
    root = Path(root) if root is not None else doc.path.parent
    top = doc.data
    if not isinstance(top, dict):
        raise doc.error("", "mock.yaml is a mapping (name, schema or tools, seed, responses …)")
    check_keys(doc, top, "", TOP_KEYS)
    name = _name(doc, top)
    tools = _load_tools(doc, top, root)
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
    strict = top.get("strict", False)
    if not isinstance(strict, bool):
        raise doc.error("strict", "must be true or false")
    timeout = _seconds(doc, top, "handler_timeout", DEFAULT_HANDLER_TIMEOUT)
    import_timeout = _seconds(doc, top, "import_timeout", DEFAULT_IMPORT_TIMEOUT)
    seed = top.get("seed") or {}
    if not isinstance(seed, dict):
        raise doc.error("seed", "must be a mapping (the initial state)")
    return MockSpec(name=name, path=doc.path, tools=tools, seed=_plain(doc, "seed", seed), rules=rules,
                    handlers=_load_handler(doc, top, names, import_timeout, root), fallback=fallback, faults=faults, fault_seed=fault_seed,
                    strict=strict, handler_timeout=float(timeout))


def _name(doc: Located, top: dict[str, Any]) -> str:
    """The server's name: ``name``, or the directory's; it names the files --out writes."""
    if top.get("name") is None:
        name = doc.path.resolve().parent.name
        if not NAME.fullmatch(name):
            raise doc.error("", f"the directory's name {name!r} is not a server name ({NAME_RULE}): give one "
                                "with 'name:'")
        return name
    name = top["name"]
    if not isinstance(name, str) or not NAME.fullmatch(name):
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "…"
        raise doc.error("name", f"{shown} is not a server name ({NAME_RULE})")
    return name


def _seconds(doc: Located, top: dict[str, Any], key: str, default: float) -> float:
    value = top.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 86400:
        raise doc.error(key, "must be a number of seconds above 0")
    return float(value)


def _plain(doc: Located, key: str, value: Any) -> Any:
    """``value`` as plain strict JSON; a YAML ``.nan`` / ``.inf`` in it is an error at ``key``."""
    try:
        return templating.plain(value)
    except templating.NoJSONForm as e:
        raise doc.error(key, f"has no JSON form: {e}") from None
