"""Which upstream key a run uses, and where it came from (the source is logged, never the value).

Order: ``--api-key``, then ``AGENTCAP_API_KEY``, then — only for an upstream on ``huggingface.co``
(the router takes a Hugging Face token) — ``HF_TOKEN`` and the Hub login cache that ``hf auth login``
writes, read by huggingface_hub's own ``get_token()`` (so ``HF_HOME`` / ``HF_TOKEN_PATH`` are honoured).
The key goes only into the capture proxy's environment; see agentcap_cli/harness/services.py.

A Claude subscription login (``claude_login``: ``CLAUDE_CODE_OAUTH_TOKEN``, else the claude CLI's
``~/.claude/.credentials.json``) is the Anthropic harnesses' credential when no ``ANTHROPIC_API_KEY``
is set; it too goes only to the proxy, which sends it the way Claude Code does (keyauth.py, ``oauth``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from agentcap_addons.wire.util.errors import InputError

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


# -- a Claude subscription login (what the claude CLI uses when no ANTHROPIC_API_KEY is set) ------------

CLAUDE_OAUTH_ENV = "CLAUDE_CODE_OAUTH_TOKEN"  # `claude setup-token`'s long-lived token


class CredentialsError(InputError):
    """A Claude login that cannot be used (malformed or expired); the message names the file and key."""


@dataclass(frozen=True)
class ClaudeLogin:
    """A Claude subscription OAuth access token and where it came from (the source is logged, never the token).
    The upstream receives it as ``Authorization: Bearer`` with ``anthropic-beta: oauth-2025-04-20``."""

    token: str
    source: str  # CLAUDE_OAUTH_ENV or the credentials file's path

    def __repr__(self) -> str:
        return f"ClaudeLogin(source={self.source!r})"


def claude_credentials_file(env: Mapping[str, str] = os.environ) -> Path:
    """Where the claude CLI keeps its login on Linux: ``$CLAUDE_CONFIG_DIR`` or ``~/.claude``, then
    ``.credentials.json`` (macOS keeps it in the Keychain instead: use CLAUDE_CODE_OAUTH_TOKEN there)."""
    config = env.get("CLAUDE_CONFIG_DIR") or str(Path(env.get("HOME") or Path.home()) / ".claude")
    return Path(config) / ".credentials.json"


def claude_login(env: Mapping[str, str] = os.environ, now: float | None = None) -> ClaudeLogin | None:
    """The host's Claude login: ``CLAUDE_CODE_OAUTH_TOKEN``, else ``claudeAiOauth.accessToken`` of the
    credentials file; None when there is neither. Not refreshed: an expired file token raises
    CredentialsError (running ``claude`` once refreshes it; agentcap never writes the claude CLI's file)."""
    token = env.get(CLAUDE_OAUTH_ENV, "").strip()
    if token:
        return ClaudeLogin(token, CLAUDE_OAUTH_ENV)
    path = claude_credentials_file(env)
    if not path.is_file():
        return None
    return ClaudeLogin(_file_token(path, time.time() if now is None else now), str(path))


def _file_token(path: Path, now: float) -> str:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CredentialsError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"{path}: cannot be read ({exc})") from None
    oauth = doc.get("claudeAiOauth") if isinstance(doc, dict) else None
    token = oauth.get("accessToken") if isinstance(oauth, dict) else None
    if not isinstance(token, str) or not token.strip():
        raise CredentialsError(f"{path}: claudeAiOauth.accessToken: missing (log in with `claude`, or set "
                               f"{CLAUDE_OAUTH_ENV} or ANTHROPIC_API_KEY)")
    expires = oauth.get("expiresAt") if isinstance(oauth, dict) else None
    if isinstance(expires, (int, float)) and not isinstance(expires, bool):
        at = expires / 1000 if expires > 1e11 else expires  # the claude CLI writes milliseconds
        if at <= now:
            when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            raise CredentialsError(f"{path}: claudeAiOauth.expiresAt: the login expired at {when} (expiresAt "
                                   f"{expires}); run `claude` once to refresh it, or set {CLAUDE_OAUTH_ENV} "
                                   "(`claude setup-token`) or ANTHROPIC_API_KEY")
    return token.strip()
