"""The secret scan that gates every push: detect-secrets over captures, traces and sessions, plus
trufflehog v3 when it is on PATH (always ``--no-verification``: verifying would use, and may revoke,
a live token). Results are cached per run in ``scan.json`` by file size and mtime, so unchanged files
are not scanned twice. A finding is reported as file / line / detector with the secret masked.

The high-entropy and keyword detectors are off: request ids, tool-call ids and base64 image data
trip them on every capture, which would block every push. The detectors that stay on recognise
concrete token formats (AWS, GitHub, OpenAI, Slack, Stripe, private keys, JWTs, …) plus agentcap's
own for Hugging Face and Anthropic tokens.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

from agentcap_addons.wire.store import atomic_write_bytes, rfc3339_ns

SCAN_JSON = "scan.json"
SCANNED_DIRS = ("captures", "traces", "sessions")
OFF = {"Base64HighEntropyString", "HexHighEntropyString", "KeywordDetector", "IPPublicDetector"}
PLUGIN_FILE = Path(__file__).with_name("hf_plugin.py")


@dataclass
class Finding:
    file: str  # relative to the run dir
    line: int
    detector: str
    secret: str  # masked

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.detector}: {self.secret}"


def mask(secret: str | None) -> str:
    if not secret:
        return "****"
    return secret[:4] + "…" + "*" * 4 if len(secret) > 8 else "*" * len(secret)


def _settings() -> dict[str, Any]:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    plugins = [{"name": cls.__name__} for cls in get_mapping_from_secret_type_to_class().values()
               if cls.__name__ not in OFF and cls.__module__.startswith("detect_secrets.")]
    plugins += [{"name": name, "path": f"file://{PLUGIN_FILE}"}
                for name in ("HuggingFaceTokenDetector", "AnthropicKeyDetector")]
    return {"plugins_used": plugins}


def scan_paths(paths: Iterable[Path]) -> dict[Path, list[tuple[int, str, str]]]:
    """detect-secrets over ``paths``: file → [(line, detector, masked secret)]."""
    from detect_secrets import SecretsCollection
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.settings import transient_settings

    out: dict[Path, list[tuple[int, str, str]]] = {}
    config = _settings()
    # detect-secrets caches its plugin map once, before our file plugins are configured
    get_mapping_from_secret_type_to_class.cache_clear()
    try:
        with transient_settings(config):
            get_mapping_from_secret_type_to_class.cache_clear()
            for path in paths:
                coll = SecretsCollection()
                coll.scan_file(str(path))
                out[path] = [(s.line_number, s.type, mask(s.secret_value)) for _, s in coll]
    finally:
        get_mapping_from_secret_type_to_class.cache_clear()
    return out


def trufflehog(paths: list[Path]) -> dict[Path, list[tuple[int, str, str]]]:
    """trufflehog v3 (filesystem mode, no verification) when on PATH; {} otherwise."""
    exe = shutil.which("trufflehog")
    if not exe or not paths:
        return {}
    done = subprocess.run([exe, "filesystem", "--json", "--no-verification", "--no-update", *map(str, paths)],
                          capture_output=True, text=True, timeout=1800)
    out: dict[Path, list[tuple[int, str, str]]] = {}
    for line in done.stdout.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        fs = ((item.get("SourceMetadata") or {}).get("Data") or {}).get("Filesystem") or {}
        if fs.get("file"):
            out.setdefault(Path(fs["file"]), []).append(
                (int(fs.get("line") or 0), f"trufflehog:{item.get('DetectorName')}", mask(item.get("Raw"))))
    return out


def files_of(run_dir: Path) -> list[Path]:
    return [p for d in SCANNED_DIRS if (run_dir / d).is_dir() for p in sorted((run_dir / d).rglob("*")) if p.is_file()]


def scan_run(run_dir: Path, progress: Callable[[int], None] | None = None) -> list[Finding]:
    """Scan one run (cached in its scan.json); every finding, sorted."""
    cache_path = run_dir / SCAN_JSON
    tools = f"detect-secrets {pkg_version('detect-secrets')}" + (" + trufflehog" if shutil.which("trufflehog") else "")
    try:
        cache = json.loads(cache_path.read_text())
        if cache.get("tools") != tools:
            cache = {}
    except (OSError, ValueError):
        cache = {}
    known: dict[str, Any] = cache.get("files") or {}
    files = files_of(run_dir)
    stale = []
    for path in files:
        st = path.stat()
        entry = known.get(str(path.relative_to(run_dir)))
        if not entry or entry.get("size") != st.st_size or entry.get("mtime_ns") != st.st_mtime_ns:
            stale.append(path)
    fresh: dict[str, Any] = {}
    for start in range(0, len(stale), 200):
        block = stale[start:start + 200]
        results = scan_paths(block)
        for path, found in trufflehog(block).items():
            results.setdefault(path, []).extend(found)
        for path in block:
            st = path.stat()
            fresh[str(path.relative_to(run_dir))] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                                     "findings": [list(f) for f in results.get(path, [])]}
        if progress:
            progress(len(block))
    present = {str(p.relative_to(run_dir)) for p in files}
    merged = {k: v for k, v in known.items() if k in present} | fresh
    findings = [Finding(rel, line, det, secret) for rel, entry in sorted(merged.items())
                for line, det, secret in entry["findings"]]
    data = {"schema": 1, "scanned_at": rfc3339_ns(), "tools": tools, "findings": [asdict(f) for f in findings],
            "files": merged}
    atomic_write_bytes(cache_path, json.dumps(data, indent=1).encode())
    return findings


def count_files(run_dirs: Iterable[Path]) -> int:
    return sum(len(files_of(d)) for d in run_dirs)

