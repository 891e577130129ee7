"""The publish gate over a generated matrix: credential kinds × encodings × positions.

Every cell plants a fresh token of its kind, encoded its way, in its place. The oracle is what
leaves — the staged files an export would upload, and what the local Hub stand-in received — read
by an independent decoder (:mod:`tests.support.oracle`) that tries every reading it knows. The rule:
every cell is blocked, or no planted token can be recovered from what was published; with
``--redact``, the cells agentcap can mask are published masked (the push goes through) and the rest
block. The oracle is checked first on the run itself: it recovers every planted token there, so a
cell that "passes" cannot pass because the oracle could not read its encoding.

Tokens are built at run time from a seeded generator: no token-shaped string sits in this file.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import html
import io
import json
import lzma
import quopri
import random
import shutil
import sqlite3
import string
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from agentcap_addons.wire.capture.records import Capture
from agentcap_addons.wire.fake import cassettedir
from agentcap_cli.export.detectors import find, fingerprint
from agentcap_cli.export.exporter import Target, run_info, stage
from agentcap_cli.export.layers import Budget
from agentcap_cli.export.scan import Gate, examine
from agentcap_cli.suite import cassettes
from tests.support import cli
from tests.support.oracle import recover

try:
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd  # type: ignore[no-redef]

RNG = random.Random(24)
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "_-"


def chars(n: int, alphabet: str = ALNUM) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


# -- kinds: each makes a fresh credential (the text planted) -------------------------------------

KINDS: dict[str, Callable[[], str]] = {
    "GitHub token": lambda: "ghp_" + chars(36),
    "Anthropic API key": lambda: "sk-ant-api03-" + chars(93, URLSAFE) + "AA",
    "AWS access key id": lambda: "AKIA" + chars(16, string.ascii_uppercase + string.digits),
    "AWS secret access key": lambda: '{"AccessKeyId": "x", "SecretAccessKey": "' + chars(40, ALNUM + "/+") + '"}',
    "Slack token": lambda: "xoxb-" + chars(11, string.digits) + "-" + chars(12, string.digits) + "-" + chars(24),
    "HuggingFace token": lambda: "hf_" + chars(34, string.ascii_letters),
    "URL with a password": lambda: "DATABASE_URL=postgres://app:" + chars(24) + "@db.internal:5432/app",
    "JSON web token": lambda: "eyJ" + chars(30, URLSAFE) + ".eyJ" + chars(40, URLSAFE) + "." + chars(43, URLSAFE),
}


def secret_in(text: str) -> str:
    """The part of a planted credential a finding fingerprints (the value, for a keyword rule)."""
    [hit] = find(text)
    return hit.secret


def env_file(credential: str) -> str:
    return f"# .env\nDEBUG=1\n{credential}\nPORT=8000\n"


# -- encodings: the text as the traffic carries it -----------------------------------------------

def _zip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("project/.env", data)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


ENCODINGS: dict[str, Callable[[str], str]] = {
    "plain": lambda t: t,
    "url": lambda t: "https://example.test/cb?state=x&env=" + quote(t, safe=""),
    "double url": lambda t: "next=" + quote(quote(t, safe=""), safe=""),
    "base64": lambda t: b64(t.encode()),
    "base64url": lambda t: base64.urlsafe_b64encode(t.encode()).decode().rstrip("="),
    "mime base64": lambda t: base64.encodebytes(t.encode() * 4).decode(),
    "data URL": lambda t: "data:text/plain;base64," + b64(t.encode()),
    "JSON in JSON": lambda t: json.dumps({"file": ".env", "content": t}),
    "\\u escapes": lambda t: "".join(f"\\u{ord(c):04x}" for c in t),
    "HTML entities": lambda t: "".join(f"&#x{ord(c):x};" if c.isalnum() else html.escape(c) for c in t),
    "quoted-printable": lambda t: quopri.encodestring(t.encode(), quotetabs=True).decode(),
    "hex": lambda t: t.encode().hex(),
    "full-width": lambda t: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in t),
    "zero-width": lambda t: "\u200b".join(t),
    "gzip": lambda t: b64(gzip.compress(t.encode())),
    "gzip in gzip": lambda t: b64(gzip.compress(gzip.compress(t.encode()))),
    "zstd": lambda t: b64(zstd.compress(t.encode())),
    "xz": lambda t: b64(lzma.compress(t.encode())),
    "bz2": lambda t: b64(bz2.compress(t.encode())),
    "zip": lambda t: b64(_zip(t.encode())),
}
#: the JSON the capture file is written with: every character of the planted text a ``\uXXXX``
#: escape (a client or server that escapes everything), on top of the encodings above
WIRE_ESCAPED = "\\u on the wire"


def escape(text: str, wire: bool) -> str:
    """``text`` as the inside of a JSON string."""
    return "".join(f"\\u{ord(c):04x}" for c in text) if wire else json.dumps(text)[1:-1]


@dataclass
class Cell:
    kind: str
    encoding: str
    position: str
    credential: str  # as planted, before encoding
    file: str = ""  # the published file it lives in (relative to the run dir)

    @property
    def secret(self) -> str:
        return secret_in(self.credential)

    @property
    def text(self) -> str:
        enc = ENCODINGS.get(self.encoding, ENCODINGS["plain"])
        return enc(env_file(self.credential))

    @property
    def wire(self) -> bool:
        return self.encoding == WIRE_ESCAPED

    def __str__(self) -> str:
        return f"{self.kind} × {self.encoding} × {self.position}"


# -- positions ------------------------------------------------------------------------------------

PH = "@@PLANT@@"


def rid(n: int) -> str:
    return f"{n:032x}"


def dumps(doc: object, plant: list[str], wire: bool) -> str:
    """``doc`` as JSON with each ``PH`` string replaced, in order, by a planted text."""
    out = json.dumps(doc)
    for text in plant:
        out = out.replace(f'"{PH}"', '"' + escape(text, wire) + '"', 1)
    assert PH not in out
    return out


def write_capture(run_dir: Path, n: int, request: dict, response: dict, plant: list[str] = (),
                  plant_response: list[str] = (), wire: bool = False) -> str:
    cap = run_dir / "captures"
    cap.mkdir(parents=True, exist_ok=True)
    base = {"schema": 1, "request_id": rid(n)}
    req = {**base, "seq": n, "captured_at": f"2026-11-22T00:{n // 60 % 60:02d}:{n % 60:02d}.000000000Z",
           "method": "POST", "path": "/v1/chat/completions", "upstream_url": "http://127.0.0.1:9/v1/chat/completions",
           "api": "openai-chat", "run_id": run_dir.name, "task_id": "t0001", "turn": 1, "cell": None, "repeat": None,
           "headers": {"content-type": "application/json"}, **request}
    resp = {**base, "status_code": 200, "headers": {"content-type": "application/json"}, "stream": False,
            "chunks": [], "timings": {"sent": 0.0, "first_byte": 1.0, "done": 2.0}, "served_model": "m", "error": None,
            **response}
    (cap / f"{rid(n)}.request.json").write_text(dumps(req, list(plant), wire))
    (cap / f"{rid(n)}.response.json").write_text(dumps(resp, list(plant_response), wire))
    return rid(n)


def chat(*messages: dict) -> dict:
    return {"body": {"model": "m", "messages": list(messages)}}


def answer(content: str = "done") -> dict:
    return {"body": {"id": "c1", "object": "chat.completion", "model": "m",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                  "finish_reason": "stop"}]}}


def sse(events: list[dict], pieces: list[str], wire: bool, done: bool = True) -> str:
    """SSE text of ``events`` (each may hold ``PH``; filled from ``pieces`` in order)."""
    out, k = [], 0
    for e in events:
        line = json.dumps(e)
        while f'"{PH}"' in line:
            line = line.replace(f'"{PH}"', '"' + escape(pieces[k], wire) + '"', 1)
            k += 1
        out.append(f"data: {line}\n\n")
    return "".join(out) + ("data: [DONE]\n\n" if done else "")


def split(text: str, n: int = 3) -> list[str]:
    return [text[i:i + n] for i in range(0, len(text), n)]


def chunk(choices: list[dict]) -> dict:
    return {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": choices}


def stream_response(raw: str, **more: object) -> dict:
    return {"stream": True, "headers": {"content-type": "text/event-stream"}, "raw": raw, **more}


# each: (run_dir, n, cell) → plants the cell in capture n; returns the file it is in
def p_request(run_dir: Path, n: int, c: Cell) -> str:
    return write_capture(run_dir, n, chat({"role": "user", "content": PH}), answer(), [c.text], wire=c.wire)


def p_tool_arguments(run_dir: Path, n: int, c: Cell) -> str:
    args = json.dumps({"command": "cat > .env", "stdin": c.text})  # JSON in a JSON string, as agents send it
    body = chat({"role": "user", "content": "save it"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": PH}}]})
    return write_capture(run_dir, n, body, answer(), [args], wire=c.wire)


def p_tool_result(run_dir: Path, n: int, c: Cell) -> str:
    body = chat({"role": "user", "content": "show .env"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": '{"command": "cat .env"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": PH})
    return write_capture(run_dir, n, body, answer(), [c.text], wire=c.wire)


def p_content_block(run_dir: Path, n: int, c: Cell) -> str:
    body = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": PH}]}]}]}
    return write_capture(run_dir, n, {"api": "anthropic-messages", "path": "/v1/messages", "body": body},
                         answer(), [c.text], wire=c.wire)


def p_header(run_dir: Path, n: int, c: Cell) -> str:
    return write_capture(run_dir, n, {**chat({"role": "user", "content": "hi"}),
                                      "headers": {"content-type": "application/json", "x-debug-context": PH}},
                         answer(), [c.text], wire=c.wire)


def p_response(run_dir: Path, n: int, c: Cell) -> str:
    return write_capture(run_dir, n, chat({"role": "user", "content": "hi"}), answer(PH), plant_response=[c.text],
                         wire=c.wire)


def _chat_stream(pieces: list[str], wire: bool, done: bool = True) -> str:
    events = [chunk([{"index": 0, "delta": {"content": PH}}]) for _ in pieces]
    if done:
        events.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    return sse(events, pieces, wire, done)


def p_stream(run_dir: Path, n: int, c: Cell) -> str:
    raw = _chat_stream(split(c.text), c.wire)
    return write_capture(run_dir, n, chat({"role": "user", "content": "hi"}), stream_response(raw))


def p_stream_failed(run_dir: Path, n: int, c: Cell) -> str:
    """A call that failed half-way: what the client received before the upstream hung up."""
    raw = _chat_stream(split(c.text), c.wire, done=False)
    return write_capture(run_dir, n, chat({"role": "user", "content": "hi"}),
                         stream_response(raw, error="upstream closed the connection mid-stream"))


def p_stream_interleaved(run_dir: Path, n: int, c: Cell) -> str:
    """``n = 2``: two choices' deltas alternate, the credential spelled out in the second."""
    pieces = split(c.text)
    events, fill = [], []
    for piece in pieces:
        events += [chunk([{"index": 0, "delta": {"content": PH}}]), chunk([{"index": 1, "delta": {"content": PH}}])]
        fill += ["ab ", piece]
    raw = sse(events, fill, c.wire)
    return write_capture(run_dir, n, {**chat({"role": "user", "content": "hi"}), "body": {
        "model": "m", "n": 2, "stream": True, "messages": [{"role": "user", "content": "hi"}]}}, stream_response(raw))


def p_anthropic_stream(run_dir: Path, n: int, c: Cell) -> str:
    pieces = split(c.text, 4)
    events = [{"type": "message_start", "message": {"id": "m1", "model": "m", "content": []}},
              {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}]
    events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": PH}} for _ in pieces]
    events.append({"type": "message_stop"})
    raw = sse(events, pieces, c.wire, done=False)
    return write_capture(run_dir, n, {"api": "anthropic-messages", "path": "/v1/messages",
                                      "body": {"model": "m", "max_tokens": 10, "stream": True, "messages": []}},
                         stream_response(raw))


def p_request_body_zstd(run_dir: Path, n: int, c: Cell) -> str:
    """A request body the capture kept as bytes: not JSON, zstd-compressed (``content-encoding: zstd``)."""
    return write_capture(run_dir, n, {"headers": {"content-type": "text/plain", "content-encoding": "zstd"},
                                      "body_b64": b64(zstd.compress(c.text.encode()))}, answer())


def p_response_body_stacked(run_dir: Path, n: int, c: Cell) -> str:
    """A response body under stacked encodings (``content-encoding: gzip, zstd``: gzip first)."""
    body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": c.text}}]}).encode()
    return write_capture(run_dir, n, chat({"role": "user", "content": "hi"}), {
        "headers": {"content-type": "application/json", "content-encoding": "gzip, zstd"},
        "body_b64": b64(zstd.compress(gzip.compress(body)))})


CAPTURE_POSITIONS: dict[str, Callable[[Path, int, Cell], str]] = {
    "request message": p_request, "tool arguments": p_tool_arguments, "tool result": p_tool_result,
    "content block": p_content_block, "request header": p_header, "response body": p_response,
    "streamed text": p_stream, "streamed text of a failed call": p_stream_failed,
    "interleaved choices": p_stream_interleaved, "anthropic stream": p_anthropic_stream,
    "request body in zstd": p_request_body_zstd, "response body in gzip, zstd": p_response_body_stacked,
}
TEXT_ENCODINGS = [*ENCODINGS, WIRE_ESCAPED]


def _cells(positions: list[str], encodings: list[str]) -> list[Cell]:
    return [Cell(kind, enc, pos, KINDS[kind]()) for pos in positions for enc in encodings for kind in KINDS]


def run_record(run_dir: Path, prompts: list[str], label: str = "exp", wire: bool = False) -> None:
    rec = {"schema": 1, "run_id": run_dir.name, "kind": "corpus", "agent": "pi", "model": "m", "provider": "scripted",
           "upstream": "embedded:scripted", "label": PH, "status": "done", "started_at": "2026-11-22T00:00:00Z",
           "tasks": [{"task_id": f"t{i + 1:04d}", "prompt": PH, "completed_turns": 1, "turns": []}
                     for i in range(len(prompts))] or [{"task_id": "t0001", "prompt": "hi", "completed_turns": 1}]}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(dumps(rec, [label, *prompts], wire))


def build_maskable(ws: Path) -> tuple[Path, list[Cell]]:
    """One run with every cell --redact can mask: captures, run.json, a text trace."""
    run_dir = ws / ".agentcap" / "matrix"
    cells = _cells(list(CAPTURE_POSITIONS), TEXT_ENCODINGS)
    for n, c in enumerate(cells, start=1):
        kind = "response" if c.position.startswith(("response", "streamed", "interleaved", "anthropic stream")) \
            else "request"
        c.file = f"captures/{CAPTURE_POSITIONS[c.position](run_dir, n, c)}.{kind}.json"
    prompts = _cells(["run.json"], list(ENCODINGS))
    for c in prompts:
        c.file = "run.json"
    run_record(run_dir, [c.text for c in prompts])
    traces = _cells(["trace file"], TEXT_ENCODINGS)
    for i, c in enumerate(traces):
        c.file = f"traces/t0001/.pi/{i:04d}.jsonl"
        (run_dir / c.file).parent.mkdir(parents=True, exist_ok=True)
        lines = [{"type": "session", "id": f"s{i}"}, {"type": "tool_result", "message": {"content": PH}}]
        (run_dir / c.file).write_text("".join(dumps(d, [c.text] if PH in json.dumps(d) else [], c.wire) + "\n"
                                              for d in lines))
    return run_dir, cells + prompts + traces


def _archive(kind: str, name: str, data: bytes) -> tuple[str, bytes]:
    if kind == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(name, data)
        return name + ".zip", buf.getvalue()
    ext, fn = {"gzip": (".gz", gzip.compress), "zstd": (".zst", zstd.compress), "xz": (".xz", lzma.compress),
               "bz2": (".bz2", bz2.compress), "gzip in gzip": (".gz.gz", lambda d: gzip.compress(gzip.compress(d)))}[kind]
    return name + ext, fn(data)


ARCHIVES = ["gzip", "gzip in gzip", "zstd", "xz", "bz2", "zip"]


def build_sealed(ws: Path) -> tuple[Path, list[Cell]]:
    """One run with the cells published byte for byte, which --redact cannot always mask: trace
    files in archives and compression, SQLite cells, SQLite cells only in an un-checkpointed WAL."""
    run_dir = ws / ".agentcap" / "sealed"
    run_record(run_dir, [])
    (run_dir / "captures").mkdir(parents=True)
    write_capture(run_dir, 1, chat({"role": "user", "content": "hi"}), answer())
    cells: list[Cell] = []
    for archive in ARCHIVES:
        for i, c in enumerate(_cells([f"trace in {archive}"], list(ENCODINGS))):
            name, data = _archive(archive, f"{i:04d}.jsonl", json.dumps({"content": c.text}).encode() + b"\n")
            c.file = f"traces/t0001/{archive.replace(' ', '-')}/{name}"
            (run_dir / c.file).parent.mkdir(parents=True, exist_ok=True)
            (run_dir / c.file).write_bytes(data)
            cells.append(c)
    db_cells = _cells(["SQLite cell"], list(ENCODINGS))
    db = run_dir / "traces" / "t0001" / "state.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, content TEXT)")
    for c in db_cells:
        c.file = "traces/t0001/state.db"
        con.execute("INSERT INTO messages (content) VALUES (?)", ("x" * RNG.randrange(3000, 6000) + "\n" + c.text,))
    con.commit()
    con.close()
    wal_cells = _cells(["SQLite WAL"], list(ENCODINGS))
    live = ws / "live.db"  # written through WAL and copied while open: the rows are only in the -wal file
    con = sqlite3.connect(live)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, content TEXT)")
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA wal_autocheckpoint=0")
    for c in wal_cells:
        c.file = "traces/t0001/wal.db"
        con.execute("INSERT INTO messages (content) VALUES (?)", ("y" * RNG.randrange(3000, 6000) + "\n" + c.text,))
    con.commit()
    shutil.copy(live, run_dir / "traces" / "t0001" / "wal.db")
    shutil.copy(str(live) + "-wal", run_dir / "traces" / "t0001" / "wal.db-wal")
    con.close()
    assert all(c.secret.encode() not in (run_dir / "traces" / "t0001" / "wal.db").read_bytes() for c in wal_cells)
    return run_dir, cells + db_cells + wal_cells


def run_files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def staged_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def check(cells: list[Cell], findings: list, published: dict[str, bytes], redact: bool) -> None:
    """Every cell blocked, or its token not recoverable from what is published."""
    blocking = {f.fingerprint for f in findings if f.state == "blocking"}
    reported = {f.fingerprint: f for f in findings}
    leaked = recover(published, {c.secret for c in cells})
    bad = []
    for c in cells:
        fp = fingerprint(c.secret)
        if not redact and fp not in blocking:
            bad.append(f"{c}: not blocked ({reported.get(fp)})")
        if c.secret in leaked and fp not in blocking:
            bad.append(f"{c}: published, recoverable ({reported.get(fp)})")
    assert not bad, f"{len(bad)} of {len(cells)} cells:\n" + "\n".join(bad[:40])


def agentcap(ws: Path, *args: str, **env: str):
    return cli.agentcap(*args, workspace=ws, **env)


@pytest.mark.parametrize("build", [build_maskable, build_sealed], ids=["maskable", "sealed"])
def test_the_oracle_reads_every_cell_in_the_run_itself(tmp_path, build):
    run_dir, cells = build(tmp_path / "ws")
    got = recover(run_files(run_dir), {c.secret for c in cells})
    missing = [str(c) for c in cells if c.secret not in got]
    assert not missing, missing[:20]


@pytest.mark.parametrize("redact", [False, True], ids=["scan", "redact"])
@pytest.mark.parametrize("build", [build_maskable, build_sealed], ids=["maskable", "sealed"])
def test_every_cell_is_blocked_or_not_recoverable_from_what_export_stages(tmp_path, build, redact):
    run_dir, cells = build(tmp_path / "ws")
    target = Target(run_dir, run_info(run_dir))
    out = tmp_path / "staged"
    stage([target], out, gate=Gate(redact=redact))
    check(cells, target.report.findings, staged_files(out), redact)
    if redact and build is build_maskable:  # these --redact masks: none of them blocks
        blocking = [str(f) for f in target.report.findings if f.state == "blocking"]
        assert not blocking, blocking[:20]


def test_redact_push_publishes_the_maskable_cells_masked(tmp_path, hub):
    ws = tmp_path / "ws"
    run_dir, cells = build_maskable(ws)
    r = agentcap(ws, "export", "matrix", "--push", "me/m", "--redact", **hub.env)
    assert r.returncode == 0, r.stderr[-3000:]
    received = {f"{repo}/{name}": data for repo, rec in hub.repos.items() for name, data in rec.files.items()}
    assert any(name.endswith(".parquet") for name in received) and any("traces" in name for name in received)
    leaked = recover(received, {c.secret for c in cells})
    assert not leaked, [str(c) for c in cells if c.secret in leaked][:20]
    masked = [c.secret[:4] + "*" * 8 for c in cells if c.encoding == "plain" and c.position == "request message"]
    assert recover(received, masked) == set(masked)  # a plain one keeps its first four characters


def test_a_push_with_a_sealed_cell_sends_nothing(tmp_path, hub):
    ws = tmp_path / "ws"
    build_sealed(ws)
    for flags in ((), ("--redact",)):
        r = agentcap(ws, "export", "sealed", "--push", "me/s", *flags, **hub.env)
        assert r.returncode == 1 and "push blocked" in r.stderr, r.stderr[-2000:]
        assert hub.requests == []


def test_a_plain_push_is_blocked_and_sends_nothing(tmp_path, hub):
    ws = tmp_path / "ws"
    build_maskable(ws)
    r = agentcap(ws, "export", "matrix", "--push", "me/m", **hub.env)
    assert r.returncode == 1 and "push blocked" in r.stderr
    assert hub.requests == []


# -- cards: a run's label is shown on the card ----------------------------------------------------

def test_a_secret_in_a_label_blocks_or_is_masked_on_the_card(tmp_path, hub):
    ws = tmp_path / "ws"
    cells = [Cell(kind, enc, "card label", KINDS[kind]()) for enc, kind in zip(ENCODINGS, [*KINDS] * 4)]
    names = []
    for n, c in enumerate(cells):
        run_dir = ws / ".agentcap" / f"card{n:02d}"
        run_record(run_dir, [], label=c.text)
        write_capture(run_dir, 1, chat({"role": "user", "content": "hi"}), answer())
        names.append(run_dir.name)
    r = agentcap(ws, "export", *names, "--push", "me/c", **hub.env)
    assert r.returncode == 1 and hub.requests == []
    for c in cells:
        assert fingerprint(c.secret)[:16] in r.stderr, c
    r = agentcap(ws, "export", *names, "--push", "me/c", "--redact", **hub.env)
    assert r.returncode == 0, r.stderr[-2000:]
    received = {f"{repo}/{name}": data for repo, rec in hub.repos.items() for name, data in rec.files.items()}
    assert any(name.endswith("README.md") for name in received)
    assert not recover(received, {c.secret for c in cells})


# -- cassettes: committed to git, through the same gate --------------------------------------------

def test_every_cell_in_a_cassette_is_refused(tmp_path):
    cells = _cells(["cassette"], TEXT_ENCODINGS)
    run_dir = tmp_path / "rec"
    missed = []
    positions = [p for p in CAPTURE_POSITIONS if p != "request header"]  # a cassette keeps a few named headers
    for n, c in enumerate(cells, start=1):
        position = positions[n % len(positions)]
        CAPTURE_POSITIONS[position](run_dir, n, c)
        req = json.loads((run_dir / "captures" / f"{rid(n)}.request.json").read_text())
        resp = json.loads((run_dir / "captures" / f"{rid(n)}.response.json").read_text())
        files = cassettedir.render({"agent": "pi", "model": "m"}, [Capture(req, resp)])
        assert recover(files, [c.secret]), f"{c} in {position}: the cassette does not hold it"
        if not cassettes.scan(files, f"cassettes/s/{n}", tmp_path):
            missed.append(f"{c} in {position}")
    assert not missed, missed


# -- bounds: a decode bomb ends in a refusal, not a stall ------------------------------------------

def _bombs() -> dict[str, str]:
    zeros = gzip.compress(b"\0" * (256 << 20), compresslevel=9)  # 256 MiB of zeros in 250 KB
    nested = "ghp_" + chars(36)
    for _ in range(12):
        nested = b64(nested.encode())
    return {"gzip bomb": "data:application/gzip;base64," + b64(zeros),
            "gzip bomb in base64": b64(gzip.compress(zeros)), "nested base64": nested}


@pytest.mark.parametrize("name", list(_bombs()))
def test_a_decode_bomb_is_refused_within_its_budget(tmp_path, name):
    ws = tmp_path / "ws"
    run_dir = ws / ".agentcap" / "bomb"
    run_record(run_dir, [])
    write_capture(run_dir, 1, chat({"role": "user", "content": PH}), answer(), [_bombs()[name]])
    target = Target(run_dir, run_info(run_dir))
    stage([target], tmp_path / "out", gate=Gate())
    refused = [f for f in target.report.findings if f.state == "blocking" and f.detector.startswith("unreadable")]
    assert refused and "decode budget exhausted" in refused[0].detector, [str(f) for f in target.report.findings]
    assert refused[0].file == f"captures/{rid(1)}.request.json"


def test_the_budget_bounds_bytes_and_depth():
    from agentcap_cli.export.layers import Layer

    [seen] = examine([Layer(_bombs()["nested base64"])])
    assert [o.why for o in seen.opaque] and "nested encodings" in seen.opaque[0].why
    budget = Budget(bytes=1 << 20)
    with pytest.raises(Exception, match="MiB decoded"):
        budget.spend(2 << 20)


# -- opaque: what cannot be read blocks, unless its fingerprint is allowed --------------------------

def _encrypted_zip(data: bytes) -> bytes:
    """A zip whose one member has the encryption flag (as ``zip -e`` writes it)."""
    raw = bytearray(_zip(data))
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.find(sig)
        raw[at + off] |= 0x1
    return bytes(raw)


OPAQUE: dict[str, Callable[[], bytes]] = {
    "encrypted zip": lambda: _encrypted_zip(b"TOKEN=x\n"),
    "unknown binary": lambda: bytes(RNG.randrange(256) for _ in range(4096)),
    "7z archive": lambda: b"7z\xbc\xaf\x27\x1c" + bytes(200),
    "corrupt gzip": lambda: gzip.compress(b"")[:10] + bytes(RNG.randrange(256) for _ in range(300)),
}


@pytest.mark.parametrize("where", ["trace file", "data URL", "base64 document block"])
@pytest.mark.parametrize("what", list(OPAQUE))
def test_what_cannot_be_read_blocks_until_its_fingerprint_is_allowed(tmp_path, hub, what, where):
    ws = tmp_path / "ws"
    run_dir = ws / ".agentcap" / "opaque"
    run_record(run_dir, [])
    data = OPAQUE[what]()
    if where == "trace file":
        write_capture(run_dir, 1, chat({"role": "user", "content": "hi"}), answer())
        (run_dir / "traces" / "t0001").mkdir(parents=True)
        (run_dir / "traces" / "t0001" / "blob.bin").write_bytes(data)
    elif where == "data URL":
        write_capture(run_dir, 1, chat({"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "data:application/octet-stream;base64," + b64(data)}}]}), answer())
    else:
        block = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64(data)}}
        write_capture(run_dir, 1, {"api": "anthropic-messages", "path": "/v1/messages",
                                   "body": {"model": "m", "max_tokens": 5, "messages": [
                                       {"role": "user", "content": [block]}]}}, answer())
    r = agentcap(ws, "export", "opaque", "--push", "me/o", **hub.env)
    assert r.returncode == 1 and "unreadable" in r.stderr and hub.requests == [], r.stderr[-1500:]
    # left out by an explicit flag: a trace file is published without it; a field of a capture cannot be
    r = agentcap(ws, "export", "opaque", "--push", "me/o", "--leave-out-unreadable", **hub.env)
    if where == "trace file":
        assert r.returncode == 0 and "left out" in r.stderr, r.stderr[-1500:]
        received = {name: d for rec in hub.repos.values() for name, d in rec.files.items()}
        assert data not in b"".join(received.values()) and not any("blob.bin" in n for n in received)
        assert recover(received, ["blob.bin"]) == set()  # not even its name in a parquet row
        return
    assert r.returncode == 1 and hub.requests == []
    report = json.loads((run_dir / "scan.json").read_text())
    fps = sorted({f["fingerprint"] for f in report["findings"] if f["detector"].startswith("unreadable")})
    assert fps, report
    (ws / ".agentcap-secrets-allow").write_text("".join(f"{fp}  # reviewed: {what}\n" for fp in fps))
    r = agentcap(ws, "export", "opaque", "--push", "me/o", **hub.env)
    assert r.returncode == 0, r.stderr[-1500:]


# -- what is sealed by its vendor, or random, is no finding ------------------------------------------

def test_encrypted_reasoning_and_signatures_never_block(tmp_path):
    """Encrypted reasoning and thinking signatures are base64 of random bytes, in nearly every call
    of a reasoning model; bytes that only look like a format (zlib's two-byte header matches about one
    random blob in a thousand) are not files that failed to open."""
    rng = random.Random(99)
    run_dir = tmp_path / "ws" / ".agentcap" / "sealed-fields"
    run_record(run_dir, [])
    for n in range(1, 401):
        head = [b"", b"\x78\x9c", b"\x78\x01", b"\x1f\x9d", b"BM", b"\xff\xfb"][n % 6]
        blobs = [b64(head + rng.randbytes(rng.randrange(64, 900))) for _ in range(3)]
        body = {"model": "m", "input": [
            {"type": "reasoning", "id": f"rs_{n}", "summary": [], "encrypted_content": blobs[0]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": blobs[1]}]},
            {"role": "user", "content": "id " + blobs[2]}]}
        write_capture(run_dir, n, {"api": "openai-responses", "path": "/v1/responses", "body": body}, answer())
    target = Target(run_dir, run_info(run_dir))
    stage([target], tmp_path / "out", gate=Gate())
    assert [str(f) for f in target.report.findings] == []
