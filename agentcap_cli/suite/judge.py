"""The LLM judge: a rubric scored 0..1 with reasoning. Three backends (``judge.backend``):

* ``chat`` (agentcap's default): ``POST <upstream>/v1/chat/completions``, called directly;
* ``anthropic-api``: ``POST <upstream>/v1/messages`` with ``x-api-key`` (agenteval's Anthropic SDK
  backend), called directly — ``ANTHROPIC_BASE_URL`` / the Anthropic API unless an upstream is set;
* ``claude-cli`` (agenteval's default): the claude CLI itself, ``claude -p --output-format json``, run
  in agentcap's sandbox (claude-code image) against the same upstream through the capture proxy.

Direct calls never pass the capture proxy; the claude CLI's go to ``<run>/judge/captures``. Either way
they are not in the agent's captures. A direct call outlasts a rate limit or a 5xx (retried with
backoff and Retry-After, bounded: harness/retry.py); request and answer are kept in the repeat's result (and, with
``--record-mode``, in its cassette, so a replayed verdict needs no upstream: suite/cassettes.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentcap_addons.wire.api.apibase import api_url, oauth_headers
from agentcap_cli.harness import retry
from agentcap_cli.runs.verdict import error_text

SYSTEM = ("You are grading an AI agent's work against a rubric. Answer with one JSON object only: "
          '{"score": <number from 0 to 1>, "reasoning": "<one or two sentences>"}.')
ANTHROPIC_VERSION = "2023-06-01"


@dataclass
class Prompt:
    rubric: str
    output: str
    tool_calls: list[dict[str, Any]]
    mock_state: dict[str, Any]

    def user(self) -> str:
        return (f"## Rubric\n{self.rubric}\n\n## The agent's final answer\n{self.output or '(none)'}\n\n"
                f"## Tool calls the agent made\n{json.dumps(self.tool_calls, ensure_ascii=False)[:8000]}\n\n"
                f"## Final state of the mocked services\n{json.dumps(self.mock_state, ensure_ascii=False)[:8000]}")


def request_body(model: str, prompt: Prompt, api: str = "chat") -> dict[str, Any]:
    """What a direct judge call sends (kept in the repeat's record, and in its cassette)."""
    if api == "anthropic-api":
        return {"model": model, "max_tokens": 400, "system": SYSTEM,
                "messages": [{"role": "user", "content": prompt.user()}]}
    return {"model": model, "stream": False, "max_tokens": 400,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt.user()}]}


def judge(base_url: str, model: str, api_key: str | None, prompt: Prompt, *, api: str = "chat",
          timeout: float = 120.0, oauth: bool = False) -> dict[str, Any]:
    """{score, reasoning, request, response} — or {score: None, error} when the judge failed. ``oauth``:
    ``api_key`` is a Claude subscription login (sent as a bearer with the OAuth beta, anthropic-api only)."""
    body = request_body(model, prompt, api)
    if api == "anthropic-api":
        auth = (oauth_headers(api_key) if oauth else {"x-api-key": api_key}) if api_key else {}
        headers = {"anthropic-version": ANTHROPIC_VERSION, **auth}
        url = api_url(base_url, "/v1/messages")
    else:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        url = api_url(base_url, "/v1/chat/completions")  # https://host, …/v1 and …/v1/ alike
    try:
        r = retry.post("judge", url, json=body, headers=headers, timeout=timeout)
        if r.status_code >= 400:
            return {"score": None, "error": f"judge call failed: POST {url} → {r.status_code}: {error_text(r.content)}",
                    "request": body}
        data = r.json()
        if api == "anthropic-api":
            text = "".join(b.get("text", "") for b in data.get("content") or [] if b.get("type") == "text")
        else:
            text = data["choices"][0]["message"].get("content") or ""
    except retry.GaveUp as exc:
        return {"score": None, "error": f"judge call failed: {exc}", "request": body}
    except Exception as exc:
        return {"score": None, "error": f"judge call failed: POST {url}: {exc}", "request": body}
    return {**score_of(text), "request": body}


def score_of(text: str) -> dict[str, Any]:
    """{score, reasoning, response} from the judge's answer (the first JSON object in it)."""
    m = re.search(r"\{.*\}", text, re.S)
    try:
        data = json.loads(m.group(0)) if m else {}
        score = float(data["score"])
    except (ValueError, KeyError, TypeError):
        return {"score": None, "error": f"judge answer has no score: {text[:200]!r}", "response": text}
    return {"score": max(0.0, min(1.0, score)), "reasoning": str(data.get("reasoning", "")), "response": text}


def judge_claude_cli(podman: Any, services: Any, run_dir: Path, base: Path, cell: str, repeat: int, model: str,
                     prompt: Prompt, timeout_s: float = 300.0, request_ids: list[str] | None = None) -> dict[str, Any]:
    """agenteval's ``claude-cli`` backend: one ``claude -p`` turn in the sandbox, no tools, no MCP. The
    ids of its model calls (in ``<run>/judge/captures``) are appended to ``request_ids``."""
    from agentcap_addons.wire.capture.registry import Attribution
    from agentcap_cli.harness.turns import run_turn
    from sandbox.agents import get_agent

    work = base / "judge"
    text = f"{SYSTEM}\n\n{prompt.user()}\n\nScore the agent against the rubric now. Output only the JSON object."
    run = run_turn(services, podman, get_agent("claude-code"),
                   Attribution(run_id=run_dir.name, task_id=f"{cell}#judge", turn=1, cell=f"{cell}#judge",
                               repeat=repeat, captures_dir=str(run_dir / "judge" / "captures")),
                   stdout=work / "judge.out", stderr=work / "judge.err", trace_dir=work / "traces",
                   timeout_s=timeout_s, labels={"run": run_dir.name, "task": f"{cell}#judge"},
                   prompt=text, turn=1, model=model, workspace=work / "workspace", home=work / "home", max_turns=1)
    if request_ids is not None:
        request_ids += run.request_ids
    r = run.result
    if r is None:
        return {"score": None, "error": f"judge (claude-cli): sandbox: {run.sandbox_error}", "request": text}
    if r.timed_out or not r.reply:
        why = "timed out" if r.timed_out else f"no answer (exit {r.returncode}; see {work / 'judge.err'})"
        return {"score": None, "error": f"judge (claude-cli): {why}", "request": text}
    return {**score_of(r.reply), "request": text}
