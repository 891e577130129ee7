"""What the user says after the first turn: continue, a fixed template, or a synthesized message.

A task's own ``followups`` list always wins for the turns it covers. ``synthesized`` asks the model
for one short follow-up **directly** (never through the capture proxy, so it is never a capture) and
falls back to ``continue`` when that call fails.
"""

from __future__ import annotations

import logging

import httpx

from agentcap_cli.corpus import Task

log = logging.getLogger("agentcap.run")

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


class Synthesizer:
    """One chat-completions call per follow-up, straight to the upstream (the real key, no proxy)."""

    def __init__(self, base_url: str, model: str, api_key: str | None, timeout: float = 60.0) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout

    def __call__(self, task_prompt: str, last_reply: str | None) -> str:
        body = {"model": self.model, "max_tokens": 200, "stream": False, "messages": [
            {"role": "system", "content": SYNTH_SYSTEM},
            {"role": "user", "content": f"The task was:\n{task_prompt}\n\nThe agent's last reply:\n"
                                        f"{(last_reply or '(no reply)')[-4000:]}\n\nWrite the user's next message."}]}
        r = httpx.post(self.url, json=body, headers=self.headers, timeout=self.timeout)
        r.raise_for_status()
        text = (r.json()["choices"][0]["message"].get("content") or "").strip()
        if not text:
            raise ValueError("the model answered with an empty follow-up")
        return text


def next_prompt(mode: str, task: Task, turn: int, last_reply: str | None, synth: Synthesizer | None) -> str:
    """The user's message for ``turn`` (≥ 2) of ``task``."""
    if len(task.followups) >= turn - 1:
        return task.followups[turn - 2]
    if mode == "templates":
        return TEMPLATES[(turn - 2) % len(TEMPLATES)]
    if mode == "synthesized" and synth is not None:
        try:
            return synth(task.prompt, last_reply)
        except Exception as exc:  # any failure: the run goes on with the plain follow-up
            log.warning("task %s turn %d: synthesizing a follow-up failed (%s); using 'continue'",
                        task.task_id, turn, exc)
    return CONTINUE
