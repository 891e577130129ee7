"""A small JSONPath for mock_state assertions: ``$``, ``.name``, ``['name']``, ``[n]``, ``[*]``, ``.*``,
``..name`` and the Goessner filter form ``[?(@.a.b OP value)]`` / ``[?(@.a)]`` with OP one of
``== != < <= > >= =~`` (``=~`` takes ``/regex/``); values are JSON literals or quoted strings."""

from __future__ import annotations

import json
import re
from typing import Any

_TOKEN = re.compile(r"""
    \.\.(?P<deep>[A-Za-z_][\w-]*|\*)
  | \.(?P<name>[A-Za-z_][\w-]*|\*)
  | \[\s*(?P<q>'[^']*'|"[^"]*")\s*\]
  | \[\s*(?P<idx>-?\d+)\s*\]
  | \[\s*\*\s*\]
  | \[\s*\?\(\s*(?P<filter>.*?)\s*\)\s*\]
""", re.X)
_FILTER = re.compile(r"^@((?:\.[A-Za-z_][\w-]*)*)\s*(?:(==|!=|<=|>=|<|>|=~)\s*(.+))?$")


class JSONPathError(ValueError):
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
            f = _FILTER.match(m.group("filter"))
            if not f:
                raise JSONPathError(f"{path!r}: filters look like [?(@.field == value)]")
            fields = [x for x in f.group(1).split(".") if x]
            op, raw = f.group(2), f.group(3)
            value: Any = None
            if op == "=~":
                rm = re.fullmatch(r"/(.*)/(i?)", raw.strip())
                if not rm:
                    raise JSONPathError(f"{path!r}: =~ takes /regex/")
                value = re.compile(rm.group(1), re.I if rm.group(2) else 0)
            elif op:
                raw = raw.strip()
                try:
                    value = json.loads(raw.replace("'", '"') if raw.startswith("'") else raw)
                except ValueError:
                    raise JSONPathError(f"{path!r}: {raw!r} is not a literal") from None
            steps.append(("filter", (fields, op, value)))
        else:
            steps.append(("key", "*"))
        pos = m.end()
    return steps


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
                "=~": lambda: isinstance(v, str) and value.search(v) is not None}[op]()
    except TypeError:
        return False


def find(path: str, data: Any) -> list[Any]:
    """Every value ``path`` selects in ``data`` (an empty list when none)."""
    nodes = [data]
    for kind, arg in _parse(path):
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
                fields, op, value = arg
                out += [c for c in _children(n) if _test(c, fields, op, value)]
        nodes = out
    return nodes
