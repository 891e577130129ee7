"""The LLM judge: a rubric scored 0..1 with reasoning, by a model called directly (never through the
capture proxy, so its calls are not in the agent's captures; they are kept in the results instead)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

SYSTEM = ("You are grading an AI agent's work against a rubric. Answer with one JSON object only: "
          '{"score": <number from 0 to 1>, "reasoning": "<one or two sentences>"}.')


def judge(base_url: str, model: str, api_key: str | None, rubric: str, output: str, tool_calls: list[dict[str, Any]],
          mock_state: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """{score, reasoning, request, response} — or {score: None, error} when the judge failed."""
    user = (f"## Rubric\n{rubric}\n\n## The agent's final answer\n{output or '(none)'}\n\n"
            f"## Tool calls the agent made\n{json.dumps(tool_calls, ensure_ascii=False)[:8000]}\n\n"
            f"## Final state of the mocked services\n{json.dumps(mock_state, ensure_ascii=False)[:8000]}")
    body = {"model": model, "stream": False, "max_tokens": 400,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]}
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        r = httpx.post(base_url.rstrip("/") + "/chat/completions", json=body, headers=headers, timeout=timeout)
        r.raise_for_status()
        text = r.json()["choices"][0]["message"].get("content") or ""
    except Exception as exc:
        return {"score": None, "error": f"judge call failed: {exc}", "request": body}
    m = re.search(r"\{.*\}", text, re.S)
    try:
        data = json.loads(m.group(0)) if m else {}
        score = float(data["score"])
    except (ValueError, KeyError, TypeError):
        return {"score": None, "error": f"judge answer has no score: {text[:200]!r}", "request": body, "response": text}
    return {"score": max(0.0, min(1.0, score)), "reasoning": str(data.get("reasoning", "")), "request": body,
            "response": text}
