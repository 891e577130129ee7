"""A card's YAML front matter updated in place: agentcap's keys set, the owner's text kept byte for byte.

A card's owner edits its front matter by hand (comments, key order, quoting, keys of their own). A
YAML library that loads and dumps it loses the comments (PyYAML) or may reflow what it keeps, so the
update works on lines: the front matter is cut into its top-level entries (a line at column 0 that
is not a comment, a blank or a ``-`` item starts one), and only the entries of the keys agentcap
sets are rewritten — and only when their value changes: an entry whose value is already the one
agentcap would write stays as the owner wrote it. A comment or blank line at column 0 belongs to the
owner, also when it sits between two of agentcap's entries. The result is parsed back and must give
exactly the mapping intended; when it does not (YAML this cut does not understand: a multi-line
flow mapping at the top, anchors across entries), the whole front matter is written afresh.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_FRONT = re.compile(r"\A---[ \t]*\n(.*?)^---[ \t]*(?:\n|\Z)", re.S | re.M)
_ENTRY = re.compile(r"""^(?:"([^"]*)"|'([^']*)'|([^\s#:'"\-?][^:#]*?))[ \t]*:(?:[ \t]|$)""")
DROP = object()  # a key to remove


def split(card: str) -> tuple[dict[str, Any] | None, str | None, str]:
    """(mapping, its YAML text, the rest) of a card; (None, None, card) when it has no front matter
    that parses to a mapping."""
    m = _FRONT.match(card)
    if not m:
        return None, None, card
    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return None, None, card
    if data is None:
        data = {}
    return (data, m.group(1), card[m.end():]) if isinstance(data, dict) else (None, None, card)


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def block(text: str) -> str:
    """The front matter as a card starts with it."""
    return "---\n" + text + ("" if not text or text.endswith("\n") else "\n") + "---\n"


def _entries(text: str) -> list[tuple[str | None, list[str]]]:
    """The front matter as (key, lines) in order; key None for the owner's lines outside any entry
    (comments and blanks at column 0, what precedes the first key)."""
    out: list[tuple[str | None, list[str]]] = []
    key: str | None = None
    lines: list[str] = []

    def close() -> None:
        tail: list[str] = []
        while key is not None and lines and (not lines[-1].strip() or lines[-1].startswith("#")):
            tail.insert(0, lines.pop())
        out.append((key, lines))
        if tail:
            out.append((None, tail))

    for line in text.splitlines(keepends=True):
        m = _ENTRY.match(line)
        if m or (line[:1] not in ("", " ", "\t", "\n", "#", "-")):
            close()
            key, lines = (next(g for g in m.groups() if g is not None) if m else None), [line]
        else:
            lines.append(line)
    close()
    return [(k, ls) for k, ls in out if ls]


def merge(text: str, current: dict[str, Any], changes: dict[str, Any]) -> str:
    """``text`` (front matter whose mapping is ``current``) with each key of ``changes`` set to its
    value (``DROP``: removed), the owner's lines unchanged."""
    want = dict(current)
    for k, v in changes.items():
        if v is DROP:
            want.pop(k, None)
        else:
            want[k] = v
    todo = {k: v for k, v in changes.items() if (k in current) != (v is not DROP) or (k in current and current[k] != v)}
    if not todo:
        return text
    out, done = [], set()
    for key, lines in _entries(text):
        if key not in todo:
            out += lines
        elif key not in done:
            done.add(key)
            out += [] if todo[key] is DROP else [dump({key: todo[key]})]
    body = "".join(out)
    tail = [dump({k: v}) for k, v in todo.items() if k not in done and v is not DROP]
    if tail and body and not body.endswith("\n"):
        body += "\n"
    body += "".join(tail)
    try:
        if (yaml.safe_load(body) or {}) == want:
            return body
    except yaml.YAMLError:
        pass
    return dump(want)
