"""API base URLs: ``https://host``, ``https://host/v1`` and ``https://host/v1/`` name the same API.

Users write an upstream either way: the Rust agentcap's README says ``https://router.huggingface.co``,
the OpenAI SDKs' habit is ``…/v1``. Every consumer — the capture proxy (an origin), the base URL
handed to agents, the follow-up synthesizer, the LLM judge, ``model serve --on-miss forward`` — goes
through these functions, so they all agree on where ``/v1/chat/completions``, ``/v1/responses`` and
``/v1/messages`` live: under the **API root**, the URL with any trailing ``/`` and final ``/v1`` removed.

A path in front of ``/v1`` is kept (``https://api.example.com/openai/v1`` → root ``…/openai``). An API
whose versioned path is not ``/v1`` (``…/v1beta/openai``) cannot be told apart from a root and is taken
as one.
"""

from __future__ import annotations

from urllib.parse import urlsplit

EXAMPLE = "https://router.huggingface.co or https://router.huggingface.co/v1"


def shown(url: str) -> str:
    """``url`` as an error message may print it: user name and password replaced by ``***`` (a
    refused ``https://user:KEY@host`` must not put the key on stderr, in a CI log)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "<an unparsable URL>"
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def split_origin(url: str) -> tuple[str, str]:
    """``https://host/v1/`` → (``https://host``, ``/v1``): the origin and the path without a trailing ``/``.

    Raises ValueError (saying what is wrong, for a ``--flag`` error) on anything but a plain
    http(s) URL: no query, fragment or credentials.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL with a host, e.g. {EXAMPLE}")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials (give the key on its own: --api-key, --upstream-key-env "
                         "or an environment variable)")
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")


def checked(url: str) -> str:
    """``url`` if it is an API base :func:`split_origin` accepts; else ValueError naming it as
    :func:`shown` prints it (``'https://***@host' must not carry credentials …``)."""
    try:
        split_origin(url)
    except ValueError as exc:
        raise ValueError(f"{shown(url)!r} {exc}") from None
    return url


def split_api_base(url: str) -> tuple[str, str]:
    """(origin, API root path): ``https://host/openai/v1/`` → (``https://host``, ``/openai``);
    ``https://host`` → (``https://host``, ``""``)."""
    origin, path = split_origin(url)
    return origin, path.removesuffix("/v1")


def api_root(url: str) -> str:
    """The API root of any spelling: ``https://host/v1/`` → ``https://host``."""
    origin, root = split_api_base(url)
    return origin + root


def api_url(base: str, path: str) -> str:
    """``base`` (any spelling) + an API path from its root: ``api_url("https://h", "/v1/chat/completions")``."""
    return api_root(base) + "/" + path.lstrip("/")


def agent_env(base_url: str, key: str | None) -> dict[str, str]:
    """What to export for an OpenAI- or Anthropic-style client to go through the proxy."""
    env = {"OPENAI_BASE_URL": base_url, "ANTHROPIC_BASE_URL": base_url.removesuffix("/v1")}
    if key:
        env["OPENAI_API_KEY"] = key
        env["ANTHROPIC_API_KEY"] = key
    return env


OAUTH_BETA = "oauth-2025-04-20"  # the beta the Anthropic API wants beside an OAuth bearer token


def oauth_headers(token: str, betas: str | None = None) -> dict[str, str]:
    """The headers a Claude subscription login goes upstream in, as Claude Code sends it:
    ``Authorization: Bearer`` and ``anthropic-beta`` = ``betas`` (the client's own, comma-separated)
    with ``oauth-2025-04-20`` added once."""
    given = [b.strip() for b in (betas or "").split(",") if b.strip()]
    return {"authorization": f"Bearer {token}",
            "anthropic-beta": ",".join(given if OAUTH_BETA in given else [*given, OAUTH_BETA])}
