"""JSON in and out for capture records: strict compact writing, fast reading (orjson when present),
request bodies parsed exactly (key order kept; non-finite numbers kept as strings)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

try:  # orjson reads JSON several times faster; readers (export, inspect) parse a lot of it
    import orjson as _orjson

    def fast_loads(data: bytes | str) -> Any:
        """``json.loads``, through orjson when it is installed (and json when orjson refuses:
        NaN, integers over 64 bits)."""
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:
            return json.loads(data)
except ImportError:  # pragma: no cover - orjson is a dependency
    fast_loads = json.loads  # type: ignore[assignment]

def dumps(obj: Any) -> bytes:
    """Compact, strict UTF-8 JSON (RFC 8259: no NaN / Infinity, which strict readers reject —
    non-finite numbers become the strings "NaN", "Infinity", "-Infinity"); falls back to ASCII
    escapes when a string holds a lone surrogate."""
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")
    except ValueError:  # a non-finite float; anything else (an int over 4,300 digits) raises, once
        return json.dumps(_finite(obj), ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")

def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj

def parse_json_body(data: bytes) -> tuple[bool, Any]:
    """(True, value) when ``data`` is a JSON document, else (False, None). Key order is kept.
    Python's parser also takes the non-standard ``NaN`` / ``Infinity`` / ``-Infinity``: they are kept
    as those strings, so the record stays strict JSON (docs/capture.md)."""
    if not data:
        return False, None
    try:
        return True, json.loads(data, parse_constant=str)
    except (ValueError, UnicodeDecodeError):
        return False, None

def read_json(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        return fast_loads(f.read())
