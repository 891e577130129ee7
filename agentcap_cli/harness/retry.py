"""The orchestration's own model calls (the judge, the follow-up synthesizer) outlast a rate limit.

:func:`post` is ``httpx.post`` retried on what a loaded upstream sends now and then — 429, a 5xx, a
connection that fails or times out — and nothing else (a 400 or a 401 will not get better):

* **bounded**: at most ``attempts`` calls (5), and no wait that would end past ``budget`` seconds (60)
  from the first call; then :class:`GaveUp`, saying what the last attempt got and how many were made;
* **Retry-After honoured** (RFC 9110 §10.2.3: seconds, or an HTTP date); a server asking for longer
  than the budget left is not waited for;
* else **exponential backoff with jitter**: 1 s, 2 s, 4 s … each scaled by a random 0.5–1 (calls that
  failed together do not come back together);
* **one line per retry on stderr**: ``judge: POST URL → 429 (Retry-After 2s); retry 2/5 in 2.0s``, the
  URL as :func:`shown` prints it (no credentials).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from agentcap_addons.wire.api.apibase import shown
from agentcap_addons.wire.util.errors import AgentcapError
from agentcap_cli.console import err_console
from agentcap_cli.runs.verdict import error_text

ATTEMPTS = 5
BUDGET_S = 60.0
FIRST_DELAY_S = 1.0


class GaveUp(AgentcapError, RuntimeError):
    """Every attempt allowed failed in a way worth retrying; the message says what the last one got."""


def retryable(status: int) -> bool:
    return status == 429 or 500 <= status <= 599


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now) if when.tzinfo else None


def backoff(retry: int, rng: random.Random) -> float:
    """The wait before retry ``retry`` (1-based) when the server named none."""
    return FIRST_DELAY_S * 2 ** (retry - 1) * rng.uniform(0.5, 1.0)


def post(what: str, url: str, *, json: Any, headers: dict[str, str], timeout: float, attempts: int = ATTEMPTS,
         budget: float = BUDGET_S, log: Callable[[str], None] | None = None, rng: random.Random | None = None) -> httpx.Response:
    """``httpx.post(url, …)`` retried as the module says; returns the first response that is not
    retryable (a success or a client error: the caller reads it), raises :class:`GaveUp` otherwise."""
    say = log or _stderr
    pick = rng or random.Random()
    start = time.monotonic()
    for attempt in range(1, attempts + 1):
        got, wait = _attempt(url, json, headers, timeout)
        if isinstance(got, httpx.Response) and not retryable(got.status_code):
            return got
        what_got = _described(got)
        delay = backoff(attempt, pick) if wait is None else wait
        left = budget - (time.monotonic() - start)
        if attempt == attempts or delay > left:
            why = (f"{attempts} attempts" if attempt == attempts
                   else f"{attempt} attempt(s): waiting {delay:.0f}s more would pass the {budget:.0f}s bound")
            raise GaveUp(f"POST {shown(url)} → {what_got} (gave up after {why}, {time.monotonic() - start:.1f}s)")
        asked = f" (Retry-After {wait:g}s)" if wait is not None else ""
        say(f"{what}: POST {shown(url)} → {what_got}{asked}; retry {attempt + 1}/{attempts} in {delay:.1f}s")
        time.sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises on its last attempt


def _attempt(url: str, body: Any, headers: dict[str, str], timeout: float) -> tuple[httpx.Response | httpx.TransportError, float | None]:
    """One call: the response (and its Retry-After, in seconds), or the transport error it ended in."""
    try:
        r = httpx.post(url, json=body, headers=headers, timeout=timeout)
    except httpx.TransportError as exc:  # connect / read / write errors and timeouts; not a bad URL
        return exc, None
    return r, retry_after(r.headers.get("retry-after"), time.time())


def _described(got: httpx.Response | httpx.TransportError) -> str:
    if isinstance(got, httpx.Response):
        return f"{got.status_code}: {error_text(got.content) or got.reason_phrase}"
    return f"{type(got).__name__}: {got}"


def _stderr(line: str) -> None:
    err_console().print(line, markup=False, highlight=False, soft_wrap=True)
