"""The consoles commands print through: data on stdout, logs and tables for people on stderr.

On a terminal rich renders as usual (its width). When the stream is not a terminal (a pipe, a file,
a CI log) nothing is hard-wrapped: a message stays on one line and a table is as wide as its content,
so greps and CI problem matchers see whole lines (rich would otherwise wrap at 80 columns).

Progress off a terminal is ``PlainProgress``: rich's live display would print once, when it stops, so a
CI log would show nothing for the length of a run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from rich.console import Console

UNWRAPPED = 4096  # columns when not a terminal: wide enough that no line of ours is folded
HEARTBEAT_S = 30.0  # off a terminal: the longest silence while waiting


def make_console(stderr: bool = False) -> Console:
    c = Console(stderr=stderr, soft_wrap=True, highlight=False)
    if not c.is_terminal and not os.environ.get("COLUMNS"):
        c.width = UNWRAPPED
    return c


def err_console() -> Console:
    return make_console(stderr=True)


def out_console() -> Console:
    return make_console(stderr=False)


class PlainProgress:
    """Progress as plain lines, for a stream that is not a terminal: ``line`` prints a record (a finished
    turn or trial) as it happens; ``tick``, called often, prints ``… STATUS, 45s`` once nothing was
    printed for ``every`` seconds, so no heartbeat comes sooner than ``every`` after the last line."""

    def __init__(self, console: Console, status: Callable[[], str], every: float = HEARTBEAT_S) -> None:
        self.console, self.status, self.every = console, status, every
        self.started = self.last = time.monotonic()
        self.lock = threading.Lock()  # lines come from the worker threads, ticks from the main one

    def line(self, text: str) -> None:
        with self.lock:
            self.console.print(" ".join(text.splitlines()), markup=False, highlight=False, soft_wrap=True)
            self.last = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.line(f"… {self.status()}, {now - self.started:.0f}s")
