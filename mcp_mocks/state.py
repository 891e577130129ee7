"""Mock state: dotted paths with list indexes (``channels.general.messages.0.text``) and the
mutations ``append, extend, set, increment, remove``."""

from __future__ import annotations

from typing import Any

OPS = ("append", "extend", "set", "increment", "remove")


class PathError(ValueError):
    pass


def _segments(path: str) -> list[str]:
    if not isinstance(path, str) or not path or any(s == "" for s in path.split(".")):
        raise PathError(f"bad path {path!r}")
    return path.split(".")


def _index(seq: list[Any], seg: str, path: str) -> int:
    try:
        i = int(seg)
    except ValueError:
        raise PathError(f"{path}: {seg!r} is not a list index") from None
    if not -len(seq) <= i < len(seq):
        raise PathError(f"{path}: index {i} is out of range (the list has {len(seq)} items)")
    return i


def get(doc: Any, path: str) -> Any:
    cur = doc
    for seg in _segments(path):
        if isinstance(cur, dict):
            if seg not in cur:
                raise PathError(f"{path}: no key {seg!r}")
            cur = cur[seg]
        elif isinstance(cur, list):
            cur = cur[_index(cur, seg, path)]
        else:
            raise PathError(f"{path}: cannot look inside a {type(cur).__name__} at {seg!r}")
    return cur


def _parent(doc: Any, path: str, leaf_default: Any) -> tuple[Any, str]:
    """The container holding the last segment, creating missing dict segments on the way."""
    segs = _segments(path)
    cur = doc
    for seg in segs[:-1]:
        if isinstance(cur, dict):
            cur = cur.setdefault(seg, {})
        elif isinstance(cur, list):
            cur = cur[_index(cur, seg, path)]
        else:
            raise PathError(f"{path}: cannot look inside a {type(cur).__name__} at {seg!r}")
    if isinstance(cur, dict) and leaf_default is not None:
        cur.setdefault(segs[-1], leaf_default)
    return cur, segs[-1]


def mutate(doc: dict[str, Any], op: str, path: str, value: Any = None) -> None:
    """Apply one mutation in place; :class:`PathError` when the path cannot hold it."""
    if op not in OPS:
        raise PathError(f"unknown mutation {op!r} (one of {', '.join(OPS)})")
    default = [] if op in ("append", "extend") else (0 if op == "increment" else None)
    parent, last = _parent(doc, path, default)
    if isinstance(parent, list):
        i = _index(parent, last, path)
        if op == "set":
            parent[i] = value
            return
        if op == "remove":
            del parent[i]
            return
        target = parent[i]
    elif isinstance(parent, dict):
        if op == "set":
            parent[last] = value
            return
        if op == "remove":
            if last not in parent:
                raise PathError(f"{path}: no key {last!r} to remove")
            del parent[last]
            return
        target = parent[last]
    else:
        raise PathError(f"{path}: cannot look inside a {type(parent).__name__}")
    if op in ("append", "extend"):
        if not isinstance(target, list):
            raise PathError(f"{path}: cannot {op} to a {type(target).__name__}")
        if op == "append":
            target.append(value)
        else:
            if not isinstance(value, list):
                raise PathError(f"{path}: extend needs a list, got {type(value).__name__}")
            target.extend(value)
    else:  # increment
        by = 1 if value is None else value
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not isinstance(by, (int, float)):
            raise PathError(f"{path}: cannot increment a {type(target).__name__} by {by!r}")
        new = target + by
        if isinstance(parent, list):
            parent[_index(parent, last, path)] = new
        else:
            parent[last] = new
