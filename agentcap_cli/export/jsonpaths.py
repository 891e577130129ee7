"""Where a character of a JSON text is: the JSON path of the string (or key) that holds it.

One pass over the text, made only for a text with findings, then a binary search per finding, so
16,000 findings in one tool result cost one pass, not 16,000 walks of the document.
"""

from __future__ import annotations

import bisect
import json
import re

_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],:]')
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _step(key: str | int) -> str:
    if isinstance(key, int):
        return f"[{key}]"
    return f".{key}" if _NAME.fullmatch(key) else f"[{json.dumps(key, ensure_ascii=False)}]"


class JsonIndex:
    """The strings of a JSON text with their paths (``base`` + ``.messages[3].content``; an object
    key is ``….name{key}``). A text that is not JSON gives ``base`` everywhere."""

    def __init__(self, text: str, base: str = "$") -> None:
        self.base = base
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.paths: list[str] = []
        stack: list[list[str | int | bool]] = []  # [kind "{" / "[", current key or index, expecting a key]
        for m in _TOKEN.finditer(text):
            tok = m.group()
            c = tok[0]
            if c == '"':
                top = stack[-1] if stack else None
                if top is not None and top[0] == "{" and top[2]:
                    try:
                        top[1] = json.loads(tok)
                    except ValueError:
                        top[1] = tok[1:-1]
                    self._add(m.start(), m.end(), self._path(stack) + "{key}")
                else:
                    self._add(m.start(), m.end(), self._path(stack))
            elif c in "{[":
                stack.append([c, 0 if c == "[" else "", c == "{"])
            elif c in "}]":
                if stack:
                    stack.pop()
            elif c == ":":
                if stack:
                    stack[-1][2] = False
            elif c == "," and stack:
                top = stack[-1]
                if top[0] == "[":
                    top[1] = int(top[1]) + 1
                else:
                    top[2] = True

    def _path(self, stack: list[list[str | int | bool]]) -> str:
        return self.base + "".join(_step(k) for _, k, _ in ((s[0], s[1], s[2]) for s in stack)  # type: ignore[misc]
                                   if not isinstance(k, bool))

    def _add(self, start: int, end: int, path: str) -> None:
        self.starts.append(start)
        self.ends.append(end)
        self.paths.append(path)

    def path_at(self, offset: int) -> str:
        """The path of the string that holds ``offset`` (the nearest one before it otherwise)."""
        i = bisect.bisect_right(self.starts, offset) - 1
        return self.paths[i] if i >= 0 else self.base


class Lines:
    """Line numbers of offsets in a text, by binary search over its line starts."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def number(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)

    def line(self, n: int) -> str:
        start = self.starts[n - 1]
        end = self.starts[n] - 1 if n < len(self.starts) else len(self.text)
        return self.text[start:end]
