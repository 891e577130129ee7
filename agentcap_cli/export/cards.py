"""Dataset cards (README.md) for the captures dataset, the agents' traces datasets and the
wire-derived traces dataset.

A card is seeded whole on the first export. Later exports touch only what is agentcap's: the
section between its markers is replaced, the export log gains a line when the export added files,
and in the front matter the keys agentcap derives (``configs`` entries it owns, ``size_categories``,
and ``license`` when ``--license`` is given) are set line by line (:mod:`.frontmatter`: the owner's
comments, key order and other keys stay byte for byte). An export that adds nothing leaves the
card byte for byte as it was. What the card says about the data (how its runs were made, agents,
models, hosts, runs, counts) comes from the footers of **every** parquet file in the dataset, not
only the newest export's.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from agentcap_addons.wire.api.sessions import FINISH_REASONS
from agentcap_addons.wire.util.files import atomic_write_bytes
from agentcap_cli.export.captures import SCHEMA as CAPTURE_SCHEMA
from agentcap_cli.export.files import SCHEMA as FILE_SCHEMA
from agentcap_cli.export.frontmatter import DROP, block, dump, merge, split
from agentcap_cli.export.scan import Finding, Gate, line_where, scan_text, scan_texts
from agentcap_cli.export.sessions import SCHEMA as SESSION_SCHEMA

BEGIN, END = "<!-- agentcap:begin -->", "<!-- agentcap:end -->"
LOG_BEGIN, LOG_END = "<!-- agentcap:exports:begin -->", "<!-- agentcap:exports:end -->"
OWN_CONFIGS = {"default", "sessions", "files"}  # files: a config of traces datasets before (it never loaded)
SESSION_FILES, TRACE_FILES = "sessions/**/*.jsonl", "data/*.parquet"
SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]

CAPTURE_FIELDS = {
    "request_id": "32 hex digits; the capture's id (file name in the run's captures/)",
    "seq": "order of the call within its run (rows are in seq order)",
    "run_id": "the run (join key with the sessions and traces)",
    "task_id": "corpus task, or suite cell (join key, with run_id)",
    "turn": "user turn of the task, from 1", "cell": "test-suite cell (scenario/agent/model), else null",
    "repeat": "test-suite repeat, else null",
    "thread_id": "the conversation the call belongs to: the request_id of its first call (see docs/export.md)",
    "agent": "agent CLI that made the call",
    "model": "model named in the request body", "served_model": "model the upstream said it served",
    "provider": "upstream provider short name", "label": "the run's --label",
    "upstream_url": "URL the call went to (no credentials, redacted query)", "method": "HTTP method",
    "path": "API path, e.g. /v1/chat/completions", "api": "openai-chat | openai-responses | anthropic-messages | other",
    "captured_at": "when the request was captured (UTC, µs)", "status_code": "HTTP status of the response",
    "stream": "whether the response was streamed (SSE)",
    "request": "the request body as JSON text, re-serialised from the captured JSON (compact, key order kept, so "
               "whitespace and escapes may differ from the bytes sent); a non-JSON body as text",
    "response": "the response: JSON text, or the raw SSE stream as received (content-encoding undone)",
    "request_headers": "allowlisted request headers as JSON (never keys or cookies)",
    "response_headers": "allowlisted response headers as JSON",
    "error": "null, or 'kind: message' (upstream_unreachable, upstream_reset, client_disconnected, timeout)",
    "ttft_ms": "ms from request sent to first response byte", "duration_ms": "ms from request sent to the end",
    "prompt_tokens": "input tokens (cached included)", "completion_tokens": "output tokens (reasoning included)",
    "cached_tokens": "input tokens read from cache", "reasoning_tokens": "reasoning part of the output tokens",
    "finish_reason": f"{' | '.join(FINISH_REASONS)} (normalised across the three APIs)",
    "finish_reason_raw": "the API's own stop reason", "n_tool_calls": "tool calls in the response",
}
SESSION_FIELDS = {
    "session_id": "<run_id>/<task_id> (<cell>--<repeat> for a suite repeat; the thread id for proxy captures)",
    "run_id": "the run", "task_id": "corpus task or suite cell", "cell": "test-suite cell, else null",
    "repeat": "test-suite repeat, else null", "thread_id": "the conversation the session's last call is in",
    "agent": "agent CLI", "provider": "upstream provider", "label": "the run's --label",
    "model": "model named by the last call", "served_model": "model the upstream served the last call",
    "api": "API of the last call", "prompt": "the task's prompt (else the first user message)",
    "messages": "the conversation as the model saw it, OpenAI chat shape: role, content, reasoning_content, "
                "tool_calls [{id, type, function {name, arguments (JSON text)}}], tool_call_id, name",
    "tools": "the tools offered by the last call, JSON text of [{type, function {name, description, parameters}}]",
    "turns": "user turns with calls", "n_calls": "model calls counted (failed ones left out unless exported "
                                                 "with --with-failed-calls)",
    "n_failed_calls": "calls that failed upstream", "n_threads": "conversations among the calls (side calls too)",
    "n_contexts": "fresh conversations the messages are made of (1 when every turn continues the last)",
    "n_tool_calls": "tool calls made", "prompt_tokens": "sum over the calls", "completion_tokens": "sum over the calls",
    "cached_tokens": "sum over the calls", "reasoning_tokens": "sum over the calls",
    "cost_usd": "the suite's cost, else from --prices; null when unknown", "cost_source": "harness | prices",
    "started_at": "first call sent", "ended_at": "last call done", "finish_reason": "of the last call (normalised)",
    "ok": "the task completed its turns (suite: passed without error)", "aborted_reason": "why it did not",
    "passed": "suite: the repeat passed its checks", "judge_score": "suite: the LLM judge's score",
    "request_ids": "the calls counted (join with the default config)",
    "trace_diffs": "where the agent's own trace disagrees with the wire (calls, tool calls, tokens); null without one",
}
FILE_FIELDS = {
    "run_id": "the run (join key with the captures dataset)", "task_id": "the task (join key, with run_id)",
    "agent": "agent CLI", "path": "file path inside the agent's state dir (wire traces: in this dataset)",
    "format": "jsonl | json | markdown | sqlite | pi (a session file agentcap wrote; sts before) | …", "size": "bytes",
    "text": "the file as text when it is UTF-8, else null", "data": "the file, byte for byte",
    "repeat": "test-suite repeat, else null",
}


@dataclass
class CardInfo:
    repo: str  # OWNER/NAME on the Hub; for --out the dataset's directory (absolute)
    kind: str  # captures | traces | wire-traces
    agentcap_version: str
    local: bool = False
    agents: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)  # every run in the dataset
    versions: list[str] = field(default_factory=list)  # agentcap versions that exported them
    first: str | None = None
    last: str | None = None
    calls: int = 0
    sessions: int = 0
    files: int = 0
    session_files: int = 0
    native: bool = False  # traces: the agent's own files (Claude Code, Codex, Pi), not converted
    captures_repo: str | None = None
    traces_repos: list[str] = field(default_factory=list)
    wire_repo: str | None = None
    license: str | None = None
    license_name: str | None = None
    license_link: str | None = None
    exported: list[str] = field(default_factory=list)  # this export's runs
    exported_rows: str = ""  # this export, e.g. "120 calls, 3 sessions"
    exported_at: str = ""
    rows: int = 0  # rows of the default config (for size_categories)
    run_kinds: dict[str | None, int] = field(default_factory=dict)  # corpus | suite | proxy (None: not recorded) → runs
    fresh: bool = True  # this export adds files to the dataset (else the card's log gains no line)


def from_footers(info: CardInfo, footers: Iterable[dict[str, Any]]) -> CardInfo:
    """``info`` with what the dataset holds, from the footers of all its parquet files."""
    footers = list(footers)
    hosts = {urlsplit(f["upstream"]).hostname or f["upstream"] if "://" in f["upstream"] else f["upstream"]
             for f in footers if isinstance(f.get("upstream"), str) and f["upstream"]}
    starts = sorted(str(f["started_at"])[:10] for f in footers if f.get("started_at"))
    kinds = [(f.get("kind") or "calls", f) for f in footers]
    made: dict[str, str | None] = {}
    for f in footers:
        if f.get("run_id"):
            made[f["run_id"]] = made.get(f["run_id"]) or run_kind(f)
    info = dataclasses.replace(
        info, agents=sorted({f["agent"] for f in footers if f.get("agent")}),
        models=sorted({f["model"] for f in footers if f.get("model")}), hosts=sorted(hosts),
        runs=sorted({f["run_id"] for f in footers if f.get("run_id")}),
        versions=sorted({f["agentcap_version"] for f in footers if f.get("agentcap_version")}),
        first=starts[0] if starts else None, last=starts[-1] if starts else None,
        calls=sum(f.get("rows") or 0 for k, f in kinds if k == "calls"),
        sessions=sum(f.get("rows") or 0 for k, f in kinds if k == "sessions"),
        files=sum(f.get("rows") or 0 for k, f in kinds if k in ("traces", "wire-traces")),
        session_files=sum(f.get("sessions") or 0 for k, f in kinds if k in ("traces", "wire-traces")),
        run_kinds={k: sum(1 for v in made.values() if v == k) for k in sorted(set(made.values()), key=str)})
    info.rows = info.calls if info.kind == "captures" else (info.session_files or info.files)
    return info


def run_kind(footer: dict[str, Any]) -> str | None:
    """How a file's run was made; a footer from before ``run_kind`` was written: ``proxy`` when it
    has no agent (only a proxy's captures have none), else not known."""
    return footer.get("run_kind") or (None if footer.get("agent") else "proxy")


def size_category(n: int) -> str:
    return next((label for limit, label in SIZES if n < limit), "n>1B")


def _configs(info: CardInfo) -> list[dict[str, Any]]:
    def cfg(name: str, path: str) -> dict[str, Any]:
        return {"config_name": name, "data_files": [{"split": "train", "path": path}]}

    if info.kind == "captures":
        return [cfg("default", "data/*.parquet"), cfg("sessions", "sessions/*.parquet")]  # whatever the data
    if info.session_files:  # one format per dataset: datasets reads all its configs with one builder (JSON here)
        return [cfg("default", SESSION_FILES)]
    return [cfg("default", TRACE_FILES)]


def _seed(info: CardInfo) -> dict[str, Any]:
    """The front matter of a new card (the owner's from then on, but for :func:`_owned`)."""
    what = {"captures": "model calls and sessions of coding agents", "wire-traces": "agent sessions rebuilt from the wire",
            "traces": f"{', '.join(info.agents)} session traces"}[info.kind]
    return {"pretty_name": f"{info.repo.rstrip('/').split('/')[-1]} — {what}",
            "tags": ["agentcap", "agents", "coding-agents", "tool-use",
                     "llm-calls" if info.kind == "captures" else "traces"],
            "task_categories": ["text-generation"]}


def _owned(info: CardInfo, existing: dict[str, Any]) -> dict[str, Any]:
    """The front matter keys agentcap sets, with their values (``DROP``: removed): the license when
    --license is given, the size category, the configs (agentcap's own where they were, the owner's
    kept in their order)."""
    out: dict[str, Any] = {}
    if info.license:
        out["license"] = info.license
        for k in ("license_name", "license_link"):
            if getattr(info, k):
                out[k] = getattr(info, k)
            elif info.license != "other":
                out[k] = DROP
    out["size_categories"] = [size_category(info.rows)]
    ours = {c["config_name"]: c for c in _configs(info)}
    configs = []
    for c in existing.get("configs") or []:
        if isinstance(c, dict) and c.get("config_name") in OWN_CONFIGS:
            configs += [ours.pop(c["config_name"])] if c["config_name"] in ours else []
        elif isinstance(c, dict):
            configs.append(c)
    out["configs"] = configs + list(ours.values())
    return out


def _type(t: pa.DataType) -> str:
    """A column type, short: ``list<struct<role, content, …>>``."""
    if pa.types.is_list(t):
        return f"list<{_type(t.value_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ", ".join(t.field(i).name for i in range(t.num_fields)) + ">"
    return str(t)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(schema: pa.Schema, docs: dict[str, str]) -> str:
    lines = ["| field | type | meaning |", "|---|---|---|"]
    lines += [f"| `{f.name}` | {_cell(_type(f.type))} | {_cell(docs.get(f.name, ''))} |" for f in schema]
    return "\n".join(lines)


def _load(info: CardInfo, config: str | None) -> str:
    """The ``load_dataset`` call for one config: by repo id on the Hub; for a local export by its
    files (absolute: it works from any directory; ``datasets`` caches a directory load under the
    directory's name, so a second export elsewhere under the same name would read the first's)."""
    if not info.local:
        args = ", ".join([json.dumps(info.repo), *([f'"{config}"'] if config else []), 'split="train"'])
        return f"load_dataset({args})"
    path = next(c["data_files"][0]["path"] for c in _configs(info) if c["config_name"] == (config or "default"))
    return _load_files(info, path)


def _load_files(info: CardInfo, path: str) -> str:
    """The ``load_dataset`` call for files of the dataset by a pattern (for the trace files that are
    no config: a dataset of session files is read with the JSON builder, these are parquet)."""
    where = info.repo.rstrip("/") + "/" + path if info.local else f"hf://datasets/{info.repo}/{path}"
    builder = "json" if path.endswith(".jsonl") else "parquet"
    return f'load_dataset("{builder}", data_files={json.dumps(where)}, split="train")'


def _provenance(info: CardInfo) -> list[str]:
    counts = {"captures": f"{info.calls} calls, {info.sessions} sessions",
              "traces": f"{info.session_files} session files, {info.files} trace files",
              "wire-traces": f"{info.session_files} session files"}[info.kind]
    lic = (f"{info.license}" + (f" ({info.license_name}: {info.license_link})" if info.license == "other" else "")
           if info.license else "not stated (`agentcap export --license`, or set `license` in this card)")
    return ["## Provenance", "", f"What the files in this dataset hold (every file's footer, all exports): {counts}.", "",
            f"- exported by: agentcap {', '.join(info.versions) or info.agentcap_version}",
            f"- agents: {', '.join(info.agents) or '-'}",
            f"- models: {', '.join(info.models) or '-'}" if info.kind == "captures" else "",
            f"- upstream hosts: {', '.join(info.hosts) or '-'}" if info.hosts else "",
            f"- runs: {len(info.runs)}, started {info.first or '?'} … {info.last or '?'}",
            f"- license: {lic}", ""]


MADE = {  # what the card may say of how a run was made, by its kind in run.json
    "corpus": "`agentcap run`: coding agents over a corpus of prompts, each turn in its own podman container",
    "suite": "`agentcap test`: coding agents in podman containers against mock MCP servers, one per test "
             "scenario, model and repeat",
    "proxy": "`agentcap proxy` (or `mitmdump -s`): whatever clients their user pointed at the capture proxy — "
             "agentcap did not run them, so nothing here says where or how they ran",
    None: "runs exported before agentcap recorded how a run was made",
}


def _made(info: CardInfo) -> list[str]:
    """How the dataset's runs were made, per kind, never more than the runs say."""
    wire = "" if info.kind == "traces" else " Every model call was taken from the wire by a mitmproxy addon."
    head = f"Made with [agentcap](https://pypi.org/project/agentcap/) {info.agentcap_version}.{wire}"
    if not info.run_kinds:
        return [head, ""]
    return [head + " The runs:", "", *(f"- {n} run{'s' if n != 1 else ''} of {MADE.get(k, MADE[None])}"
                                       for k, n in info.run_kinds.items()), ""]


def _generated(info: CardInfo) -> str:
    parts = [BEGIN, "", *_made(info), *_provenance(info)]
    if info.kind == "captures":
        parts += _captures_body(info)
    else:
        parts += _traces_body(info)
    parts.append(END)
    return "\n".join(p for p in parts if p is not None)


def _captures_body(info: CardInfo) -> list[str]:
    parts = ["## Configs", "",
             "- `default`: one row per model call, in `seq` order within each run (one file per run and model; "
             "re-exports add files — dedupe on `request_id` when loading overlapping exports).",
             "- `sessions`: one row per task session" + (" (for proxy captures: per conversation)" if "proxy" in
                                                          info.run_kinds else "") +
             " — the conversation the model saw as `messages` (OpenAI chat shape, tool call arguments as JSON text), "
             "the `tools` offered, outcome, tokens, cost.", "",
             "## Load it", "", "```python", "from datasets import load_dataset", "",
             f"calls = {_load(info, None)}", f"sessions = {_load(info, 'sessions')}", "```", "",
             "Train on the sessions: TRL's `SFTTrainer` takes the `messages` column as it is. To render one "
             "through a chat template (most want tool call arguments as objects):", "", "```python",
             "import json", "from transformers import AutoTokenizer", "",
             "row = sessions[0]",
             "tools = [t[\"function\"] for t in json.loads(row[\"tools\"])]",
             "messages = [{k: v for k, v in m.items() if v is not None} for m in row[\"messages\"]]",
             "for m in messages:",
             "    for c in m.get(\"tool_calls\") or []:",
             "        c[\"function\"][\"arguments\"] = json.loads(c[\"function\"][\"arguments\"] or \"{}\")",
             "tok = AutoTokenizer.from_pretrained(\"Qwen/Qwen3-0.6B\")",
             "text = tok.apply_chat_template(messages, tools=tools or None, tokenize=False)", "```", "",
             "With duckdb: `duckdb.sql(\"SELECT model, sum(prompt_tokens) FROM 'data/*.parquet' GROUP BY 1\")` "
             "in a clone of this repo.", ""]
    related = [r for r in [*info.traces_repos, info.wire_repo] if r]
    if related:
        parts += ["## Traces", "",
                  "The agents' own session traces and the sessions rebuilt from the wire (both render in the Hub's "
                  "trace viewer) are in " + ", ".join(f"`{r}`" for r in related) +
                  "; join on `run_id` and `task_id`.", ""]
    parts += ["## Fields", "", "### default (calls)", "", _table(CAPTURE_SCHEMA, CAPTURE_FIELDS), "",
              "### sessions", "", _table(SESSION_SCHEMA, SESSION_FIELDS), ""]
    return parts


def _traces_body(info: CardInfo) -> list[str]:
    if info.kind == "wire-traces":
        what = ("Every task session rebuilt from the model calls on the wire (what the model saw, whatever the agent "
                "recorded), with the tools it was offered: `sessions/<run>/<task>--<digest>.jsonl`, in Pi's session "
                f"format with `harness: agentcap` ({PI_ROUTE}).")
    elif info.native and info.agents == ["hermes"]:
        what = ("hermes' sessions in its own `hermes sessions export` JSONL (a session per line), made from its "
                "state.db — a format the Hub reads: `sessions/<run>/<task>--<digest>.jsonl`.")
    elif info.native:
        what = ("The agents' session files as they wrote them (the Hub detects Claude Code, Codex and Pi sessions): "
                "`sessions/<run>/<task>--<digest>.jsonl`.")
    else:
        what = ("The agents' native traces converted to Pi's session format with a `harness` field (the agent's "
                f"name; {PI_ROUTE}): `sessions/<run>/<task>--<digest>.jsonl`; the original files are in `data/`.")
    return [*_traces_configs(info, what), *_traces_load(info),
            *([f"Pairs with the captures dataset `{info.captures_repo}`: join on `run_id` and `task_id`.", ""]
              if info.captures_repo else []),
            "## Fields of the trace files (`data/*.parquet`)", "", _table(FILE_SCHEMA, FILE_FIELDS), ""]


PI_ROUTE = ("the Hub's trace viewer renders it, see [Session Traces Format]"
            "(https://huggingface.co/docs/hub/session-traces-format); `datasets` reads it with every tool call")


def _traces_configs(info: CardInfo, what: str) -> list[str]:
    if not info.session_files:
        return ["## Configs", "", f"- `default`: one row per native trace file (`{TRACE_FILES}`), byte for byte.", ""]
    return ["## Configs", "", f"- `default`: {what}", "",
            f"The trace files themselves, one row per file byte for byte, are parquet files in `{TRACE_FILES}` — not "
            "a config: `datasets` reads every config of a dataset with one builder, here the one for the session "
            "files. Load them by their files, as below.", ""]


def _traces_load(info: CardInfo) -> list[str]:
    if not info.session_files:
        return ["## Load it", "", "```python", "from datasets import load_dataset", "",
                f"files = {_load(info, None)}", "```", ""]
    return ["## Load it", "", "```python", "# pip install datasets teich  (datasets reads agent session files with teich)",
            "from datasets import load_dataset", "",
            f"sessions = {_load(info, None)}  # a row per session: harness, messages with their tool calls, tools",
            f"files = {_load_files(info, TRACE_FILES)}  # the trace files, byte for byte", "```", "",
            "A row of `sessions` holds the conversation as `messages` (OpenAI chat shape, `tool_calls` with their "
            "arguments as objects, tool results with their `tool_call_id`), the `tools` (Pi's session reader adds "
            "Pi's built-in tools to those the agent was offered; the exact list is in the file's "
            "`teich-available-tools` entry, in `trace`) and the file itself as `trace`.", ""]


def _log_line(info: CardInfo) -> str:
    return (f"- {info.exported_at}: {info.exported_rows} from {len(info.exported)} run(s) "
            f"({', '.join(info.exported[:5])}{' …' if len(info.exported) > 5 else ''})")


def _new_front_matter(info: CardInfo) -> str:
    return block(dump(_seed(info) | {k: v for k, v in _owned(info, {}).items() if v is not DROP}))


def render(info: CardInfo) -> str:
    title = info.repo.rstrip("/").split("/")[-1]
    return (f"{_new_front_matter(info)}\n# {title}\n\n{_generated(info)}\n\n## Exports\n\n{LOG_BEGIN}\n"
            f"{_log_line(info)}\n{LOG_END}\n")


def update(existing: str | None, info: CardInfo) -> str:
    """The card after this export: seeded when there is none, else only agentcap's parts changed
    (the log gains a line only when ``info.fresh``): a re-export of nothing new with the same
    settings gives ``existing`` back byte for byte."""
    if not existing or not existing.strip():
        return render(info)
    fm, fm_text, text = split(existing)
    generated = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    text = generated.sub(lambda _: _generated(info), text, count=1) if generated.search(text) else (
        text.rstrip("\n") + "\n\n" + _generated(info) + "\n")
    log = re.compile(re.escape(LOG_BEGIN) + r"\n(.*?)" + re.escape(LOG_END), re.S)
    m = log.search(text)
    if m and info.fresh:
        text = text[:m.end(1)] + _log_line(info) + "\n" + text[m.end(1):]
    elif not m and info.fresh:
        text = text.rstrip("\n") + f"\n\n## Exports\n\n{LOG_BEGIN}\n{_log_line(info)}\n{LOG_END}\n"
    if fm is None or fm_text is None:  # no front matter (or none that parses): agentcap's, above the owner's text
        return _new_front_matter(info) + ("\n" if not text.startswith("\n") else "") + text
    return block(merge(fm_text, fm, _owned(info, fm))) + text


def scan_card(info: CardInfo, name: str, gate: Gate, out: list[Finding]) -> CardInfo:
    """Scan the card agentcap writes for ``info`` (made from run metadata: agents, models, hosts,
    run ids); under --redact, returns the info with those secrets masked in every field."""
    text = render(info)
    scan_text(text, f"{name}/README.md", line_where(text, False), gate, out)
    if not gate.redact:
        return info
    values: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, list):
            for v in value:
                collect(v)
        elif isinstance(value, str):
            values.append(value)

    for f in dataclasses.fields(info):
        collect(getattr(info, f.name))
    masked = dict(zip(values, scan_texts(values, f"{name}/README.md", lambda i: lambda at: "card", gate, [])))

    def clean(value: Any) -> Any:
        if isinstance(value, list):
            return [clean(v) for v in value]
        return masked.get(value, value) if isinstance(value, str) else value

    return dataclasses.replace(info, **{f.name: clean(getattr(info, f.name)) for f in dataclasses.fields(info)})


def write_card(path: Path, text: str) -> None:
    """The card as a new file put in place by a rename: never the old file rewritten in place (in a
    staged ``--out`` the old card is a hard link to the one in DIR, which must not change)."""
    atomic_write_bytes(path, text.encode("utf-8"))
