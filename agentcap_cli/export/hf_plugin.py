"""detect-secrets detectors for the tokens agent traffic carries that detect-secrets has no plugin for
(loaded by path from agentcap_cli/export/scan.py)."""

import re

from detect_secrets.plugins.base import RegexBasedDetector


class HuggingFaceTokenDetector(RegexBasedDetector):
    """Hugging Face user / org access tokens."""

    secret_type = "Hugging Face Token"
    denylist = [re.compile(r"\b(hf_[A-Za-z0-9]{30,40})\b"), re.compile(r"\b(api_org_[A-Za-z0-9]{30,40})\b")]


class AnthropicKeyDetector(RegexBasedDetector):
    """Anthropic API keys."""

    secret_type = "Anthropic API Key"
    denylist = [re.compile(r"\b(sk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{80,120})")]
