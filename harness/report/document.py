"""The report's content, assembled once from the record and rendered three ways (render.py)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Literal

from harness.report import capacity, resilience, trends
from harness.report.capacity import CapacityAnalysis
from harness.report.model import RunRecord, TestRecord, read_run
from harness.report.resilience import Figures
from harness.report.trends import KeyFigures, Trend

RunStatus = Literal["passed", "failed", "incomplete", "empty"]
# How `--repeat N` suffixes a test's id: demo-run2of3 (see harness.plugin.shared.repeat_ids).
_REPEAT = re.compile(r"-run(\d+)of(\d+)")
# The resilience figures trends follow (the others describe rather than measure the test).
_FIGURE_NAMES = [f.name for f in fields(Figures) if f.name in trends.FIGURES]


@dataclass(frozen=True)
class TestView:
    """One test as the report shows it: its record, its figures, its capacity analysis."""

    __test__ = False  # not a pytest test class, despite its name

    record: TestRecord
    figures: Figures
    capacity: CapacityAnalysis | None
    problems: tuple[str, ...]

    @property
    def failed_verdicts(self) -> int:
        return sum(not v.passed for v in self.record.verdicts)

    def key_figures(self) -> dict[str, float]:
        """The figures trends follow for this test (see harness.report.trends)."""
        out: dict[str, float] = {}
        if self.record.judged:
            out["verdicts_failed"] = float(self.failed_verdicts)
        for name in _FIGURE_NAMES:
            value = getattr(self.figures, name)
            if value is not None:
                out[name] = float(value)
        for name, value in self.record.measurements.items():
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and math.isfinite(value):
                out[trends.MEASUREMENT_PREFIX + name] = float(value)
        if self.capacity is not None:
            c = self.capacity
            extra = {
                "sustainable_rps_per_replica": c.sustainable_rps_per_replica,
                "sustainable_rps": c.sustainable_rps,
                "knee_rps": c.knee.rps if c.knee else None,
                "first_scale_up_s": c.first_scale_up_s,
                "steady_state_s": c.steady_state_s,
                "peak_replicas": c.peak_replicas,
            }
            out |= {k: float(v) for k, v in extra.items() if v is not None}
        return out


@dataclass(frozen=True)
class RepeatCount:
    """One test run several times (--repeat): how many of its runs passed."""

    test: str
    label: str
    passed: int
    runs: int

    @property
    def verdict(self) -> Literal["passed", "flaky", "failed"]:
        if self.passed == self.runs:
            return "passed"
        return "flaky" if self.passed else "failed"


@dataclass(frozen=True)
class Report:
    """Everything the three renderings show."""

    run: RunRecord
    tests: tuple[TestView, ...]
    trends: tuple[Trend, ...]
    problems: tuple[str, ...]
    generated_at: float

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def count(self, status: str) -> int:
        return sum(t.record.status == status for t in self.tests)

    @property
    def status(self) -> RunStatus:
        junit = self.run.junit
        if not self.tests and not (junit and junit.tests):
            return "empty"
        if self.count("failed") or (junit and junit.failed):
            return "failed"
        if self.count("unknown"):
            return "incomplete"
        return "passed"

    def key_figures(self) -> KeyFigures:
        return {t.record.test_id: figures for t in self.tests if (figures := t.key_figures())}

    def labels(self) -> dict[str, str]:
        return {t.record.test_id: t.record.label for t in self.tests}

    def repeats(self) -> list[RepeatCount]:
        """Passes per repeated test, in the order the tests ran (empty without --repeat)."""
        groups: dict[str, list[TestView]] = {}
        for view in self.tests:
            if _REPEAT.search(view.record.test_id):
                groups.setdefault(_REPEAT.sub("", view.record.test_id), []).append(view)
        return [
            RepeatCount(
                test,
                views[0].record.label,
                sum(v.record.status == "passed" for v in views),
                len(views),
            )
            for test, views in groups.items()
        ]

    @property
    def started(self) -> float | None:
        """When the run's first test started recording (None when nothing was recorded)."""
        times = [
            t
            for v in self.tests
            for t in (
                *(e.t for e in v.record.timeline.entries[:1]),
                *(load.started for load in v.record.loads),
            )
            if t is not None
        ]
        return min(times, default=None)


def build(
    run_dir: Path,
    *,
    history: Sequence[Path] = (),
    junit_xml: Path | None = None,
    now: float | None = None,
) -> Report:
    """Read the run and its history and work out every figure the report shows."""
    run = read_run(run_dir, junit_xml=junit_xml)
    views = []
    for record in run.tests:
        analysis, problem = capacity.from_measurements(record.measurements)
        views.append(
            TestView(
                record=record,
                figures=resilience.figures(record),
                capacity=analysis,
                problems=(*record.problems, *([problem] if problem else [])),
            )
        )
    past, history_problems = trends.read_history(history)
    report = Report(
        run=run,
        tests=tuple(views),
        trends=(),
        problems=(*run.problems, *history_problems),
        generated_at=time.time() if now is None else now,
    )
    found = trends.trends(run.run_id, report.started, report.key_figures(), report.labels(), past)
    return replace(report, trends=tuple(found))
