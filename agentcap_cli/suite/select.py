"""pytest-style selection for ``agentcap test``: ``-m "slack and not slow"`` over a scenario's tags,
``-k "release or notes"`` over cell ids (a word matches when it is a substring, case-insensitive).

Grammar: ``expr := term ("or" term)*``, ``term := factor ("and" factor)*``, ``factor := "not" factor |
"(" expr ")" | word``; a word is anything else without spaces or parentheses.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from agentcap_addons.wire.util.errors import InputError

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")


class SelectError(InputError):
    pass


def compile_expr(expr: str) -> Callable[[Callable[[str], bool]], bool]:
    """``expr`` as a function of a word test (``word → bool``); SelectError when it does not parse."""
    tokens = _TOKEN.findall(expr)
    if not tokens:  # every other character is a token: nothing else is unreadable
        raise SelectError(f"{expr!r}: empty or unreadable expression")
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise SelectError(f"{expr!r}: ends too early")
        pos += 1
        return tokens[pos - 1]

    def parse_expr() -> Callable:
        parts = [parse_term()]
        while peek() == "or":
            take()
            parts.append(parse_term())
        return lambda t: any(p(t) for p in parts)

    def parse_term() -> Callable:
        parts = [parse_factor()]
        while peek() == "and":
            take()
            parts.append(parse_factor())
        return lambda t: all(p(t) for p in parts)

    def parse_factor() -> Callable:
        tok = take()
        if tok == "not":
            inner = parse_factor()
            return lambda t: not inner(t)
        if tok == "(":
            inner = parse_expr()
            if take() != ")":
                raise SelectError(f"{expr!r}: a ( is not closed")
            return inner
        if tok in ("and", "or", ")"):
            raise SelectError(f"{expr!r}: unexpected {tok!r}")
        return lambda t: t(tok)

    fn = parse_expr()
    if pos != len(tokens):
        raise SelectError(f"{expr!r}: unexpected {tokens[pos]!r}")
    return fn


def by_tags(expr: str) -> Callable[[list[str]], bool]:
    fn = compile_expr(expr)
    return lambda tags: fn(lambda word: word in tags)


def by_name(expr: str) -> Callable[[str], bool]:
    fn = compile_expr(expr)
    return lambda name: fn(lambda word: word.lower() in name.lower())
