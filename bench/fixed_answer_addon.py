"""bench/upstream.py's baseline: mitmdump answering every request itself with fixed bytes.

The floor for any addon that answers without an upstream (like agentcap's replay addon).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitmproxy import http  # noqa: E402

from agentcap_addons.lifecycle import Lifecycle  # noqa: E402

BODY = (b'{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":'
        b'{"role":"assistant","content":"answer"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2}}')


class FixedAnswer:
    def request(self, flow: http.HTTPFlow) -> None:
        flow.response = http.Response.make(200, BODY, {"content-type": "application/json"})


addons = [Lifecycle(), FixedAnswer()]
