"""The report rendered for machines and CI: results.json (versioned) and summary.md (a CI job
summary), plus the formatting index.html shares (`harness.report.html`).

Every string here was redacted when it was read (`harness.report.model`), and is escaped for
Markdown where it is written.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from harness.report.capacity import MEASUREMENT as CAPACITY_MEASUREMENT
from harness.report.capacity import CapacityAnalysis, Step
from harness.report.document import Report, TestView
from harness.report.model import LoadRecord, VerdictRecord
from harness.report.trends import Trend, describe

SCHEMA = "kube-harness/report"
SCHEMA_VERSION = 1
STATUS_ICON = {
    "passed": "✅",
    "failed": "❌",
    "skipped": "⏭️",
    "unknown": "❔",
    "incomplete": "⚠️",
    "empty": "⚪",
    "flaky": "🔁",
}


# ---------------------------------------------------------------- formatting


def fmt(value: Any, unit: str = "") -> str:
    """A measured value with its unit, compact; "-" when nothing was measured."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if unit == "ratio":
        return f"{value:.2%}"
    if unit == "%":
        return f"{value:.2f}%"
    if unit == "ms":
        return f"{value:.0f} ms"
    if unit == "s":
        return f"{value:.1f} s"
    text = f"{value:g}" if float(value).is_integer() else f"{value:.2f}"
    return f"{text} {unit}".strip()


def iso(t: float) -> str:
    """An epoch time as UTC text: reports are read in other time zones."""
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _kind(view: TestView) -> str:
    if view.capacity is not None:
        return "capacity"
    return "resilience" if view.record.judged else "recorded"


def load_totals(load: LoadRecord) -> dict[str, Any]:
    """A load run's totals: Locust's summary, else what its per-second series adds up to."""
    if load.total is not None:
        t = load.total
        return {
            "requests": t.requests,
            "failures": t.failures,
            "rps": round(t.rps, 2),
            "p50_ms": t.p50_ms,
            "p95_ms": t.p95_ms,
            "p99_ms": t.p99_ms,
        }
    seconds = len(load.series)
    requests = sum(p.requests for p in load.series)
    return {
        "requests": requests,
        "failures": sum(p.failures for p in load.series),
        "rps": round(requests / seconds, 2) if seconds else None,
        "p50_ms": None,
        "p95_ms": None,
        "p99_ms": None,
    }


# ---------------------------------------------------------------- results.json


def render_json(report: Report) -> dict[str, Any]:
    """The results.json document (schema `SCHEMA`, version `SCHEMA_VERSION`)."""
    run_dir = report.run.directory
    junit = report.run.junit
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "run_id": report.run_id,
        "started": report.started,
        "started_at": iso(report.started) if report.started is not None else None,
        "generated_at": iso(report.generated_at),
        "status": report.status,
        "counts": {
            "tests": len(report.tests),
            **{s: report.count(s) for s in ("passed", "failed", "skipped", "unknown")},
        },
        "junit": None
        if junit is None
        else {
            "tests": junit.tests,
            "passed": junit.passed,
            "failed": junit.failed,
            "skipped": junit.skipped,
            "failures": [{"test": name, "message": msg} for name, msg in junit.failures],
        },
        "problems": list(report.problems),
        "tests": [
            {
                "id": v.record.test_id,
                "label": v.record.label,
                "scenario": v.record.scenario,
                "kind": _kind(v),
                "status": v.record.status,
                "duration_s": v.record.outcome.duration_s if v.record.outcome else None,
                "verdicts": [_verdict_json(verdict) for verdict in v.record.verdicts],
                "measurements": {
                    k: m for k, m in v.record.measurements.items() if k != CAPACITY_MEASUREMENT
                },
                "figures": v.figures.to_json(),
                "loads": [
                    {"name": load.name, "complete": load.total is not None, **load_totals(load)}
                    for load in v.record.loads
                ],
                "capacity": v.capacity.to_json() if v.capacity else None,
                "diagnostics": os.path.relpath(v.record.diagnostics, run_dir)
                if v.record.diagnostics
                else None,
                "problems": list(v.problems),
            }
            for v in report.tests
        ],
        "repeats": [
            {
                "test": r.test,
                "label": r.label,
                "passed": r.passed,
                "runs": r.runs,
                "verdict": r.verdict,
            }
            for r in report.repeats()
        ],
        "key_figures": report.key_figures(),
        "trends": [
            {
                "test": t.test_id,
                "label": t.label,
                "figure": t.figure,
                "runs": list(t.runs),
                "values": list(t.values),
                "change": t.change,
                "verdict": t.verdict,
            }
            for t in report.trends
        ],
    }


def _verdict_json(v: VerdictRecord) -> dict[str, Any]:
    return {
        "name": v.name,
        "measured": v.measured,
        "limit": v.limit,
        "unit": v.unit,
        "status": v.status,
        "note": v.note,
        "why": v.why,
    }


# ---------------------------------------------------------------- summary.md


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell (no HTML, no column breaks)."""
    return escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    """summary.md: the run at a glance, fit for $GITHUB_STEP_SUMMARY."""
    lines = [
        f"## {STATUS_ICON[report.status]} kube-harness run `{report.run_id}`: {report.status}",
        "",
        counts_line(report),
        "",
    ]
    if report.tests:
        lines += [
            "| Test | Status | Disturbance | Detect | Recover | Failed requests | Availability "
            "| Restarts | Verdicts |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for v in report.tests:
            f = v.figures
            lines.append(
                f"| {_md(v.record.label)} | {STATUS_ICON[v.record.status]} {v.record.status} "
                f"| {_md(f.disturbance or '-')} | {fmt(f.time_to_detect_s, 's')} "
                f"| {fmt(f.time_to_recover_s, 's')} | {fmt(f.failed_requests)} "
                f"| {fmt(f.availability_pct, '%')} | {fmt(f.restarts)} | {verdict_count(v)} |"
            )
        lines.append("")
    broken = [(v, b) for v in report.tests for b in v.record.verdicts if not b.passed]
    if broken:
        lines += ["### Promises not kept", ""]
        lines += [
            f"- **{_md(v.record.label)}**: {_md(b.name)}: {fmt(b.measured, b.unit)} "
            f"(limit {fmt(b.limit, b.unit)})"
            f"{' - ' + _md(b.explanation) if b.explanation else ''}"
            for v, b in broken
        ]
        lines.append("")
    repeats = report.repeats()
    if repeats:
        lines += ["### Repeated runs", "", "| Test | Passed | Verdict |", "|---|---|---|"]
        lines += [
            f"| {_md(r.label)} | {r.passed} of {r.runs} | {STATUS_ICON[r.verdict]} {r.verdict} |"
            for r in repeats
        ]
        lines.append("")
    for v in report.tests:
        if v.capacity is not None:
            lines += _capacity_markdown(v.record.label, v.capacity)
    if report.trends:
        lines += _trends_markdown(report.trends)
    junit = report.run.junit
    if junit and junit.failures:
        lines += ["### Failed tests (JUnit)", ""]
        lines += [f"- `{_md(name)}`: {_md(message)}" for name, message in junit.failures]
        lines.append("")
    problems = all_problems(report)
    if problems:
        lines += ["### Missing or unreadable", ""]
        lines += [f"- {_md(p)}" for p in problems]
        lines.append("")
    lines.append(
        f"Full report with timelines: `{report.run.directory.name}/index.html` "
        "(self-contained; open it in a browser)."
    )
    return "\n".join(lines) + "\n"


def counts_line(report: Report) -> str:
    """One sentence with the run's counts, JUnit's when given, and when it was generated."""
    parts = [f"{len(report.tests)} test folder(s)"] + [
        f"{report.count(s)} {s}"
        for s in ("passed", "failed", "skipped", "unknown")
        if report.count(s)
    ]
    junit = report.run.junit
    if junit:
        parts.append(
            f"JUnit: {junit.tests} tests, {junit.passed} passed, {junit.failed} failed, "
            f"{junit.skipped} skipped"
        )
    if not report.tests:
        parts.append("no test recorded anything into this run folder")
    return "; ".join(parts) + f". Generated {iso(report.generated_at)}."


def verdict_count(view: TestView) -> str:
    """ "kept/judged" promises of a test ("-" when it judged nothing)."""
    total = len(view.record.verdicts)
    return f"{total - view.failed_verdicts}/{total}" if total else "-"


def _capacity_markdown(label: str, c: CapacityAnalysis) -> list[str]:
    knee = (
        f"{fmt(c.knee.rps, 'req/s')} at {c.knee.users} users: {c.knee.reason}"
        if c.knee
        else "not reached"
    )
    lines = [
        f"### Capacity: {_md(label)}",
        "",
        f"- Sustainable at the SLO: **{fmt(c.sustainable_rps_per_replica, 'req/s')} per replica** "
        f"({fmt(c.sustainable_rps, 'req/s')} in total)",
        f"- Knee: {_md(knee)}",
        f"- HPA: first scale-up {fmt(c.first_scale_up_s, 's')} after the load rose, steady "
        f"state after {fmt(c.steady_state_s, 's')}, peak {fmt(c.peak_replicas)} replicas",
        "",
        "| Users | req/s | p95 | Error rate | Ready pods | req/s per replica | Within SLO |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {s.users} | {fmt(s.rps)} | {fmt(s.p95_ms, 'ms')} | {fmt(s.error_rate, 'ratio')} "
        f"| {fmt(s.ready_pods)} | {fmt(s.rps_per_replica)} | {within_slo(s)} |"
        for s in c.steps
    ]
    if c.load_from:
        lines += ["", f"Load: {_md(c.load_from)}"]
    return [*lines, ""]


def within_slo(step: Step) -> str:
    """A step's SLO column: yes, no, or why it was not measured."""
    if step.not_measured:
        return f"not measured ({step.not_measured})"
    return "yes" if step.within_slo else "no"


def trend_value(trend: Trend, value: float | None) -> str:
    """A value of a trend in its figure's unit."""
    return fmt(value, describe(trend.figure).unit)


def _trends_markdown(found: Sequence[Trend]) -> list[str]:
    moved = [t for t in found if t.verdict in ("worse", "better", "changed")]
    worse = sum(t.verdict == "worse" for t in found)
    lines = [
        f"### Trends over {len(found[0].runs)} runs",
        "",
        f"{worse} figure(s) worse, {len(found) - len(moved)} of {len(found)} unchanged.",
        "",
    ]
    if moved:
        lines += ["| Test | Figure | Before | Now | Change |", "|---|---|---|---|---|"]
        lines += [
            f"| {_md(t.label)} | {_md(describe(t.figure).title)} "
            f"| {trend_value(t, t.previous)} | {trend_value(t, t.current)} "
            f"| {'⚠️ ' if t.verdict == 'worse' else ''}{t.verdict}"
            f"{f' ({t.change:+.0%})' if t.change is not None else ''} |"
            for t in moved
        ]
        lines.append("")
    return lines


def all_problems(report: Report) -> list[str]:
    """The run's problems, then each test's, prefixed with the test's name."""
    return [*report.problems] + [
        f"{v.record.label}: {problem}" for v in report.tests for problem in v.problems
    ]


def write_text(path: Path, text: str) -> Path:
    """Write a report file atomically, so a reader never sees half of it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path
