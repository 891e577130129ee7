"""bench/upstream.py's replay proxy: agentcap's replay addon plus the readiness signal
(``agentcap_addons/replay.py`` alone does not load the lifecycle addon, so that it can sit next
to ``capture.py``, which does)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentcap_addons.lifecycle import Lifecycle  # noqa: E402
from agentcap_addons.replay import Replay  # noqa: E402

addons = [Lifecycle(), Replay()]
