"""The publish gate of `agentcap export`: planted secrets of every kind, in every place that is
published, are found with their file and JSON path and block a push (the Hub stand-in receives
nothing); the allowlist and --redact; unreadable captures are skipped and named.

Tokens are built at run time from a seeded generator, so no token-shaped string sits in this file.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import random
import shutil
import sqlite3
import string
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from agentcap_addons.wire.api.decode import decode_events
from agentcap_addons.wire.api.sse import parse_sse
from agentcap_cli.export.captures import read_footer
from agentcap_cli.export.detectors import OVERLAP, RULES, WINDOW, find, fingerprint
from agentcap_cli.export.exporter import Target, run_info, stage
from agentcap_cli.export.scan import AllowlistError, Gate, load_allowlist
from tests.support import cli

REPO = Path(__file__).resolve().parents[1]
RNG = random.Random(16)
ALNUM = string.ascii_letters + string.digits


def chars(n: int, alphabet: str = ALNUM) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


URLSAFE = ALNUM + "_-"
# kind (what a finding says) → a token of that kind; the AWS secret and the PEM include their context
KINDS: dict[str, str] = {
    "HuggingFace token": "hf_" + chars(34),
    "HuggingFace org token": "api_org_" + chars(34),
    "Anthropic API key": "sk-ant-api03-" + chars(93, URLSAFE) + "AA",
    "Claude OAuth token": "sk-ant-oat01-" + chars(95, URLSAFE),
    "OpenRouter key": "sk-or-v1-" + chars(64, "0123456789abcdef"),
    "OpenAI key": "sk-proj-" + chars(74, URLSAFE) + "T3BlbkFJ" + chars(74, URLSAFE),
    "Groq key": "gsk_" + chars(52),
    "Google API key": "AIza" + chars(35, URLSAFE),
    "GitHub token": "ghp_" + chars(36),
    "GitHub fine-grained token": "github_pat_" + chars(22) + "_" + chars(59),
    "GitLab token": "glpat-" + chars(20, URLSAFE),
    "npm token": "npm_" + chars(36),
    "AWS access key id": "AKIA" + chars(16, string.ascii_uppercase + string.digits),
    "AWS secret access key": "aws_secret_access_key = " + chars(40, ALNUM + "/+"),
    "Slack token": "xoxb-" + chars(11, string.digits) + "-" + chars(12, string.digits) + "-" + chars(24),
    "Stripe key": "sk_" + "live_" + chars(24),
    "Private key": "-----BEGIN RSA PRIVATE KEY-----\n" + chars(64, ALNUM + "+/") + "\n" + chars(64, ALNUM + "+/")
                   + "\n-----END RSA PRIVATE KEY-----",
    "JSON web token": "eyJ" + chars(30, URLSAFE) + ".eyJ" + chars(40, URLSAFE) + "." + chars(43, URLSAFE),
}
LEGACY_OPENAI = "sk-" + chars(20) + "T3BlbkFJ" + chars(20)


def secret_of(kind: str) -> str:
    """The part a finding fingerprints (the value, for a keyword rule)."""
    [hit] = find(KINDS[kind])
    return hit.secret


# -- a synthetic run, as the capture addon writes it ---------------------------------------------

def rid(n: int) -> str:
    return f"{n:032x}"


def write_capture(run_dir: Path, n: int, request: dict, response: dict) -> str:
    cap = run_dir / "captures"
    cap.mkdir(parents=True, exist_ok=True)
    base = {"schema": 1, "request_id": rid(n)}
    req = {**base, "seq": n, "captured_at": f"2026-11-22T00:00:{n:02d}.000000000Z", "method": "POST",
           "path": "/v1/chat/completions", "upstream_url": "http://127.0.0.1:9/v1/chat/completions", "api": "openai-chat",
           "run_id": run_dir.name, "task_id": "t0001", "turn": 1, "cell": None, "repeat": None,
           "headers": {"content-type": "application/json"}, **request}
    resp = {**base, "status_code": 200, "headers": {"content-type": "application/json"}, "stream": False,
            "chunks": [], "timings": {"sent": 0.0, "first_byte": 1.0, "done": 2.0}, "served_model": "m", "error": None,
            **response}
    (cap / f"{rid(n)}.request.json").write_text(json.dumps(req))
    (cap / f"{rid(n)}.response.json").write_text(json.dumps(resp))
    return rid(n)


def chat(text: str = "hello") -> dict:
    return {"body": {"model": "m", "messages": [{"role": "user", "content": text}]}}


def answer(text: str = "done") -> dict:
    return {"body": {"id": "c1", "object": "chat.completion", "model": "m",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}}


def chat_stream(text: str, piece: int = 5) -> str:
    """An OpenAI chat stream spelling ``text`` out ``piece`` characters per event."""
    head = {"id": "c1", "object": "chat.completion.chunk", "model": "m"}
    events = [{**head, "choices": [{"index": 0, "delta": {"content": text[i:i + piece]}}]}
              for i in range(0, len(text), piece)]
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def anthropic_stream(text: str, piece: int = 7) -> str:
    events = [("message_start", {"type": "message_start", "message": {"id": "m1", "model": "m", "content": []}}),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": text[i:i + piece]}})
               for i in range(0, len(text), piece)]
    events.append(("message_stop", {"type": "message_stop"}))
    return "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events)


def responses_stream(text: str, piece: int = 3) -> str:
    events = [{"type": "response.output_text.delta", "item_id": "i1", "output_index": 0, "content_index": 0,
               "delta": text[i:i + piece]} for i in range(0, len(text), piece)]
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


def streamed(raw: str) -> dict:
    return {"stream": True, "headers": {"content-type": "text/event-stream"}, "raw": raw}


def gzipped_stream(raw: str) -> dict:
    data = gzip.compress(raw.encode())
    return {"stream": True, "headers": {"content-type": "text/event-stream", "content-encoding": "gzip"},
            "raw_b64": base64.b64encode(data).decode()}


def make_run(ws: Path, name: str, prompt: str = "Create hello.txt", agent: str = "pi") -> Path:
    run_dir = ws / ".agentcap" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    rec = {"schema": 1, "run_id": name, "kind": "corpus", "agent": agent, "model": "m", "provider": "scripted",
           "upstream": "embedded:scripted", "label": "exp", "status": "done", "started_at": "2026-11-22T00:00:00Z",
           "tasks": [{"task_id": "t0001", "prompt": prompt, "completed_turns": 1, "turns": []}]}
    (run_dir / "run.json").write_text(json.dumps(rec))
    return run_dir


def env_dump(secret: str) -> str:
    """Tool output with the secret at the start of a line (as `cat .env` prints it)."""
    return f"$ cat .env\nDEBUG=1\n{secret}\nPORT=8000\n"


# every place something is published, each a function planting ``secret`` in a fresh run
def in_request(run_dir: Path, secret: str) -> None:
    write_capture(run_dir, 1, chat(env_dump(secret)), answer())


def in_request_tool_args(run_dir: Path, secret: str) -> None:
    args = json.dumps({"command": "echo ok", "stdin": env_dump(secret)})
    body = {"model": "m", "messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": args}}]}]}
    write_capture(run_dir, 1, {"body": body}, answer())


def in_response(run_dir: Path, secret: str) -> None:
    write_capture(run_dir, 1, chat(), answer("Your key is:\n" + secret))


def in_stream_split(run_dir: Path, secret: str) -> None:
    write_capture(run_dir, 1, chat(), streamed(chat_stream("Sure, here it is:\n" + secret + "\nanything else?")))


def in_anthropic_stream(run_dir: Path, secret: str) -> None:
    write_capture(run_dir, 1, {**chat(), "api": "anthropic-messages", "path": "/v1/messages"},
                  streamed(anthropic_stream("key\t" + secret)))


def in_responses_stream(run_dir: Path, secret: str) -> None:
    write_capture(run_dir, 1, {**chat(), "api": "openai-responses", "path": "/v1/responses"},
                  streamed(responses_stream(secret)))


def in_body_b64(run_dir: Path, secret: str) -> None:
    body = ("plain text body\n" + secret + "\n").encode()
    write_capture(run_dir, 1, {"headers": {"content-type": "text/plain"},
                               "body_b64": base64.b64encode(body).decode()}, answer())


def in_raw_b64(run_dir: Path, secret: str) -> None:
    raw = chat_stream("\xff" + secret, piece=len(secret) + 1).encode("latin-1")  # not UTF-8: raw_b64
    write_capture(run_dir, 1, chat(), {"stream": True, "raw_b64": base64.b64encode(raw).decode()})


def in_gzip_stream(run_dir: Path, secret: str) -> None:
    write_capture(run_dir, 1, chat(), gzipped_stream(chat_stream(secret, piece=4)))


def in_zstd_body(run_dir: Path, secret: str) -> None:
    """A non-JSON-parsed zstd response body (mitmproxy's clients and servers speak zstd)."""
    from backports import zstd

    data = zstd.compress(json.dumps({"choices": [{"message": {"content": env_dump(secret)}}]}).encode())
    write_capture(run_dir, 1, chat(), {"stream": False, "headers": {"content-type": "application/json",
                                                                       "content-encoding": "zstd"},
                                        "body_b64": base64.b64encode(data).decode()})


def in_run_json(run_dir: Path, secret: str) -> None:
    make_run(run_dir.parent.parent, run_dir.name, prompt="Deploy with this key:\n" + secret)
    write_capture(run_dir, 1, chat(), answer())


def in_trace(run_dir: Path, secret: str) -> None:
    write_capture(run_dir, 1, chat(), answer())
    trace = run_dir / "traces" / "t0001" / ".pi" / "session.jsonl"
    trace.parent.mkdir(parents=True)
    trace.write_text(json.dumps({"type": "session"}) + "\n" +
                     json.dumps({"type": "tool_result", "message": {"content": env_dump(secret)}}) + "\n")


def in_sqlite_trace(run_dir: Path, secret: str) -> None:
    write_capture(run_dir, 1, chat(), answer())
    db = run_dir / "traces" / "t0001" / "state.db"
    db.parent.mkdir(parents=True)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, content TEXT)")
    con.execute("INSERT INTO messages (content) VALUES (?)", ("x" * 5000 + env_dump(secret),))  # overflow pages
    con.commit()
    con.close()


def in_sessions(run_dir: Path, secret: str) -> None:
    write_capture(run_dir, 1, chat(), answer())
    (run_dir / "sessions").mkdir()
    (run_dir / "sessions" / "t0001_turn_01.out").write_text(env_dump(secret))


def in_headers(run_dir: Path, secret: str) -> None:
    write_capture(run_dir, 1, {**chat(), "headers": {"content-type": "application/json", "x-title": secret}}, answer())


# place → (file the finding names, the start of its JSON path / location)
PLACES = {
    in_request: ("captures/{rid}.request.json", "$.body.messages[0].content"),
    in_request_tool_args: ("captures/{rid}.request.json", "$.body.messages[0].tool_calls[0].function.arguments"),
    in_response: ("captures/{rid}.response.json", "$.body.choices[0].message.content"),
    in_stream_split: ("captures/{rid}.response.json", "$.raw[event "),
    in_anthropic_stream: ("captures/{rid}.response.json", "$.raw[event "),
    in_responses_stream: ("captures/{rid}.response.json", "$.raw[event "),
    in_body_b64: ("captures/{rid}.request.json", "$.body_b64[base64]"),
    in_raw_b64: ("captures/{rid}.response.json", "$.raw_b64[base64]"),
    in_gzip_stream: ("captures/{rid}.response.json", "$.raw_b64[base64 gzip][sse text]"),
    in_zstd_body: ("captures/{rid}.response.json", "$.body_b64[base64 zstd]"),
    in_run_json: ("run.json", "$.tasks[0].prompt"),
    in_trace: ("traces/t0001/.pi/session.jsonl", "line 2 $.message.content"),
    in_sqlite_trace: ("traces/t0001/state.db", "[table messages row 1 column content]"),
    in_sessions: ("sessions/t0001_turn_01.out", "line 3"),
    in_headers: ("captures/{rid}.request.json", "$.headers[\"x-title\"]"),
}


def scan(run_dir: Path, gate: Gate | None = None, out: Path | None = None) -> Target:
    gate = gate or Gate()
    target = Target(run_dir, run_info(run_dir))
    stage([target], out or run_dir.parent.parent / "staged", gate=gate)
    return target


# -- detectors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_is_found_however_it_is_escaped(kind):
    token = KINDS[kind]
    secret = secret_of(kind)
    for text in (token, f"x {token} y", f"line\n{token}", json.dumps(f"a\n{token}\tb"),  # \n then the token
                 json.dumps(json.dumps({"out": f"a\n{token}"})),  # JSON in a JSON string: \\n
                 json.dumps(f'say "{token}"'), f"a\\u000a{token}", f"\\t{token}"):
        hits = find(text)
        assert [h.rule.name for h in hits] == [kind], text
        assert fingerprint(hits[0].secret) == fingerprint(secret)  # the same key, one fingerprint


def test_tokens_inside_words_or_too_long_are_not_found():
    hf = KINDS["HuggingFace token"]
    assert find("x" + hf) == [] and find(hf + "x" * 10) == [] and find("hf_short123") == []
    assert [h.rule.name for h in find(LEGACY_OPENAI)] == ["OpenAI key"]
    assert find("-----BEGIN RSA PRIVATE KEY----- (a header in prose, no key)") == []
    # every rule is in the table the docs describe
    assert {r.name for r in RULES} >= set(KINDS)


def test_long_texts_are_read_in_windows_and_no_token_is_cut():
    token = KINDS["GitHub token"]
    filler = "lorem ipsum " * (6 * WINDOW // 12)  # over the size where only flagged windows are read
    for at in (0, WINDOW - 10, 3 * WINDOW + 5, 5 * WINDOW - 1):
        text = filler[:at] + "\n" + token + "\n" + filler[at:]
        assert [(h.start, h.secret) for h in find(text)] == [(at + 1, token)], at
    assert find(filler) == []
    hf = "hf_" + chars(37)  # where one window's end would cut it to hf_ + 35 (a token too), the whole one wins
    at = 2 * WINDOW + OVERLAP - 39
    assert [h.secret for h in find(filler[:at] + "\n" + hf + "\n" + filler[at:])] == [hf]


# -- every place, every kind ---------------------------------------------------------------------

@pytest.mark.parametrize("place", list(PLACES), ids=lambda p: p.__name__)
def test_every_kind_in_every_place_is_found_with_file_and_path(tmp_path, place):
    file, where = PLACES[place]
    for n, kind in enumerate(sorted(KINDS)):
        ws = tmp_path / str(n)
        run_dir = make_run(ws, "leaky")
        place(run_dir, KINDS[kind])
        findings = scan(run_dir).report.findings
        expect = file.format(rid=rid(1))
        hits = [f for f in findings if f.file == expect and f.where.startswith(where)]
        assert hits, f"{kind} in {place.__name__}: {[str(f) for f in findings]}"
        assert hits[0].detector == kind and hits[0].state == "blocking"
        assert hits[0].fingerprint == fingerprint(secret_of(kind))
        assert secret_of(kind)[8:] not in str(hits[0])  # printed masked


def agentcap(ws: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return cli.agentcap(*args, workspace=ws, **env)


@pytest.mark.parametrize("place,kind", [(p, sorted(KINDS)[i % len(KINDS)]) for i, p in enumerate(PLACES)],
                         ids=lambda v: getattr(v, "__name__", str(v)))
def test_a_secret_in_any_place_blocks_the_push_and_nothing_is_sent(tmp_path, hub, place, kind):
    ws = tmp_path / "ws"
    place(make_run(ws, "leaky"), KINDS[kind])
    r = agentcap(ws, "export", "leaky", "--push", "me/x", **hub.env)
    assert r.returncode == 1, r.stderr
    assert "push blocked" in r.stderr and kind in r.stderr
    file, where = PLACES[place]
    assert f"{file.format(rid=rid(1))}: {where}" in r.stderr
    assert secret_of(kind)[8:] not in r.stderr + r.stdout
    assert hub.requests == []  # not even a repo lookup
    report = json.loads((ws / ".agentcap" / "leaky" / "scan.json").read_text())
    assert report["findings"][0]["state"] == "blocking" and report["findings"][0]["detector"] == kind


def test_dry_run_and_out_report_the_same_findings(tmp_path, hub):
    ws = tmp_path / "ws"
    in_stream_split(make_run(ws, "leaky"), KINDS["Groq key"])
    dry = agentcap(ws, "export", "leaky", "--push", "me/x", "--dry-run", **hub.env)
    assert dry.returncode == 1 and "push blocked" in dry.stderr and hub.requests == []
    out = agentcap(ws, "export", "leaky", "--out", str(tmp_path / "o"))
    assert out.returncode == 0 and "possible secret" in out.stderr and "Groq key" in out.stderr
    assert list((tmp_path / "o" / "captures" / "data").glob("*.parquet"))  # --out warns, and writes


# -- the allowlist --------------------------------------------------------------------------------

def test_allowlisted_findings_pass_and_the_others_still_block(tmp_path, hub):
    ws = tmp_path / "ws"
    run_dir = make_run(ws, "leaky")
    in_request(run_dir, KINDS["HuggingFace token"])
    fp = fingerprint(secret_of("HuggingFace token"))
    (ws / ".agentcap-secrets-allow").write_text(f"# test fixtures\n{fp[:16]}  # the docs' sample token\n")
    r = agentcap(ws, "export", "leaky", "--push", "me/x", **hub.env)
    assert r.returncode == 0, r.stderr
    assert "allowed" in r.stderr and hub.repos["me/x-captures"].commits

    write_capture(run_dir, 2, chat(), answer(KINDS["GitHub token"]))  # not in the list
    blocked = agentcap(ws, "export", "leaky", "--push", "me/y", **hub.env)
    assert blocked.returncode == 1 and "GitHub token" in blocked.stderr and "me/y-captures" not in hub.repos
    # given with the flag instead, from anywhere
    other = tmp_path / "allow.txt"
    other.write_text(f"sha256:{fp}\n{fingerprint(secret_of('GitHub token'))}\n")
    assert agentcap(ws, "export", "leaky", "--push", "me/y", "--secrets-allow", str(other), **hub.env).returncode == 0


@pytest.mark.parametrize("content,expect", [("not-a-fingerprint\n", ":1: 'not-a-fingerprint' is not a finding"),
                                            ("# ok\nabc\n", ":2: 'abc' is not")])
def test_a_bad_allowlist_is_refused_naming_file_and_line(tmp_path, content, expect):
    path = tmp_path / "allow"
    path.write_text(content)
    with pytest.raises(AllowlistError, match=expect):
        load_allowlist(path)
    ws = tmp_path / "ws"
    in_request(make_run(ws, "r"), "nothing secret")
    r = agentcap(ws, "export", "r", "--out", str(tmp_path / "o"), "--secrets-allow", str(path))
    assert r.returncode == 2 and f"{path}{expect.split(' ')[0]}" in r.stderr
    assert not (tmp_path / "o").exists()
    missing = agentcap(ws, "export", "r", "--out", str(tmp_path / "o"), "--secrets-allow", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "nope: cannot read the allowlist" in missing.stderr


# -- --redact ------------------------------------------------------------------------------------

def parquet_texts(files: dict[str, bytes]) -> str:
    """Every value of every parquet file (and its footer), as one text."""
    out = []
    for name, data in files.items():
        if name.endswith(".parquet"):
            f = pq.ParquetFile(io.BytesIO(data))
            out.append(json.dumps(f.metadata.metadata[b"agentcap"].decode()))
            for row in f.read().to_pylist():
                out += [v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row.values()]
        else:
            out.append(data.decode())
    return "\n".join(out)


def test_redact_publishes_masked_copies(tmp_path, hub):
    ws = tmp_path / "ws"
    run_dir = make_run(ws, "leaky", prompt="Use " + KINDS["OpenRouter key"] + " for the router")
    planted = {in_request: "HuggingFace token", in_stream_split: "Anthropic API key", in_gzip_stream: "Groq key",
               in_trace: "Claude OAuth token", in_sqlite_trace: "Google API key", in_sessions: "npm token"}
    for n, (place, kind) in enumerate(planted.items(), start=1):
        sub = make_run(tmp_path / "parts", f"p{n}")
        place(sub, KINDS[kind])
        for f in (sub / "captures").iterdir():  # renumber into the one run
            (run_dir / "captures").mkdir(exist_ok=True)
            data = f.read_text().replace(rid(1), rid(n)).replace('"seq": 1', f'"seq": {n}')
            (run_dir / "captures" / f.name.replace(rid(1), rid(n))).write_text(data)
        for d in ("traces", "sessions"):
            if (sub / d).is_dir():
                shutil.copytree(sub / d, run_dir / d, dirs_exist_ok=True)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != "scan.json"}

    r = agentcap(ws, "export", "leaky", "--push", "me/x", "--redact", **hub.env)
    assert r.returncode == 0, r.stderr
    assert "masked" in r.stderr and "--redact:" in r.stderr
    published = "".join(parquet_texts(hub.repos[f"me/x-{name}"].files) for name in ("captures", "pi-traces",
                                                                                     "wire-traces"))
    assert any(p.startswith("sessions/") for p in hub.repos["me/x-captures"].files)  # the sessions config, masked too
    for kind in [*planted.values(), "OpenRouter key"]:
        secret = secret_of(kind)
        assert secret not in published, kind
        assert (secret[:4] in published) == (kind != "npm token"), kind  # sessions/ is not published
    assert "secret, not published" in r.stderr and "sessions/t0001_turn_01.out: line 3: npm token" in r.stderr
    caps = pq.ParquetFile(io.BytesIO(next(v for k, v in hub.repos["me/x-captures"].files.items()
                                          if k.endswith(".parquet")))).read().to_pylist()
    assert all(json.loads(row["request"]) for row in caps)  # masked JSON is still JSON
    [stream] = [row for row in caps if row["request_id"] == rid(2)]
    key = secret_of("Anthropic API key")
    content = decode_events("openai-chat", parse_sse(stream["response"])).content  # masked across the events
    assert key[:4] + "*" * (len(key) - 4) in content and content.startswith("Sure, here it is:")
    db = next(v for k, v in hub.repos["me/x-pi-traces"].files.items() if k.endswith(".parquet"))
    [state] = [row["data"] for row in pq.ParquetFile(io.BytesIO(db)).read().to_pylist() if row["path"] == "state.db"]
    (tmp_path / "masked.db").write_bytes(state)  # a masked SQLite file still opens
    [(content,)] = sqlite3.connect(tmp_path / "masked.db").execute("SELECT content FROM messages").fetchall()
    assert secret_of("Google API key") not in content and "AIza" in content
    # the run's own files are left as they were
    assert {p: p.read_bytes() for p in before} == before


def test_redact_fails_closed_on_what_it_cannot_mask(tmp_path, hub):
    ws = tmp_path / "ws"
    run_dir = make_run(ws, "leaky")
    write_capture(run_dir, 1, chat(), answer())
    trace = run_dir / "traces" / "t0001" / "log.jsonl.gz"  # published byte for byte: cannot be masked
    trace.parent.mkdir(parents=True)
    trace.write_bytes(gzip.compress(env_dump(KINDS["GitLab token"]).encode()))
    r = agentcap(ws, "export", "leaky", "--push", "me/x", "--redact", **hub.env)
    assert r.returncode == 1 and "push blocked" in r.stderr and "traces/t0001/log.jsonl.gz: [gzip]" in r.stderr
    assert hub.requests == []


def test_redact_needs_the_scan(tmp_path):
    r = agentcap(tmp_path, "export", "--all", "--out", str(tmp_path / "o"), "--redact", "--no-scan")
    assert r.returncode == 2 and "need the scan" in r.stderr


def test_trufflehog_runs_too_when_installed_and_never_verifies(tmp_path, hub):
    ws = tmp_path / "ws"
    run_dir = make_run(ws, "r")
    in_request(run_dir, "nothing secret")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    args_file = tmp_path / "args.json"
    capture_file = run_dir / "captures" / f"{rid(1)}.request.json"
    finding = {"DetectorName": "URI", "Raw": "https://user:hunter2@db.internal",
               "SourceMetadata": {"Data": {"Filesystem": {"file": str(capture_file), "line": 1}}}}
    (bin_dir / "trufflehog").write_text(f"#!{sys.executable}\nimport json, sys\n"
                                        f"open({str(args_file)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
                                        f"print(json.dumps({finding!r}))\n")
    (bin_dir / "trufflehog").chmod(0o755)
    r = agentcap(ws, "export", "r", "--push", "me/x", "--redact", PATH=f"{bin_dir}:{os.environ['PATH']}", **hub.env)
    assert r.returncode == 1 and "push blocked" in r.stderr  # agentcap cannot mask what only trufflehog saw
    assert f"captures/{rid(1)}.request.json: line 1: trufflehog URI http…****" in r.stderr
    args = json.loads(args_file.read_text())
    assert args[:2] == ["filesystem", "--json"] and "--no-verification" in args and str(run_dir / "captures") in args
    assert hub.requests == []


def test_betterleaks_adds_what_only_it_knows_and_blocks(tmp_path, hub):
    ws = tmp_path / "ws"
    run_dir = make_run(ws, "r")
    digits = list("0123456789abcdef" * 2)
    random.Random(3).shuffle(digits)
    key = "".join(digits)  # every hex digit twice: the entropy betterleaks' rule asks for, whatever the test order
    in_request(run_dir, f"export DATADOG_API_KEY={key}")  # a kind agentcap has no rule for
    r = agentcap(ws, "export", "r", "--push", "me/x", "--scanner", "betterleaks", **hub.env)
    assert r.returncode == 1 and "push blocked" in r.stderr and "betterleaks datadog-api-key" in r.stderr, r.stderr
    assert key[8:] not in r.stderr and hub.requests == []
    report = json.loads((run_dir / "scan.json").read_text())
    assert report["detectors"].endswith("+ betterleaks")
    assert [f["file"] for f in report["findings"]] == [f"captures/{rid(1)}.request.json"]


@pytest.mark.parametrize("engine", ["kingfisher", "betterleaks"])
def test_a_second_scanner_runs_offline_and_a_clean_run_passes(tmp_path, hub, engine):
    ws = tmp_path / "ws"
    run_dir = make_run(ws, "r")
    in_request(run_dir, "nothing secret here")
    r = agentcap(ws, "export", "r", "--push", "me/x", "--scanner", engine, HTTPS_PROXY="http://127.0.0.1:9",
                 **hub.env)
    assert r.returncode == 0, r.stderr
    assert json.loads((run_dir / "scan.json").read_text())["detectors"].endswith(f"+ {engine}")


def test_a_named_scanner_that_is_missing_is_refused(tmp_path):
    ws = tmp_path / "ws"
    in_request(make_run(ws, "r"), "nothing secret here")
    r = agentcap(ws, "export", "r", "--out", str(tmp_path / "o"), "--scanner", "trufflehog", PATH="/nonexistent")
    assert r.returncode == 2 and "trufflehog is not on PATH" in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


# -- unreadable captures -------------------------------------------------------------------------

def test_unreadable_captures_are_skipped_and_named(tmp_path):
    ws = tmp_path / "ws"
    run_dir = make_run(ws, "broken")
    for n in range(1, 4):
        write_capture(run_dir, n, chat(f"call {n}"), answer())
    cap = run_dir / "captures"
    (cap / f"{rid(2)}.response.json").write_text('{"schema": 1, "status')  # truncated
    (cap / f"{rid(4)}.request.json").write_bytes(b"\x00\x01 not json at all")  # no head at all
    (cap / f"{rid(5)}.request.json").write_text("[1, 2]")  # JSON, not a record
    r = agentcap(ws, "export", "broken", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    for n, suffix in ((2, "response"), (4, "request"), (5, "request")):
        assert f"captures/{rid(n)}.{suffix}.json: " in r.stderr and "skipped" in r.stderr
    assert "Traceback" not in r.stderr
    [f] = (tmp_path / "o" / "captures" / "data").glob("*.parquet")
    assert [row["seq"] for row in pq.read_table(f).to_pylist()] == [1, 3]
    assert read_footer(f)["rows"] == 2
    skipped = json.loads((run_dir / "scan.json").read_text())["skipped"]
    assert len(skipped) == 3


def test_export_names_the_captures_repo_base_captures(tmp_path, hub):
    ws = tmp_path / "ws"
    in_request(make_run(ws, "r"), "nothing secret here")
    (ws / ".agentcap" / "r" / "traces" / "t0001").mkdir(parents=True)
    (ws / ".agentcap" / "r" / "traces" / "t0001" / "s.jsonl").write_text("{}\n")
    r = agentcap(ws, "export", "--all", "--push", "my-org/my-captures", **hub.env)
    assert r.returncode == 0, r.stderr
    assert sorted(hub.repos) == ["my-org/my-captures-captures", "my-org/my-captures-pi-traces",
                                 "my-org/my-captures-wire-traces"]
    [col] = hub.collections.values()
    assert col["title"] == "my-captures" and [i["id"] for i in col["items"]] == sorted(hub.repos)
    card = hub.repos["my-org/my-captures-pi-traces"].files["README.md"].decode()
    assert "`my-org/my-captures-captures`" in card
    assert 'load_dataset("my-org/my-captures-captures"' in hub.repos["my-org/my-captures-captures"].files[
        "README.md"].decode()
