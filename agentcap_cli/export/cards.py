"""Dataset cards (README.md) for the captures dataset and its paired traces datasets.

A card is seeded whole on the first export. Later exports touch only what sits between agentcap's
markers — the generated section is replaced, the export log gains a line — so a user's own edits
(front matter, prose outside the markers) survive every update.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from agentcap_cli.export.captures import SCHEMA as CAPTURE_SCHEMA
from agentcap_cli.export.detectors import find, fingerprint, flagged, redact
from agentcap_cli.export.scan import Finding, Gate, line_where, scan_text, state_of
from agentcap_cli.export.traces import SCHEMA as TRACE_SCHEMA

BEGIN, END = "<!-- agentcap:begin -->", "<!-- agentcap:end -->"
LOG_BEGIN, LOG_END = "<!-- agentcap:exports:begin -->", "<!-- agentcap:exports:end -->"

CAPTURE_FIELDS = {
    "request_id": "32 hex digits; the capture's id (file name in the run's captures/)",
    "seq": "order of the call within its run (rows are in seq order)",
    "run_id": "the run (join key with the traces dataset)",
    "task_id": "corpus task (join key with the traces dataset, with run_id)",
    "turn": "user turn of the task, from 1", "cell": "test-suite cell (scenario/agent/model), else null",
    "repeat": "test-suite repeat, else null", "agent": "agent CLI that made the call",
    "model": "model named in the request body", "served_model": "model the upstream said it served",
    "provider": "upstream provider short name", "label": "the run's --label",
    "upstream_url": "URL the call went to (no credentials, redacted query)", "method": "HTTP method",
    "path": "API path, e.g. /v1/chat/completions", "api": "openai-chat | openai-responses | anthropic-messages | other",
    "captured_at": "when the request was captured (UTC, ns)", "status_code": "HTTP status of the response",
    "stream": "whether the response was streamed (SSE)",
    "request": "the request body exactly as sent, as JSON text (a non-JSON body as text)",
    "response": "the response: JSON text, or the raw SSE stream as received (content-encoding undone)",
    "request_headers": "allowlisted request headers as JSON (never keys or cookies)",
    "response_headers": "allowlisted response headers as JSON",
    "error": "null, or 'kind: message' (upstream_unreachable, upstream_reset, client_disconnected, timeout)",
    "ttft_ms": "ms from request sent to first response byte", "duration_ms": "ms from request sent to the end",
    "prompt_tokens": "input tokens (cached included)", "completion_tokens": "output tokens (reasoning included)",
    "cached_tokens": "input tokens read from cache", "reasoning_tokens": "reasoning part of the output tokens",
    "finish_reason": "the API's own stop reason", "n_tool_calls": "tool calls in the response",
}
TRACE_FIELDS = {
    "run_id": "the run (join key with the captures dataset)", "task_id": "the task (join key, with run_id)",
    "agent": "agent CLI", "path": "file path inside the agent's state dir",
    "format": "jsonl | json | markdown | sqlite | …", "size": "bytes",
    "text": "the file as text when it is UTF-8, else null", "data": "the file, byte for byte",
}


@dataclass
class CardInfo:
    repo: str  # OWNER/BASE (or a local name)
    kind: str  # captures | traces
    agentcap_version: str
    agents: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    first: str | None = None
    last: str | None = None
    rows: int = 0
    captures_repo: str | None = None
    traces_repos: list[str] = field(default_factory=list)
    exported_at: str = ""


def _front_matter(info: CardInfo) -> dict[str, object]:
    pretty = f"{info.repo.split('/')[-1]} — " + ("model calls of coding agents" if info.kind == "captures"
                                                  else f"{', '.join(info.agents)} native traces")
    return {
        "license": "other",
        "pretty_name": pretty,
        "tags": ["agentcap", "agents", "coding-agents", "tool-use", "llm-calls" if info.kind == "captures" else "traces"],
        "task_categories": ["text-generation"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}],
    }


def _field_table(kind: str) -> str:
    schema, docs = (CAPTURE_SCHEMA, CAPTURE_FIELDS) if kind == "captures" else (TRACE_SCHEMA, TRACE_FIELDS)
    lines = ["| field | type | meaning |", "|---|---|---|"]
    lines += [f"| `{f.name}` | {f.type} | {docs.get(f.name, '')} |" for f in schema]
    return "\n".join(lines)


def _generated(info: CardInfo) -> str:
    repo = info.repo
    parts = [BEGIN, "",
             f"Captured with [agentcap](https://pypi.org/project/agentcap/) {info.agentcap_version}: real coding agents "
             "run in sandboxes, every model call taken from the wire by a mitmproxy addon.", "",
             "## Provenance", "",
             f"- agents: {', '.join(info.agents) or '-'}",
             f"- models: {', '.join(info.models) or '-'}" if info.kind == "captures" else "",
             f"- upstream hosts: {', '.join(info.hosts) or '-'}" if info.kind == "captures" else "",
             f"- runs: {len(info.runs)} (newest export), {info.first or '?'} … {info.last or '?'}", "",
             "## Fields", "", _field_table(info.kind), "", "## Load it", "", "```python",
             "from datasets import load_dataset", "", f'ds = load_dataset("{repo}", split="train")', "```", ""]
    if info.kind == "captures":
        parts += ["One row per model call, in `seq` order within each run. A run whose calls name several "
                  "models has one file per model; re-exports add files (dedupe on `request_id` if you "
                  "load overlapping exports).", ""]
        if info.traces_repos:
            parts += ["## Join with the agents' native traces", "", "```python",
                      f'traces = load_dataset("{info.traces_repos[0]}", split="train").to_pandas()',
                      "calls = ds.to_pandas()",
                      'joined = calls.merge(traces, on=["run_id", "task_id"], suffixes=("", "_trace"))', "```", ""]
        parts += ["## Re-render a request through a chat template", "", "```python", "import json",
                  "from transformers import AutoTokenizer", "",
                  'tok = AutoTokenizer.from_pretrained("Qwen/Qwen2.5-Coder-7B-Instruct")',
                  'row = ds.filter(lambda r: r["api"] == "openai-chat")[0]',
                  'req = json.loads(row["request"])',
                  'tools = [t["function"] for t in req.get("tools", []) if "function" in t]',
                  'text = tok.apply_chat_template(req["messages"], tools=tools or None, tokenize=False,',
                  '                               add_generation_prompt=True)', "```", "",
                  "With duckdb: `duckdb.sql(\"SELECT model, sum(prompt_tokens) FROM 'data/*.parquet' GROUP BY 1\")`.", ""]
    else:
        parts += [f"Pairs with the captures dataset `{info.captures_repo}`: join on `run_id` and `task_id`.", ""]
    parts.append(END)
    return "\n".join(p for p in parts if p is not None)


def _log_line(info: CardInfo) -> str:
    return (f"- {info.exported_at}: {info.rows} rows from {len(info.runs)} run(s) "
            f"({', '.join(info.runs[:5])}{' …' if len(info.runs) > 5 else ''})")


def render(info: CardInfo) -> str:
    fm = yaml.safe_dump(_front_matter(info), sort_keys=False, allow_unicode=True)
    title = info.repo.split("/")[-1]
    return (f"---\n{fm}---\n\n# {title}\n\n{_generated(info)}\n\n## Exports\n\n{LOG_BEGIN}\n{_log_line(info)}\n"
            f"{LOG_END}\n")


def update(existing: str | None, info: CardInfo) -> str:
    """The card after this export: seeded when there is none, else only agentcap's parts changed."""
    if not existing or not existing.strip():
        return render(info)
    text = existing
    block = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    text = block.sub(lambda _: _generated(info), text, count=1) if block.search(text) else (
        text.rstrip("\n") + "\n\n" + _generated(info) + "\n")
    log = re.compile(re.escape(LOG_BEGIN) + r"\n(.*?)" + re.escape(LOG_END), re.S)
    m = log.search(text)
    if m:
        text = text[:m.end(1)] + _log_line(info) + "\n" + text[m.end(1):]
    else:
        text = text.rstrip("\n") + f"\n\n## Exports\n\n{LOG_BEGIN}\n{_log_line(info)}\n{LOG_END}\n"
    return text


def scan_card(info: CardInfo, name: str, gate: Gate, out: list[Finding]) -> CardInfo:
    """Scan the card agentcap writes for ``info`` (made from run metadata: agents, models, hosts,
    run ids); under --redact, returns the info with those secrets masked."""
    text = render(info)
    if not flagged([text]):
        return info
    scan_text(text, f"{name}/README.md", line_where(text, False), gate, out)
    if not gate.redact:
        return info

    def clean(value: Any) -> Any:
        if isinstance(value, list):
            return [clean(v) for v in value]
        if not isinstance(value, str):
            return value
        return redact(value, [h for h in find(value) if state_of(fingerprint(h.secret), gate) == "redacted"])

    return dataclasses.replace(info, **{f.name: clean(getattr(info, f.name)) for f in dataclasses.fields(info)})
