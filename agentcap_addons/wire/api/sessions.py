"""Sessions from the wire: every call in one message shape, calls grouped into conversations, a
session rebuilt as the model saw it. Pure Python, no mitmproxy import (export and inspect read with it).

**One shape.** Whatever API a call spoke, its messages are mapped to the OpenAI chat shape — the
shape trainers (TRL's ``messages``) and chat templates take: ``{role, content, reasoning_content,
tool_calls [{id, type: "function", function {name, arguments (JSON text)}}], tool_call_id, name}``.
docs/export.md lists the mapping of the Responses API's items and the Messages API's blocks field by
field.

**Threads.** A call belongs to the conversation (*thread*) of an earlier call when its message list
extends that call's list (message by message: role, text, tool call ids and names, the id a tool
result answers — not reasoning or argument spelling, which agents re-serialise); a Responses call
naming a ``previous_response_id`` continues the call that got that response. A thread's id is the
request id of its first call, so it is the same in every export of the same captures. An exact
repeat of a call that got an answer starts a new thread (two identical conversations run side by
side look like that); a repeat of a call that failed is its retry.

**Sessions.** The session of a task is rebuilt from the last call of each turn in the turn's main
thread (:func:`rebuild` says which): that call's messages plus its reply are the whole conversation
the model saw. A turn whose messages do not continue the previous turn's (an agent that starts
afresh each turn) adds a new *context* after it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b as _blake2b
from typing import Any

from agentcap_addons.wire.api.decode import request_messages
from agentcap_addons.wire.api.messages import DecodedResponse, Message, qualified_name
from agentcap_addons.wire.capture.policy import API_OPENAI_RESPONSES

# -- finish reasons ---------------------------------------------------------------------------------

FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter", "error")
_FINISH = {
    # chat completions (and servers speaking it: vLLM, TGI, llama.cpp)
    "stop": "stop", "eos": "stop", "eos_token": "stop", "stop_sequence": "stop", "length": "length",
    "max_tokens": "length", "tool_calls": "tool_calls", "function_call": "tool_calls", "tool_use": "tool_calls",
    "content_filter": "content_filter", "error": "error",
    # Anthropic Messages
    "end_turn": "stop", "pause_turn": "stop", "refusal": "content_filter",
    "model_context_window_exceeded": "length",
    # Responses API (status, or incomplete_details.reason)
    "completed": "stop", "max_output_tokens": "length", "failed": "error", "cancelled": "error",
    "incomplete": "length", "in_progress": "error",
}


def normalise_finish(raw: str | None, n_tool_calls: int = 0, failed: bool = False) -> str | None:
    """``stop | length | tool_calls | content_filter | error`` from any API's own stop reason.

    A failed call (HTTP status >= 400, a transport error, an error event) is ``error``. A reply that
    made tool calls and says it simply stopped (the Responses API always says ``completed``; some
    servers say ``stop``) is ``tool_calls``. An unknown word is None (the raw value is kept beside).
    """
    if failed:
        return "error"
    word = _FINISH.get((raw or "").strip().lower())
    if n_tool_calls and word in (None, "stop"):
        return "tool_calls"
    return word


# -- the chat shape ----------------------------------------------------------------------------------

def chat_message(m: Message) -> dict[str, Any]:
    """A decoded message in the chat shape (keys always present, None when unset: one struct type)."""
    calls = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments or ""}}
             for c in m.tool_calls]
    return {"role": "system" if m.role == "developer" else m.role, "content": m.content or "",
            "reasoning_content": m.reasoning or None, "tool_calls": calls or None,
            "tool_call_id": m.tool_call_id, "name": m.name}


def _merge_reasoning(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An assistant message with neither text nor tool calls (a Responses ``reasoning`` item, an
    Anthropic thinking-only block) is folded into the assistant message right after it."""
    out: list[dict[str, Any]] = []
    for m in msgs:
        prev = out[-1] if out else None
        if (prev is not None and prev["role"] == "assistant" and m["role"] == "assistant" and not prev["content"]
                and not prev["tool_calls"]):
            reasoning = "".join(r for r in (prev["reasoning_content"], m["reasoning_content"]) if r) or None
            out[-1] = {**m, "reasoning_content": reasoning}
        else:
            out.append(m)
    return out


def chat_messages(api: str, body: Any) -> list[dict[str, Any]]:
    """A request's messages (system prompt / instructions first) in the chat shape."""
    return _merge_reasoning([chat_message(m) for m in request_messages(api, body)])


def reply_fingerprint(decoded: DecodedResponse) -> int:
    """``fingerprint(reply_message(decoded))``, without building the message."""
    return _fp("assistant", decoded.content or "", "\x1f".join(f"{c.id}\x1e{c.name}" for c in decoded.tool_calls), None)


def reply_message(decoded: DecodedResponse) -> dict[str, Any]:
    """What the model answered, as the assistant message that follows the request's messages."""
    return chat_message(decoded.as_message())


def chat_tools(body: Any) -> list[dict[str, Any]]:
    """The tools a request offered, in the chat shape ``{type: "function", function: {name,
    description, parameters}}`` (Responses' flat function tools and namespaces, Anthropic's
    ``input_schema``; built-in tools such as web search keep their type and name)."""
    out: list[dict[str, Any]] = []

    def walk(tools: Any, namespace: str | None) -> None:
        for t in tools if isinstance(tools, list) else []:
            if not isinstance(t, dict):
                continue
            if t.get("type") == "namespace" and isinstance(t.get("tools"), list):
                walk(t["tools"], str(t.get("name") or ""))
                continue
            fn = t["function"] if isinstance(t.get("function"), dict) else t
            name = fn.get("name")
            if not isinstance(name, str):
                continue
            params = fn.get("parameters", fn.get("input_schema"))
            kind = t.get("type") if t.get("type") not in (None, "function", "custom") else "function"
            out.append({"type": kind, "function": {"name": qualified_name(namespace, name),
                                                   "description": fn.get("description"),
                                                   **({"parameters": params} if params is not None else {})}})

    walk(body.get("tools") if isinstance(body, dict) else None, None)
    return out


# -- fingerprints and threads --------------------------------------------------------------------

def _fp(role: str, content: str, calls: str, tool_call_id: str | None) -> int:
    key = f"{role}\x00{content.strip()}\x00{calls}\x00{tool_call_id or ''}".encode("utf-8", "surrogatepass")
    return int.from_bytes(_blake2b(key, digest_size=8).digest())


def fingerprint(m: dict[str, Any]) -> int:
    """What identifies a message across the calls of a conversation: role, text (ends stripped),
    tool call ids and names, the call a tool result answers. Not reasoning or argument spelling."""
    calls = "\x1f".join(f"{(c or {}).get('id')}\x1e{((c or {}).get('function') or {}).get('name')}"
                        for c in m.get("tool_calls") or [])
    return _fp(str(m.get("role")), m.get("content") or "", calls, m.get("tool_call_id"))


def _roll(h: int, fp: int) -> int:
    return hash((h, fp))


@dataclass(slots=True)
class _Thread:
    id: str
    length: int = 0
    key: int = 0  # rolling hash of the fingerprints of the messages its last call sent
    ok: bool = True  # did its last call get an answer
    reply: int | None = None  # fingerprint of its last reply
    order: int = 0


@dataclass
class ThreadTracker:
    """Assigns each call (in seq order) its thread id. ``scope`` keeps conversations of different
    tasks apart (a conversation never spans tasks); proxy captures share one scope. What it keeps
    per thread is a few numbers (a rolling hash of its messages), not the messages."""

    limit: int = 10_000  # threads remembered; the one idle longest is forgotten past that (memory stays flat)
    _index: dict[tuple[Any, int, int], list[_Thread]] = field(default_factory=dict)
    _by_response: dict[str, _Thread] = field(default_factory=dict)
    _recent: OrderedDict[int, tuple[Any, _Thread]] = field(default_factory=OrderedDict)
    _count: int = 0

    def assign(self, scope: Any, request_id: str, fps: Sequence[int], ok: bool, reply: int | None = None,
               response_id: str | None = None, previous_response_id: str | None = None) -> tuple[str, int]:
        """The call's thread id, and the length of the conversation it sent (with what a
        ``previous_response_id`` stands for)."""
        self._count += 1
        prev = self._by_response.get(previous_response_id) if previous_response_id else None
        if prev is not None and prev.order > 0:  # Responses API incremental input: the thread it names
            thread, key, length = prev, prev.key, prev.length
            if prev.reply is not None:
                key, length = _roll(key, prev.reply), length + 1
            for fp in fps:
                key, length = _roll(key, fp), length + 1
        else:
            found, key = self._match(scope, fps)
            thread, length = found or _Thread(request_id), len(fps)
        if thread.order > 0:
            self._unindex(scope, thread)
            self._recent.pop(thread.order, None)
        thread.length, thread.key, thread.ok, thread.reply, thread.order = length, key, ok, reply, self._count
        self._index.setdefault((scope, length, key), []).append(thread)
        self._recent[thread.order] = (scope, thread)
        if len(self._recent) > self.limit:
            _, (old_scope, old) = self._recent.popitem(last=False)
            self._unindex(old_scope, old)
            old.order = -1  # forgotten: a call naming its response starts a new thread
        if response_id:
            self._by_response[response_id] = thread
            if len(self._by_response) > self.limit:
                del self._by_response[next(iter(self._by_response))]
        return thread.id, length

    def _match(self, scope: Any, fps: Sequence[int]) -> tuple[_Thread | None, int]:
        """The thread this message list extends (None: a new one), and the list's rolling hash."""
        best, best_rank = None, None
        key = 0
        for k, fp in enumerate(fps, start=1):
            key = _roll(key, fp)
            for t in self._index.get((scope, k, key), ()):
                if k == len(fps) and t.ok:
                    continue  # the same messages again after an answer: another conversation
                continues = k < len(fps) and t.reply is not None and fps[k] == t.reply
                rank = (continues, k, t.order)
                if best_rank is None or rank > best_rank:
                    best, best_rank = t, rank
        return best, key

    def _unindex(self, scope: Any, thread: _Thread) -> None:
        bucket = self._index.get((scope, thread.length, thread.key))
        if bucket is not None:
            bucket[:] = [t for t in bucket if t is not thread]
            if not bucket:
                del self._index[(scope, thread.length, thread.key)]


def request_fingerprints(api: str, body: Any) -> list[int]:
    """``[fingerprint(m) for m in chat_messages(api, body)]``, without building the messages (the
    export computes it for every call)."""
    msgs = request_messages(api, body)
    out = []
    for i, m in enumerate(msgs):
        if m.role == "assistant" and not m.content and not m.tool_calls and i + 1 < len(msgs) and \
                msgs[i + 1].role == "assistant":
            continue  # folded into the assistant message after it (see _merge_reasoning)
        calls = "\x1f".join(f"{c.id}\x1e{c.name}" for c in m.tool_calls)
        out.append(_fp("system" if m.role == "developer" else m.role, m.content or "", calls, m.tool_call_id))
    return out


def previous_response_id(api: str, body: Any) -> str | None:
    if api == API_OPENAI_RESPONSES and isinstance(body, dict) and isinstance(body.get("previous_response_id"), str):
        return body["previous_response_id"]
    return None


# -- sessions ------------------------------------------------------------------------------------

@dataclass(slots=True)
class CallInfo:
    """What the session builder needs of one call (small: kept for every call of a run)."""

    request_id: str
    seq: int
    thread_id: str
    turn: int | None
    ok: bool
    task_id: str | None = None
    cell: str | None = None
    repeat: int | None = None
    n_messages: int = 0
    captured_us: int | None = None  # µs since the epoch
    duration_ms: float | None = None
    model: str | None = None
    served_model: str | None = None
    api: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    n_tool_calls: int = 0
    finish_reason: str | None = None
    response_id: str | None = None
    previous_response_id: str | None = None
    head: int | None = None  # fingerprint of the first message it sent (the system prompt, mostly)
    n_tools: int = 0  # tools it offered

    @property
    def started_ms(self) -> int | None:
        return None if self.captured_us is None else self.captured_us // 1000

    @property
    def ended_ms(self) -> int | None:
        if self.captured_us is None:
            return None
        return (self.captured_us + int((self.duration_ms or 0) * 1000)) // 1000


@dataclass
class Segment:
    """One context: the messages of a chain of calls where each extends the one before."""

    messages: list[dict[str, Any]]
    calls: list[CallInfo]
    sent: int = 0  # how many of the messages the last call sent (the rest is its reply)


@dataclass
class RebuiltSession:
    calls: list[CallInfo]  # every call of the session taken into account, seq order
    final: list[CallInfo]  # the call that closes each turn
    segments: list[Segment]
    threads: int

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [m for s in self.segments for m in s.messages]


@dataclass
class Loaded:
    """One call read in full: its request's messages in the chat shape, its reply (None when the
    call failed) and the tools it offered."""

    messages: list[dict[str, Any]]
    reply: dict[str, Any] | None
    tools: list[dict[str, Any]] = field(default_factory=list)  # in the chat shape (chat_tools)


Loader = Callable[[str], Loaded]


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same message as re-sent in a later turn: role, tool call ids and the call answered
    alike, and one text the start of the other (agents append and drop reminders)."""
    if a["role"] != b["role"] or a.get("tool_call_id") != b.get("tool_call_id"):
        return False
    if [c.get("id") for c in a.get("tool_calls") or []] != [c.get("id") for c in b.get("tool_calls") or []]:
        return False
    x, y = (a.get("content") or "").strip(), (b.get("content") or "").strip()
    return x.startswith(y) or y.startswith(x)


def continues(previous: Segment | None, messages: list[dict[str, Any]]) -> int:
    """How a turn's conversation relates to the context before it: 2 when it starts with what the
    previous closing call sent; 1 when it carries that context over rearranged (it holds one of
    its tool call ids, or its closing reply with more after it); 0 when it starts afresh."""
    if previous is None:
        return 0
    sent = previous.messages[:previous.sent]
    if len(messages) >= len(sent) and all(_same(a, b) for a, b in zip(sent, messages)):
        return 2
    ids = {c.get("id") for m in previous.messages for c in m.get("tool_calls") or [] if c.get("id")}
    if ids and any(c.get("id") in ids for m in messages for c in m.get("tool_calls") or []):
        return 1
    reply = previous.messages[-1] if len(previous.messages) > previous.sent else None
    if reply is not None and any(_same(reply, m) for m in messages[:-1]):
        return 1
    return 0


def rebuild(calls: Sequence[CallInfo], load: Loader, with_failed: bool = False) -> RebuiltSession:
    """The session of these calls (one task, or one thread of a proxy run), seq order.

    Per turn, the main thread is the one that starts like the context before it (the same first
    message: the system prompt — side calls for titles, summaries or memory bring their own), then
    the one with the most calls, then the one offering the most tools (side calls offer few), then
    the one that ends last; only its last call is read. Its messages continue the context before
    (see :func:`continues`) or start a new one. Calls that failed are left out unless
    ``with_failed`` (a turn that ended on a failed call then ends with that call's messages and no
    reply)."""
    used = sorted((c for c in calls if c.ok or with_failed), key=lambda c: c.seq)
    turns: dict[int | None, list[CallInfo]] = {}
    for c in used:
        turns.setdefault(c.turn, []).append(c)
    by_response = {c.response_id: c for c in used if c.response_id}
    segments: list[Segment] = []
    finals = []
    head: int | None = None
    for _, in_turn in sorted(turns.items(), key=lambda kv: kv[1][0].seq):
        chains: dict[str, list[CallInfo]] = {}
        for c in in_turn:
            chains.setdefault(c.thread_id, []).append(c)
        chain = max(chains.values(), key=lambda ch: (head is not None and ch[-1].head == head, len(ch),
                                                     ch[-1].n_tools, ch[-1].seq))
        head = chain[-1].head
        finals.append(chain[-1])
        messages, sent = _conversation(chain[-1], load, by_response)
        previous = segments[-1] if segments else None
        if previous is not None and continues(previous, messages):
            previous.messages, previous.sent = messages, sent
            previous.calls += chain
        else:
            segments.append(Segment(messages, list(chain), sent))
    return RebuiltSession(used, finals, segments, len({c.thread_id for c in used}))


def _conversation(call: CallInfo, load: Loader, by_response: dict[str, CallInfo]) -> tuple[list[dict[str, Any]], int]:
    """A call's whole conversation plus its reply, and how many of those messages it sent: its
    request's messages — preceded, for a Responses call that sends only the new items after a
    ``previous_response_id``, by that call's conversation (and reply)."""
    chain = [call]
    while chain[-1].previous_response_id in by_response and len(chain) <= len(by_response):
        chain.append(by_response[chain[-1].previous_response_id or ""])
    messages: list[dict[str, Any]] = []
    sent = 0
    for c in reversed(chain):
        loaded = load(c.request_id)
        messages += loaded.messages
        sent = len(messages)
        if loaded.reply is not None:
            messages.append(loaded.reply)
    return messages, sent


def stamp(segment: Segment) -> list[dict[str, Any]]:
    """The segment's messages with ``timestamp`` (epoch ms) and ``model``: a reply gets the time its call
    ended and the model that served it; any other message the time of the first call that sent it."""
    out = []
    for i, m in enumerate(segment.messages):
        ts, model = None, None
        for c in segment.calls:
            if c.n_messages == i and m["role"] == "assistant":
                ts, model = c.ended_ms, c.served_model or c.model
                break
            if c.n_messages > i:
                ts = c.started_ms
                break
        else:
            last = segment.calls[-1] if segment.calls else None
            if last is not None and m["role"] == "assistant":
                ts, model = last.ended_ms, last.served_model or last.model
        out.append({**m, "timestamp": ts, "model": model})
    return out


def totals(calls: Iterable[CallInfo]) -> dict[str, int | None]:
    """Token sums over calls (None when no call said)."""
    out: dict[str, int | None] = {}
    for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens"):
        values = [getattr(c, name) for c in calls if getattr(c, name) is not None]
        out[name] = sum(values) if values else None
    return out


__all__ = ["FINISH_REASONS", "CallInfo", "Loaded", "RebuiltSession", "Segment", "ThreadTracker", "chat_message",
           "chat_messages", "chat_tools", "continues", "fingerprint", "normalise_finish", "previous_response_id",
           "rebuild", "reply_fingerprint", "reply_message", "request_fingerprints", "stamp", "totals"]
