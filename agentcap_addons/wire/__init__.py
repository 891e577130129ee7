"""The wire-format library: capture files, the key registry, SSE and the three LLM APIs.

Pure Python, no mitmproxy import: the addon writes with it, and export, inspect, replay and the
CLI read with it (DESIGN.md "Layout": anyone may import these modules).
"""

from .decode import decode_request, decode_response, request_tools
from .messages import DecodedResponse, Message, ToolCall, Usage
from .policy import api_kind, path_matches
from .registry import Attribution, KeyRegistry, new_key
from .sse import SSEDecoder, SSEEvent, parse_sse
from .store import SCHEMA, Capture, CaptureDir, iter_captures, read_capture

__all__ = [
    "SCHEMA",
    "Attribution",
    "Capture",
    "CaptureDir",
    "DecodedResponse",
    "KeyRegistry",
    "Message",
    "SSEDecoder",
    "SSEEvent",
    "ToolCall",
    "Usage",
    "api_kind",
    "decode_request",
    "decode_response",
    "iter_captures",
    "new_key",
    "parse_sse",
    "path_matches",
    "read_capture",
    "request_tools",
]
