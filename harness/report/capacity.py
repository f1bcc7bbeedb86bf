"""Capacity from a step load: what each step sustained, where latency broke, how the HPA reacted.

Pure functions of the load's per-second series and the timeline, shared by the capacity
scenario (which judges and records the analysis in its result.json) and the report (which
renders it). The numbers mean:

- a step: the seconds the load ran at one user count, less its first third (at most
  `WARM_UP_S`) while the new users settle; its latency is the median of its per-second
  percentiles, its replicas the time-weighted mean of the Ready pods;
- within the SLO: the step's p95 and error rate are within the given limits;
- not measured: a Locust process could not keep up during the step (CPU saturated, lost or
  lagging): its figures describe the generator, so it is neither within the SLO nor a knee;
- sustainable requests/s per replica: the best requests/s per Ready replica of any step
  within the SLO (a lower bound: a replica was never pushed further while meeting it);
- the knee: the first step that broke the SLO, or whose throughput stopped growing with
  its users (`PLATEAU_GAIN`), whichever comes first;
- HPA reaction: from the load's first second to the first scale-up decision, and to the
  steady state (the last change of the desired count, once Ready pods matched it, provided
  it then held for `STEADY_HOLD_S` until the load ended).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from harness.load.merge import saturation
from harness.load.result import Generator, SeriesPoint
from harness.observe import Timeline
from harness.report import series

WARM_UP_S = 5.0
MIN_STEP_S = 3
# A step with 25% more users or more must add at least this share of that growth in
# requests/s; less means the service (or the generator) stopped keeping up.
PLATEAU_GAIN = 0.5
PLATEAU_MIN_USER_GROWTH = 0.25
STEADY_HOLD_S = 10.0
# The key of result.json's measurements under which the capacity scenario records its analysis.
MEASUREMENT = "capacity"


@dataclass(frozen=True)
class Step:
    """One user count of the step load, measured after its warm-up."""

    users: int
    start: float
    end: float
    rps: float
    error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    ready_pods: float | None
    desired_replicas: float | None
    within_slo: bool
    not_measured: str = ""  # why the generator's figures do not describe the service

    @property
    def rps_per_replica(self) -> float | None:
        return round(self.rps / self.ready_pods, 2) if self.ready_pods else None


@dataclass(frozen=True)
class Knee:
    """The step where the service stopped keeping up, and why."""

    users: int
    rps: float
    p95_ms: float | None
    reason: str


@dataclass(frozen=True)
class CapacityAnalysis:
    """A step load's capacity figures (see the module docstring for their definitions)."""

    steps: tuple[Step, ...]
    max_p95_ms: float | None
    max_error_rate: float | None
    sustainable_rps: float | None
    sustainable_rps_per_replica: float | None
    knee: Knee | None
    first_scale_up_s: float | None
    steady_state_s: float | None
    peak_replicas: int | None
    load_from: str = ""  # where the load came from: placement, Locust processes, their CPU

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form, for result.json's measurements and results.json."""
        data = asdict(self)
        for step, raw in zip(self.steps, data["steps"], strict=True):
            raw["rps_per_replica"] = step.rps_per_replica
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CapacityAnalysis:
        """Read `to_json`'s form back.

        Raises:
            KeyError, TypeError, ValueError: the data does not have that form.
        """
        fields = set(Step.__dataclass_fields__)
        steps = tuple(Step(**{k: v for k, v in s.items() if k in fields}) for s in data["steps"])
        knee = Knee(**data["knee"]) if data.get("knee") else None
        return cls(
            steps=steps,
            knee=knee,
            **{
                k: data[k]
                for k in cls.__dataclass_fields__
                if k not in ("steps", "knee") and k in data  # older records lack load_from
            },
        )


def from_measurements(
    measurements: Mapping[str, Any],
) -> tuple[CapacityAnalysis | None, str | None]:
    """The analysis a capacity scenario recorded, or None; and what was wrong with it."""
    raw = measurements.get(MEASUREMENT)
    if raw is None:
        return None, None
    try:
        return CapacityAnalysis.from_json(raw), None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return None, f"result.json: capacity analysis unreadable ({type(exc).__name__}: {exc})"


def analyse(
    points: Sequence[SeriesPoint],
    timeline: Timeline,
    *,
    max_p95_ms: float | None,
    max_error_rate: float | None,
    generator: Generator | None = None,
) -> CapacityAnalysis:
    """Analyse a step load's per-second series against the SLO's latency and error limits;
    with the run's `generator`, steps during which a Locust process could not keep up are
    marked as not measured.

    Example:
        >>> result = run.result()                                      # doctest: +SKIP
        >>> analyse(result.series, timeline, max_p95_ms=500, max_error_rate=0.0).knee
        Knee(users=6, rps=21.0, p95_ms=730.0, reason='p95 730 ms above the SLO (500 ms)')
    """
    ready = series.ready_pods(timeline)
    desired, _ = series.hpa_replicas(timeline)
    steps = tuple(
        _step(group, ready, desired, max_p95_ms, max_error_rate, generator)
        for group in _groups(points)
    )
    good = [s for s in steps if s.within_slo]
    per_replica = [s.rps_per_replica for s in good if s.rps_per_replica is not None]
    loaded = [p for p in points if p.users > 0]
    rise = float(loaded[0].t) if loaded else None
    end = float(loaded[-1].t + 1) if loaded else None
    return CapacityAnalysis(
        steps=steps,
        max_p95_ms=max_p95_ms,
        max_error_rate=max_error_rate,
        sustainable_rps=max((s.rps for s in good), default=None),
        sustainable_rps_per_replica=max(per_replica, default=None),
        knee=_knee(steps, max_p95_ms, max_error_rate),
        first_scale_up_s=_first_scale_up(timeline, rise, end),
        steady_state_s=_steady_state(desired, ready, rise, end),
        peak_replicas=_peak(desired, ready, rise, end),
        load_from=generator.describe() if generator else "",
    )


def _groups(points: Sequence[SeriesPoint]) -> list[list[SeriesPoint]]:
    """Runs of seconds at one user count, without the last (partial) second of the load."""
    groups: list[list[SeriesPoint]] = []
    for point in points[:-1]:
        if point.users <= 0:
            continue
        if groups and groups[-1][-1].users == point.users:
            groups[-1].append(point)
        else:
            groups.append([point])
    return [g for g in groups if len(g) >= MIN_STEP_S]


def _step(
    group: list[SeriesPoint],
    ready: series.Points,
    desired: series.Points,
    max_p95_ms: float | None,
    max_error_rate: float | None,
    generator: Generator | None,
) -> Step:
    settled = group[min(int(WARM_UP_S), len(group) // 3) :]
    start, end = float(settled[0].t), float(settled[-1].t + 1)
    not_measured = _generator_behind(generator, start, end) if generator else ""
    requests = sum(p.requests for p in settled)
    failures = sum(p.failures for p in settled)
    error_rate = failures / requests if requests else 0.0
    p50, p95, p99 = (
        _median([getattr(p, key) for p in settled]) for key in ("p50_ms", "p95_ms", "p99_ms")
    )
    within = (
        not not_measured
        and requests > 0
        and (max_p95_ms is None or (p95 is not None and p95 <= max_p95_ms))
        and (max_error_rate is None or error_rate <= max_error_rate)
    )
    mean_ready = series.mean_between(ready, start, end)
    return Step(
        users=group[0].users,
        start=start,
        end=end,
        rps=round(requests / (end - start), 2),
        error_rate=round(error_rate, 5),
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        ready_pods=round(mean_ready, 2) if mean_ready is not None else None,
        desired_replicas=series.value_at(desired, end),
        within_slo=within,
        not_measured=not_measured,
    )


def _generator_behind(generator: Generator, start: float, end: float) -> str:
    """Why the Locust processes could not keep up during [start, end), or ""."""
    for worker in generator.workers:
        gone = worker.lost_at if worker.lost_at is not None else worker.lagging_at
        if gone is not None and gone < end:
            return f"{worker.name} was {'lost' if worker.lost_at is not None else 'lagging'}"
        busy = saturation([s for s in worker.cpu if start <= s.t <= end], since=start)
        if busy is not None:
            return f"{worker.name} was {busy}"
    return ""


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 1) if known else None


def _knee(
    steps: Sequence[Step], max_p95_ms: float | None, max_error_rate: float | None
) -> Knee | None:
    previous: Step | None = None
    for step in steps:
        if step.not_measured:  # neither a knee nor a base for the next step's growth
            previous = None
            continue
        reason = _broken(step, previous, max_p95_ms, max_error_rate)
        if reason:
            return Knee(step.users, step.rps, step.p95_ms, reason)
        previous = step
    return None


def _broken(
    step: Step, previous: Step | None, max_p95_ms: float | None, max_error_rate: float | None
) -> str:
    """Why `step` is past the knee, or "" when it is not."""
    if step.rps == 0:
        return "no request completed"
    if max_error_rate is not None and step.error_rate > max_error_rate:
        return f"error rate {step.error_rate:.2%} above the SLO ({max_error_rate:.2%})"
    if max_p95_ms is not None and (step.p95_ms is None or step.p95_ms > max_p95_ms):
        return f"p95 {step.p95_ms:.0f} ms above the SLO ({max_p95_ms:g} ms)"
    if previous is None or previous.rps <= 0:
        return ""
    user_growth = step.users / previous.users - 1
    rps_growth = step.rps / previous.rps - 1
    if user_growth >= PLATEAU_MIN_USER_GROWTH and rps_growth < PLATEAU_GAIN * user_growth:
        return (
            f"throughput stopped growing: {user_growth:+.0%} users gave {rps_growth:+.0%} "
            "requests/s"
        )
    return ""


def _first_scale_up(timeline: Timeline, rise: float | None, end: float | None) -> float | None:
    up = series.first_scale_up(timeline, rise, end) if rise is not None and end else None
    return round(up - rise, 2) if up is not None and rise is not None else None


def _steady_state(
    desired: series.Points, ready: series.Points, rise: float | None, end: float | None
) -> float | None:
    if rise is None or end is None:
        return None
    changes = [(t, v) for t, v in desired if rise < t <= end]
    if not changes:
        return None
    last_change, final = changes[-1]
    if (series.value_at(ready, last_change) or 0) >= final:
        matched: float | None = last_change
    else:
        matched = next((t for t, v in ready if last_change < t <= end and v >= final), None)
    if matched is None or end - matched < STEADY_HOLD_S:
        return None
    return round(matched - rise, 2)


def _peak(
    desired: series.Points, ready: series.Points, rise: float | None, end: float | None
) -> int | None:
    if rise is None or end is None:
        return None
    during = [v for t, v in (*desired, *ready) if rise <= t <= end]
    before = [series.value_at(desired, rise), series.value_at(ready, rise)]
    values = [v for v in (*during, *before) if v is not None]
    return int(max(values)) if values else None
