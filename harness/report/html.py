"""index.html: the report for people. Self-contained (inline CSS and SVG charts, no script, no
network), so it opens from a CI artefact or a file share as it is.

Every string here was redacted when it was read (`harness.report.model`), and is escaped for
HTML where it is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.report import series
from harness.report.capacity import MEASUREMENT as CAPACITY_MEASUREMENT
from harness.report.capacity import CapacityAnalysis
from harness.report.charts import Limit, Line, Marker, Panel, sparkline, time_chart, xy_chart
from harness.report.document import Report, TestView
from harness.report.model import LoadRecord
from harness.report.render import (
    all_problems,
    counts_line,
    fmt,
    load_totals,
    trend_value,
    verdict_count,
)
from harness.report.resilience import end_of_record
from harness.report.trends import Trend, describe

BLUE, RED, GREEN, ORANGE, GREY, TEAL = (
    "#2563eb",
    "#dc2626",
    "#16a34a",
    "#ea580c",
    "#6b7280",
    "#0d9488",
)
MAX_MARK_ROWS = 40

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1100px;
color:#111827;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid
#e5e7eb;padding-bottom:4px}h3{font-size:15px;margin:24px 0 6px}
table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}
th,td{border-bottom:1px solid #e5e7eb;padding:4px 6px;text-align:left;vertical-align:top;
overflow-wrap:anywhere}
th{background:#f9fafb;font-weight:600}td.num{text-align:right;white-space:nowrap}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600}
.passed,.pass,.better{background:#dcfce7;color:#166534}
.failed,.fail,.worse{background:#fee2e2;color:#991b1b}
.unknown,.incomplete,.inconclusive,.changed,.flaky{background:#fef9c3;color:#854d0e}
.skipped,.empty,.same,.new{background:#f3f4f6;color:#374151}
.muted{color:#6b7280;font-size:12px}.problems li{color:#92400e}
section.test{border:1px solid #e5e7eb;border-radius:8px;padding:8px 16px;margin:16px 0}
svg{max-width:100%;height:auto}.charts{display:flex;flex-wrap:wrap;gap:12px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;font-size:13px}
dt{color:#6b7280}dd{margin:0}code{font-size:12px}
"""


def render_html(report: Report) -> str:
    """index.html: summary, capacity, trends, then every test with its verdicts and timeline."""
    body = [
        f"<h1>kube-harness run <code>{escape(report.run_id)}</code> "
        f'<span class="badge {report.status}">{report.status}</span></h1>',
        f'<p class="muted">{escape(counts_line(report))}</p>',
    ]
    problems = all_problems(report)
    if problems:
        body.append("<h2>Missing or unreadable</h2><p>This report is partial:</p>")
        body.append(_problem_list(problems))
    body += _summary_html(report)
    repeats = report.repeats()
    if repeats:
        body += [
            "<h2>Repeated runs</h2>",
            "<table><tr><th>Test</th><th>Passed</th><th></th></tr>",
            *(
                f"<tr><td>{escape(r.label)}</td><td class='num'>{r.passed} of {r.runs}</td>"
                f"<td>{_badge(r.verdict)}</td></tr>"
                for r in repeats
            ),
            "</table>",
        ]
    for v in report.tests:
        if v.capacity is not None:
            body += _capacity_html(v.record.label, v.capacity)
    if report.trends:
        body += _trends_html(report.trends)
    junit = report.run.junit
    if junit and junit.failures:
        body.append("<h2>Failed tests (JUnit)</h2><ul>")
        body += [
            f"<li><code>{escape(name)}</code>: {escape(message)}</li>"
            for name, message in junit.failures
        ]
        body.append("</ul>")
    if report.tests:
        body.append("<h2>Tests</h2>")
        body += [_test_html(v, report.run.directory) for v in report.tests]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>kube-harness {escape(report.run_id)}: {report.status}</title>"
        f"<style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )


def _problem_list(problems: Sequence[str]) -> str:
    return '<ul class="problems">' + "".join(f"<li>{escape(p)}</li>" for p in problems) + "</ul>"


def _badge(status: str) -> str:
    return f'<span class="badge {escape(status)}">{escape(status)}</span>'


def _summary_html(report: Report) -> list[str]:
    if not report.tests:
        return [
            "<h2>Resilience</h2><p>No test recorded anything into this run folder: the run "
            "had no scenario, or every test ran without the harness's fixtures.</p>"
        ]
    rows = []
    for v in report.tests:
        f = v.figures
        cells = [
            f'<a href="#{escape(v.record.test_id)}">{escape(v.record.label)}</a>',
            _badge(v.record.status),
            escape(f.disturbance or "-"),
            *(
                f'<td class="num">{fmt(value, unit)}</td>'
                for value, unit in (
                    (f.time_to_detect_s, "s"),
                    (f.time_to_recover_s, "s"),
                    (f.failed_requests, ""),
                    (f.availability_pct, "%"),
                    (f.restarts, ""),
                    (f.first_scale_up_s, "s"),
                )
            ),
            f'<td class="num">{verdict_count(v)}</td>',
        ]
        rows.append(
            "<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>"
        )
    return [
        "<h2>Resilience</h2>",
        '<p class="muted">Measured from each test\'s disturbance (its first mark after '
        "deployment): detect = fewer pods serving, a restart or a stuck rollout; recover = as "
        "many pods serving as before; failed requests and availability over that window.</p>",
        "<table><tr><th>Test</th><th>Status</th><th>Disturbance</th><th>Detect</th>"
        "<th>Recover</th><th>Failed requests</th><th>Availability</th><th>Restarts</th>"
        "<th>First scale-up</th><th>Verdicts</th></tr>",
        *rows,
        "</table>",
    ]


def _capacity_html(label: str, c: CapacityAnalysis) -> list[str]:
    knee_rps = c.knee.rps if c.knee else None
    latency = [
        Line("p95", [(s.rps, s.p95_ms) for s in c.steps], ORANGE),
        Line("p50", [(s.rps, s.p50_ms) for s in c.steps], BLUE),
    ]
    replicas = [
        Line("ready pods", [(s.rps, s.ready_pods) for s in c.steps], GREEN),
        Line("HPA desired", [(s.rps, s.desired_replicas) for s in c.steps], TEAL),
    ]
    knee_line = [Limit(knee_rps, "knee")] if knee_rps is not None else []
    users = [f"{s.users} users" for s in c.steps]
    charts = [
        xy_chart(
            latency,
            title="Latency against throughput",
            x_label="requests/s",
            y_label="ms",
            hlines=[Limit(c.max_p95_ms, "SLO p95")] if c.max_p95_ms is not None else [],
            vlines=knee_line,
            point_labels=users,
        ),
        xy_chart(
            replicas,
            title="Replicas against load",
            x_label="requests/s",
            y_label="replicas",
            vlines=knee_line,
            point_labels=users,
        ),
    ]
    rows = "".join(
        f"<tr><td class='num'>{s.users}</td><td class='num'>{fmt(s.rps)}</td>"
        f"<td class='num'>{fmt(s.p50_ms, 'ms')}</td><td class='num'>{fmt(s.p95_ms, 'ms')}</td>"
        f"<td class='num'>{fmt(s.p99_ms, 'ms')}</td>"
        f"<td class='num'>{fmt(s.error_rate, 'ratio')}</td>"
        f"<td class='num'>{fmt(s.ready_pods)}</td><td class='num'>{fmt(s.desired_replicas)}</td>"
        f"<td class='num'>{fmt(s.rps_per_replica)}</td>"
        + (
            f"<td>{_badge('inconclusive')} {escape(s.not_measured)}</td></tr>"
            if s.not_measured
            else f"<td>{_badge('pass' if s.within_slo else 'fail')}</td></tr>"
        )
        for s in c.steps
    )
    knee = (
        f"{fmt(knee_rps, 'req/s')} at {c.knee.users} users: {c.knee.reason}"
        if c.knee
        else ("not reached: every step met the SLO and kept growing")
    )
    return [
        f"<h2>Capacity: {escape(label)}</h2>",
        "<dl>",
        f"<dt>Sustainable at the SLO</dt><dd><b>{fmt(c.sustainable_rps_per_replica, 'req/s')} "
        f"per replica</b> ({fmt(c.sustainable_rps, 'req/s')} in total)</dd>",
        f"<dt>Knee</dt><dd>{escape(knee)}</dd>",
        f"<dt>Load rise to first scale-up</dt><dd>{fmt(c.first_scale_up_s, 's')}</dd>",
        f"<dt>Load rise to steady state</dt><dd>{fmt(c.steady_state_s, 's')}</dd>",
        f"<dt>Peak replicas</dt><dd>{fmt(c.peak_replicas)}</dd>",
        f"<dt>SLO</dt><dd>p95 &le; {fmt(c.max_p95_ms, 'ms')}, error rate &le; "
        f"{fmt(c.max_error_rate, 'ratio')}</dd>",
        *([f"<dt>Load</dt><dd>{escape(c.load_from)}</dd>"] if c.load_from else []),
        "</dl>",
        f'<div class="charts">{"".join(charts)}</div>',
        "<table><tr><th>Users</th><th>req/s</th><th>p50</th><th>p95</th><th>p99</th>"
        "<th>Error rate</th><th>Ready pods</th><th>HPA desired</th><th>req/s per replica</th>"
        f"<th>SLO</th></tr>{rows}</table>",
    ]


def _trends_html(found: Sequence[Trend]) -> list[str]:
    rows = []
    for t in found:
        info = describe(t.figure)
        change = f"{t.change:+.0%}" if t.change is not None else ""
        rows.append(
            f"<tr><td>{escape(t.label)}</td><td>{escape(info.title)}</td>"
            f"<td>{sparkline(t.values, worse=t.verdict == 'worse')}</td>"
            f"<td class='num'>{trend_value(t, t.previous)}</td>"
            f"<td class='num'>{trend_value(t, t.current)}</td>"
            f"<td class='num'>{change}</td><td>{_badge(t.verdict)}</td></tr>"
        )
    runs = found[0].runs
    return [
        f"<h2>Trends over {len(runs)} runs</h2>",
        f'<p class="muted">From {escape(runs[0])} to {escape(runs[-1])}. Worse = moved the '
        "wrong way by more than 20% and more than the figure's noise.</p>",
        "<table><tr><th>Test</th><th>Figure</th><th>Trend</th><th>Before</th><th>Now</th>"
        "<th>Change</th><th></th></tr>",
        *rows,
        "</table>",
    ]


def _test_html(view: TestView, run_dir: Path) -> str:
    record = view.record
    parts = [
        f'<section class="test" id="{escape(record.test_id)}">',
        f"<h3>{escape(record.label)} {_badge(record.status)}</h3>",
        f'<p class="muted"><code>{escape(record.test_id)}</code>'
        + (
            f" · {fmt(record.outcome.duration_s, 's')}"
            if record.outcome and record.outcome.duration_s is not None
            else ""
        )
        + "</p>",
    ]
    if record.outcome and record.outcome.message:
        parts.append(f"<p><b>pytest:</b> {escape(record.outcome.message)}</p>")
    if view.problems:
        parts.append(
            '<ul class="problems">'
            + "".join(f"<li>{escape(p)}</li>" for p in view.problems)
            + "</ul>"
        )
    if record.verdicts:
        parts.append(
            "<table><tr><th>Promise</th><th>Measured</th><th>Limit</th><th></th><th>Note</th></tr>"
            + "".join(
                f"<tr><td>{escape(v.name)}</td><td class='num'>{fmt(v.measured, v.unit)}</td>"
                f"<td class='num'>{fmt(v.limit, v.unit)}</td><td>{_badge(v.status)}</td>"
                f"<td>{escape(v.explanation)}</td></tr>"
                for v in record.verdicts
            )
            + "</table>"
        )
    parts.append(_figures_html(view))
    parts.append(_loads_html(record.loads))
    parts.append(timeline_chart(view))
    parts += _marks_html(view)
    parts.append(_links_html(view, run_dir))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _figures_html(view: TestView) -> str:
    f = view.figures
    items = [
        ("disturbance", escape(f.disturbance) if f.disturbance else None),
        ("time to detect", fmt(f.time_to_detect_s, "s")),
        ("time to recover", fmt(f.time_to_recover_s, "s")),
        ("requests failed from the disturbance on", fmt(f.failed_requests)),
        ("availability", fmt(f.availability_pct, "%")),
        ("container restarts", fmt(f.restarts)),
        ("first scale-up", fmt(f.first_scale_up_s, "s")),
        ("peak Ready pods", fmt(f.peak_ready)),
        ("p95 / requests per second", f"{fmt(f.p95_ms, 'ms')} / {fmt(f.rps)}"),
    ]
    items += [
        (escape(name), escape(fmt(value)))
        for name, value in view.record.measurements.items()
        if name != CAPACITY_MEASUREMENT
    ]
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items if v) + "</dl>"


def _loads_html(loads: Sequence[LoadRecord]) -> str:
    if not loads:
        return ""
    rows = []
    for load in loads:
        t = load_totals(load)
        rows.append(
            f"<tr><td>{escape(load.name)}</td><td class='num'>{fmt(t['requests'])}</td>"
            f"<td class='num'>{fmt(t['failures'])}</td><td class='num'>{fmt(t['rps'])}</td>"
            f"<td class='num'>{fmt(t['p50_ms'], 'ms')}</td>"
            f"<td class='num'>{fmt(t['p95_ms'], 'ms')}</td>"
            f"<td class='num'>{fmt(t['p99_ms'], 'ms')}</td>"
            f"<td>{'' if load.total else 'no summary: from the per-second series'}</td></tr>"
        )
    return (
        "<table><tr><th>Load</th><th>Requests</th><th>Failed</th><th>req/s</th><th>p50</th>"
        "<th>p95</th><th>p99</th><th></th></tr>" + "".join(rows) + "</table>"
    )


def timeline_chart(view: TestView) -> str:
    """The test's timeline chart: load, latency, each version's share of the answers (when
    more than one answered), pods and HPA replicas, with its marks."""
    record = view.record
    timeline = record.timeline
    end = end_of_record(record)
    starts = [e.t for e in timeline.entries[:1]] + [
        load.started for load in record.loads if load.started is not None
    ]
    if end is None or not starts:
        return '<p class="muted">No timeline or load recorded: no chart.</p>'
    start = min(starts)
    points = sorted((p for load in record.loads for p in load.series), key=lambda p: p.t)
    desired, current = series.hpa_replicas(timeline)
    load_panels = [
        Panel(
            "Requests and failures",
            "per second",
            [
                Line("requests/s", [(p.t + 0.5, p.requests) for p in points], BLUE),
                Line("failures/s", [(p.t, p.failures) for p in points], RED, bars=True),
            ],
        ),
        Panel(
            "Latency",
            "ms",
            [
                Line("p50", [(p.t + 0.5, p.p50_ms) for p in points], BLUE),
                Line("p95", [(p.t + 0.5, p.p95_ms) for p in points], ORANGE),
                Line("p99", [(p.t + 0.5, p.p99_ms) for p in points], RED, dash="4 3"),
            ],
        ),
    ]
    pods = Panel(
        "Pods and replicas",
        "count",
        [
            Line("Ready pods", series.ready_pods(timeline), GREEN, step=True),
            Line("HPA desired", desired, TEAL, step=True, dash="6 3"),
            Line("HPA current", current, GREY, step=True, dash="2 2"),
        ],
    )
    shares = series.version_shares(points)
    if len(shares) > 1:  # a rollout, a switch or a canary: who answered, second by second
        palette = (BLUE, ORANGE, GREEN, TEAL, RED, GREY)
        load_panels.append(
            Panel(
                "Traffic share by version",
                "% of answers",
                [
                    Line(version, points_, palette[i % len(palette)])
                    for i, (version, points_) in enumerate(shares.items())
                ],
            )
        )
    panels = [*load_panels, pods] if points else [pods]  # a test without load: pods only
    markers = [Marker(m.t, m.name) for m in series.marks(timeline) if m.t <= end]
    return time_chart(panels, markers, start=start, end=end, title=f"Timeline: {record.label}")


def _marks_html(view: TestView) -> list[str]:
    marks = series.marks(view.record.timeline)
    if not marks:
        return []
    start = min(
        [view.record.timeline.entries[0].t]
        + [load.started for load in view.record.loads if load.started is not None]
    )
    rows = "".join(
        f"<tr><td class='num'>+{m.t - start:.1f} s</td><td>{escape(m.name)}</td>"
        f"<td><code>{escape(_state(m.state))}</code></td></tr>"
        for m in marks[:MAX_MARK_ROWS]
    )
    more = (
        f"<p class='muted'>{len(marks) - MAX_MARK_ROWS} more marks not listed.</p>"
        if len(marks) > MAX_MARK_ROWS
        else ""
    )
    return [
        f"<details><summary>Marks ({len(marks)})</summary><table><tr><th>When</th>"
        f"<th>Mark</th><th>State</th></tr>{rows}</table>{more}</details>"
    ]


def _state(state: dict[str, Any]) -> str:
    return ", ".join(f"{k}={round(v, 2) if isinstance(v, float) else v}" for k, v in state.items())


def _links_html(view: TestView, run_dir: Path) -> str:
    record = view.record
    links: list[tuple[Path, str]] = [
        (record.directory / name, name)
        for name in ("result.json", "timeline.jsonl")
        if (record.directory / name).exists()
    ]
    for load in record.loads:
        folder = record.directory / load.name
        links += [
            (folder / name, f"{load.name}/{name}")
            for name in ("locust.html", "load-events.jsonl")
            if (folder / name).exists()
        ]
    if record.diagnostics:
        links.append((record.diagnostics, "diagnostics/"))
    if not links:
        return ""
    return (
        '<p class="muted">Files: '
        + " · ".join(
            f'<a href="{_relative(path, run_dir)}">{escape(text)}</a>' for path, text in links
        )
        + "</p>"
    )


def _relative(path: Path, start: Path) -> str:
    return quote(os.path.relpath(path, start))
