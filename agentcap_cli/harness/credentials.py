"""Which upstream key a run uses, and where it came from (the source is logged, never the value).

Order: ``--api-key``, then ``AGENTCAP_API_KEY``, then — only for an upstream on ``huggingface.co``
(the router takes a Hugging Face token) — ``HF_TOKEN`` and the Hub login cache that ``hf auth login``
writes, read by huggingface_hub's own ``get_token()`` (so ``HF_HOME`` / ``HF_TOKEN_PATH`` are honoured).
The key goes only into the capture proxy's environment; see agentcap_cli/harness/services.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

HUB_LOGIN = "the Hugging Face login (huggingface_hub.get_token(): `hf auth login`'s token file)"


@dataclass(frozen=True)
class UpstreamKey:
    value: str | None
    source: str  # "--api-key", "AGENTCAP_API_KEY", "HF_TOKEN", HUB_LOGIN, or "none"

    def __repr__(self) -> str:  # never the value, even in a traceback or a debug log
        return f"UpstreamKey(source={self.source!r}, set={self.value is not None})"


def is_huggingface(upstream: str) -> bool:
    host = (urlsplit(upstream).hostname or "").lower()
    return host == "huggingface.co" or host.endswith(".huggingface.co")


def upstream_key(given: str | None, given_source: str, upstream: str | None,
                 env: Mapping[str, str] = os.environ) -> UpstreamKey:
    """The key for ``upstream``: ``given`` (named ``given_source``: the flag or its variable) first."""
    if given:
        return UpstreamKey(given, given_source)
    if not upstream or not is_huggingface(upstream):
        return UpstreamKey(None, "none")
    if env.get("HF_TOKEN", "").strip():
        return UpstreamKey(env["HF_TOKEN"].strip(), "HF_TOKEN")
    # imported here: 0.16 s of start-up that only an HF upstream without HF_TOKEN needs
    from huggingface_hub import get_token

    token = get_token()
    return UpstreamKey(token, HUB_LOGIN) if token else UpstreamKey(None, "none")
