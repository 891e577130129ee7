"""JSONPath for mock_state assertions.

Natively (fast, no dependency in the hot path): ``$``, ``.name``, ``['name']``, ``[n]``, ``[*]``,
``.*``, ``..name`` and the Goessner filter form ``[?(@.a.b OP value)]`` / ``[?(@.a)]`` with OP one of
``== != < <= > >= =~`` (``=~`` takes ``/regex/``); values are JSON literals or quoted strings.
Anything else (slices ``[0:2]``, ``&&`` / ``||``, ``in``, arithmetic, ``len``…) goes to jsonpath-ng's
extended parser, as agenteval does. :func:`count` is what ``min_count`` / ``max_count`` compare: as in
agenteval, a plain path (keys only) that selects a list counts the list's items."""

from __future__ import annotations

import json
import re
from typing import Any

from agentcap_addons.wire.util.errors import InputError

_TOKEN = re.compile(r"""
    \.\.(?P<deep>[A-Za-z_][\w-]*|\*)
  | \.(?P<name>[A-Za-z_][\w-]*|\*)
  | \[\s*(?P<q>'[^']*'|"[^"]*")\s*\]
  | \[\s*(?P<idx>-?\d+)\s*\]
  | \[\s*\*\s*\]
  | \[\s*\?\(\s*(?P<filter>.*?)\s*\)\s*\]
""", re.X)
_FILTER = re.compile(r"^@((?:\.[A-Za-z_][\w-]*)*)\s*(?:(==|!=|<=|>=|<|>|=~|not\s+in\b|in\b)\s*(.+))?$", re.S)
Term = tuple[list[str], "str | None", Any]


class JSONPathError(InputError):
    pass


def _parse(path: str) -> list[tuple[str, Any]]:
    if not path.startswith("$"):
        raise JSONPathError(f"{path!r}: a JSONPath starts with $")
    steps: list[tuple[str, Any]] = []
    pos = 1
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            raise JSONPathError(f"{path!r}: cannot read from {path[pos:]!r}")
        if m.group("deep"):
            steps.append(("deep", m.group("deep")))
        elif m.group("name"):
            steps.append(("key", m.group("name")))
        elif m.group("q"):
            steps.append(("key", m.group("q")[1:-1]))
        elif m.group("idx") is not None:
            steps.append(("index", int(m.group("idx"))))
        elif m.group("filter") is not None:
            steps.append(("filter", _filter(path, m.group("filter"))))
        else:
            steps.append(("key", "*"))
        pos = m.end()
    return steps


def _split(text: str, sep: str) -> list[str]:
    """``text`` split on ``sep`` outside quotes and brackets."""
    parts, depth, quote, start, i = [], 0, "", 0, 0
    while i < len(text):
        c = text[i]
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "[(":
            depth += 1
        elif c in "])":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    return parts + [text[start:]]


def _filter(path: str, text: str) -> list[list[Term]]:
    """A filter as alternatives (``||``) of conjunctions (``&&``) of terms ``@.a.b OP value``."""
    return [[_term(path, t.strip()) for t in _split(alt, "&&")] for alt in _split(text, "||")]


def _term(path: str, text: str) -> Term:
    f = _FILTER.match(text)
    if not f:
        raise JSONPathError(f"{path!r}: filters look like [?(@.field == value)]")
    fields = [x for x in f.group(1).split(".") if x]
    op, raw = (" ".join(f.group(2).split()) if f.group(2) else None), f.group(3)
    value: Any = None
    if op == "=~":
        rm = re.fullmatch(r"/(.*)/(i?)", raw.strip())
        if not rm:
            raise JSONPathError(f"{path!r}: =~ takes /regex/")
        value = re.compile(rm.group(1), re.I if rm.group(2) else 0)
    elif op:
        raw = raw.strip()
        try:
            value = json.loads(raw.replace("'", '"') if "'" in raw and '"' not in raw else raw)
        except ValueError:
            raise JSONPathError(f"{path!r}: {raw!r} is not a literal") from None
        if op in ("in", "not in") and not isinstance(value, list):
            raise JSONPathError(f"{path!r}: {op} takes a list, e.g. ['a', 'b']")
    return fields, op, value


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return list(node.values())
    if isinstance(node, list):
        return list(node)
    return []


def _get(node: Any, fields: list[str]) -> tuple[bool, Any]:
    for f in fields:
        if not isinstance(node, dict) or f not in node:
            return False, None
        node = node[f]
    return True, node


def _test(node: Any, fields: list[str], op: str | None, value: Any) -> bool:
    found, v = _get(node, fields)
    if not found:
        return False
    if op is None:
        return True
    try:
        return {"==": lambda: v == value, "!=": lambda: v != value, "<": lambda: v < value,
                "<=": lambda: v <= value, ">": lambda: v > value, ">=": lambda: v >= value,
                "in": lambda: v in value, "not in": lambda: v not in value,
                "=~": lambda: isinstance(v, str) and value.search(v) is not None}[op]()
    except TypeError:
        return False


def _holds(node: Any, alternatives: list[list[Term]]) -> bool:
    return any(all(_test(node, *term) for term in conj) for conj in alternatives)


def check(path: str) -> None:
    """Raise JSONPathError when neither parser reads ``path``."""
    try:
        _parse(path)
    except JSONPathError as native:
        try:
            _ng(path)
        except Exception as exc:
            raise JSONPathError(f"{native}; jsonpath-ng: {exc}") from None


def _ng(path: str) -> Any:
    from jsonpath_ng.ext import parse

    return parse(path)


def _plain(path: str) -> bool:
    try:
        return all(kind == "key" and arg != "*" for kind, arg in _parse(path))
    except JSONPathError:
        return False


def count(path: str, data: Any) -> tuple[int, list[Any]]:
    """(how many matches, the matches) — a plain path to a list counts its items (agenteval)."""
    hits = find(path, data)
    if _plain(path) and len(hits) == 1 and isinstance(hits[0], list):
        return len(hits[0]), hits[0]
    return len(hits), hits


def find(path: str, data: Any) -> list[Any]:
    """Every value ``path`` selects in ``data`` (an empty list when none)."""
    try:
        steps = _parse(path)
    except JSONPathError as native:
        try:
            expr = _ng(path)
        except Exception as exc:
            raise JSONPathError(f"{native}; jsonpath-ng: {exc}") from None
        return [m.value for m in expr.find(data)]
    nodes = [data]
    for kind, arg in steps:
        out: list[Any] = []
        for n in nodes:
            if kind == "key":
                out += _children(n) if arg == "*" else ([n[arg]] if isinstance(n, dict) and arg in n else [])
            elif kind == "index":
                if isinstance(n, list) and -len(n) <= arg < len(n):
                    out.append(n[arg])
            elif kind == "deep":
                stack = [n]
                while stack:
                    cur = stack.pop(0)
                    if isinstance(cur, dict) and (arg == "*" or arg in cur):
                        out += list(cur.values()) if arg == "*" else [cur[arg]]
                    stack += _children(cur)
            else:
                out += [c for c in _children(n) if _holds(c, arg)]
        nodes = out
    return nodes
