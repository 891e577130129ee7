"""The bench's "bare mitmdump": readiness signalling plus response streaming, no other work.

Streaming is switched on for every response because the capture addon streams too; mitmdump's
default (buffer the whole response) would make a slower, unfair floor for chunk timing.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentcap_addons.lifecycle import Lifecycle  # noqa: E402


class StreamAll:
    def responseheaders(self, flow) -> None:
        flow.response.stream = True


addons = [Lifecycle(), StreamAll()]
