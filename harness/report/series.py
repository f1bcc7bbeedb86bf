"""Time series derived from a recorded timeline (ready pods, HPA replicas, restarts) and from
the load's seconds (each version's share of the answers).

Each series is a list of `(t, value)` changes in time order; the value holds until the next
change (`value_at`). One pass over the timeline each, so long recordings stay cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from harness.load.result import SeriesPoint
from harness.observe import Entry, Timeline, restarts_of, serving

Points = list[tuple[float, float]]
TEARDOWN_KINDS = frozenset({"Deployment", "HorizontalPodAutoscaler", "EndpointSlice"})


def pod_snapshots(timeline: Timeline) -> list[tuple[float, dict[str, dict[str, Any]]]]:
    """After each moment a Pod changed: the time and a snapshot of every live pod's state."""
    return [(t, dict(pods)) for t, pods in timeline.replay("Pod")]


def ready_pods(timeline: Timeline) -> Points:
    """How many pods were Ready and not terminating, after each change of that count."""
    out: Points = []
    for t, pods in pod_snapshots(timeline):
        count = sum(serving(state) for state in pods.values())
        if not out or out[-1][1] != count:
            out.append((t, float(count)))
    return out


def version_shares(points: Sequence[SeriesPoint]) -> dict[str, Points]:
    """Each version's share of the answers that named a version (%), per second of load, for
    the seconds with any; versions in order of their first answer."""
    versions = list(dict.fromkeys(v for p in points for v in p.versions))
    shares: dict[str, Points] = {v: [] for v in versions}
    for point in points:
        named = sum(point.versions.values())
        if not named:
            continue
        for version in versions:
            shares[version].append((point.t + 0.5, 100 * point.versions.get(version, 0) / named))
    return shares


def restart_counts(timeline: Timeline, *, until: float = math.inf) -> dict[str, int]:
    """The highest container restart count seen per pod up to `until`."""
    seen: dict[str, int] = {}
    for entry in timeline.of("Pod", until=until):
        seen[entry.name] = max(seen.get(entry.name, 0), restarts_of(entry.state))
    return seen


def restarts_between(timeline: Timeline, since: float, until: float) -> int:
    """Container restarts that happened between `since` and `until`, over all pods."""
    before = restart_counts(timeline, until=since)
    after = restart_counts(timeline, until=until)
    return sum(count - before.get(pod, 0) for pod, count in after.items())


def hpa_replicas(timeline: Timeline) -> tuple[Points, Points]:
    """The first HPA's desired and current replica counts over time (empty without an HPA)."""
    entries = timeline.of("HorizontalPodAutoscaler")
    name = next((e.name for e in entries if e.type != "WATCH-ERROR"), None)
    desired: Points = []
    current: Points = []
    for entry in entries:
        if entry.name != name or entry.type in ("DELETED", "WATCH-ERROR"):
            continue
        for points, key in ((desired, "desired"), (current, "current")):
            value = entry.state.get(key)
            if value is not None and (not points or points[-1][1] != value):
                points.append((entry.t, float(value)))
    return desired, current


def first_scale_up(timeline: Timeline, since: float, until: float) -> float | None:
    """When the HPA first wanted more replicas than were running at `since` (None: never).

    Before its first metrics sync an HPA reports desired=0 and no current count, so the
    baseline is the highest of desired, current and Ready pods at `since`.
    """
    desired, current = hpa_replicas(timeline)
    baseline = max(
        value_at(desired, since) or 0,
        value_at(current, since) or 0,
        value_at(ready_pods(timeline), since) or 0,
    )
    return next((t for t, v in desired if since < t <= until and v > baseline), None)


def marks(timeline: Timeline) -> list[Entry]:
    """The test's own marks (faults injected, rollouts started, load phases), in time order."""
    return timeline.of("Mark")


def teardown_at(timeline: Timeline) -> float | None:
    """When the fixtures started removing the test's workload: the first deletion of a
    Deployment, an HPA or a Service's endpoints, which tests themselves do not delete.

    What comes after is cleanup, not the behaviour under test.
    """
    return next(
        (e.t for e in timeline.entries if e.type == "DELETED" and e.kind in TEARDOWN_KINDS),
        None,
    )


def value_at(points: Sequence[tuple[float, float]], t: float) -> float | None:
    """The value of a change series at `t` (None before its first change)."""
    value = None
    for when, v in points:
        if when > t:
            break
        value = v
    return value


def mean_between(points: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    """The time-weighted mean of a change series over [start, end] (None if it has no value)."""
    if end <= start:
        return value_at(points, start)
    total = covered = 0.0
    value = value_at(points, start)
    edge = start
    for when, v in points:
        if when <= start:
            continue
        if when >= end:
            break
        if value is not None:
            total += value * (when - edge)
            covered += when - edge
        value, edge = v, when
    if value is not None:
        total += value * (end - edge)
        covered += end - edge
    return total / covered if covered else None
