"""Assertion kinds: parsed (and validated) when the project loads, evaluated on a finished repeat.

Each kind is a function ``check(params, outcome) -> (passed, detail)`` plus the params it accepts;
plugins add kinds with ``register_kind`` (a name that shadows a built-in warns unless ``force=True``).
Params are agenteval's (``jsonpath``, ``values``, ``mode``, ``ignore_case``, ``dir_has_new_file.path``
with a glob ``matches``) with agentcap's spellings as aliases (``path``, ``contains`` / ``text``,
``dir`` with a regex ``matches``); :func:`normalize` maps both onto one set before anything runs.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from stat import S_ISDIR, S_ISREG
from typing import Any

from agentcap_addons.wire.util.confine import Refused, check_relative, files_beneath, read_beneath, stat_beneath
from agentcap_addons.wire.util.yamlfile import Found, Located, check_keys, did_you_mean
from agentcap_cli.suite.jsonpath import JSONPathError, check, count, find

log = logging.getLogger("agentcap.test")
COMMON = {"kind", "name", "required"}


@dataclass
class ScenarioOutcome:
    """What a repeat left behind, for the assertions to look at."""

    workspace: Path
    snapshot: set[str]  # workspace files before the agent ran (relative paths)
    output: str  # the agent's final reply(ies)
    mock_state: dict[str, Any]  # server → final state
    mock_calls: list[dict[str, Any]]  # every tools/call record, all servers
    model_calls: list[dict[str, Any]]  # {tokens_in, tokens_out, duration_ms, model}
    prices: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Assertion:
    kind: str
    params: dict[str, Any]
    name: str
    required: bool = True


@dataclass
class KindDef:
    params: set[str]
    check: Callable[[dict[str, Any], ScenarioOutcome], tuple[bool, str]]
    validate: Callable[[Located, str, dict[str, Any], dict[str, set[str]]], None] | None = None
    paths: tuple[str, ...] = ()  # params (as written) that name a workspace path: checked to stay in it


KINDS: dict[str, KindDef] = {}


def register_kind(name: str, params: set[str], check: Callable[[dict[str, Any], ScenarioOutcome], tuple[bool, str]],
                  validate: Callable[..., None] | None = None, *, force: bool = False,
                  paths: tuple[str, ...] = ()) -> None:
    if name in KINDS and not force:
        log.warning("assertion kind %r replaces a built-in one (pass force=True to silence this)", name)
    KINDS[name] = KindDef(params, check, validate, paths)


def parse_assertions(doc: Located, items: Any, tools: dict[str, set[str]]) -> list[Assertion]:
    if not isinstance(items, list):
        raise doc.error("assertions", "must be a list")
    out, found = [], Found()
    for i, a in enumerate(items):
        with found:  # each assertion checked on its own: every broken one is reported
            out.append(_parse_assertion(doc, f"assertions.{i}", i, a, tools))
    found.raise_any()
    return out


def _parse_assertion(doc: Located, key: str, i: int, a: Any, tools: dict[str, set[str]]) -> Assertion:
    if not isinstance(a, dict) or "kind" not in a:
        raise doc.error(key, "an assertion needs a 'kind'")
    if not isinstance(a["kind"], str):
        raise doc.error(f"{key}.kind", f"must be the name of a kind, not {type(a['kind']).__name__}")
    kind = KINDS.get(a["kind"])
    if kind is None:
        raise doc.error(f"{key}.kind", f"unknown assertion kind {a['kind']!r}{did_you_mean(a['kind'], KINDS)}; "
                                       f"known: {', '.join(sorted(KINDS))}")
    check_keys(doc, a, key, kind.params | COMMON)
    for name, value in a.items():
        expected = PARAM_TYPES.get(name)
        if expected is not None and not _is(value, expected[0]):
            raise doc.error(f"{key}.{name}", f"must be {expected[1]}, not {type(value).__name__}")
    for name in kind.paths:
        if name in a:
            try:
                check_relative(a[name])
            except Refused as exc:
                raise doc.error(f"{key}.{name}", f"{a[name]!r} {exc}") from None
    params = normalize(a["kind"], {k: v for k, v in a.items() if k not in COMMON})
    if kind.validate:
        kind.validate(doc, key, params, tools)
    return Assertion(a["kind"], params, str(a.get("name") or f"{a['kind']} #{i + 1}"), bool(a.get("required", True)))


_TEXT, _WHOLE, _NUMBER = (str,), (int,), (int, float)
_SCALARS = (str, int, float, bool)
# the built-in kinds' params (as written, both dialects) → (accepted types, what the error says);
# "texts" is a text or a list of scalars
PARAM_TYPES: dict[str, tuple[Any, str]] = {
    **{n: (_TEXT, "text") for n in ("kind", "name", "server", "jsonpath", "path", "tool", "match", "mode",
                                    "dir", "matches", "pattern")},
    **{n: ("texts", "a text or a list of texts") for n in ("values", "contains", "text", "contents_include")},
    **{n: (_WHOLE, "a whole number") for n in ("min_count", "max_count", "max_tokens")},
    **{n: (_NUMBER, "a number") for n in ("max_seconds", "max_cost_usd")},
    **{n: ((bool,), "true or false") for n in ("required", "ignore_case")},
    "args": ((dict,), "a mapping of argument names to values"),
}


def _is(value: Any, types: Any) -> bool:
    if types == "texts":
        return isinstance(value, _SCALARS) or (isinstance(value, list) and all(isinstance(v, _SCALARS) for v in value))
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _need(doc: Located, key: str, params: dict[str, Any], *names: str) -> None:
    for n in names:
        if n not in params:
            raise doc.error(key, f"needs '{n}'")


def _counts(params: dict[str, Any], n: int) -> tuple[bool, str]:
    hi = params.get("max_count")
    lo = params.get("min_count", 0 if hi == 0 else 1)  # max_count: 0 means "never"
    ok = n >= lo and (hi is None or n <= hi)
    return ok, f"{n} (expected {lo}..{'∞' if hi is None else hi})"


# -- mock_state -------------------------------------------------------------------------------------

ALIASES = {  # kind → {agentcap's spelling: agenteval's}
    "mock_state": {"path": "jsonpath"},
    "file_contains": {"contains": "values"},
    "output_contains": {"text": "values"},
}


def normalize(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """One spelling per param (agenteval's), whichever dialect the scenario used."""
    out = dict(params)
    for old, new in ALIASES.get(kind, {}).items():
        if old in out and new not in out:
            out[new] = out.pop(old)
    if kind in ("file_contains", "output_contains") and isinstance(out.get("values"), str):
        out["values"] = [out["values"]]
    if kind == "dir_has_new_file":
        if "path" in out:  # agenteval: path is the directory, matches a glob (default *)
            out["dir"], out["glob"] = out.pop("path"), out.pop("matches", "*")
        if isinstance(out.get("contents_include"), str):
            out["contents_include"] = [out["contents_include"]]
    return out


def _v_mock_state(doc: Located, key: str, p: dict[str, Any], tools: dict[str, set[str]]) -> None:
    _need(doc, key, p, "server", "jsonpath")
    if p["server"] not in tools:
        raise doc.error(f"{key}.server", f"{p['server']!r} is not one of this scenario's mocks ({', '.join(tools) or 'none'})")
    try:
        check(p["jsonpath"])
    except JSONPathError as exc:
        raise doc.error(f"{key}.jsonpath", str(exc)) from None


def _mock_state(p: dict[str, Any], o: ScenarioOutcome) -> tuple[bool, str]:
    path = p["jsonpath"]
    if p["server"] not in o.mock_state:
        return False, f"no state for mock server {p['server']!r}"
    # the state as agenteval's mocks keep it: with every call under __calls__ ({at, tool, args})
    state = {**o.mock_state[p["server"]], "__calls__": [
        {"at": c.get("at"), "tool": c["tool"], "args": c.get("args")} for c in o.mock_calls if c.get("server") == p["server"]]}
    if "equals" in p:
        hits = find(path, state)
        ok = bool(hits) and all(h == p["equals"] for h in hits)
        return ok, f"{path} → {hits[:3]!r} (expected {p['equals']!r})"
    n, _ = count(path, state)
    ok, counted = _counts(p, n)
    return ok, f"{path} matched {counted}"


# -- tool_called ------------------------------------------------------------------------------------

def _v_tool_called(doc: Located, key: str, p: dict[str, Any], tools: dict[str, set[str]]) -> None:
    _need(doc, key, p, "tool")
    servers = [p["server"]] if p.get("server") else list(tools)
    if p.get("server") and p["server"] not in tools:
        raise doc.error(f"{key}.server", f"{p['server']!r} is not one of this scenario's mocks")
    if not any(p["tool"] in tools[s] for s in servers):
        offered = {t for s in servers for t in tools[s]}
        raise doc.error(f"{key}.tool", f"no mock of this scenario offers a tool {p['tool']!r}{did_you_mean(p['tool'], offered)}")
    if p.get("match", "subset") not in ("exact", "subset", "regex"):
        raise doc.error(f"{key}.match", "must be exact, subset or regex")


def _args_match(want: Any, got: Any, mode: str) -> bool:
    if mode == "exact":
        return want == got
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and _args_match(v, got[k], mode) for k, v in want.items())
    if mode == "regex" and isinstance(want, str):
        return re.search(want, got if isinstance(got, str) else str(got)) is not None
    return want == got


def _tool_called(p: dict[str, Any], o: ScenarioOutcome) -> tuple[bool, str]:
    calls = [c for c in o.mock_calls if c["tool"] == p["tool"] and (not p.get("server") or c["server"] == p["server"])]
    if "args" in p:
        calls = [c for c in calls if _args_match(p["args"], c["args"], p.get("match", "subset"))]
    ok, counted = _counts(p, len(calls))
    return ok, f"{p['tool']} called {counted}" + (f" with args {p['args']!r} ({p.get('match', 'subset')})" if "args" in p else "")


# -- files ------------------------------------------------------------------------------------------

def _file_exists(p: dict[str, Any], o: ScenarioOutcome) -> tuple[bool, str]:
    try:
        st = stat_beneath(o.workspace, p["path"])
    except (Refused, OSError) as exc:
        return False, f"{p['path']} {exc}"
    if st is not None and not (S_ISREG(st.st_mode) or S_ISDIR(st.st_mode)):
        return False, f"{p['path']} exists but is not a file or a directory"
    return st is not None, f"{p['path']} {'exists' if st is not None else 'does not exist'}"


def _read(o: ScenarioOutcome, rel: str) -> str:
    """A workspace file's text, read without following a link out of the workspace (see confine.py)."""
    return read_beneath(o.workspace, rel).decode("utf-8", "replace")


def _found(values: list[Any], text: str, mode: str, ignore_case: bool = False) -> tuple[bool, list[Any], list[Any]]:
    hay = text.lower() if ignore_case else text
    present = [v for v in values if (str(v).lower() if ignore_case else str(v)) in hay]
    missing = [v for v in values if v not in present]
    return (not missing) if mode == "all" else bool(present), present, missing


def _file_contains(p: dict[str, Any], o: ScenarioOutcome) -> tuple[bool, str]:
    try:
        text = _read(o, p["path"])
    except FileNotFoundError:
        return False, f"{p['path']} does not exist"
    except (Refused, OSError) as exc:
        return False, f"{p['path']} cannot be read: {exc}"
    ok, present, missing = _found(p["values"], text, p.get("mode", "all"))
    return ok, f"{p['path']}: found {present}; missing {missing} ({p.get('mode', 'all')})"


def _dir_has_new_file(p: dict[str, Any], o: ScenarioOutcome) -> tuple[bool, str]:
    rel = p.get("dir", ".")
    try:
        st = stat_beneath(o.workspace, rel)
        if st is None or not S_ISDIR(st.st_mode):
            return False, f"{rel} is not a directory"
        base = PurePosixPath(*[x for x in rel.split("/") if x not in ("", ".")])
        new = [f for f in files_beneath(o.workspace, rel) if f not in o.snapshot]
        if "glob" in p:  # agenteval: a glob relative to the directory
            new = [f for f in new if fnmatch.fnmatch(str(PurePosixPath(f).relative_to(base)), p["glob"])
                   or fnmatch.fnmatch(PurePosixPath(f).name, p["glob"])]
        else:
            new = [f for f in new if re.search(p.get("matches", ".*"), PurePosixPath(f).name)]
        wanted = p.get("contents_include") or []
        if wanted:
            new = [f for f in new if _has_all(o, f, wanted)]
    except (Refused, OSError) as exc:
        return False, f"{rel} cannot be read: {exc}"
    return bool(new), f"new files: {new[:5]}" + (f" containing {wanted}" if wanted else "")


def _has_all(o: ScenarioOutcome, rel: str, wanted: list[Any]) -> bool:
    try:
        text = _read(o, rel)
    except (Refused, OSError):
        return False  # too big, or gone since the walk: not a file that holds them
    return all(str(w) in text for w in wanted)


# -- output -----------------------------------------------------------------------------------------

def _output_contains(p: dict[str, Any], o: ScenarioOutcome) -> tuple[bool, str]:
    ok, present, missing = _found(p["values"], o.output, p.get("mode", "all"), bool(p.get("ignore_case")))
    return ok, f"output: found {present}; missing {missing}"


def _output_matches(p: dict[str, Any], o: ScenarioOutcome) -> tuple[bool, str]:
    flags = re.S | (re.I if p.get("ignore_case") else 0)
    ok = re.search(p["pattern"], o.output, flags) is not None
    return ok, f"output {'matches' if ok else 'does not match'} /{p['pattern']}/"


def _v_regex(field_name: str) -> Callable[..., None]:
    def validate(doc: Located, key: str, p: dict[str, Any], tools: dict[str, set[str]]) -> None:
        _need(doc, key, p, field_name)
        try:
            re.compile(p[field_name])
        except re.error as exc:
            raise doc.error(f"{key}.{field_name}", f"not a regular expression: {exc}") from None
    return validate


# -- model_calls ------------------------------------------------------------------------------------

def cost_of(calls: list[dict[str, Any]], prices: dict[str, dict[str, float]]) -> float | None:
    total = 0.0
    for c in calls:
        price = prices.get(c.get("model") or "")
        if price is None:
            return None
        total += (c.get("tokens_in") or 0) * price.get("input", 0) / 1e6 + (c.get("tokens_out") or 0) * price.get("output", 0) / 1e6
    return total


def _model_calls(p: dict[str, Any], o: ScenarioOutcome) -> tuple[bool, str]:
    calls = o.model_calls
    tokens = sum((c.get("tokens_in") or 0) + (c.get("tokens_out") or 0) for c in calls)
    seconds = sum((c.get("duration_ms") or 0) for c in calls) / 1000
    problems = []
    ok, counted = _counts({"min_count": p.get("min_count", 0), "max_count": p.get("max_count")}, len(calls))
    if not ok:
        problems.append(f"calls {counted}")
    if "max_tokens" in p and tokens > p["max_tokens"]:
        problems.append(f"tokens {tokens} > {p['max_tokens']}")
    if "max_seconds" in p and seconds > p["max_seconds"]:
        problems.append(f"model time {seconds:.1f}s > {p['max_seconds']}s")
    if "max_cost_usd" in p:
        cost = cost_of(calls, o.prices)
        if cost is None:
            problems.append("cost unknown (a model has no entry in prices)")
        elif cost > p["max_cost_usd"]:
            problems.append(f"cost ${cost:.4f} > ${p['max_cost_usd']}")
    return not problems, "; ".join(problems) or f"{len(calls)} calls, {tokens} tokens, {seconds:.1f}s"


def _v_path(doc: Located, key: str, p: dict[str, Any], tools: dict[str, set[str]]) -> None:
    _need(doc, key, p, "path")


def _v_mode(doc: Located, key: str, p: dict[str, Any]) -> None:
    if p.get("mode", "all") not in ("all", "any"):
        raise doc.error(f"{key}.mode", "must be all or any")
    if not isinstance(p["values"], list) or not p["values"]:
        raise doc.error(f"{key}.values", "must be a value or a non-empty list of values")


def _v_contains(doc: Located, key: str, p: dict[str, Any], tools: dict[str, set[str]]) -> None:
    _need(doc, key, p, "path", "values")
    _v_mode(doc, key, p)


def _v_text(doc: Located, key: str, p: dict[str, Any], tools: dict[str, set[str]]) -> None:
    _need(doc, key, p, "values")
    _v_mode(doc, key, p)


def _v_new_file(doc: Located, key: str, p: dict[str, Any], tools: dict[str, set[str]]) -> None:
    if "glob" not in p and "matches" in p:
        try:
            re.compile(p["matches"])
        except re.error as exc:
            raise doc.error(f"{key}.matches", f"not a regular expression: {exc}") from None


for _name, _params, _check, _validate, _paths in [
    ("mock_state", {"server", "jsonpath", "path", "min_count", "max_count", "equals"}, _mock_state, _v_mock_state, ()),
    ("tool_called", {"tool", "server", "args", "match", "min_count", "max_count"}, _tool_called, _v_tool_called, ()),
    ("file_exists", {"path"}, _file_exists, _v_path, ("path",)),
    ("file_contains", {"path", "values", "contains", "mode"}, _file_contains, _v_contains, ("path",)),
    ("dir_has_new_file", {"path", "dir", "matches", "contents_include"}, _dir_has_new_file, _v_new_file, ("path", "dir")),
    ("output_contains", {"values", "text", "mode", "ignore_case"}, _output_contains, _v_text, ()),
    ("output_matches", {"pattern", "ignore_case"}, _output_matches, _v_regex("pattern"), ()),
    ("model_calls", {"min_count", "max_count", "max_tokens", "max_seconds", "max_cost_usd"}, _model_calls, None, ()),
]:
    KINDS[_name] = KindDef(_params, _check, _validate, _paths)


def evaluate(assertions: list[Assertion], outcome: ScenarioOutcome) -> list[dict[str, Any]]:
    results = []
    for a in assertions:
        try:
            ok, detail = KINDS[a.kind].check(normalize(a.kind, a.params), outcome)
        except Exception as exc:  # a broken check fails its assertion, not the run
            ok, detail = False, f"error while checking: {exc}"
        results.append({"name": a.name, "kind": a.kind, "required": a.required, "passed": bool(ok), "detail": detail})
    return results
