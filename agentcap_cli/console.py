"""The consoles commands print through: data on stdout, logs and tables for people on stderr.

On a terminal rich renders as usual (its width). When the stream is not a terminal (a pipe, a file,
a CI log) nothing is hard-wrapped: a message stays on one line and a table is as wide as its content,
so greps and CI problem matchers see whole lines (rich would otherwise wrap at 80 columns).
"""

from __future__ import annotations

import os

from rich.console import Console

UNWRAPPED = 4096  # columns when not a terminal: wide enough that no line of ours is folded


def make_console(stderr: bool = False) -> Console:
    c = Console(stderr=stderr, soft_wrap=True, highlight=False)
    if not c.is_terminal and not os.environ.get("COLUMNS"):
        c.width = UNWRAPPED
    return c


def err_console() -> Console:
    return make_console(stderr=True)


def out_console() -> Console:
    return make_console(stderr=False)
