"""Dataset cards (issue 26): what a card claims follows how each run was made, the license is one
the Hub knows, the owner's front matter survives re-exports byte for byte, a re-export of nothing
new leaves every card as it was, a push says what the secret scan read, and ``agentcap proxy``
writes the run.json that cards and footers take the upstream and the start from.

Runs are real: captures recorded by a real capture proxy in front of the scripted model server
(``tests.support.runs.make_run``), copied per kind with the run.json each kind writes; the CLI
runs in a subprocess; cards are parsed by huggingface_hub (``DatasetCard(text).data``); pushes go
to the Hub stand-in.
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
import re
import shutil
import signal
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

from agentcap_cli.export.captures import read_footer
from agentcap_cli.export.cards import CardInfo, update
from agentcap_cli.export.exporter import parse_license
from agentcap_cli.export.licenses import HUB_LICENSES
from tests.support import cli
from tests.support.cli import read_exports, start
from tests.support.runs import make_run

KINDS = ("corpus", "suite", "proxy", "proxy-before-run.json")
#: what a card may claim about how its runs were made, and the words that claim it
CLAIMS = {"sandboxed": re.compile(r"sandbox|podman", re.I), "agentcap run": re.compile(r"`agentcap run`"),
          "agentcap test": re.compile(r"`agentcap test`"), "agentcap proxy": re.compile(r"`agentcap proxy`")}
TRUE = {"corpus": {"sandboxed", "agentcap run"}, "suite": {"sandboxed", "agentcap test"},
        "proxy": {"agentcap proxy"}, "proxy-before-run.json": {"agentcap proxy"}}
UPSTREAM = "http://upstream.example:8000/openai"


def agentcap(ws: Path, *args: str, **env: str):
    return cli.agentcap(*args, workspace=ws, **env)


def data(card: str) -> dict:
    return DatasetCard(card).data.to_dict()


def front_matter(card: str) -> str:
    return card.split("---\n", 2)[1]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A corpus run recorded for real: two calls (chat streamed, Anthropic), a run.json, a pi trace."""
    return make_run(tmp_path_factory.mktemp("template"), "template", [("chat", "model-a", True),
                                                                      ("anthropic", "model-b", False)])


def run_of(template: Path, ws: Path, kind: str, name: str) -> Path:
    """The template as a run of ``kind``, with the run.json that kind writes (none for a proxy dir
    made before agentcap proxy wrote one); a proxy run has no agent and no traces."""
    run_dir = ws / ".agentcap" / name
    shutil.copytree(template, run_dir)
    rec = json.loads((run_dir / "run.json").read_text())
    if kind.startswith("proxy"):
        shutil.rmtree(run_dir / "traces")
        (run_dir / "run.json").unlink()
        if kind == "proxy":  # what `agentcap proxy` writes (docs/capture.md)
            (run_dir / "run.json").write_text(json.dumps({
                "schema": 1, "run_id": name, "kind": "proxy", "agent": None, "model": None, "provider": "example",
                "upstream": UPSTREAM, "label": None, "turns_per_task": 0, "followup": None,
                "started_at": "2026-10-01T08:00:00.000000000Z", "finished_at": "2026-10-01T09:00:00.000000000Z",
                "status": "done", "tasks": []}))
        return run_dir
    rec.update(run_id=name, kind=kind)
    (run_dir / "run.json").write_text(json.dumps(rec))
    return run_dir


@pytest.fixture(scope="module")
def exported(template, tmp_path_factory):
    """kinds → the cards (dataset name → text) of an export of one run of each of those kinds."""
    cache: dict[tuple[str, ...], dict[str, str]] = {}

    def get(*kinds: str) -> dict[str, str]:
        if kinds not in cache:
            ws = tmp_path_factory.mktemp("ws")
            for i, kind in enumerate(kinds):
                run_of(template, ws, kind, f"run-{i}-{kind}")
            out = ws / "out"
            r = agentcap(ws, "export", "--all", "--out", str(out))
            assert r.returncode == 0, r.stderr
            cache[kinds] = {p.parent.name: p.read_text() for p in sorted(out.glob("*/README.md"))}
        return cache[kinds]
    return get


# -- claims per run kind ----------------------------------------------------------------------------

@pytest.mark.parametrize("claim", sorted(CLAIMS))
@pytest.mark.parametrize("kind", KINDS)
def test_a_card_claims_what_its_runs_were_and_nothing_else(exported, kind, claim):
    cards = exported(kind)
    assert "captures" in cards and (("pi-traces" in cards) == (kind in ("corpus", "suite")))
    for name, card in cards.items():
        data(card)  # parses as the Hub reads it
        said = bool(CLAIMS[claim].search(card))
        assert said == (claim in TRUE[kind]), f"{name} card of a {kind} run: {claim!r} {'said' if said else 'missing'}"


@pytest.mark.parametrize("claim", sorted(CLAIMS))
def test_a_mixed_card_claims_each_kind_once_per_run(exported, claim):
    card = exported("corpus", "suite", "proxy")["captures"]
    assert bool(CLAIMS[claim].search(card))
    made = card.split("## Provenance")[0]
    assert made.count("- 1 run of ") == 3, made
    assert "(for proxy captures: per conversation)" in card


def test_the_proxy_run_json_gives_the_card_and_footers_its_upstream_and_start(exported, template, tmp_path):
    card = exported("proxy")["captures"]
    assert "- upstream hosts: upstream.example" in card and "started 2026-10-01 … 2026-10-01" in card
    old = exported("proxy-before-run.json")["captures"]
    assert "- upstream hosts" not in old and "started ? … ?" in old  # what such a directory never recorded


# -- licenses --------------------------------------------------------------------------------------

@pytest.mark.parametrize("spelled", [str.lower, str.upper, str.title], ids=["lower", "upper", "title"])
@pytest.mark.parametrize("lic", sorted(HUB_LICENSES))
def test_every_hub_license_is_accepted_and_written_as_the_hub_spells_it(lic, spelled):
    other = ("my-terms", "https://example.com/terms") if lic == "other" else (None, None)
    parsed = parse_license(spelled(lic), *other)
    assert parsed is not None and parsed.id == lic
    info = CardInfo(repo="me/x-captures", kind="captures", agentcap_version="0.1", license=parsed.id,
                    license_name=parsed.name, license_link=parsed.link, exported_at="2026-11-22 00:00 UTC")
    card = data(update(None, info))
    assert card["license"] == lic and (card.get("license_name"), card.get("license_link")) == other


@pytest.mark.parametrize("typo,nearest", [("cc-by-4.1", "cc-by-4.0"), ("apache2", "apache-2.0"),
                                          ("Apache 2.0", "apache-2.0"), ("MIT License", "mit"), ("mit-0", "mit"),
                                          ("gpl-3.0-only", "gpl-3.0"), ("cc-by-sa", "cc-by-sa-4.0"), ("bsd3", None),
                                          ("", None)])
def test_a_license_the_hub_does_not_know_is_refused_naming_the_flag(template, tmp_path, typo, nearest):
    ws = tmp_path / "ws"
    run_of(template, ws, "corpus", "r")
    r = agentcap(ws, "export", "--all", "--out", str(tmp_path / "o"), "--license", typo)
    assert r.returncode == 2 and "--license" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert repr(typo) in r.stderr
    if nearest:
        assert re.search(rf"did you mean {re.escape(nearest)}\b", r.stderr), r.stderr
    assert not (tmp_path / "o").exists()


# -- the owner's front matter ------------------------------------------------------------------------

OWNER = [  # what an owner adds to a card's front matter by hand, each piece byte for byte
    "# Hand-edited: agentcap keeps these lines\n",
    "language:\n- en  # English only\n",
    "annotations_creators: ['machine-generated']  # flow style, single quotes\n",
    'description: |\n  Two lines\n  of text: with a colon\n',
    "\n# -- keys below this line are mine --\n",
    'extra_gated_prompt: "Agree to the terms"\n',
    "source_datasets:\n  - original\n",
]


def entries(fm: str) -> list[str]:
    """The top-level entries of a front matter agentcap wrote (each key with its lines)."""
    return re.findall(r"^[^\s#-][^\n]*\n(?:[ -][^\n]*\n)*", fm, re.M)


def info_of(rows: int, **kw) -> CardInfo:
    return CardInfo(repo="me/x-captures", kind="captures", agentcap_version="0.1", calls=rows, rows=rows,
                    runs=["r1"], run_kinds={"corpus": 1}, exported=["r1"], exported_rows=f"{rows} calls",
                    exported_at="2026-11-22 00:00 UTC", **kw)


@pytest.mark.parametrize("seed", range(12))
def test_the_owner_front_matter_survives_two_re_exports_byte_for_byte(seed):
    first = update(None, info_of(3))
    ours = entries(front_matter(first))
    pieces = OWNER + ours
    random.Random(seed).shuffle(pieces)
    owned = [p for p in pieces if p in OWNER]
    card = first.replace(front_matter(first), "".join(pieces), 1)
    assert data(card)["language"] == ["en"]

    # more rows, a license, and the owner's own config beside agentcap's
    mine = {"config_name": "mine", "data_files": [{"split": "train", "path": "extra/*.csv"}]}
    card = card.replace("configs:\n", "configs:\n- " + json.dumps(mine) + "\n", 1)
    second = update(card, info_of(5000, license="cc-by-4.0"))
    third = update(second, dataclasses.replace(info_of(5000, license="cc-by-4.0"), fresh=False))
    assert third == second  # nothing new: byte for byte
    fm = front_matter(second)
    at = 0
    for piece in owned:  # every piece, unchanged and in the owner's order
        at = fm.index(piece, at) + len(piece)
    got = data(second)
    assert got["license"] == "cc-by-4.0" and got["size_categories"] == ["1K<n<10K"]
    assert [c["config_name"] for c in got["configs"]] == ["mine", "default", "sessions"]
    assert got["description"] == "Two lines\nof text: with a colon\n" and got["extra_gated_prompt"] == "Agree to the terms"
    assert got["pretty_name"] == data(first)["pretty_name"]


def test_the_owner_front_matter_survives_re_exports_through_the_cli(template, tmp_path):
    ws = tmp_path / "ws"
    run_of(template, ws, "corpus", "r1")
    out = tmp_path / "out"
    assert agentcap(ws, "export", "--all", "--out", str(out)).returncode == 0
    readme = out / "captures" / "README.md"
    card = readme.read_text()
    edited = card.replace("---\n", "---\n" + "".join(OWNER), 1).replace("size_categories:", "# sized by agentcap\n"
                                                                        "size_categories:", 1)
    readme.write_text(edited)
    run_of(template, ws, "suite", "r2")
    r = agentcap(ws, "export", "--all", "--out", str(out), "--license", "MIT")
    assert r.returncode == 0, r.stderr
    second = readme.read_bytes()
    assert agentcap(ws, "export", "--all", "--out", str(out), "--license", "mit").returncode == 0
    assert readme.read_bytes() == second
    fm = front_matter(second.decode())
    assert fm.startswith("".join(OWNER)) and "# sized by agentcap\nsize_categories:" in fm
    assert data(second.decode())["license"] == "mit"


# -- a re-export of nothing new --------------------------------------------------------------------

def test_a_no_op_re_export_leaves_every_card_byte_identical(template, tmp_path):
    ws = tmp_path / "ws"
    run_of(template, ws, "corpus", "r1")
    out = tmp_path / "out"
    assert agentcap(ws, "export", "--all", "--out", str(out)).returncode == 0
    before = {p: p.read_bytes() for p in out.glob("*/README.md")}
    assert sorted(p.parent.name for p in before) == ["captures", "pi-traces", "wire-traces"]
    again = agentcap(ws, "export", "--all", "--out", str(out))
    assert again.returncode == 0 and "already exported" in again.stderr
    assert {p: p.read_bytes() for p in out.glob("*/README.md")} == before
    run_of(template, ws, "corpus", "r2")
    assert agentcap(ws, "export", "--all", "--out", str(out)).returncode == 0
    for p, old in before.items():  # something new: one more line in each card's log
        assert p.read_text().count("\n- 20") == old.decode().count("\n- 20") + 1


def test_a_no_op_re_push_sends_no_commit(template, tmp_path, hub):
    ws = tmp_path / "ws"
    run_of(template, ws, "corpus", "r1")
    assert agentcap(ws, "export", "--all", "--push", "me/x", **hub.env).returncode == 0
    cards = {k: r.files["README.md"] for k, r in hub.repos.items()}
    commits = {k: len(r.commits) for k, r in hub.repos.items()}
    again = agentcap(ws, "export", "--all", "--push", "me/x", **hub.env)
    assert again.returncode == 0, again.stderr
    assert {k: r.files["README.md"] for k, r in hub.repos.items()} == cards
    assert {k: len(r.commits) for k, r in hub.repos.items()} == commits
    licensed = agentcap(ws, "export", "--all", "--push", "me/x", "--license", "apache-2.0", **hub.env)
    assert licensed.returncode == 0, licensed.stderr  # no new file, a new license: the card alone
    assert all(data(r.files["README.md"].decode())["license"] == "apache-2.0" for r in hub.repos.values())
    assert {k: len(r.commits) for k, r in hub.repos.items()} == {k: n + 1 for k, n in commits.items()}


# -- the push says what the scan read ------------------------------------------------------------------

def test_a_clean_push_says_what_the_scan_covered(template, tmp_path, hub):
    ws = tmp_path / "ws"
    run_of(template, ws, "corpus", "r1")
    run_of(template, ws, "proxy", "r2")
    r = agentcap(ws, "export", "--all", "--push", "me/x", "--scanner", "none", **hub.env)
    assert r.returncode == 0, r.stderr
    rows = {k: sum(pq.ParquetFile(io.BytesIO(v)).metadata.num_rows
                   for p, v in hub.repos["me/x-captures"].files.items() if p.startswith(k + "/"))
            for k in ("data", "sessions")}
    trace_files = sum(pq.ParquetFile(io.BytesIO(v)).metadata.num_rows
                      for p, v in hub.repos["me/x-pi-traces"].files.items() if p.startswith("data/"))
    line = next(x for x in r.stderr.splitlines() if x.startswith("secret scan:"))
    assert f"{rows['data']} call rows, {rows['sessions']} session rows, {trace_files} trace files" in line, line
    assert "2 run.json, 3 cards" in line and "decode-through json, url" in line and "base64" in line
    assert re.search(r"scanners: agentcap \(\d+ rules", line) and line.endswith("findings: 0 blocking"), line
    skipped = agentcap(ws, "export", "--all", "--push", "me/y", "--no-scan", **hub.env)
    assert skipped.returncode == 0 and "secret scan: skipped (--no-scan)" in skipped.stderr


# -- agentcap proxy writes run.json ------------------------------------------------------------------

def proxy_session(upstream, ws: Path, run_dir: Path, sig: signal.Signals) -> dict:
    """One ``agentcap proxy`` session on ``run_dir`` with one call through it, stopped by ``sig``;
    run.json as it was while the proxy ran."""
    with start("proxy", "--upstream", upstream.url + "/sse/v1", "--port", "0", "--dir", str(run_dir),
               cwd=ws, workspace=ws) as proc:
        try:
            env = read_exports(proc)
            running = json.loads((run_dir / "run.json").read_text())
            body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
            assert httpx.post(env["OPENAI_BASE_URL"] + "/chat/completions", json=body, timeout=30).status_code == 200
        finally:
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return running


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", stamp))


def test_agentcap_proxy_writes_run_json_and_the_export_shows_it(upstream, tmp_path):
    ws = tmp_path / "ws"
    run_dir = ws / ".agentcap" / "proxy-session"
    ws.mkdir()
    running = proxy_session(upstream, ws, run_dir, signal.SIGINT)
    assert (running["kind"], running["upstream"], running["status"], running["finished_at"]) == (
        "proxy", upstream.url + "/sse", "running", None)
    assert running["agent"] is None and running["tasks"] == [] and "key" not in json.dumps(running).lower()
    first = json.loads((run_dir / "run.json").read_text())
    assert first["status"] == "done" and when(first["finished_at"]) >= when(first["started_at"])

    again = proxy_session(upstream, ws, run_dir, signal.SIGTERM)  # the same dir again: its first start stays
    assert again["started_at"] == first["started_at"] and again["finished_at"] is None
    rec = json.loads((run_dir / "run.json").read_text())
    assert rec["status"] == "done" and when(rec["finished_at"]) > when(first["finished_at"])
    assert sorted(x["run_id"] for x in map(json.loads, agentcap(ws, "ls", "--json").stdout.splitlines())) == [
        "proxy-session"]

    out = tmp_path / "out"
    r = agentcap(ws, "export", "--all", "--out", str(out))
    assert r.returncode == 0, r.stderr
    card = (out / "captures" / "README.md").read_text()
    assert "- upstream hosts: 127.0.0.1" in card and f"started {rec['started_at'][:10]}" in card
    assert "`agentcap proxy`" in card and not CLAIMS["sandboxed"].search(card)
    footers = [read_footer(p) for p in sorted(out.glob("captures/*/*.parquet"))]
    assert footers and all(rec["upstream"].startswith(f["upstream"]) and urlsplit(f["upstream"]).hostname == "127.0.0.1"
                           and (f["started_at"], f["run_kind"]) == (rec["started_at"], "proxy") for f in footers)
    resumed = agentcap(ws, "run", "--resume", "proxy-session")
    assert resumed.returncode == 2 and "proxy run" in resumed.stderr and "Traceback" not in resumed.stderr
