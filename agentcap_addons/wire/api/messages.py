"""The decoded view of a call, the same for every API: messages in, a response out.

Readers (export, inspect, assertions) compute these from capture files; they are never written
back into captures (DESIGN.md: capture stays dumb)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ToolCall:
    id: str | None
    name: str | None
    arguments: str = ""
    index: int = 0

    def parsed_arguments(self) -> Any:
        """The arguments as JSON, or the raw string when they do not parse (a truncated stream)."""
        try:
            return json.loads(self.arguments) if self.arguments else {}
        except ValueError:
            return self.arguments


@dataclass
class Message:
    role: str
    content: str = ""
    reasoning: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


@dataclass
class Usage:
    """Token counts normalised across APIs; None where the API did not say.

    ``prompt_tokens`` includes cached tokens (Anthropic's ``input_tokens`` does not, so its cache
    read and cache creation counts are added); ``cached_tokens`` is the cache-read part;
    ``reasoning_tokens`` is part of ``completion_tokens``.
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    cache_creation_tokens: int | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


@dataclass
class DecodedResponse:
    """What the model answered. ``finish_reason`` is the API's own word (``stop``, ``tool_calls``,
    ``end_turn``, ``tool_use``, ``completed``, ``max_output_tokens`` …)."""

    id: str | None = None
    model: str | None = None
    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    events: int = 0

    def as_message(self) -> Message:
        return Message(
            role="assistant",
            content=self.content,
            reasoning=self.reasoning or None,
            tool_calls=list(self.tool_calls),
        )


def text_of(content: Any) -> str:
    """Flatten the many shapes of message content (string, list of parts / blocks) to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                kind = part.get("type")
                if "text" in part and isinstance(part["text"], str):
                    parts.append(part["text"])
                elif kind in ("image_url", "image", "input_image"):
                    parts.append("[image]")
                elif kind in ("input_audio", "audio"):
                    parts.append("[audio]")
                elif kind in ("file", "input_file", "document"):
                    parts.append("[file]")
                elif "content" in part:
                    parts.append(text_of(part["content"]))
        return "\n".join(p for p in parts if p)
    if isinstance(content, dict):
        return text_of([content])
    return str(content)


def as_int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def qualified_name(namespace: str | None, name: str) -> str:
    """A tool's flat name: Responses API tools may sit in a namespace (codex's MCP servers:
    namespace ``mcp__slack``, tool ``post`` → ``mcp__slack__post``, the name the agent shows)."""
    if not namespace:
        return name
    return namespace + name if namespace.endswith("__") else f"{namespace}__{name}"
