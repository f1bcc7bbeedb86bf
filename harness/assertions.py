"""Reusable behaviour checks: HPA, self-healing, probes and rollouts, judged from the record.

Each check is a pure function of the timeline (harness.observe) and the load record
(harness.load) and returns a `Check`: a verdict with its measured value and limit, plus the
time window and kinds of timeline entries that explain it. `Evidence.assert_all()` turns failed
checks into one `BehaviourViolation` that shows those slices, and failed requests inside them.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from harness.argo_rollouts import Answer, release_marks
from harness.kube import Kube
from harness.load import SLO, LoadResult, Verdict
from harness.load.result import FailedRequest, SeriesPoint
from harness.network_policy import Pair
from harness.observe import Entry, Timeline, owned_by, ready_endpoint_pods, restarts_of
from harness.service_discovery import LONGEST_ROUND_S, Round

INF = float("inf")


class BehaviourViolation(AssertionError):
    """A promise of the resilience spec was not kept; the message shows why."""


@dataclass(frozen=True)
class Check:
    """A verdict and the slice of the record that explains it."""

    verdict: Verdict
    since: float
    until: float
    kinds: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.verdict.passed


def _verdict(
    name: str, measured: float | None, limit: float, unit: str, ok: bool, note: str = ""
) -> Verdict:
    return Verdict(name, measured, limit, unit, "pass" if ok else "fail", note)


def _moments(timeline: Timeline, kinds: Iterable[str], since: float, until: float) -> list[float]:
    kinds = tuple(kinds)
    return [e.t for e in timeline.entries if e.kind in kinds and since <= e.t <= until]


def _first(entries: Iterable[Entry], predicate) -> Entry | None:
    return next((e for e in entries if predicate(e)), None)


def _time_until(
    entries: Iterable[Entry],
    predicate: Callable[[Entry], bool],
    *,
    since: float,
    within_s: float,
    name: str,
    missing: str,
    kinds: tuple[str, ...],
) -> Check:
    """How long after `since` the first entry satisfying `predicate` came, against `within_s`."""
    found = _first(entries, predicate)
    took = found.t - since if found else None
    ok = took is not None and took <= within_s
    verdict = _verdict(name, took, within_s, "s", ok, "" if found else missing)
    return Check(verdict, since, since + within_s, kinds)


def _deployment_entries(timeline: Timeline, deployment: str, since: float) -> Iterator[Entry]:
    return (e for e in timeline.of("Deployment", since=since) if e.name == deployment)


def hpa_scaled_up(
    timeline: Timeline, *, deployment: str, to: int, load_started: float, within_s: float
) -> Check:
    """Ready pods reach `to` within `within_s` of the load starting."""
    return _time_until(
        _deployment_entries(timeline, deployment, load_started),
        lambda e: (e.state.get("ready") or 0) >= to,
        since=load_started,
        within_s=within_s,
        name=f"HPA scaled {deployment} to >= {to} ready pods",
        missing=f"never reached {to} ready pods",
        kinds=("HorizontalPodAutoscaler", "Deployment", "Mark"),
    )


HPA_KINDS = ("HorizontalPodAutoscaler", "Deployment")


def _states_over(
    kind: str, timeline: Timeline, name: str, since: float, until: float
) -> list[dict[str, Any]]:
    """An object's state as the window opens, then each recorded change within it."""
    first = timeline.states_at(kind, since).get(name)
    changes = [
        e.state
        for e in timeline.of(kind, since=since, until=until)
        if e.name == name and e.type not in ("DELETED", "WATCH-ERROR")
    ]
    return ([first] if first is not None else []) + changes


def _no_hpa(name: str, hpa: str, limit: float, unit: str) -> Verdict:
    return Verdict(
        name,
        None,
        limit,
        unit,
        "inconclusive",
        f"no HorizontalPodAutoscaler named {hpa} was recorded, so nothing was judged: set the "
        "spec's hpa.name to the HPA the manifests hold",
    )


def hpa_within_bounds(
    timeline: Timeline,
    *,
    hpa: str,
    deployment: str,
    maximum: int,
    since: float = 0,
    until: float = INF,
) -> Check:
    """Neither the HPA's desired count nor the Deployment's replicas ever exceed `maximum`.

    Inconclusive when the timeline holds no HPA named `hpa`: nothing was there to judge.
    """
    name = f"replicas of {deployment} never above {maximum}"
    hpas = _states_over("HorizontalPodAutoscaler", timeline, hpa, since, until)
    if not hpas:
        return Check(_no_hpa(name, hpa, maximum, "replicas"), since, until, HPA_KINDS)
    seen = [s["desired"] for s in hpas if s.get("desired") is not None]
    seen += [s["replicas"] for s in _states_over("Deployment", timeline, deployment, since, until)
             if s.get("replicas") is not None]  # fmt: skip
    if not seen:
        note = f"HPA {hpa} and Deployment {deployment} were recorded with no replica count"
        verdict = Verdict(name, None, maximum, "replicas", "inconclusive", note)
        return Check(verdict, since, until, HPA_KINDS)
    peak = max(seen)
    return Check(
        _verdict(name, peak, maximum, "replicas", peak <= maximum), since, until, HPA_KINDS
    )


def hpa_scaled_down(
    timeline: Timeline, *, deployment: str, to: int, load_stopped: float, within_s: float
) -> Check:
    """The Deployment is back at `to` replicas (all Ready) within `within_s` of the load stop."""
    return _time_until(
        _deployment_entries(timeline, deployment, load_stopped),
        lambda e: e.state.get("replicas") == to and (e.state.get("ready") or 0) == to,
        since=load_stopped,
        within_s=within_s,
        name=f"{deployment} back to {to} replicas after the load",
        missing=f"still above {to} replicas at the end",
        kinds=("HorizontalPodAutoscaler", "Deployment", "Mark"),
    )


def hpa_direction_changes(
    timeline: Timeline, *, hpa: str, maximum: int, since: float = 0, until: float = INF
) -> Check:
    """The HPA's desired replica count reverses direction at most `maximum` times (no flapping).

    Inconclusive when the timeline holds no HPA named `hpa`: nothing was there to judge.
    """
    name = f"HPA {hpa} direction changes"
    states = _states_over("HorizontalPodAutoscaler", timeline, hpa, since, until)
    if not states:
        return Check(_no_hpa(name, hpa, maximum, "reversals"), since, until, HPA_KINDS[:1])
    desired = [s.get("desired") for s in states if s.get("desired") is not None]
    changes, direction, previous = 0, 0, None
    for value in desired:
        if previous is not None and value != previous:
            step = 1 if value > previous else -1
            changes += direction not in (0, step)
            direction = step
        previous = value
    return Check(
        _verdict(name, changes, maximum, "reversals", changes <= maximum),
        since,
        until,
        HPA_KINDS[:1],
    )


# ---------------------------------------------------------------- self-healing and probes


def recovered(
    timeline: Timeline,
    *,
    deployment: str,
    replicas: int,
    fault_at: float,
    within_s: float,
    what: str,
) -> Check:
    """After a fault at `fault_at`, `replicas` pods of `deployment` are Ready again in time.

    Recovery as `Timeline.disruption` reads it (the figure the report shows too): from the
    fault until, once the fault showed (a pod down or a container restarted), the full count
    serves again with every restarted pod among them. A fault that never showed leaves the
    promise untested: inconclusive.
    """
    name = f"{what}: {replicas} pods Ready again"
    kinds = ("Pod", "Event", "Mark")
    disruption = timeline.disruption(fault_at, deployment=deployment, baseline=replicas)
    if disruption.recovered_at is not None:
        took = disruption.recovered_at - fault_at
        return Check(
            _verdict(name, took, within_s, "s", took <= within_s),
            fault_at,
            disruption.recovered_at + 1,
            kinds,
        )
    if disruption.detected_at is None:  # the fault did not bite: nothing had to recover
        note = f"no pod of {deployment} went down or restarted after the fault while recorded"
        verdict = Verdict(name, None, within_s, "s", "inconclusive", note)
    else:
        verdict = _verdict(name, None, within_s, "s", False, "never recovered while recorded")
    return Check(verdict, fault_at, fault_at + within_s, kinds)


def container_restarted(
    timeline: Timeline, *, pod: str, since: float, within_s: float, what: str
) -> Check:
    """The restart count of `pod` goes up within `within_s` of `since`."""

    start = restarts_of(timeline.states_at("Pod", since).get(pod, {}))
    return _time_until(
        (e for e in timeline.of("Pod", since=since) if e.name == pod and e.type != "DELETED"),
        lambda e: restarts_of(e.state) > start,
        since=since,
        within_s=within_s,
        name=f"{what}: container of {pod} restarted",
        missing="restart count never moved",
        kinds=("Pod", "Event", "Mark"),
    )


def left_endpoints(timeline: Timeline, *, pod: str, since: float, within_s: float) -> Check:
    """`pod` stops being a ready endpoint of every Service within `within_s` of `since`.

    Inconclusive when `pod` was no ready endpoint at `since`: it had nothing to leave.
    """
    name = f"{pod} left the Service endpoints"
    kinds = ("EndpointSlice", "Pod", "Mark")
    if pod not in timeline.ready_endpoints(since):
        note = f"{pod} was no ready endpoint of any Service when the fault began"
        verdict = Verdict(name, None, within_s, "s", "inconclusive", note)
        return Check(verdict, since, since + within_s, kinds)
    gone_at = next(
        (
            t
            for t, slices in timeline.replay("EndpointSlice")
            if t >= since and pod not in ready_endpoint_pods(slices)
        ),
        None,
    )
    took = gone_at - since if gone_at is not None else None
    return Check(
        _verdict(
            name,
            took,
            within_s,
            "s",
            took is not None and took <= within_s,
            "" if took is not None else "still a ready endpoint",
        ),
        since,
        since + within_s,
        kinds,
    )


def no_traffic_to(
    load: LoadResult, timeline: Timeline, *, pod: str, after: float, until: float = INF
) -> Check:
    """No request was answered by `pod` in any whole second from `after` to `until` (when
    the probe was let pass again).

    Judged from the answers that name their pod (the `X-Pod-Name` header). A service whose
    answers name none is judged by the evidence there is: `pod` stayed out of the Services'
    ready endpoints for the rest of the load (the verdict's note says so); with no request
    after `after` at all, nothing was judged (inconclusive).
    """
    later = [p for p in load.series if after <= p.t < until]
    until = min(until, later[-1].t + 1) if later else after
    kinds = ("EndpointSlice", "Pod", "Mark")
    name = f"requests answered by {pod} after it left the endpoints"
    if not any(p.requests for p in later):
        verdict = Verdict(name, None, 0, "requests", "inconclusive",
                          "no request was sent after the pod left the endpoints")  # fmt: skip
        return Check(verdict, after, until, kinds)
    if any(p.pods for p in later):
        if not any(pod in p.pods for p in load.series):
            verdict = Verdict(name, None, 0, "requests", "inconclusive",
                              f"no answer of the whole load named {pod}: no count of its "
                              "requests can show it kept serving")  # fmt: skip
            return Check(verdict, after, until, kinds)
        served = sum(p.pods.get(pod, 0) for p in later)
        return Check(_verdict(name, served, 0, "requests", served == 0), after, until, kinds)
    # One pass over the EndpointSlices: was the pod ever an endpoint before `after`, and at
    # which moments until `until` was it one again.
    was_endpoint = ready_at_after = False
    back: list[float] = []
    for t, slices in timeline.replay("EndpointSlice", until=until):
        ready = pod in ready_endpoint_pods(slices)
        if t <= after:
            was_endpoint, ready_at_after = was_endpoint or ready, ready
        elif ready:
            back.append(t)
    if ready_at_after:
        back.insert(0, after)
    if not was_endpoint:
        verdict = Verdict(name, None, 0, "requests", "inconclusive",
                          f"the service's answers name no pod (no X-Pod-Name header) and no "
                          f"EndpointSlice recorded {pod} as an endpoint: nothing shows where "
                          "requests went")  # fmt: skip
        return Check(verdict, after, until, kinds)
    note = (
        "judged by the EndpointSlices: the service's answers name no pod (no X-Pod-Name "
        f"header), and {pod} "
        + (f"was a ready endpoint again {back[0] - after:.1f}s later" if back else
           "stayed out of every Service's ready endpoints while the load ran")
    )  # fmt: skip
    return Check(
        Verdict(f"{pod} out of the endpoints while the load ran", len(back), 0,
                "moments back", "pass" if not back else "fail", note),
        after,
        until,
        kinds,
    )  # fmt: skip


def start_slowed_from_first_probe(
    slowed: Sequence[str], late: Sequence[str], *, since: float, until: float
) -> Check:
    """The harness's slow start-up held from each new pod's first probe: otherwise the
    startup probe's protection was not put to the test (inconclusive, not a pass)."""
    if slowed and not late:
        status, note = "pass", f"slowed: {', '.join(slowed)}"
    else:
        status = "inconclusive"
        note = (
            f"started before the harness could fail their probes: {', '.join(late)}"
            if late
            else "no new pod was slowed"
        )
    verdict = Verdict(
        "new pods slowed from their first probe", len(slowed) - len(late), len(slowed),
        "pods", status, note,
    )  # fmt: skip
    return Check(verdict, since, until, ("Pod", "Mark"))


def startup_protected(
    timeline: Timeline, *, deployment: str, since: float, delay_s: float
) -> list[Check]:
    """Pods created after `since` (slow starters) became Ready no sooner than `delay_s` after
    they appeared, and were never restarted: the startup probe held liveness off."""
    pods = {
        e.name
        for e in timeline.of("Pod", since=since)
        if e.type == "ADDED" and owned_by(e.state, deployment)
    }
    ready_after: dict[str, float | None] = {}
    restarts: dict[str, int] = {}
    for pod in sorted(pods):
        states = [e for e in timeline.of("Pod", since=since) if e.name == pod]
        ready = next((e.t for e in states if e.state.get("ready")), None)
        ready_after[pod] = round(ready - states[0].t, 2) if ready is not None else None
        restarts[pod] = max(
            sum(c["restarts"] for c in e.state.get("containers", [])) for e in states
        )
    until = timeline.entries[-1].t if timeline.entries else since
    kinds = ("Pod", "Event", "Mark")
    slowest = max((t for t in ready_after.values() if t is not None), default=None)
    return [
        Check(
            _verdict(
                "restarts of slow starters",
                sum(restarts.values()),
                0,
                "restarts",
                bool(pods) and not any(restarts.values()),
                f"per pod: {restarts}",
            ),
            since,
            until,
            kinds,
        ),
        Check(
            _verdict(
                "slow starters Ready only after their delay (slowest)",
                slowest,
                delay_s,
                "s",
                bool(pods) and all(t is not None and t >= delay_s for t in ready_after.values()),
                f"per pod: {ready_after}",
            ),
            since,
            until,
            kinds,
        ),
    ]


# ---------------------------------------------------------------- load


def availability(
    load: LoadResult, *, since: float, until: float, max_error_rate: float, what: str
) -> Check:
    """The share of failed requests between `since` and `until` stays within the limit;
    inconclusive when no request was sent then (nothing to judge)."""
    kinds = ("Pod", "EndpointSlice", "Mark")
    name = f"{what}: error rate"
    if not any(p.requests for p in load.series_between(since, until)):
        verdict = Verdict(name, None, max_error_rate, "ratio", "inconclusive",
                          "no request was sent in that window")  # fmt: skip
        return Check(verdict, since, until, kinds)
    rate = load.error_rate_between(since, until)
    return Check(
        _verdict(name, rate, max_error_rate, "ratio", rate <= max_error_rate), since, until, kinds
    )


def failed_requests(
    load: LoadResult, *, since: float, until: float, budget: int, what: str
) -> Check:
    failed = len(load.failures_between(since, until))
    return Check(
        _verdict(f"{what}: failed requests", failed, budget, "requests", failed <= budget),
        since,
        until,
        ("Pod", "EndpointSlice", "Mark"),
    )


def slo_checks(slo: SLO, load: LoadResult, *, what: str) -> list[Check]:
    """The spec's SLO over one load run, as checks (verdicts inconclusive when the generator
    saturated are kept as they are: they fail the check, and say why)."""
    return [
        Check(
            Verdict(f"{what}: {v.name}", v.measured, v.limit, v.unit, v.status, v.note),
            load.started,
            load.ended,
            ("Pod", "EndpointSlice", "Mark"),
        )
        for v in slo.evaluate(load)
    ]


# ---------------------------------------------------------------- which version answered


def answered_by(load: LoadResult, *, version: str, since: float, until: float, what: str) -> Check:
    """Every request answered in the whole seconds from `since` to `until` was answered by
    `version`, as the responses name it (`load.version` of the spec): the count answered by
    any other version, against 0.

    Inconclusive when no request was sent then, or none of the answers named a version:
    nothing shows who answered.
    """
    kinds = ("Pod", "EndpointSlice", "Mark")
    name = f"{what}: answers by a version other than {version}"
    seconds = _whole_seconds(load.series, since, until)
    counts = _answers_by_version(seconds)
    if not counts:
        requests = sum(p.requests for p in seconds)
        note = (
            f"none of the {requests} answers in that window named a version: say where the "
            "service names it with `load.version` in the spec ({header: NAME} or "
            "{json: FIELD})"
            if requests
            else "no request was answered in that window"
        )
        return Check(Verdict(name, None, 0, "requests", "inconclusive", note), since, until, kinds)
    others = sum(n for v, n in counts.items() if v != version)
    note = "answers by version: " + ", ".join(f"{v}={n}" for v, n in sorted(counts.items()))
    return Check(_verdict(name, others, 0, "requests", others == 0, note), since, until, kinds)


def _whole_seconds(points: Sequence[SeriesPoint], since: float, until: float) -> list[SeriesPoint]:
    """The seconds of `points` that lie wholly between `since` and `until`."""
    return [p for p in points if since <= p.t and p.t + 1 <= until]


def _answers_by_version(seconds: Sequence[SeriesPoint]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for point in seconds:
        counts.update(point.versions)
    return counts


def version_share(
    load: LoadResult,
    *,
    version: str,
    weight: float,
    tolerance: float,
    since: float,
    until: float,
    what: str,
) -> Check:
    """`version`'s share of the answers that named a version, over the whole seconds from
    `since` to `until`, is within `tolerance` of `weight` (a canary's step).

    Inconclusive when no answer then named a version.
    """
    kinds = ("Pod", "EndpointSlice", "Mark")
    name = f"{what}: share of the answers by {version}"
    counts = _answers_by_version(_whole_seconds(load.series, since, until))
    named = sum(counts.values())
    if not named:
        note = "no answer in that window named a version (see `load.version` in the spec)"
        return Check(
            Verdict(name, None, weight, "share", "inconclusive", note), since, until, kinds
        )
    share = counts[version] / named
    kept = f"{weight:.0%} ± {tolerance * 100:g} points"
    note = f"{counts[version]} of {named} answers; kept within {kept}"
    ok = abs(share - weight) <= tolerance
    return Check(_verdict(name, share, weight, "share", ok, note), since, until, kinds)


def canary_ended(
    load: LoadResult,
    *,
    aborted: bool,
    stable: str,
    canary: str,
    started: float,
    settled: float,
    ended: float,
    grace_s: float,
    max_failed_requests: int,
) -> list[Check]:
    """What the end of a canary release (from `started`, settled at `settled`) must show
    until `ended`: promoted, every answer by `canary` from `grace_s` after it and failed
    requests within the budget; aborted, the `stable` version answering alone from
    `grace_s` after the canary is out (its share back to 0)."""
    if aborted:
        return [answered_by(load, version=stable, since=settled + grace_s, until=ended,
                            what="after the abort")]  # fmt: skip
    return [
        answered_by(load, version=canary, since=settled + grace_s, until=ended,
                    what="after the promotion"),
        failed_requests(load, since=started, until=ended, budget=max_failed_requests,
                        what="canary and promotion"),
    ]  # fmt: skip


def version_error_rate(
    points: Sequence[SeriesPoint],
    failures: Sequence[FailedRequest],
    *,
    version: str,
    max_error_rate: float | None,
    since: float,
    until: float,
    what: str,
) -> Check:
    """The share of `version`'s answers from `since` to `until` that failed stays within
    `max_error_rate` (the SLO's): what decides a canary's abort, live (`LoadRun.series()`,
    `LoadRun.failures()`) and in the verdict (the result's).

    Only failures `version` answered count (an error status it sent): a request that got no
    answer (refused, reset, timed out) names no version, and the whole run's error rate is
    what judges those. Inconclusive when the SLO sets no error rate, or `version` answered
    nothing then.
    """
    kinds = ("Pod", "EndpointSlice", "Mark")
    name = f"{what}: error rate of the answers by {version}"
    limit = max_error_rate if max_error_rate is not None else 0.0
    if max_error_rate is None:
        note = "the spec's SLO sets no error rate: nothing to judge the canary against"
        return Check(Verdict(name, None, limit, "ratio", "inconclusive", note), since, until, kinds)
    # Whole seconds the series holds, for the answers and the failures alike: a failure counts
    # in the second it completed in, as its answer does, and a live read may hold failures
    # of a second whose answers are not in yet.
    seconds = _whole_seconds(points, since, until)
    answered = sum(p.versions.get(version, 0) for p in seconds)
    if not answered:
        note = f"{version} answered no request in that window"
        return Check(Verdict(name, None, limit, "ratio", "inconclusive", note), since, until, kinds)
    counted = {p.t for p in seconds}
    failed = sum(1 for f in failures if f.version == version and int(f.end) in counted)
    rate = failed / answered
    note = f"{failed} of {answered} answers failed"
    return Check(_verdict(name, rate, limit, "ratio", rate <= limit, note), since, until, kinds)


# ---------------------------------------------------------------- rollouts


def rollout_completed(
    timeline: Timeline,
    *,
    deployment: str,
    image: str,
    replicas: int,
    started: float,
    within_s: float,
) -> Check:
    """Every replica runs `image` and is available and no other pod is left, within
    `within_s` of `started`."""

    def complete(e: Entry) -> bool:
        state = e.state
        return (
            state.get("image") == image
            and state.get("updated")
            == state.get("replicas")
            == state.get("available")
            == state.get("total", state.get("replicas"))
            and (state.get("replicas") or 0) >= replicas
            and not state.get("unavailable")
            and (state.get("observed") or 0) >= (state.get("generation") or 0)
        )

    return _time_until(
        _deployment_entries(timeline, deployment, started),
        complete,
        since=started,
        within_s=within_s,
        name=f"rollout of {deployment} to {image} complete",
        missing="not complete while recorded",
        kinds=("Deployment", "ReplicaSet", "Pod", "Mark"),
    )


def argo_release_promoted(
    timeline: Timeline, *, rollout: str, released: float, since: float, within_s: float
) -> Check:
    """Argo Rollout `rollout`, released at `released`, became Healthy on its new revision
    within `within_s` of `since` (its promotion, or the release when nothing had to promote
    it), by the marks of harness.argo_rollouts.rollout_steps; an abort fails it with Argo's
    reason."""
    name = f"Argo Rollout {rollout} promoted"
    marks = release_marks(timeline.entries, rollout=rollout, since=released)
    aborted = _first(marks, lambda e: e.state.get("aborted"))
    if aborted is not None:
        why = aborted.state.get("message") or "no reason given"
        verdict = _verdict(name, None, within_s, "s", False, f"Argo aborted it: {why}")
        return Check(verdict, since, aborted.t, ("Mark",))
    last = f"; last seen: {marks[-1].name}" if marks else ""
    return _time_until(
        marks,
        lambda e: bool(e.state.get("promoted")),
        since=since,
        within_s=within_s,
        name=name,
        missing=f"not Healthy on its new revision while recorded{last}",
        kinds=("Mark",),
    )


def smoke_answered_by(answers: Sequence[Answer], *, version: str, what: str) -> Check:
    """Every smoke answer (harness.argo_rollouts.smoke) was a success by `version`;
    inconclusive when nothing answered."""
    name = f"{what}: smoke answers not a success by {version}"
    if not answers:
        verdict = Verdict(name, None, 0, "requests", "inconclusive", "no smoke request was sent")
        return Check(verdict, 0.0, 0.0)
    wrong = [a for a in answers if not 200 <= a.status < 300 or a.version != version]
    seen = Counter(f"{a.version or 'none'} {a.status or 'no answer'}" for a in answers)
    note = "answers (version status): " + ", ".join(f"{k}={n}" for k, n in sorted(seen.items()))
    verdict = _verdict(name, len(wrong), 0, "requests", not wrong, note)
    return Check(verdict, answers[0].t, answers[-1].t, ("Mark",))


# How many pairs a failed connectivity check names; the rest are in result.json.
SHOWN_PAIRS = 8


def _judge_pairs(
    name: str,
    pairs: Sequence[Pair],
    mismatch: Callable[[Pair], str | None],
    *,
    target: str,
    since: float,
    until: float,
) -> Check:
    """Fail on each pair a probe saw as neither accepted nor kept out, and on each that
    `mismatch` says why it should not have gone as it did; inconclusive when no probe
    reported anything."""
    if all(p.seen == "" for p in pairs):
        note = "no probe reported what it saw"
        return Check(Verdict(name, None, 0, "pairs", "inconclusive", note), since, until)
    wrong = []
    for pair in pairs:
        why = "which tells neither way" if pair.reached is None else mismatch(pair)
        if why:
            wrong.append(f"{pair.describe(target)}, {why}")
    note = "; ".join(wrong[:SHOWN_PAIRS])
    if len(wrong) > SHOWN_PAIRS:
        note += f"; and {len(wrong) - SHOWN_PAIRS} more"
    ok = not wrong
    verdict = _verdict(name, len(wrong), 0, "pairs", ok, note or f"{len(pairs)} pairs as expected")
    return Check(verdict, since, until)


def connectivity_enforced(
    pairs: Sequence[Pair], *, target: str, since: float, until: float
) -> Check:
    """Each probed connection to `target` went as the service's NetworkPolicies say:
    accepted where one admits it (or none selects the pod), kept out where none does.
    Inconclusive when the policies keep out none of the probed connections (nothing to
    enforce) or no probe saw anything; a probe that saw something else fails it."""
    name = f"NetworkPolicies enforced on connections to {target}"
    if all(p.admission.allowed for p in pairs):
        note = "the service's NetworkPolicies drop none of the probed connections"
        return Check(Verdict(name, None, 0, "pairs", "inconclusive", note), since, until)

    def mismatch(pair: Pair) -> str | None:
        if pair.reached and not pair.admission.allowed:
            return f"though {pair.admission.why}: is NetworkPolicy enforced here?"
        if not pair.reached and pair.admission.allowed:
            return f"though {pair.admission.why}"
        return None

    return _judge_pairs(name, pairs, mismatch, target=target, since=since, until=until)


def connectivity_as_promised(
    pairs: Sequence[Pair], *, target: str, promise: str, since: float, until: float
) -> Check:
    """Each probed connection to `target` was accepted exactly where the spec's `promise`
    says it may be: a policy too open (a port or namespace reached that it does not promise)
    or too closed (a promised one kept out) fails, naming the pair and the policy rule that
    decided it. Inconclusive when no probe saw anything."""

    def mismatch(pair: Pair) -> str | None:
        if pair.reached == pair.promised:
            return None
        promised = "promises it" if pair.promised else "does not promise it"
        return f"but the spec {promised} ({pair.admission.why})"

    name = f"connections to {target} as promised ({promise})"
    return _judge_pairs(name, pairs, mismatch, target=target, since=since, until=until)


def lookups_answered(
    rounds: Sequence[Round], *, name: str, budget: int, since: float, until: float
) -> Check:
    """Every lookup of `name` between `since` and `until` was answered, but for `budget`;
    the note gives the first and last that were not. Inconclusive with no lookup."""
    judged = [r for r in rounds if since <= r.t <= until]
    what = f"lookups of {name}: unanswered or NXDOMAIN"
    if (gap := _uncovered(judged, since, until)) is not None:
        return Check(Verdict(what, None, budget, "lookups", "inconclusive", gap), since, until)
    failed = [r for r in judged if r.lookup != "answered"]
    verdict = _rounds_verdict(what, failed, len(judged), budget, since, unit="lookups")
    return Check(verdict, since, until)


def requests_by_name(
    rounds: Sequence[Round], *, name: str, budget: int, since: float, until: float
) -> Check:
    """Every request to the address a lookup of `name` gave succeeded, but for `budget`.
    Inconclusive when no lookup gave an address to send one to."""
    judged = [r for r in rounds if since <= r.t <= until]
    sent = [r for r in judged if r.request != "skipped"]
    what = f"requests to {name}: failed"
    if (gap := _uncovered(judged, since, until)) is not None:
        return Check(Verdict(what, None, budget, "requests", "inconclusive", gap), since, until)
    if not sent:
        note = "no lookup gave an address to send a request to"
        return Check(Verdict(what, None, budget, "requests", "inconclusive", note), since, until)
    failed = [r for r in sent if r.request != "ok"]
    verdict = _rounds_verdict(what, failed, len(sent), budget, since, unit="requests")
    return Check(verdict, since, until)


def _uncovered(rounds: Sequence[Round], since: float, until: float) -> str | None:
    """Why `rounds` (those from `since` to `until`) do not cover that window: a stretch
    without one longer than a round can take (the client stopped, stalled or never ran)."""
    times = [since, *(r.t for r in rounds), until]
    longest, start = max((b - a, a) for a, b in pairwise(times))
    if longest <= LONGEST_ROUND_S:
        return None
    return (
        f"no round recorded for {longest:.1f}s from +{start - since:.1f}s "
        f"(a round takes at most {LONGEST_ROUND_S:g}s): the client stopped or stalled"
    )


def _rounds_verdict(
    name: str, failed: Sequence[Round], judged: int, budget: int, since: float, *, unit: str
) -> Verdict:
    note = f"{len(failed)} of {judged}"
    if failed:
        first, last = failed[0], failed[-1]
        note += (
            f", from +{first.t - since:.1f}s ({first.lookup}/{first.request}) "
            f"to +{last.t - since:.1f}s ({last.lookup}/{last.request})"
        )
    return _verdict(name, len(failed), budget, unit, len(failed) <= budget, note)


def max_unavailable_respected(
    timeline: Timeline,
    *,
    deployment: str,
    replicas: int,
    max_unavailable: int,
    since: float,
    until: float,
) -> Check:
    """At every observed moment from `since`, at least `replicas - max_unavailable` pods were
    Ready (inconclusive when no pod of `deployment` was recorded at all)."""
    floor = replicas - max_unavailable
    name = f"ready pods of {deployment} during the rollout (minimum)"
    kinds = ("Pod", "ReplicaSet", "Mark")
    recorded = [e.t for e in timeline.of("Pod", until=until) if owned_by(e.state, deployment)]
    if not recorded:
        verdict = Verdict(name, None, floor, "pods", "inconclusive",
                          f"no pod of {deployment} was recorded")  # fmt: skip
        return Check(verdict, since, until, kinds)
    # The pods as the window opens count too, once any was recorded by then.
    opening = [since] if recorded[0] <= since else []
    worst, worst_at = INF, since
    for t in [*opening, *_moments(timeline, ("Pod",), since, until)]:
        count = len(timeline.ready_pods(t, deployment=deployment))
        if count < worst:
            worst, worst_at = count, t
    return Check(
        _verdict(name, worst, floor, "pods", worst >= floor), worst_at - 5, worst_at + 5, kinds
    )


def rollout_stuck_detected(
    timeline: Timeline, *, deployment: str, started: float, within_s: float
) -> Check:
    """The Deployment reports ProgressDeadlineExceeded within `within_s` of `started`."""
    return _time_until(
        _deployment_entries(timeline, deployment, started),
        lambda e: (
            e.state.get("conditions", {}).get("Progressing") == "False:ProgressDeadlineExceeded"
        ),
        since=started,
        within_s=within_s,
        name=f"stuck rollout of {deployment} detected",
        missing="Progressing never became ProgressDeadlineExceeded",
        kinds=("Deployment", "Pod", "Event", "Mark"),
    )


def all_pods_run(kube: Kube, namespace: str, *, deployment: str, image: str, at: float) -> Check:
    """Every live pod of `deployment` runs `image` now (asked of the API at the end)."""
    pods = [
        p
        for p in kube.core.list_namespaced_pod(namespace).items
        if not p.metadata.deletion_timestamp
        and (p.metadata.owner_references or [None])[0] is not None
        and p.metadata.owner_references[0].name.rsplit("-", 1)[0] == deployment
    ]
    on_image = [p for p in pods if any(c.image == image for c in p.spec.containers)]
    others = sorted({p.metadata.name for p in pods} - {p.metadata.name for p in on_image})
    return Check(
        _verdict(
            f"pods of {deployment} running {image}",
            len(on_image),
            len(pods),
            "pods",
            bool(pods) and not others,
            f"not on it: {', '.join(others)}" if others else "",
        ),
        at - 5,
        at + 1,
        ("Pod", "ReplicaSet", "Mark"),
    )


# ---------------------------------------------------------------- evidence


@dataclass
class Evidence:
    """What one scenario recorded and judged; written as result.json, asserted at the end."""

    scenario: str
    timeline: Timeline
    loads: list[LoadResult] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    # Check index -> the sentence that says why it failed (harness.workload's findings).
    why: dict[int, str] = field(default_factory=dict)

    def add(self, *checks: Check, why: str | None = None) -> None:
        """Add checks; `why` says what made them fail, shown only for those that do."""
        for check in checks:
            if why and not check.passed:
                self.why[len(self.checks)] = why
            self.checks.append(check)

    def explain(self, check: Check) -> str:
        slice_ = (
            self.timeline.render(since=check.since - 2, until=check.until + 2, kinds=check.kinds)
            or "  (nothing recorded)"
        )
        failed = [f for load in self.loads for f in load.failures_between(check.since, check.until)]
        why = self.why.get(self.checks.index(check))
        lines = [
            f"FAILED {check.verdict}",
            *([f"  why: {why}"] if why else []),
            "  timeline:",
            *("    " + ln for ln in slice_.splitlines()[-40:]),
        ]
        if failed:
            lines.append(f"  failed requests in this window ({len(failed)}):")
            lines += [
                f"    {f.t:.3f} {f.method} {f.name} {f.error} (pod {f.pod})" for f in failed[:15]
            ]
        return "\n".join(lines)

    def assert_all(self) -> None:
        bad = [c for c in self.checks if not c.passed]
        if bad:
            raise BehaviourViolation(
                f"{self.scenario}: {len(bad)} promise(s) not kept\n"
                + "\n\n".join(self.explain(c) for c in bad)
            )

    def write(self, directory: Path) -> Path:
        """Write result.json: strict JSON, so any reader (jq, browsers, CI) can parse it.

        An open-ended window (`until=inf`) and any other non-finite number become null.
        """
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "result.json"
        record = {
            "schema": 1,
            "scenario": self.scenario,
            "passed": all(c.passed for c in self.checks),
            "verdicts": [
                asdict(c.verdict)
                | {"since": c.since, "until": c.until}
                | ({"why": self.why[i]} if i in self.why else {})
                for i, c in enumerate(self.checks)
            ],
            "measurements": self.measurements,
            "loads": [load.summary() for load in self.loads],
        }
        path.write_text(json.dumps(json_safe(record), indent=2, default=str, allow_nan=False))
        return path


def json_safe(value: Any) -> Any:
    """`value` with every NaN or infinity (which JSON cannot express) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value
