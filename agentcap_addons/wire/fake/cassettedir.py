"""A project's cassettes on disk: one directory per recorded repeat, one JSON file per model call.

    cassettes/<scenario>/<cell>/<repeat>/cassette.json    what was recorded (agent, model, when, the judge's answer)
    cassettes/<scenario>/<cell>/<repeat>/001.json         the repeat's first call: {turn, request, response}
    cassettes/<scenario>/<cell>/<repeat>/judge/001.json   the claude-cli judge's calls, when it has any

Made to be committed and reviewed in a diff: indented JSON with keys in a fixed order; files named by
call order, so re-recording a cell that changed one call changes one file; nothing that differs on every
recording — request ids, seq, times, chunk timings, ports, volatile response headers — and the run's
own directory and id replaced by ``<run_dir>`` / ``<run_id>`` (they hold the user's paths and a
timestamp; ``<run_dir_dashed>``: the directory as claude-code names a project after it), and the body
paths the matcher ignores left out (``metadata.user_id`` …: ids that change on every run);
an SSE stream kept as its list of lines. What is left is what matching and serving need:
method, path, a few request headers (the agent's version shows in ``user-agent``), the request body,
and the response (status, content type, body or stream).

No mitmproxy import: the replay addon reads these, ``agentcap test`` writes them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

from agentcap_addons.wire.capture.policy import api_kind
from agentcap_addons.wire.capture.records import Capture
from agentcap_addons.wire.util.jsonio import read_json

CASSETTE_JSON = "cassette.json"
JUDGE_DIR = "judge"  # the claude-cli judge's calls, attributed to the cell "<cell>#judge"
JUDGE_SUFFIX = "#judge"
RUN_DIR, RUN_DIR_DASHED, RUN_ID = "<run_dir>", "<run_dir_dashed>", "<run_id>"
#: request headers worth a reviewer's eye (the rest are transport details or change every run)
KEPT_REQUEST_HEADERS = ("user-agent", "anthropic-version", "anthropic-beta", "openai-beta", "originator", "version")
#: response headers the replay serves back
KEPT_RESPONSE_HEADERS = ("content-type", "content-encoding")

Subs = tuple[tuple[str, str], ...]  # (literal, placeholder) pairs, applied in order


def run_subs(run_dir: str | os.PathLike[str] | None, run_id: str | None) -> Subs:
    """The run's own values → placeholders: its directory first (it holds the run id), the same as
    claude-code writes it into a project name (every other character a ``-``), then its id."""
    pairs = []
    if run_dir:
        pairs.append((str(run_dir), RUN_DIR))
        pairs.append((re.sub(r"[^A-Za-z0-9]", "-", str(run_dir)), RUN_DIR_DASHED))
    if run_id:
        pairs.append((str(run_id), RUN_ID))
    return tuple((lit, ph) for lit, ph in pairs if len(lit) >= 4)


# Recordings made before sandboxes had fixed paths name the agent's workspace and home by the host
# path (after substitution: ``<run_dir>/cells/<cell>/<repeat>/workspace`` and so on); an agent now
# sees ``/workspace`` and ``/home/agent`` (sandbox/agents/base.py). Those spellings are read as the
# fixed paths, so an old cassette still matches and serves paths the agent can use.
_LEGACY_PATHS = (
    (re.compile(rf"{RUN_DIR}/cells/[^/\s\"]+/\d+/workspace"), "/workspace"),
    (re.compile(rf"{RUN_DIR}/cells/[^/\s\"]+/\d+/home"), "/home/agent"),
    (re.compile(rf"{RUN_DIR}/workspaces/[^/\s\"]+"), "/workspace"),
    (re.compile(rf"{RUN_DIR}/state/[^/\s\"]+"), "/home/agent"),
    (re.compile(rf"{RUN_DIR_DASHED}-cells-[A-Za-z0-9-]+?-\d+-workspace"), "-workspace"),  # claude's project names
    (re.compile(rf"{RUN_DIR_DASHED}-workspaces-[A-Za-z0-9-]+"), "-workspace"),
)


def modernise(text: str) -> str:
    """``text`` with a recording's host-path spellings of the sandbox's paths as the fixed ones."""
    if "<run_dir" not in text:  # (the placeholders RUN_DIR and RUN_DIR_DASHED)
        return text
    for pattern, fixed in _LEGACY_PATHS:
        text = pattern.sub(fixed, text)
    return text


def substitute(text: str, subs: Subs) -> str:
    for literal, placeholder in subs:
        if literal in text:
            text = text.replace(literal, placeholder)
    return modernise(text)


def restore(text: str, subs: Subs) -> str:
    """The inverse of :func:`substitute`: placeholders back to this run's values (a recording's
    host-path spellings of the sandbox's paths first made the fixed ones)."""
    text = modernise(text)
    for literal, placeholder in subs:
        if placeholder in text:
            text = text.replace(placeholder, literal)
    return text


def substitute_all(value: Any, subs: Subs) -> Any:
    """``value`` with :func:`substitute` applied to every string in it (keys stay)."""
    if not subs:
        return value
    if isinstance(value, str):
        return substitute(value, subs)
    if isinstance(value, dict):
        return {k: substitute_all(v, subs) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_all(v, subs) for v in value]
    return value


# -- where -------------------------------------------------------------------------------------------

def cell_dirname(cell: str) -> str:
    """A cell id as one directory name: ``multi-agent[writer]`` stays, ``id@org/model`` → ``id@org%2Fmodel``."""
    return quote(cell, safe="[]@+=,._-")


def repeat_dir(root: Path, scenario: str, cell: str, repeat: int) -> Path:
    return Path(root) / cell_dirname(scenario) / cell_dirname(cell) / str(repeat)


def find_repeat(root: Path, cell: str, repeat: int) -> Path | None:
    """The cassette of (cell, repeat) under ``root`` (any scenario dir), or None. A judge cell
    (``<cell>#judge``) is its cell's ``judge/`` subdirectory."""
    judge = cell.endswith(JUDGE_SUFFIX)
    name = cell_dirname(cell.removesuffix(JUDGE_SUFFIX))
    for found in sorted(Path(root).glob(f"*/{_glob_escape(name)}/{int(repeat)}/{CASSETTE_JSON}")):
        d = found.parent
        if not judge:
            return d
        return d / JUDGE_DIR if (d / JUDGE_DIR).is_dir() else None
    return None


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "[]*?" else c for c in name)


def is_cassette(path: str | os.PathLike[str]) -> bool:
    """A recorded repeat (or its judge/ subdirectory)."""
    p = Path(path)
    return (p / CASSETTE_JSON).is_file() or (p.name == JUDGE_DIR and (p.parent / CASSETTE_JSON).is_file())


# -- write -------------------------------------------------------------------------------------------

def without(body: Any, drop: tuple[str, ...]) -> Any:
    """``body`` without the dotted paths in ``drop`` (the matcher ignores them: ids that change every run)."""
    if not drop or not isinstance(body, dict):
        return body
    out = dict(body)
    for path in drop:
        head, _, rest = path.partition(".")
        if head in out:
            if rest:
                out[head] = without(out[head], (rest,))
            else:
                del out[head]
    return out


def compact_call(cap: Capture, subs: Subs = (), drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """One capture as a cassette file: the fields matching and serving need, the run's values replaced,
    the body paths in ``drop`` left out."""
    req, resp = cap.request, cap.response or {}
    headers = req.get("headers") or {}
    request: dict[str, Any] = {"method": req.get("method", "POST"), "path": req.get("path", "")}
    kept = {k: substitute(v, subs) for k, v in headers.items() if k in KEPT_REQUEST_HEADERS}
    if kept:
        request["headers"] = kept
    if "body_b64" in req:
        request["body_b64"] = req["body_b64"]
    else:
        request["body"] = substitute_all(without(req.get("body"), drop), subs)
    response: dict[str, Any] = {"status": resp.get("status_code")}
    rh = {k: v for k, v in (resp.get("headers") or {}).items() if k in KEPT_RESPONSE_HEADERS}
    if rh:
        response["headers"] = rh
    if "raw" in resp:
        response["sse"] = substitute(resp["raw"], subs).split("\n")
    elif "raw_b64" in resp:
        response["raw_b64"] = resp["raw_b64"]
    elif "body_b64" in resp:
        response["body_b64"] = resp["body_b64"]
    else:
        response["body"] = substitute_all(resp.get("body"), subs)
    if resp.get("error"):
        response["error"] = resp["error"]
    return {"turn": req.get("turn"), "request": request, "response": response}


def dumps(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def render(meta: dict[str, Any], calls: list[Capture], subs: Subs = (),
           judge_calls: list[Capture] | None = None, drop: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The files of one cassette (relative name → bytes), calls in the order given (their seq)."""
    width = max(3, len(str(max(len(calls), len(judge_calls or ())))))
    files = {CASSETTE_JSON: dumps({"schema": 1, **meta})}
    for i, cap in enumerate(calls, start=1):
        files[f"{i:0{width}d}.json"] = dumps(compact_call(cap, subs, drop))
    for i, cap in enumerate(judge_calls or (), start=1):
        files[f"{JUDGE_DIR}/{i:0{width}d}.json"] = dumps(compact_call(cap, subs, drop))
    return files


def write(directory: Path, files: dict[str, bytes]) -> None:
    """Replace the cassette at ``directory`` with ``files`` as a whole: a reader (or a crash) sees the
    old one or the new one, never a mix."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.{os.getpid()}.new"
    old = directory.parent / f".{directory.name}.{os.getpid()}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    for name, data in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


# -- read --------------------------------------------------------------------------------------------

def read_meta(directory: Path) -> dict[str, Any]:
    return read_json(Path(directory) / CASSETTE_JSON)


def call_files(directory: Path) -> list[Path]:
    return sorted((p for p in Path(directory).glob("*.json") if p.name != CASSETTE_JSON and p.stem.isdigit()),
                  key=lambda p: int(p.stem))


def load(directory: str | os.PathLike[str]) -> list[Capture]:
    """The calls of a cassette (or of its judge/ subdirectory) as captures, in recorded order; the
    placeholders stay (the matcher puts the same ones into what it compares them with)."""
    out = []
    for path in call_files(Path(directory)):
        out.append(to_capture(path.stem, read_json(path)))
    return out


def to_capture(name: str, doc: dict[str, Any]) -> Capture:
    req, resp = doc.get("request") or {}, doc.get("response") or {}
    path = req.get("path", "")
    request: dict[str, Any] = {"request_id": name, "seq": int(name), "method": req.get("method", "POST"),
                               "path": path, "api": api_kind(path), "turn": doc.get("turn"),
                               "headers": req.get("headers") or {}}
    if "body_b64" in req:
        request["body_b64"] = req["body_b64"]
    else:
        request["body"] = req.get("body")
    response: dict[str, Any] = {"request_id": name, "status_code": resp.get("status"),
                                "headers": resp.get("headers") or {}, "error": resp.get("error")}
    if "sse" in resp:
        response.update(stream=True, raw="\n".join(resp["sse"]))
    elif "raw_b64" in resp:
        response.update(stream=True, raw_b64=resp["raw_b64"])
    elif "body_b64" in resp:
        response.update(stream=False, body_b64=resp["body_b64"])
    else:
        response.update(stream=False, body=resp.get("body"))
    return Capture(request, response)

