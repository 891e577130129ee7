"""The wire-format library: capture files, the key registry, SSE and the three LLM APIs.

Pure Python, no mitmproxy import: the addon writes with it, and export, inspect, replay and the
CLI read with it; anyone may import it (docs/architecture.md). Four parts:

* ``capture``: the capture contract (records on disk, policy, the key registry);
* ``api``: the LLM APIs (SSE, decoding, rendering, sessions);
* ``fake``: scripted and recorded upstreams (scripts, cassettes, responders);
* ``util``: atomic files, timestamps, JSON, YAML with line numbers, the error base classes.

This module is the facade for the names most callers need.
"""

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
