"""What the inspector's filter means, without any UI.

A filter is words. ``name:value`` (``task:``, ``cell:``, ``repeat:``, ``thread:``, ``session:``)
keeps the rows whose field is exactly ``value``; ``task:ID#N`` is a suite cell's repeat N, as the
rows name it (``task:ID repeat:N``). A plain filter that is exactly a task id of the level, or such
a name, means ``task:`` it (so ``t1`` is task t1, not t10 and t11 too). The rest is text: it matches a
row when its letters appear in order in the row's columns (fuzzy), or when it is a substring of the
row's bodies — message and response text — (full text, from :data:`BODY_MIN` characters on). Both
are smart case: case-sensitive only when the text holds a capital.

Full-text search scans each body once per query; a query that extends the last one (``abcd`` after
``abc``) searches only the rows the last one found, so typing a word costs one scan.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

FIELDS = ("task", "cell", "repeat", "thread", "session")
REPEAT = re.compile(r"^(.+)#(\d+)$")  # a task id never holds a # (corpus ids: ID_RE; suite cells: names)
BODY_MIN = 3  # shorter text is in nearly every body: fuzzy over the columns only


@dataclass(frozen=True)
class Query:
    fields: tuple[tuple[str, str], ...]
    text: str

    @property
    def case_sensitive(self) -> bool:
        return any(c.isupper() for c in self.text)

    def keeps(self, fields: dict[str, str]) -> bool:
        """The row's fields match every ``name:value`` of the query."""
        return all(fields.get(name) == value for name, value in self.fields)


def _field(name: str, value: str) -> list[tuple[str, str]]:
    m = REPEAT.match(value) if name == "task" else None
    return [("task", m.group(1)), ("repeat", m.group(2))] if m else [(name, value)]


def parse(text: str, task_ids: Iterable[str] = ()) -> Query:
    """The query typed; ``task_ids``: the level's, for a plain filter that names one."""
    words, fields = [], []
    for word in text.split(" "):
        name, sep, value = word.partition(":")
        if sep and name in FIELDS and value:
            fields += _field(name, value)
        else:
            words.append(word)
    rest = " ".join(words).strip()
    if not fields and rest and " " not in rest:
        named = _field("task", rest)
        if named[0][1] in set(task_ids):
            return Query(tuple(named), "")
    return Query(tuple(fields), rest)


def fuzzy(query: str, text: str) -> list[int] | None:
    """Positions in ``text`` matching ``query`` as a subsequence (smart case), or None."""
    if not query:
        return []
    hay = text if any(c.isupper() for c in query) else text.lower()
    positions, start = [], 0
    for ch in query:
        i = hay.find(ch, start)
        if i < 0:
            return None
        positions.append(i)
        start = i + 1
    return positions


BodySearch = Callable[[str, bool, "set[str] | None"], set[str]]


class BodySearcher:
    """Full-text hits of a level, narrowed as the query grows (see the module docstring)."""

    def __init__(self, search: BodySearch) -> None:
        self.search = search
        self.last: tuple[str, bool, set[str]] | None = None

    def hits(self, query: Query) -> set[str]:
        """The keys of the rows whose bodies hold ``query.text``."""
        text, case = query.text, query.case_sensitive
        if len(text) < BODY_MIN:
            return set()
        within = None
        if self.last is not None and self.last[1] == case and self.last[0] in text:
            if self.last[0] == text:
                return self.last[2]
            within = self.last[2]
        found = self.search(text, case, within)
        self.last = (text, case, found)
        return found
