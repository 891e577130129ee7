"""What the user says after the first turn: continue, a fixed template, or a synthesized message.

A task's own ``followups`` list always wins for the turns it covers. ``synthesized`` asks the model
for one short follow-up **directly** (never through the capture proxy, so it is never a capture).
A 429, a 5xx or a dropped connection is retried (backoff and Retry-After, bounded: retry.py). When
that call still fails, the corpus must not change silently: :class:`FollowupFailed` says why (the
upstream's own message) and the task stops, unless the user allowed the fallback to ``continue``
(``--followup-fallback continue``), which each such turn then records.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from agentcap_addons.wire.api.apibase import api_url
from agentcap_addons.wire.util.errors import AgentcapError
from agentcap_cli.corpus.tasks import Task
from agentcap_cli.harness import retry
from agentcap_cli.runs.verdict import error_text

MODES = ("continue", "templates", "synthesized")
CONTINUE = "Continue. If the task is done, check your work and say briefly what you did."
TEMPLATES = (
    "Please double-check your work: run or read what you changed and fix anything that is wrong.",
    "Is anything left to do for the original request? If so, do it; if not, summarise what you did.",
    "Make the result a little more robust: handle an edge case you have not handled yet.",
    "Write a short note in NOTES.md describing what you changed and why.",
)
SYNTH_SYSTEM = ("You write the next message a demanding but reasonable user sends to a coding agent. "
                "Reply with that one message only: one or two sentences, no preamble, no quotes.")
FALLBACKS = ("error", "continue")  # what a failed synthesized follow-up does: stop the task, or say CONTINUE


class FollowupFailed(AgentcapError, RuntimeError):
    """A synthesized follow-up could not be made; the message says why."""


@dataclass(frozen=True)
class FollowUp:
    prompt: str
    fallback: str | None = None  # why a synthesized follow-up was replaced by CONTINUE (when allowed)


class Synthesizer:
    """One chat-completions call per follow-up, straight to the upstream (the real key, no proxy)."""

    def __init__(self, base_url: str, model: str, api_key: str | None, timeout: float = 60.0) -> None:
        self.url = api_url(base_url, "/v1/chat/completions")  # https://host, …/v1 and …/v1/ alike
        self.model = model
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout

    def __call__(self, task_prompt: str, last_reply: str | None) -> str:
        body = {"model": self.model, "max_tokens": 200, "stream": False, "messages": [
            {"role": "system", "content": SYNTH_SYSTEM},
            {"role": "user", "content": f"The task was:\n{task_prompt}\n\nThe agent's last reply:\n"
                                        f"{(last_reply or '(no reply)')[-4000:]}\n\nWrite the user's next message."}]}
        try:
            r = retry.post("follow-up", self.url, json=body, headers=self.headers, timeout=self.timeout)
        except retry.GaveUp as exc:
            raise FollowupFailed(str(exc)) from None
        except httpx.HTTPError as exc:
            raise FollowupFailed(f"POST {self.url}: {type(exc).__name__}: {exc}") from None
        if r.status_code >= 400:
            raise FollowupFailed(f"POST {self.url} → {r.status_code}: {error_text(r.content) or r.reason_phrase}")
        try:
            text = (r.json()["choices"][0]["message"].get("content") or "").strip()
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise FollowupFailed(f"POST {self.url}: not a chat completion: {error_text(r.content)!r}") from None
        if not text:
            raise FollowupFailed(f"POST {self.url}: the model answered with an empty follow-up")
        return text


def next_prompt(mode: str, task: Task, turn: int, last_reply: str | None, synth: Synthesizer | None,
                fallback: str = "error") -> FollowUp:
    """The user's message for ``turn`` (≥ 2) of ``task``; raises FollowupFailed (``fallback="error"``)."""
    if len(task.followups) >= turn - 1:
        return FollowUp(task.followups[turn - 2])
    if mode == "templates":
        return FollowUp(TEMPLATES[(turn - 2) % len(TEMPLATES)])
    if mode != "synthesized":
        return FollowUp(CONTINUE)
    try:
        if synth is None:
            raise FollowupFailed("no synthesizer configured")
        return FollowUp(synth(task.prompt, last_reply))
    except Exception as exc:
        cause = str(exc) if isinstance(exc, FollowupFailed) else f"{type(exc).__name__}: {exc}"
        if fallback != "continue":
            raise FollowupFailed(cause) from None
        return FollowUp(CONTINUE, fallback=cause)
