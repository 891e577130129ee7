"""Before any container starts: does ``--upstream`` speak the model API at all?

An open port is not a model server (a web UI, another service, a proxy with no route): today's
:func:`check_reachable` would pass it and every task would then fail in turn. :func:`probe` asks, in
seconds:

1. ``GET <root>/v1/models`` — a JSON ``{"data": [...]}`` (OpenAI's and Anthropic's list) is enough;
2. else one ``POST <root>/v1/chat/completions`` with ``max_tokens: 1`` — a JSON chat completion, or a
   JSON error an API sends (a bad key, a rate limit, an overloaded server: the turns will say so),
   passes; a 404 / 405, HTML, or anything that is not HTTP does not (then the first bytes the port
   sends, read off a plain socket, are the clue: ``b'SSH-2.0-…'``).

The failure names what each request got — status, content type, the first bytes — as an error message
may print it: the URL through :func:`shown`, the key masked wherever the answer echoes it.
"""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx

from agentcap_addons.wire.api.apibase import api_url, shown, split_api_base
from agentcap_cli.harness.services import UpstreamUnreachable, check_reachable
from agentcap_cli.runs.verdict import message_of

TIMEOUT_S = 10.0
FIRST_BYTES = 120
NO_ROUTE = (404, 405)  # the path is not there: not this API


class NotAModelServer(UpstreamUnreachable):
    """Something answers at the upstream's address, but not the model API; the message says what."""


def probe(upstream: str, api_key: str | None, model: str, timeout: float = TIMEOUT_S) -> None:
    """Return when ``upstream`` speaks the API; raise :class:`UpstreamUnreachable` (nothing listens) or
    :class:`NotAModelServer` (what it answered instead) within about ``2 × timeout`` seconds."""
    check_reachable(split_api_base(upstream)[0], timeout=timeout)
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(timeout=timeout, headers=headers) as client:
        models = _ask(client, "GET", api_url(upstream, "/v1/models"), None)
        if isinstance(models, httpx.Response) and _is_list(models):
            return
        if isinstance(models, httpx.TimeoutException):  # it accepts and says nothing: no second wait
            raise NotAModelServer(f"does not speak the model API: {_got('GET', api_url(upstream, '/v1/models'), models, api_key)}")
        if isinstance(models, httpx.RemoteProtocolError):  # not HTTP: what it does say is the clue
            raise NotAModelServer(f"does not speak HTTP: {_got('GET', api_url(upstream, '/v1/models'), models, api_key)}; "
                                  f"the port sends {_first_bytes(upstream, timeout)}")
        body = {"model": model, "max_tokens": 1, "stream": False, "messages": [{"role": "user", "content": "ping"}]}
        chat = _ask(client, "POST", api_url(upstream, "/v1/chat/completions"), body)
        if isinstance(chat, httpx.Response) and _speaks(chat):
            return
    raise NotAModelServer("does not speak the model API: " + "; ".join([
        _got("GET", api_url(upstream, "/v1/models"), models, api_key),
        _got("POST", api_url(upstream, "/v1/chat/completions"), chat, api_key)]))


def _ask(client: httpx.Client, method: str, url: str, body: Any) -> httpx.Response | httpx.HTTPError:
    try:
        return client.request(method, url, json=body)
    except httpx.HTTPError as exc:  # not HTTP at all, a reset, a timeout
        return exc


def _first_bytes(upstream: str, timeout: float) -> str:
    """What the port sends after a plain HTTP request line, read off the socket (httpx keeps no bytes
    of an answer that is not HTTP)."""
    parts = urlsplit(split_api_base(upstream)[0])
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.1\r\nhost: probe\r\nconnection: close\r\n\r\n")
            head = s.recv(FIRST_BYTES)
    except OSError as exc:
        return f"nothing readable ({exc.strerror or exc})"
    return repr(head) if head else "nothing before closing"


def _json(r: httpx.Response) -> Any:
    if "json" not in r.headers.get("content-type", ""):
        return None
    try:
        return json.loads(r.content)
    except ValueError:
        return None


def _is_list(r: httpx.Response) -> bool:
    data = _json(r)
    return r.status_code == 200 and isinstance(data, dict) and isinstance(data.get("data"), list)


def _speaks(r: httpx.Response) -> bool:
    data = _json(r)
    if not isinstance(data, dict) or r.status_code in NO_ROUTE:
        return False
    if r.is_success:
        return isinstance(data.get("choices"), list)
    return bool(message_of(data))  # an API's own error: {"error": {"message": …}} and its kin


def _got(method: str, url: str, got: httpx.Response | httpx.HTTPError, api_key: str | None) -> str:
    """``GET URL → 200 text/html: b'<html>…'`` or ``POST URL → RemoteProtocolError: …``, key masked."""
    if isinstance(got, httpx.Response):
        kind = got.headers.get("content-type") or "no content-type"
        head = got.content[:FIRST_BYTES]
        what = f"{got.status_code} {kind}: {head!r}{'…' if len(got.content) > FIRST_BYTES else ''}"
    else:
        what = f"{type(got).__name__}: {str(got)[:FIRST_BYTES * 2] or 'no answer'}"
    if api_key:
        what = what.replace(api_key, "***")
    return f"{method} {shown(url)} → {what}"
