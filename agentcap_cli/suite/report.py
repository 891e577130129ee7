"""Suite reports: results.json, junit.xml, report.md (and the data for the console summary)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from agentcap_addons.wire.util.files import atomic_write_bytes
from agentcap_cli.runs.drift import Drift
from agentcap_cli.suite.cassettes import describe
from agentcap_cli.suite.results import warnings_of
from agentcap_cli.suite.stats import cell_summary


def build(records: list[dict[str, Any]], meta: dict[str, Any], gates: dict[str, float] | None = None) -> dict[str, Any]:
    """The results. A cell passes when its pass rate reaches its gate (``min_pass_rate`` / ``--pass-rate``;
    1.0 — every repeat — by default) and none of its repeats drifted from its cassette; the suite passes
    when every cell does."""
    by_cell: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_cell.setdefault(r["cell"], []).append(r)
    cells = {}
    for c, rs in sorted(by_cell.items()):
        summary = cell_summary(sorted(rs, key=lambda r: r["repeat"]))
        gate = (gates or {}).get(c, 1.0)
        drifted = sum(1 for r in rs if r.get("verdict") == "drift")
        cells[c] = {"scenario": rs[0]["scenario"], "agent": rs[0]["agent"], "model": rs[0]["model"], **summary,
                    "gate": gate, "drifted": drifted, "gate_passed": summary["pass_rate"] >= gate - 1e-9 and not drifted}
    passed = sum(1 for r in records if r["passed"])
    suite_pass = bool(records) and all(c["gate_passed"] for c in cells.values())
    return {"schema": 1, **meta, "passed": suite_pass,
            # agenteval's summary block, for CI scripts written against its results.json
            "summary": {"cells": len(cells), "runs_total": len(records), "runs_passed": passed,
                        "suite_pass": suite_pass},
            "cells": cells, "records": sorted(records, key=lambda r: (r["cell"], r["repeat"]))}


FAILURE_TYPES = {"max_turns": "MaxTurnsReached", "timeout": "Timeout"}  # junit failure types of a stop


def junit(results: dict[str, Any]) -> bytes:
    records = results["records"]
    suites = ET.Element("testsuites", name="agentcap", tests=str(len(records)),
                        failures=str(sum(1 for r in records if not r["passed"])))
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_scenario.setdefault(r["scenario"], []).append(r)
    for scenario, rs in by_scenario.items():
        suite = ET.SubElement(suites, "testsuite", name=scenario, tests=str(len(rs)),
                              failures=str(sum(1 for r in rs if not r["passed"])),
                              time=f"{sum(r['duration_s'] for r in rs):.3f}")
        for r in rs:
            case = ET.SubElement(suite, "testcase", classname=f"agentcap.{scenario}", name=f"{r['cell']}#{r['repeat']}",
                                 time=f"{r['duration_s']:.3f}")
            cell = results["cells"].get(r["cell"]) or {}
            props = ET.SubElement(case, "properties")  # the cell's standing, so CI views show flaky cells
            for name, value in (("cell", r["cell"]), ("flaky", str(bool(cell.get("flaky"))).lower()),
                                ("pass_rate", f"{cell.get('pass_rate', 0):.3f}"), ("gate", f"{cell.get('gate', 1):.3f}"),
                                ("wilson_95", "{:.3f}-{:.3f}".format(*cell.get("wilson_95", [0, 1])))):
                ET.SubElement(props, "property", name=name, value=value)
            if r.get("verdict") == "drift":  # its own failure type: the recording no longer matches, not a bug
                text = describe(r["drift"])
                f = ET.SubElement(case, "failure", type="Drift", message=text[:1000])
                f.text = f"{text}\n{r['drift'].get('message') or ''}"
                ET.SubElement(case, "system-out").text = (r.get("output") or "")[-4000:]
                continue
            failed = [a for a in r["assertions"] if a["required"] and not a["passed"]]
            if r.get("error"):
                failed.append({"name": "run", "detail": r["error"]})
            if r.get("stop"):
                ET.SubElement(props, "property", name="stop", value=r["stop"])
            judge = r.get("judge") or {}
            if judge.get("required") and not judge.get("passed", True):
                failed.append({"name": "judge", "detail": f"score {judge.get('score')} < {judge.get('min_score')}: "
                                                          f"{judge.get('reasoning') or judge.get('error')}"})
            notes = warnings_of(r)
            if failed and not cell.get("gate_passed", False):
                f = ET.SubElement(case, "failure", type=FAILURE_TYPES.get(r.get("stop") or "", "AssertionError"),
                                  message="; ".join(f"{a['name']}: {a['detail']}" for a in failed)[:1000])
                f.text = "\n".join(f"{a['name']}: {a['detail']}" for a in failed)
            elif failed:  # a failed repeat of a cell that still met its pass-rate gate: noted, not a CI failure
                ET.SubElement(props, "property", name="failed_within_gate", value="true")
                notes = [f"{a['name']}: {a['detail']}" for a in failed] + notes
            if notes:  # optional checks that failed, handler timeouts: in the CI view, not failing it
                ET.SubElement(case, "system-err").text = "\n".join(notes)
            out = ET.SubElement(case, "system-out")
            out.text = (r.get("output") or "")[-4000:]
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def markdown(results: dict[str, Any]) -> str:
    lines = [f"## agentcap test — {'✅ passed' if results['passed'] else '❌ failed'}", "",
             "| cell | pass | rate (95% CI) | pass^k | tokens (mean) | time s (mean) | judge | flaky |",
             "|---|---|---|---|---|---|---|---|"]
    for cell, c in results["cells"].items():
        lo, hi = c["wilson_95"]
        k = max(c["pass_hat_k"]) if c["pass_hat_k"] else 0
        judge = c["judge_score"]["mean"]
        drift = f" ({c['drifted']} drifted)" if c.get("drifted") else ""
        lines.append(f"| `{cell}` | {c['passed']}/{c['repeats']}{drift} | {c['pass_rate']:.0%} ({lo:.0%}–{hi:.0%}) | "
                     f"{c['pass_hat_k'].get(k, 0):.2f} (k={k}) | {_n(c['tokens']['mean'])} | "
                     f"{_n(c['duration_s']['mean'], '.1f')} | {_n(judge, '.2f')} | {'⚠️' if c['flaky'] else ''} |")
    drifts = [r for r in results["records"] if r.get("drift")]
    if drifts:
        lines += ["", "### Drift", "", "The agent's calls no longer match the recorded cassette:", ""]
        for r in drifts:
            d = r["drift"]
            went = "" if r.get("verdict") == "drift" else " (went live)"
            where = Drift(**d).where
            at = f" at `{d['path']}`: recorded `{_code(d['recorded'])}`, got `{_code(d['got'])}`" if d.get("path") \
                else f": {d.get('message')}"
            lines.append(f"- **{r['cell']}#{r['repeat']}**{went}: {where}{at}")
    tapes = results.get("cassettes") or {}
    if tapes.get("notes") or tapes.get("refused"):
        lines += ["", "### Cassettes", ""] + [f"- {n}" for n in tapes.get("notes") or []] + \
            [f"- not written (secret found): {n}" for n in tapes.get("refused") or []]
    failures = [r for r in results["records"] if not r["passed"] and r.get("verdict") != "drift"]
    if failures:
        lines += ["", "### Failures", ""]
        for r in failures:
            lines.append(f"- **{r['cell']}#{r['repeat']}**")
            if r.get("error"):
                lines.append(f"  - run: {r['error']}")
            for a in r["assertions"]:
                if a["required"] and not a["passed"]:
                    lines.append(f"  - {a['name']}: {a['detail']}")
            j = r.get("judge") or {}
            if j and j.get("required", True) and not j.get("passed", True):
                lines.append(f"  - judge: score {j.get('score')} < {j.get('min_score')} — {j.get('reasoning') or j.get('error')}")
    noted = [(r, warnings_of(r)) for r in results["records"]]
    if any(w for _, w in noted):
        lines += ["", "### Warnings", "", "Noted, not failing a repeat (`required: false` checks, handler timeouts):", ""]
        for r, ws in noted:
            lines += [f"- **{r['cell']}#{r['repeat']}**: {w}" for w in ws]
    return "\n".join(lines) + "\n"


def _code(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    return text[:120].replace("`", "'").replace("\n", "\\n")


def _n(v: Any, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def write_reports(directory: Path, results: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(directory / "results.json", json.dumps(results, indent=2, default=str).encode())
    atomic_write_bytes(directory / "junit.xml", junit(results))
    atomic_write_bytes(directory / "report.md", markdown(results).encode())
