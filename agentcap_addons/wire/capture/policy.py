"""What gets captured and what of it may reach disk: LLM API paths, the API kind, header and
query allowlists. Allowlists, not denylists (DESIGN.md "Errors, safety, data"): a header nobody
thought of stays off disk."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

DEFAULT_PATHS: tuple[str, ...] = (
    "/chat/completions",
    "/completions",
    "/responses",
    "/messages",
)

API_OPENAI_CHAT = "openai-chat"
API_OPENAI_RESPONSES = "openai-responses"
API_ANTHROPIC = "anthropic-messages"
API_OTHER = "other"

# Headers that may be written to a capture. Entries ending in "*" are prefixes.
REQUEST_HEADERS: tuple[str, ...] = (
    "content-type",
    "content-encoding",
    "accept",
    "accept-encoding",
    "user-agent",
    "openai-beta",
    "anthropic-version",
    "anthropic-beta",
    "x-stainless-*",
    "x-title",
    "http-referer",
    "session_id",
    "originator",
    "version",
)
RESPONSE_HEADERS: tuple[str, ...] = (
    "content-type",
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "date",
    "server",
    "openai-model",
    "openai-processing-ms",
    "openai-version",
    "x-request-id",
    "request-id",
    "x-ratelimit-*",
    "anthropic-ratelimit-*",
    "retry-after",
    "x-inference-provider",
    "x-robots-tag",
)
# Never written, even when a user adds them to the allowlist.
FORBIDDEN_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "cookie",
        "set-cookie",
        "x-goog-api-key",
    }
)
QUERY_ALLOWLIST = frozenset({"api-version", "beta", "stream", "alt"})


# Calls that are not model calls but that agents make to the same base URL: model lists and token
# counts. In registry mode they are forwarded without any key (a per-turn key is not the upstream's,
# and the real key goes only with a captured call); everything else that is not captured is refused.
SIDE_ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("GET", "*/models"),
    ("GET", "*/models/*"),
    ("POST", "*/messages/count_tokens"),
    ("POST", "*/responses/input_tokens"),
)


def path_only(path: str) -> str:
    return path.split("?", 1)[0].split("#", 1)[0]


def normal_path(path: str) -> str:
    """The path as a server that is lenient about it may route it: query and fragment dropped,
    percent-escapes decoded, lower case, ``;params`` dropped, empty and ``.`` segments removed and
    ``..`` applied. ``/v1/CHAT//Completions/`` and ``/v1/x/../chat/%63ompletions`` are both
    ``/v1/chat/completions``: what is captured is decided on this, so no spelling of a model call
    slips past the capture (and its key)."""
    segments: list[str] = []
    for seg in unquote(path_only(path)).lower().split("/"):
        seg = seg.split(";", 1)[0]
        if seg in ("", "."):
            continue
        if seg == "..":
            if segments:
                segments.pop()
            continue
        segments.append(seg)
    return "/" + "/".join(segments)


def path_matches(path: str, patterns: Iterable[str]) -> bool:
    """True when ``path`` (normalised: :func:`normal_path`) ends with one of ``patterns``, or
    matches a glob one (both compared in lower case).

    Suffix matching lets ``/openai/v1/chat/completions`` and ``/api/v1/chat/completions`` count,
    while ``/v1/messages/count_tokens`` does not.
    """
    p = normal_path(path)
    for pat in patterns:
        pat = pat.lower()
        if any(ch in pat for ch in "*?["):
            if fnmatch.fnmatchcase(p, pat):
                return True
        elif p.endswith(pat.rstrip("/")):
            return True
    return False


def side_endpoint(method: str, path: str) -> bool:
    """A model list or a token count (:data:`SIDE_ENDPOINTS`)."""
    p = normal_path(path)
    return any(method.upper() == m and fnmatch.fnmatchcase(p, pat) for m, pat in SIDE_ENDPOINTS)


def api_kind(path: str) -> str:
    p = normal_path(path)
    if p.endswith("/chat/completions"):
        return API_OPENAI_CHAT
    if p.endswith("/responses"):
        return API_OPENAI_RESPONSES
    if p.endswith("/messages"):
        return API_ANTHROPIC
    return API_OTHER


# A header name with one of these words (between -, _ or the ends) is a credential, whatever an
# allowlist says: x-portkey-api-key, x-goog-api-key, x-amz-security-token, x-auth-token,
# cf-access-client-secret, … — while x-ratelimit-remaining-tokens or session_id are not.
_CREDENTIAL_WORDS = re.compile(
    r"(?:^|[-_])(?:key|apikey|token|auth|authorization|secret|password|passwd|cookie|credentials?|signature|bearer)(?:$|[-_])"
)


def looks_like_credential(name: str) -> bool:
    return name in FORBIDDEN_HEADERS or _CREDENTIAL_WORDS.search(name) is not None


class HeaderFilter:
    """A compiled allowlist (exact names plus ``prefix*`` entries). Names that look like a
    credential (:func:`looks_like_credential`) always lose, so ``agentcap_headers=x-*`` cannot keep
    ``x-portkey-api-key``."""

    def __init__(self, allow: Iterable[str]) -> None:
        allow = [a.lower() for a in allow]
        self.exact = frozenset(a for a in allow if not a.endswith("*") and not looks_like_credential(a))
        self.prefixes = tuple(a[:-1] for a in allow if a.endswith("*"))

    def allowed(self, name: str) -> bool:
        if name in self.exact:
            return True
        return bool(self.prefixes) and name.startswith(self.prefixes) and not looks_like_credential(name)

    def __call__(self, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        """Allowlisted headers as a dict with lower-case names; repeated headers joined with ", "."""
        out: dict[str, str] = {}
        for name, value in headers:
            n = name.lower()
            if self.allowed(n):
                out[n] = f"{out[n]}, {value}" if n in out else value
        return out


def filter_headers(headers: Iterable[tuple[str, str]], allow: Iterable[str]) -> dict[str, str]:
    return HeaderFilter(allow)(headers)


def redact_url(url: str) -> str:
    """The URL with userinfo dropped and every query value not on the allowlist replaced."""
    if "?" not in url and "@" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        pairs = [
            (k, v if k.lower() in QUERY_ALLOWLIST else "REDACTED")
            for k, v in parse_qsl(query, keep_blank_values=True)
        ]
        query = urlencode(pairs)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_path(path: str) -> str:
    """Like :func:`redact_url` for an origin-form request target (``/v1/x?key=…``)."""
    if "?" not in path:
        return path
    return redact_url("http://h" + path)[len("http://h") :]


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None
