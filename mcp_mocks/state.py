"""Mock state: dotted paths with list indexes (``channels.general.messages.0.text``) and the
mutations ``append, extend, set, increment, remove``; :class:`State`, what a handler gets."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from agentcap_addons.wire.util.errors import AgentcapError

OPS = ("append", "extend", "set", "increment", "remove")

StatePath = str | Sequence[str]  # "a.b.0" or its segments, already split (a segment may hold a dot)


class PathError(AgentcapError, ValueError):
    pass


class State(dict):
    """The state as a handler sees it (``ctx.state``): the state dict itself, so agentcap's
    handlers index it (``ctx.state["channels"]``), plus agenteval's spelling — ``ctx.state.data``
    (this same dict; assigning it replaces the whole state) and ``ctx.state.mutate(fn)``."""

    @property
    def data(self) -> State:
        return self

    @data.setter
    def data(self, value: dict[str, Any]) -> None:
        if value is not self:
            new = dict(value)
            self.clear()
            self.update(new)

    def mutate(self, fn: Callable[[dict[str, Any]], Any]) -> None:
        fn(self)

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self))


def _segments(path: StatePath) -> list[str]:
    segs = path.split(".") if isinstance(path, str) else list(path)
    if not segs or any(not isinstance(s, str) or s == "" for s in segs):
        raise PathError(f"bad path {_show(path)!r}")
    return segs


def _show(path: StatePath) -> str:
    return path if isinstance(path, str) else ".".join(map(str, path))


def _index(seq: list[Any], seg: str, path: str) -> int:
    try:
        i = int(seg)
    except ValueError:
        raise PathError(f"{path}: {seg!r} is not a list index") from None
    if not -len(seq) <= i < len(seq):
        raise PathError(f"{path}: index {i} is out of range (the list has {len(seq)} items)")
    return i


def get(doc: Any, path: StatePath) -> Any:
    cur, segs, path = doc, _segments(path), _show(path)
    for seg in segs:
        if isinstance(cur, dict):
            if seg not in cur:
                raise PathError(f"{path}: no key {seg!r}")
            cur = cur[seg]
        elif isinstance(cur, list):
            cur = cur[_index(cur, seg, path)]
        else:
            raise PathError(f"{path}: cannot look inside a {type(cur).__name__} at {seg!r}")
    return cur


Undo = list  # of zero-argument callables, run in reverse to take mutations back


def _created(undo: Undo | None, parent: dict[str, Any], key: str) -> None:
    if undo is not None:
        undo.append(lambda: parent.pop(key, None))


def _parent(doc: Any, segs: list[str], path: str, leaf_default: Any, undo: Undo | None = None) -> tuple[Any, str]:
    """The container holding the last segment, creating missing dict segments on the way."""
    cur = doc
    for seg in segs[:-1]:
        if isinstance(cur, dict):
            if seg not in cur:
                _created(undo, cur, seg)
            cur = cur.setdefault(seg, {})
        elif isinstance(cur, list):
            cur = cur[_index(cur, seg, path)]
        else:
            raise PathError(f"{path}: cannot look inside a {type(cur).__name__} at {seg!r}")
    if isinstance(cur, dict) and leaf_default is not None and segs[-1] not in cur:
        _created(undo, cur, segs[-1])
        cur[segs[-1]] = leaf_default
    return cur, segs[-1]


def rollback(undo: Undo) -> None:
    while undo:
        undo.pop()()


def mutate(doc: dict[str, Any], op: str, path: StatePath, value: Any = None, undo: Undo | None = None) -> None:
    """Apply one mutation in place; :class:`PathError` when the path cannot hold it.

    With ``undo``, each change is recorded so :func:`rollback` can take it back (cheap even when
    the state is large: nothing is copied)."""
    if op not in OPS:
        raise PathError(f"unknown mutation {op!r} (one of {', '.join(OPS)})")
    segs, path = _segments(path), _show(path)
    default: list[Any] | int | None = [] if op in ("append", "extend") else (0 if op == "increment" else None)
    parent, last = _parent(doc, segs, path, default, undo)
    note = undo.append if undo is not None else (lambda fn: None)
    if isinstance(parent, list):
        i = _index(parent, last, path)
        if op == "set":
            old = parent[i]
            parent[i] = value
            note(lambda: parent.__setitem__(i, old))
            return
        if op == "remove":
            old = parent.pop(i)
            note(lambda: parent.insert(i if i >= 0 else len(parent) + i + 1, old))
            return
        target = parent[i]
    elif isinstance(parent, dict):
        if op == "set":
            if last in parent:
                old = parent[last]
                note(lambda: parent.__setitem__(last, old))
            else:
                _created(undo, parent, last)
            parent[last] = value
            return
        if op == "remove":
            if last not in parent:
                raise PathError(f"{path}: no key {last!r} to remove")
            old = parent.pop(last)
            note(lambda: parent.__setitem__(last, old))
            return
        target = parent[last]
    else:
        raise PathError(f"{path}: cannot look inside a {type(parent).__name__}")
    if op in ("append", "extend"):
        if not isinstance(target, list):
            raise PathError(f"{path}: cannot {op} to a {type(target).__name__}")
        if op == "append":
            target.append(value)
            note(target.pop)
        else:
            if not isinstance(value, list):
                raise PathError(f"{path}: extend needs a list, got {type(value).__name__}")
            n = len(target)
            target.extend(value)
            note(lambda: target.__delitem__(slice(n, None)))
    else:  # increment
        by = 1 if value is None else value
        target = 0 if target is None else target  # as agenteval: a null counts from 0
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not isinstance(by, (int, float)):
            raise PathError(f"{path}: cannot increment a {type(target).__name__} by {by!r}")
        new = target + by
        key = _index(parent, last, path) if isinstance(parent, list) else last
        old = parent[key]
        parent[key] = new
        note(lambda: parent.__setitem__(key, old))
