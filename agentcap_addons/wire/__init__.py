"""The wire-format library: capture files, the key registry, SSE and the three LLM APIs.

Pure Python, no mitmproxy import: the addon writes with it, and export, inspect, replay and the
CLI read with it; anyone may import it (docs/architecture.md). Four parts:

* ``capture``: the capture contract (records on disk, policy, the key registry);
* ``api``: the LLM APIs (SSE, decoding, rendering, sessions);
* ``fake``: scripted and recorded upstreams (scripts, cassettes, responders);
* ``util``: atomic files, timestamps, JSON, YAML with line numbers, the error base classes.

This module is the facade for the names most callers need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentcap_addons.wire.api.decode import (
        decode_request,
        decode_response,
        request_tools,
    )
    from agentcap_addons.wire.api.messages import DecodedResponse, Message, ToolCall, Usage
    from agentcap_addons.wire.api.sse import SSEDecoder, SSEEvent, parse_sse
    from agentcap_addons.wire.capture.policy import api_kind, path_matches
    from agentcap_addons.wire.capture.records import (
        SCHEMA,
        Capture,
        CaptureDir,
        iter_captures,
        read_capture,
    )
    from agentcap_addons.wire.capture.registry import Attribution, KeyRegistry, new_key
    from agentcap_addons.wire.util.errors import AgentcapError, InputError
    from agentcap_addons.wire.util.files import atomic_write_bytes

#: name → the module it lives in. Imported on first use (PEP 562), so that importing one small part
#: (``agentcap_addons.wire.util.files`` in the sandbox, say) does not load the API decoders.
_WHERE: dict[str, str] = {
    "AgentcapError": "agentcap_addons.wire.util.errors",
    "Attribution": "agentcap_addons.wire.capture.registry",
    "Capture": "agentcap_addons.wire.capture.records",
    "CaptureDir": "agentcap_addons.wire.capture.records",
    "DecodedResponse": "agentcap_addons.wire.api.messages",
    "InputError": "agentcap_addons.wire.util.errors",
    "KeyRegistry": "agentcap_addons.wire.capture.registry",
    "Message": "agentcap_addons.wire.api.messages",
    "SCHEMA": "agentcap_addons.wire.capture.records",
    "SSEDecoder": "agentcap_addons.wire.api.sse",
    "SSEEvent": "agentcap_addons.wire.api.sse",
    "ToolCall": "agentcap_addons.wire.api.messages",
    "Usage": "agentcap_addons.wire.api.messages",
    "api_kind": "agentcap_addons.wire.capture.policy",
    "atomic_write_bytes": "agentcap_addons.wire.util.files",
    "decode_request": "agentcap_addons.wire.api.decode",
    "decode_response": "agentcap_addons.wire.api.decode",
    "iter_captures": "agentcap_addons.wire.capture.records",
    "new_key": "agentcap_addons.wire.capture.registry",
    "parse_sse": "agentcap_addons.wire.api.sse",
    "path_matches": "agentcap_addons.wire.capture.policy",
    "read_capture": "agentcap_addons.wire.capture.records",
    "request_tools": "agentcap_addons.wire.api.decode",
}

__all__ = [
    "SCHEMA",
    "AgentcapError",
    "Attribution",
    "Capture",
    "CaptureDir",
    "DecodedResponse",
    "InputError",
    "KeyRegistry",
    "Message",
    "SSEDecoder",
    "SSEEvent",
    "ToolCall",
    "Usage",
    "api_kind",
    "atomic_write_bytes",
    "decode_request",
    "decode_response",
    "iter_captures",
    "new_key",
    "parse_sse",
    "path_matches",
    "read_capture",
    "request_tools",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
