"""The resilience figures of one test, measured from its record the same way for every test.

Scenarios judge their own promises (the verdicts); these figures are the comparable numbers
behind them, for the summary table and for trends:

- the disturbance: a chaos experiment's method, else the test's first mark after "deployed"
  (a fault injected, a rollout or a load started);
- time to detect: from the disturbance until the cluster acted on it: fewer pods serving than
  before, a container restarted, or a rollout reported stuck (ProgressDeadlineExceeded);
- time to recover: from the disturbance until as many pods serve as before again (for a stuck
  rollout: until the Deployment progresses again), with every restarted pod Ready;
- failed requests and availability: over the load from the disturbance until recovery (until
  the end of the load when it never recovered, or when nothing had to recover);
- restarts: container restarts during the test; first scale-up: until the HPA first wanted
  more replicas than at the disturbance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from harness.argo_rollouts import ARGO_MARK
from harness.observe import Entry
from harness.report import series
from harness.report.model import TestRecord

SETUP_MARKS = frozenset({"deployed", "holding load"})
CHAOS_PREFIX = "chaos: "
# Marks of what a controller did (harness.argo_rollouts.rollout_steps), not of what the test
# did: never the disturbance.
OBSERVED_PREFIXES = (CHAOS_PREFIX, ARGO_MARK)
CHAOS_METHOD = "chaos: method"
STUCK = "False:ProgressDeadlineExceeded"


@dataclass(frozen=True)
class Figures:
    """Comparable numbers for one test; None where the record cannot say."""

    disturbance: str | None = None
    disturbance_at: float | None = None
    time_to_detect_s: float | None = None
    time_to_recover_s: float | None = None
    failed_requests: int | None = None
    requests: int | None = None
    availability_pct: float | None = None
    restarts: int | None = None
    first_scale_up_s: float | None = None
    peak_ready: int | None = None
    p95_ms: float | None = None
    rps: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def disturbance(marks: list[Entry]) -> Entry | None:
    """The mark the figures are measured from (see the module docstring)."""
    method = next((m for m in marks if m.name == CHAOS_METHOD), None)
    if method is not None:
        return method
    deployed = max((i for i, m in enumerate(marks) if m.name == "deployed"), default=-1)
    return next(
        (
            m
            for m in marks[deployed + 1 :]
            if m.name not in SETUP_MARKS and not m.name.startswith(OBSERVED_PREFIXES)
        ),
        None,
    )


def end_of_record(test: TestRecord) -> float | None:
    """The last moment that belongs to the test itself (before the fixtures' cleanup)."""
    times = [e.t for e in test.timeline.entries] + [
        load.ended for load in test.loads if load.ended is not None
    ]
    if not times:
        return None
    teardown = series.teardown_at(test.timeline)
    return min(max(times), teardown) if teardown is not None else max(times)


def figures(test: TestRecord) -> Figures:
    """Measure a test's figures from its timeline and load record."""
    end = end_of_record(test)
    mark = disturbance(series.marks(test.timeline))
    peak = _peak_ready(test, end)
    p95, rps = _load_totals(test)
    if mark is None or end is None:
        failed, requests = _requests(test, -math.inf, math.inf)
        return Figures(
            failed_requests=failed,
            requests=requests,
            availability_pct=_availability(failed, requests),
            restarts=_restarts(test, -math.inf, end),
            peak_ready=peak,
            p95_ms=p95,
            rps=rps,
        )
    fault = mark.t
    detected, recovered = _detect_and_recover(test, fault, end)
    window_end = recovered if recovered is not None else end
    failed, requests = _requests(test, fault, window_end)
    return Figures(
        disturbance=mark.name,
        disturbance_at=fault,
        time_to_detect_s=_since(fault, detected),
        time_to_recover_s=_since(fault, recovered),
        failed_requests=failed,
        requests=requests,
        availability_pct=_availability(failed, requests),
        restarts=_restarts(test, fault, end),
        first_scale_up_s=_since(fault, series.first_scale_up(test.timeline, fault, end)),
        peak_ready=peak,
        p95_ms=p95,
        rps=rps,
    )


def _since(start: float, moment: float | None) -> float | None:
    return round(moment - start, 2) if moment is not None else None


def _detect_and_recover(
    test: TestRecord, fault: float, end: float
) -> tuple[float | None, float | None]:
    """Detection and recovery as `Timeline.disruption` reads them (the verdicts' reading),
    unless a rollout was reported stuck first: then from that report until it progresses."""
    stuck_at = next(
        (
            e.t
            for e in test.timeline.of("Deployment", since=fault, until=end)
            if e.state.get("conditions", {}).get("Progressing") == STUCK
        ),
        None,
    )
    disruption = test.timeline.disruption(fault, until=end)
    detected = disruption.detected_at
    if stuck_at is not None and (detected is None or stuck_at < detected):
        return stuck_at, _progressing_again(test, stuck_at, end, disruption.serving_before)
    return detected, disruption.recovered_at


def _progressing_again(
    test: TestRecord, stuck_at: float, end: float, serving_before: int
) -> float | None:
    ready = series.ready_pods(test.timeline)
    for e in test.timeline.of("Deployment", since=stuck_at, until=end):
        progressing = e.state.get("conditions", {}).get("Progressing", "")
        if progressing != STUCK and (series.value_at(ready, e.t) or 0) >= serving_before:
            return e.t
    return None


def _peak_ready(test: TestRecord, end: float | None) -> int | None:
    counts = [v for t, v in series.ready_pods(test.timeline) if end is None or t <= end]
    return int(max(counts)) if counts else None


def _restarts(test: TestRecord, since: float, until: float | None) -> int | None:
    if not test.timeline.of("Pod"):
        return None
    return series.restarts_between(test.timeline, since, until if until is not None else math.inf)


def _requests(test: TestRecord, start: float, end: float) -> tuple[int | None, int | None]:
    """Failed and completed requests of every load run over [start, end] (None: no load)."""
    loads = [load for load in test.loads if load.series]
    if not loads:
        return None, None
    requests = failed = 0
    for load in loads:
        done, bad = load.requests_between(start, end)
        requests, failed = requests + done, failed + bad
    return failed, requests


def _availability(failed: int | None, requests: int | None) -> float | None:
    if failed is None or not requests:
        return None
    return round(100.0 * (requests - failed) / requests, 3)


def _load_totals(test: TestRecord) -> tuple[float | None, float | None]:
    """The first complete load run's p95 and average requests/s."""
    total = next((load.total for load in test.loads if load.total is not None), None)
    if total is None:
        return None, None
    return total.p95_ms, round(total.rps, 2)
