"""Behaviour checks on recorded timelines and load records (pure logic, no cluster)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import assertions as a
from harness.load import SLO, LoadResult
from harness.load.merge import merge_seconds
from harness.load.result import EndpointStats, FailedRequest, Generator, SeriesPoint
from harness.observe import (
    RELISTED,
    Disruption,
    Entry,
    Timeline,
    TimelineRecorder,
    Watched,
    summarize_pod,
)

NO_GENERATOR = Generator("host", ())


def pod(t, name, *, ready=True, deleting=False, restarts=0, owner="demo-abc", type_="MODIFIED"):
    state = {
        "ready": ready,
        "deleting": deleting,
        "owner": owner,
        "containers": [{"name": "demo", "ready": ready, "restarts": restarts, "state": "running"}],
    }
    return Entry(t, type_, "Pod", name, state)


def deployment(t, **state):
    base = {
        "replicas": 2,
        "ready": 2,
        "available": 2,
        "updated": 2,
        "unavailable": 0,
        "generation": 1,
        "observed": 1,
        "image": "img:v1",
        "conditions": {},
    }
    return Entry(t, "MODIFIED", "Deployment", "demo", base | state)


def hpa(t, desired):
    return Entry(t, "MODIFIED", "HorizontalPodAutoscaler", "demo", {"desired": desired})


def load_result(series=(), failures=()):
    stats = EndpointStats(None, "Aggregated", 0, 0, 0, None, 0, None, None, None, 0)
    return LoadResult(
        "http://127.0.0.1:1",
        0,
        100,
        stats,
        [],
        list(series),
        list(failures),
        {},
        {},
        NO_GENERATOR,
        None,
        Path("."),
    )


def test_hpa_scale_up_measures_time_to_ready_pods():
    timeline = Timeline([deployment(10, ready=2), deployment(40, replicas=3, ready=3)])
    check = a.hpa_scaled_up(timeline, deployment="demo", to=3, load_started=10, within_s=60)
    assert check.passed and check.verdict.measured == 30
    late = a.hpa_scaled_up(timeline, deployment="demo", to=3, load_started=10, within_s=20)
    assert not late.passed


def test_hpa_bounds_and_scale_down():
    timeline = Timeline([hpa(1, 2), hpa(5, 6), deployment(50, replicas=2, ready=2)])
    assert not a.hpa_within_bounds(timeline, hpa="demo", deployment="demo", maximum=5).passed
    down = a.hpa_scaled_down(timeline, deployment="demo", to=2, load_stopped=20, within_s=40)
    assert down.passed and down.verdict.measured == 30


def test_hpa_checks_of_an_hpa_never_recorded_are_inconclusive_not_passed():
    """A spec naming an HPA the timeline does not hold had nothing judged: it must not pass."""
    timeline = Timeline([hpa(1, 2), deployment(5, replicas=2, ready=2)])
    for check in (
        a.hpa_within_bounds(timeline, hpa="web", deployment="demo", maximum=5),
        a.hpa_direction_changes(timeline, hpa="web", maximum=2),
    ):
        assert check.verdict.status == "inconclusive" and not check.passed
        assert "no HorizontalPodAutoscaler named web was recorded" in check.verdict.note


def test_hpa_bounds_judge_the_state_the_window_opens_with():
    """An HPA that changed before the window (and not within it) is still judged."""
    timeline = Timeline([hpa(1, 6), deployment(2, replicas=6, ready=6)])
    check = a.hpa_within_bounds(timeline, hpa="demo", deployment="demo", maximum=5, since=10)
    assert check.verdict.measured == 6 and not check.passed


def test_direction_changes_count_reversals_only():
    steady_climb = Timeline([hpa(t, d) for t, d in enumerate([2, 3, 4, 5, 5, 4, 3, 2])])
    assert a.hpa_direction_changes(steady_climb, hpa="demo", maximum=1).verdict.measured == 1
    flapping = Timeline([hpa(t, d) for t, d in enumerate([2, 3, 2, 3, 2, 3])])
    check = a.hpa_direction_changes(flapping, hpa="demo", maximum=2)
    assert check.verdict.measured == 4 and not check.passed


def test_recovery_after_a_deleted_pod():
    timeline = Timeline(
        [
            pod(0, "a"),
            pod(0, "b"),
            pod(10, "a", deleting=True),
            pod(11, "c", ready=False),
            pod(12, "a", type_="DELETED"),
            pod(17, "c"),
        ]
    )
    check = a.recovered(
        timeline, deployment="demo", replicas=2, fault_at=10, within_s=30, what="pod deleted"
    )
    assert check.passed and check.verdict.measured == 7


def test_disruption_counts_the_pods_serving_just_before_the_fault():
    """A change recorded at the fault's very moment is the fault's doing, not the baseline;
    with nothing recorded after the fault, neither detection nor recovery is made up."""
    timeline = Timeline([pod(0, "a"), pod(0, "b"), pod(10, "a", deleting=True)])
    disruption = timeline.disruption(10)
    assert disruption == Disruption(detected_at=10, recovered_at=None, serving_before=2)
    assert timeline.disruption(20) == Disruption(None, None, serving_before=1)


def test_recovery_after_a_container_restart_in_place():
    timeline = Timeline(
        [pod(0, "a"), pod(0, "b"), pod(10, "a", ready=False), pod(14, "a", ready=True, restarts=1)]
    )
    check = a.recovered(
        timeline, deployment="demo", replicas=2, fault_at=9, within_s=30, what="container killed"
    )
    assert check.passed and check.verdict.measured == 5
    restarted = a.container_restarted(timeline, pod="a", since=9, within_s=30, what="liveness")
    assert restarted.passed and restarted.verdict.measured == 5


def test_left_endpoints_and_no_traffic_after():
    def slice_(t, ready_a):
        return Entry(
            t,
            "MODIFIED",
            "EndpointSlice",
            "demo-x",
            {"endpoints": [{"pod": "a", "ready": ready_a}, {"pod": "b", "ready": True}]},
        )

    timeline = Timeline([slice_(0, True), slice_(13, False)])
    check = a.left_endpoints(timeline, pod="a", since=10, within_s=5)
    assert check.passed and check.verdict.measured == 3
    load = load_result(
        series=[SeriesPoint(t, 10, 0, 2, 1, 2, 3, pods={"a": 5, "b": 5}) for t in (12, 13)]
        + [SeriesPoint(14, 10, 0, 2, 1, 2, 3, pods={"b": 10})]
    )
    assert a.no_traffic_to(load, timeline, pod="a", after=14).passed
    assert not a.no_traffic_to(load, timeline, pod="a", after=13).passed


def endpoint_slice(t: float, ready_a: bool) -> Entry:
    return Entry(
        t,
        "MODIFIED",
        "EndpointSlice",
        "demo-x",
        {"endpoints": [{"pod": "a", "ready": ready_a}, {"pod": "b", "ready": True}]},
    )


def test_no_traffic_to_a_pod_of_a_service_whose_answers_name_none_is_judged_by_endpoints():
    """Without pod attribution (no X-Pod-Name header) the old check counted 0 requests to the
    pod and passed whatever happened: now the EndpointSlices judge, and the note says so."""
    anonymous = load_result(series=[SeriesPoint(t, 10, 0, 2, 1, 2, 3) for t in range(14, 24)])
    stayed_out = Timeline([endpoint_slice(0, True), endpoint_slice(13, False)])
    check = a.no_traffic_to(anonymous, stayed_out, pod="a", after=14)
    assert check.passed and "judged by the EndpointSlices" in check.verdict.note
    back_in = Timeline(
        [endpoint_slice(0, True), endpoint_slice(13, False), endpoint_slice(18, True)]
    )
    check = a.no_traffic_to(anonymous, back_in, pod="a", after=14)
    assert not check.passed and "was a ready endpoint again 4.0s later" in check.verdict.note


def test_no_traffic_to_with_no_request_after_the_pod_left_is_inconclusive():
    idle = load_result(series=[SeriesPoint(t, 0, 0, 2, None, None, None) for t in range(14, 20)])
    check = a.no_traffic_to(idle, Timeline([]), pod="a", after=14)
    assert check.verdict.status == "inconclusive" and not check.passed


def test_rollout_checks():
    timeline = Timeline(
        [
            pod(0, "a"),
            pod(0, "b"),
            pod(5, "n1", owner="demo-new", ready=False),
            pod(8, "n1", owner="demo-new"),
            pod(9, "a", deleting=True),
            pod(10, "n2", owner="demo-new", ready=False),
            pod(12, "n2", owner="demo-new"),
            pod(13, "b", deleting=True),
            deployment(14, image="img:v2", generation=2, observed=2),
        ]
    )
    done = a.rollout_completed(
        timeline, deployment="demo", image="img:v2", replicas=2, started=4, within_s=60
    )
    assert done.passed and done.verdict.measured == 10
    floor = a.max_unavailable_respected(
        timeline, deployment="demo", replicas=2, max_unavailable=0, since=4, until=20
    )
    assert floor.passed and floor.verdict.measured == 2


def test_a_broken_promise_explains_itself_with_timeline_and_failures(tmp_path):
    timeline = Timeline([pod(0, "a"), pod(0, "b"), pod(10, "a", deleting=True)])
    load = load_result(failures=[FailedRequest(11.0, 11.1, "GET", "/", "ConnectionRefused", None)])
    evidence = a.Evidence("self-healing", timeline, loads=[load])
    evidence.add(
        a.recovered(
            timeline, deployment="demo", replicas=2, fault_at=10, within_s=5, what="pod deleted"
        ),
        a.failed_requests(load, since=10, until=20, budget=0, what="pod deleted"),
    )
    with pytest.raises(a.BehaviourViolation) as caught:
        evidence.assert_all()
    text = str(caught.value)
    assert "2 promise(s) not kept" in text
    assert "never recovered while recorded" in text
    assert "Pod/a" in text and "ConnectionRefused" in text
    result = evidence.write(tmp_path)
    assert '"passed": false' in result.read_text()


def test_a_failed_check_says_why_and_a_passed_one_does_not(tmp_path):
    timeline = Timeline([pod(0, "a")])
    load = load_result(failures=[FailedRequest(11.0, 11.1, "GET", "/", "ConnectionRefused", None)])
    evidence = a.Evidence("rollout", timeline, loads=[load])
    kept = a.failed_requests(load, since=0, until=5, budget=0, what="before")
    broken = a.failed_requests(load, since=10, until=20, budget=0, what="rollout")
    evidence.add(kept, broken, why="container web has no preStop hook")
    with pytest.raises(a.BehaviourViolation) as caught:
        evidence.assert_all()
    assert "fail\n  why: container web has no preStop hook" in str(caught.value)
    verdicts = json.loads(evidence.write(tmp_path).read_text())["verdicts"]
    assert [v.get("why") for v in verdicts] == [None, "container web has no preStop hook"]


def test_a_slow_start_that_did_not_hold_from_the_first_probe_is_inconclusive():
    held = a.start_slowed_from_first_probe(["p1", "p2"], [], since=0, until=10)
    assert held.verdict.status == "pass"
    late = a.start_slowed_from_first_probe(["p1", "p2"], ["p2"], since=0, until=10)
    assert (late.verdict.status, late.verdict.measured) == ("inconclusive", 1)
    assert "started before the harness could fail their probes: p2" in late.verdict.note
    nothing = a.start_slowed_from_first_probe([], [], since=0, until=10)
    assert nothing.verdict.status == "inconclusive"
    assert not late.passed and not nothing.passed


def slow_starter(restarts: int, ready_at: float) -> Timeline:
    return Timeline(
        [
            pod(10, "demo-new", ready=False, type_="ADDED"),
            pod(20, "demo-new", ready=False, restarts=restarts),
            pod(ready_at, "demo-new", ready=True, restarts=restarts),
        ]
    )


def test_a_slow_starter_ready_after_its_delay_without_restarts_is_protected():
    restarts, ready = a.startup_protected(slow_starter(0, 40), deployment="demo", since=5,
                                          delay_s=20)  # fmt: skip
    assert restarts.passed and ready.passed
    assert ready.verdict.measured == 30


def test_a_slow_starter_restarted_by_liveness_is_not_protected():
    restarts, _ = a.startup_protected(slow_starter(1, 70), deployment="demo", since=5,
                                      delay_s=20)  # fmt: skip
    assert not restarts.passed and restarts.verdict.measured == 1


def test_no_slow_starter_at_all_is_not_a_pass():
    checks = a.startup_protected(Timeline([]), deployment="demo", since=5, delay_s=20)
    assert not any(check.passed for check in checks)


def test_availability_fails_over_its_limit_and_is_inconclusive_with_no_request():
    load = load_result(series=[SeriesPoint(t, 10, 3 if t == 12 else 0, 2, 1, 2, 3)
                               for t in range(10, 20)])  # fmt: skip
    kept = a.availability(load, since=10, until=20, max_error_rate=0.05, what="pod deleted")
    assert kept.passed and kept.verdict.measured == pytest.approx(0.03)
    broken = a.availability(load, since=11, until=13, max_error_rate=0.05, what="pod deleted")
    assert not broken.passed and broken.verdict.measured == pytest.approx(0.1)
    idle = a.availability(load, since=30, until=40, max_error_rate=0.05, what="pod deleted")
    assert idle.verdict.status == "inconclusive" and not idle.passed


def test_slo_checks_fail_on_each_limit_missed():
    stats = EndpointStats(None, "Aggregated", 100, 7, 50, 1, 900, 40, 800, 950, 3.0)
    load = load_result()
    load = LoadResult(
        load.base_url, 0, 100, stats, [stats], [], [], {}, {}, NO_GENERATOR, None, Path(".")
    )
    slo = SLO(max_error_rate=0.01, max_p95_ms=500, max_p99_ms=2000, min_rps=5)
    checks = {c.verdict.name: c for c in a.slo_checks(slo, load, what="rollout")}
    assert not checks["rollout: error rate"].passed
    assert not checks["rollout: p95 latency"].passed
    assert checks["rollout: p99 latency"].passed
    assert not checks["rollout: throughput"].passed


def test_a_rollout_that_took_a_ready_pod_below_the_floor_is_caught():
    timeline = Timeline(
        [pod(0, "a"), pod(0, "b"), pod(5, "a", deleting=True), pod(9, "n1", owner="demo-new")]
    )
    floor = a.max_unavailable_respected(
        timeline, deployment="demo", replicas=2, max_unavailable=0, since=4, until=20
    )
    assert not floor.passed and floor.verdict.measured == 1


def test_a_stuck_rollout_is_detected_only_by_its_progress_deadline():
    stuck = Timeline(
        [
            deployment(10, image="img:bad"),
            deployment(70, image="img:bad",
                       conditions={"Progressing": "False:ProgressDeadlineExceeded"}),
        ]
    )  # fmt: skip
    assert a.rollout_stuck_detected(stuck, deployment="demo", started=5, within_s=90).passed
    late = a.rollout_stuck_detected(stuck, deployment="demo", started=5, within_s=30)
    assert not late.passed
    never = Timeline([deployment(10, image="img:bad")])
    missing = a.rollout_stuck_detected(never, deployment="demo", started=5, within_s=90)
    assert not missing.passed and "never became ProgressDeadlineExceeded" in missing.verdict.note


def fake_pod(name: str, image: str, owner: str = "demo-abc") -> SimpleNamespace:
    return SimpleNamespace(
        metadata=SimpleNamespace(
            name=name, deletion_timestamp=None, owner_references=[SimpleNamespace(name=owner)]
        ),
        spec=SimpleNamespace(containers=[SimpleNamespace(image=image)]),
    )


def test_pods_left_on_the_old_image_are_named():
    def kube(*pods):
        listing = SimpleNamespace(items=list(pods))
        return SimpleNamespace(core=SimpleNamespace(list_namespaced_pod=lambda ns: listing))

    done = kube(fake_pod("a", "img:v2"), fake_pod("b", "img:v2"))
    assert a.all_pods_run(done, "ns", deployment="demo", image="img:v2", at=10).passed
    half = kube(fake_pod("a", "img:v2"), fake_pod("b", "img:v1"))
    check = a.all_pods_run(half, "ns", deployment="demo", image="img:v2", at=10)
    assert not check.passed and check.verdict.note == "not on it: b"
    assert not a.all_pods_run(kube(), "ns", deployment="demo", image="img:v2", at=10).passed


# ---------------------------------------------------------------- every check made to fail

RUNS = Path(__file__).parent / "data" / "runs" / "valid-suite"
HPA_RUN = "scenarios.test_hpa_scaling.py__test_hpa_scales_up_under_cpu_load_and_back_down_demo"
DELETED_POD_RUN = "scenarios.test_self_healing.py__test_deleted_pod_is_replaced_demo"
LIVENESS_RUN = "scenarios.test_probes.py__test_failing_liveness_restarts_the_container_demo"
ROLLOUTS = "scenarios.test_zero_downtime_rollout.py__test_"
ROLLOUT_RUN = ROLLOUTS + "new_version_rolls_out_without_failed_requests_demo"
BROKEN_ROLLOUT_RUN = ROLLOUTS + "broken_image_is_detected_and_rolled_back_demo"
DEMO_IMAGE = "localhost/kube-harness/demo-service:"


def recorded(run: str) -> Timeline:
    """The timeline of a recorded run (tests/data/runs)."""
    return Timeline.load(RUNS / run / "timeline.jsonl")


def marked(timeline: Timeline, label: str) -> float:
    return next(e.t for e in timeline.of("Mark") if e.name == label)


def test_hpa_scaled_up_fails_when_ready_pods_never_reach_the_target():
    timeline = Timeline([deployment(10, ready=2), deployment(40, replicas=3, ready=2)])
    check = a.hpa_scaled_up(timeline, deployment="demo", to=3, load_started=10, within_s=60)
    assert not check.passed and check.verdict.measured is None
    assert check.verdict.note == "never reached 3 ready pods"


def test_hpa_scaled_up_on_a_recorded_run_passes_in_time_and_fails_beyond_its_peak():
    timeline = recorded(HPA_RUN)
    started = marked(timeline, "cpu load starts")
    kept = a.hpa_scaled_up(timeline, deployment="demo", to=3, load_started=started, within_s=150)
    assert kept.passed and kept.verdict.measured == pytest.approx(13.89, abs=0.01)
    beyond = a.hpa_scaled_up(timeline, deployment="demo", to=6, load_started=started,
                             within_s=150)  # fmt: skip
    assert not beyond.passed and beyond.verdict.note == "never reached 6 ready pods"


def test_hpa_within_bounds_passes_at_its_maximum_and_fails_above_it_on_a_recorded_run():
    timeline = recorded(HPA_RUN)
    kept = a.hpa_within_bounds(timeline, hpa="demo", deployment="demo", maximum=5)
    assert kept.passed and kept.verdict.measured == 5
    broken = a.hpa_within_bounds(timeline, hpa="demo", deployment="demo", maximum=4)
    assert not broken.passed and broken.verdict.measured == 5


def test_hpa_within_bounds_fails_when_the_deployment_exceeds_the_maximum_the_hpa_kept():
    """Replicas set by hand (or by another controller) count, not only the HPA's wish."""
    timeline = Timeline([hpa(1, 3), deployment(2, replicas=3), deployment(5, replicas=7)])
    check = a.hpa_within_bounds(timeline, hpa="demo", deployment="demo", maximum=5)
    assert not check.passed and check.verdict.measured == 7


def test_hpa_scaled_down_fails_when_replicas_stay_up():
    timeline = Timeline([deployment(10, replicas=5, ready=5), deployment(30, replicas=5, ready=5)])
    check = a.hpa_scaled_down(timeline, deployment="demo", to=2, load_stopped=20, within_s=60)
    assert not check.passed and check.verdict.measured is None
    assert check.verdict.note == "still above 2 replicas at the end"


def test_hpa_scaled_down_fails_while_the_replicas_left_are_not_all_ready():
    timeline = Timeline([deployment(30, replicas=2, ready=1)])
    check = a.hpa_scaled_down(timeline, deployment="demo", to=2, load_stopped=20, within_s=60)
    assert not check.passed and check.verdict.note == "still above 2 replicas at the end"


def test_hpa_scaled_down_on_a_recorded_run_fails_when_it_came_back_too_late():
    timeline = recorded(HPA_RUN)
    stopped = marked(timeline, "cpu load stopped")
    kept = a.hpa_scaled_down(timeline, deployment="demo", to=2, load_stopped=stopped,
                             within_s=120)  # fmt: skip
    assert kept.passed and kept.verdict.measured == pytest.approx(32.38, abs=0.01)
    late = a.hpa_scaled_down(timeline, deployment="demo", to=2, load_stopped=stopped,
                             within_s=30)  # fmt: skip
    assert not late.passed and late.verdict.measured == kept.verdict.measured


def test_hpa_direction_changes_on_a_recorded_run_pass_within_the_maximum_and_fail_over_it():
    timeline = recorded(HPA_RUN)
    started = marked(timeline, "cpu load starts")
    kept = a.hpa_direction_changes(timeline, hpa="demo", maximum=1, since=started)
    assert kept.passed and kept.verdict.measured == 1  # up to 5, then down to 2
    broken = a.hpa_direction_changes(timeline, hpa="demo", maximum=0, since=started)
    assert not broken.passed and broken.verdict.measured == 1


def test_recovered_fails_when_no_replacement_becomes_ready():
    timeline = Timeline(
        [
            pod(0, "a"),
            pod(0, "b"),
            pod(10, "a", deleting=True),
            pod(11, "c", ready=False),
            pod(12, "a", type_="DELETED"),
        ]
    )
    check = a.recovered(
        timeline, deployment="demo", replicas=2, fault_at=10, within_s=30, what="pod deleted"
    )
    assert not check.passed and check.verdict.measured is None
    assert check.verdict.note == "never recovered while recorded"


def test_recovered_is_inconclusive_when_the_fault_never_showed():
    """No pod went down and none restarted: the promise was not put to the test."""
    timeline = Timeline([pod(0, "a"), pod(0, "b"), pod(12, "a")])
    check = a.recovered(
        timeline, deployment="demo", replicas=2, fault_at=10, within_s=30, what="pod deleted"
    )
    assert check.verdict.status == "inconclusive" and not check.passed
    assert "no pod of demo went down or restarted" in check.verdict.note


def test_recovered_on_a_recorded_run_fails_when_the_replacement_was_ready_too_late():
    timeline = recorded(DELETED_POD_RUN)
    fault_at = marked(timeline, "pod deleted")
    kept = a.recovered(
        timeline, deployment="demo", replicas=2, fault_at=fault_at, within_s=60, what="deleted"
    )
    assert kept.passed and kept.verdict.measured == pytest.approx(2.96, abs=0.01)
    late = a.recovered(
        timeline, deployment="demo", replicas=2, fault_at=fault_at, within_s=2, what="deleted"
    )
    assert not late.passed and late.verdict.measured == kept.verdict.measured


def test_container_restarted_fails_when_the_restart_count_never_moves():
    timeline = Timeline([pod(0, "a"), pod(10, "a", ready=False), pod(40, "a", ready=False)])
    check = a.container_restarted(timeline, pod="a", since=9, within_s=30, what="liveness")
    assert not check.passed and check.verdict.measured is None
    assert check.verdict.note == "restart count never moved"


def test_container_restarted_on_a_recorded_run_fails_when_the_restart_came_too_late():
    timeline = recorded(LIVENESS_RUN)
    since = marked(timeline, "liveness made to fail")
    victim = "demo-6b8db8dbb7-4l5l5"
    kept = a.container_restarted(timeline, pod=victim, since=since, within_s=30, what="liveness")
    assert kept.passed and kept.verdict.measured == pytest.approx(8.57, abs=0.01)
    late = a.container_restarted(timeline, pod=victim, since=since, within_s=5, what="liveness")
    assert not late.passed and late.verdict.measured == kept.verdict.measured


def test_left_endpoints_fails_while_the_pod_stays_a_ready_endpoint():
    timeline = Timeline([endpoint_slice(0, True), endpoint_slice(13, True)])
    check = a.left_endpoints(timeline, pod="a", since=10, within_s=5)
    assert not check.passed and check.verdict.measured is None
    assert check.verdict.note == "still a ready endpoint"


def test_left_endpoints_fails_when_the_pod_left_too_late():
    timeline = Timeline([endpoint_slice(0, True), endpoint_slice(13, False)])
    check = a.left_endpoints(timeline, pod="a", since=5, within_s=5)
    assert not check.passed and check.verdict.measured == 8


def test_left_endpoints_of_a_pod_that_never_was_an_endpoint_is_not_a_pass():
    only_b = Entry(12, "MODIFIED", "EndpointSlice", "demo-x",
                   {"endpoints": [{"pod": "b", "ready": True}]})  # fmt: skip
    check = a.left_endpoints(Timeline([only_b]), pod="a", since=10, within_s=5)
    assert not check.passed


def test_no_traffic_to_fails_counting_the_requests_the_pod_still_answered():
    load = load_result(
        series=[SeriesPoint(t, 10, 0, 2, 1, 2, 3, pods={"a": 3, "b": 7}) for t in (14, 15)]
    )
    check = a.no_traffic_to(load, Timeline([]), pod="a", after=14)
    assert not check.passed and check.verdict.measured == 6


def test_no_traffic_to_with_no_request_after_the_pod_left_says_nothing_was_judged():
    idle = load_result(series=[SeriesPoint(t, 0, 0, 2, None, None, None) for t in range(14, 20)])
    check = a.no_traffic_to(idle, Timeline([endpoint_slice(0, True)]), pod="a", after=14)
    assert check.verdict.status == "inconclusive" and not check.passed
    assert check.verdict.note == "no request was sent after the pod left the endpoints"


def test_no_traffic_to_without_pod_names_or_any_endpoint_slice_is_inconclusive():
    anonymous = load_result(series=[SeriesPoint(t, 10, 0, 2, 1, 2, 3) for t in range(14, 24)])
    check = a.no_traffic_to(anonymous, Timeline([pod(0, "a")]), pod="a", after=14)
    assert not check.passed
    assert check.verdict.status == "inconclusive"


def test_a_slow_starter_ready_before_its_delay_is_not_protected():
    restarts, ready = a.startup_protected(slow_starter(0, 25), deployment="demo", since=5,
                                          delay_s=20)  # fmt: skip
    assert restarts.passed
    assert not ready.passed and ready.verdict.measured == 15
    assert ready.verdict.note == "per pod: {'demo-new': 15}"


def test_a_slow_starter_never_ready_is_not_protected():
    never = Timeline([pod(10, "demo-new", ready=False, type_="ADDED"),
                      pod(40, "demo-new", ready=False)])  # fmt: skip
    _, ready = a.startup_protected(never, deployment="demo", since=5, delay_s=20)
    assert not ready.passed and ready.verdict.measured is None
    assert ready.verdict.note == "per pod: {'demo-new': None}"


def test_no_slow_starter_at_all_fails_both_checks_with_nothing_per_pod():
    restarts, ready = a.startup_protected(Timeline([pod(1, "old")]), deployment="demo", since=5,
                                          delay_s=20)  # fmt: skip
    assert not restarts.passed and restarts.verdict.note == "per pod: {}"
    assert not ready.passed and ready.verdict.note == "per pod: {}"


def test_availability_with_no_request_in_the_window_says_so():
    idle = a.availability(load_result(), since=30, until=40, max_error_rate=0.05, what="x")
    assert idle.verdict.status == "inconclusive" and not idle.passed
    assert idle.verdict.note == "no request was sent in that window"


def test_failed_requests_pass_within_the_budget_and_fail_over_it():
    load = load_result(
        failures=[
            FailedRequest(9.5, 10.2, "GET", "/", "ReadTimeout", "demo-a"),  # in flight at 10
            FailedRequest(11.0, 11.1, "GET", "/", "ConnectionRefused", None),
            FailedRequest(25.0, 25.1, "GET", "/", "ConnectionRefused", None),  # after the window
        ]
    )
    kept = a.failed_requests(load, since=10, until=20, budget=2, what="rollout")
    assert kept.passed and kept.verdict.measured == 2
    broken = a.failed_requests(load, since=10, until=20, budget=1, what="rollout")
    assert not broken.passed and broken.verdict.measured == 2
    quiet = a.failed_requests(load, since=0, until=5, budget=0, what="before")
    assert quiet.passed and quiet.verdict.measured == 0


def test_slo_checks_of_a_saturated_generator_are_inconclusive_not_passed():
    stats = EndpointStats(None, "Aggregated", 100, 7, 50, 1, 900, 40, 800, 950, 3.0)
    load = LoadResult(
        "u", 0, 100, stats, [stats], [], [], {}, {}, NO_GENERATOR, "CPU at 100%", Path()
    )
    slo = SLO(max_error_rate=0.01, max_p99_ms=2000)
    checks = {c.verdict.name: c for c in a.slo_checks(slo, load, what="rollout")}
    rate = checks["rollout: error rate"]
    assert rate.verdict.status == "inconclusive" and not rate.passed
    assert rate.verdict.note == "the load generator saturated, see below"
    assert checks["rollout: p99 latency"].passed
    busy = checks["rollout: load generator busy"]
    assert not busy.passed and busy.verdict.note == "CPU at 100%"


def test_slo_checks_with_no_request_completed_fail():
    nothing = EndpointStats(None, "Aggregated", 0, 0, 0, None, 0, None, None, None, 0)
    load = LoadResult("u", 0, 100, nothing, [], [], [], {}, {}, NO_GENERATOR, None, Path())
    slo = SLO(max_error_rate=0.01, max_p95_ms=500, min_rps=5)
    checks = a.slo_checks(slo, load, what="rollout")
    assert [c.verdict.name for c in checks] == [
        "rollout: error rate", "rollout: p95 latency", "rollout: throughput",
    ]  # fmt: skip
    assert not any(c.passed for c in checks)
    assert {c.verdict.note for c in checks} == {"no request completed"}


def test_rollout_completed_fails_while_an_old_pod_is_left():
    timeline = Timeline(
        [
            deployment(10, image="img:v2", generation=2, observed=2, total=3, available=2),
            deployment(20, image="img:v2", generation=2, observed=2, total=3, available=3),
        ]
    )
    check = a.rollout_completed(
        timeline, deployment="demo", image="img:v2", replicas=2, started=4, within_s=60
    )
    assert not check.passed and check.verdict.measured is None
    assert check.verdict.note == "not complete while recorded"


def test_rollout_completed_fails_before_the_controller_observed_the_new_generation():
    timeline = Timeline([deployment(10, image="img:v2", generation=2, observed=1)])
    check = a.rollout_completed(
        timeline, deployment="demo", image="img:v2", replicas=2, started=4, within_s=60
    )
    assert not check.passed and check.verdict.note == "not complete while recorded"


def test_rollout_completed_on_recorded_runs_passes_in_time_and_fails_late_or_never():
    rollout = recorded(ROLLOUT_RUN)
    started = marked(rollout, "rollout starts")
    image = DEMO_IMAGE + "v2"
    kept = a.rollout_completed(rollout, deployment="demo", image=image, replicas=2,
                               started=started, within_s=180)  # fmt: skip
    assert kept.passed and kept.verdict.measured == pytest.approx(6.48, abs=0.01)
    late = a.rollout_completed(rollout, deployment="demo", image=image, replicas=2,
                               started=started, within_s=5)  # fmt: skip
    assert not late.passed and late.verdict.measured == kept.verdict.measured
    broken = recorded(BROKEN_ROLLOUT_RUN)
    never = a.rollout_completed(
        broken, deployment="demo", image=DEMO_IMAGE + "kube-harness-no-such-tag", replicas=2,
        started=marked(broken, "rollout to a broken image"), within_s=180,
    )  # fmt: skip
    assert not never.passed and never.verdict.note == "not complete while recorded"


def test_max_unavailable_judges_the_ready_pods_the_window_opens_with():
    timeline = Timeline([pod(0, "a"), pod(0, "b"), pod(2, "b", ready=False)])
    floor = a.max_unavailable_respected(
        timeline, deployment="demo", replicas=2, max_unavailable=0, since=4, until=20
    )
    assert not floor.passed and floor.verdict.measured == 1


def test_a_pod_deleted_during_a_watch_gap_does_not_stay_ready_after_the_relist(tmp_path):
    """No DELETED event reaches a watch that is down: the relist's DELETED entry (marked
    gone_at_relist) takes the pod out, so the checks see one Ready pod, not a ghost."""

    def api_pod(name):
        return {
            "metadata": {"name": name, "ownerReferences": [{"name": "demo-abc"}]},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "demo", "ready": True, "restartCount": 0,
                                       "state": {"running": {}}}],
            },
        }  # fmt: skip

    listings = [[api_pod("demo-a"), api_pod("demo-b")], [api_pod("demo-b")]]

    def lister(*args, **kwargs):
        body = {"metadata": {"resourceVersion": "7"}, "items": listings.pop(0)}
        return SimpleNamespace(data=json.dumps(body).encode())

    ticks = iter([10.0, 20.0])
    path = tmp_path / "timeline.jsonl"
    recorder = TimelineRecorder(
        SimpleNamespace(), "ns", path, watched=(), clock=lambda: next(ticks)
    )
    pods = Watched("Pod", lambda kube: lister, summarize_pod)
    recorder._list(pods, lister, ("ns",))
    recorder._list(pods, lister, ("ns",))  # the relist after a watch gap: demo-a went meanwhile

    timeline = Timeline.load(path)  # as a report reads it back
    (gone,) = [e for e in timeline.of("Pod") if e.type == "DELETED"]
    assert (gone.name, gone.t, gone.state[RELISTED]) == ("demo-a", 20.0, True)
    assert timeline.ready_pods(15, deployment="demo") == {"demo-a", "demo-b"}
    assert timeline.ready_pods(25, deployment="demo") == {"demo-b"}
    floor = a.max_unavailable_respected(
        timeline, deployment="demo", replicas=2, max_unavailable=0, since=5, until=30
    )
    assert not floor.passed and floor.verdict.measured == 1
    back = a.recovered(
        timeline, deployment="demo", replicas=2, fault_at=15, within_s=60, what="pod deleted"
    )
    assert not back.passed and back.verdict.note == "never recovered while recorded"


def test_all_pods_run_with_no_live_pod_of_the_deployment_is_not_a_pass():
    terminating = fake_pod("a", "img:v2")
    terminating.metadata.deletion_timestamp = "2026-11-30T10:00:00Z"
    other = fake_pod("x", "img:v2", owner="other-abc")
    listing = SimpleNamespace(items=[terminating, other])
    kube = SimpleNamespace(core=SimpleNamespace(list_namespaced_pod=lambda ns: listing))
    check = a.all_pods_run(kube, "ns", deployment="demo", image="img:v2", at=10)
    assert not check.passed and (check.verdict.measured, check.verdict.limit) == (0, 0)


def versions_second(t, **versions):
    requests = sum(versions.values())
    return SeriesPoint(t, requests, 0, 1, 10.0, 10.0, 10.0, versions=versions)


def test_answered_by_counts_the_answers_of_other_versions_in_whole_seconds():
    switched = [versions_second(9, v1=4), versions_second(10, v1=2, v2=2),
                versions_second(11, v2=4), versions_second(12, v2=4)]  # fmt: skip
    load = load_result(series=switched)
    after = a.answered_by(load, version="v2", since=10.5, until=13, what="after the switch")
    assert after.passed and after.verdict.measured == 0
    assert after.verdict.note == "answers by version: v2=8"
    early = a.answered_by(load, version="v2", since=10, until=13, what="after the switch")
    assert not early.passed and early.verdict.measured == 2
    assert early.verdict.note == "answers by version: v1=2, v2=10"
    assert "answers by a version other than v2" in early.verdict.name


def test_answered_by_without_named_versions_or_requests_is_inconclusive():
    unnamed = load_result(series=[SeriesPoint(t, 4, 0, 1, 10.0, 10.0, 10.0) for t in (10, 11)])
    check = a.answered_by(unnamed, version="v2", since=10, until=12, what="after the switch")
    assert check.verdict.status == "inconclusive" and not check.passed
    assert "none of the 8 answers" in check.verdict.note and "load.version" in check.verdict.note
    idle = a.answered_by(load_result(), version="v2", since=10, until=12, what="x")
    assert idle.verdict.note == "no request was answered in that window" and not idle.passed


def test_version_share_is_judged_against_the_steps_weight_within_the_tolerance():
    load = load_result(series=[versions_second(t, v1=6, v2=2) for t in (10, 11, 12)])
    near = a.version_share(load, version="v2", weight=0.33, tolerance=0.1, since=10, until=13,
                           what="canary at 33%")  # fmt: skip
    assert near.passed and near.verdict.measured == 0.25
    assert near.verdict.note == "6 of 24 answers; kept within 33% ± 10 points"
    far = a.version_share(load, version="v2", weight=0.5, tolerance=0.1, since=10, until=13,
                          what="canary at 50%")  # fmt: skip
    assert not far.passed and far.verdict.status == "fail"
    unnamed = a.version_share(load_result(series=[SeriesPoint(10, 4, 0, 1, 1.0, 1.0, 1.0)]),
                              version="v2", weight=0.5, tolerance=0.1, since=10, until=11,
                              what="x")  # fmt: skip
    assert unnamed.verdict.status == "inconclusive" and not unnamed.passed


def test_a_versions_error_rate_counts_its_own_failed_answers_in_whole_seconds():
    points = [versions_second(t, v1=5, v2=5) for t in (10, 11, 12)]
    failures = [
        FailedRequest(10.2, 10.3, "GET", "/", "HTTPError: 500", "demo-c", "v2"),
        FailedRequest(11.2, 11.3, "GET", "/", "HTTPError: 500", "demo-c", "v2"),
        FailedRequest(11.5, 11.6, "GET", "/", "HTTPError: 500", "demo-s", "v1"),  # not v2's
        FailedRequest(12.5, 13.6, "GET", "/", "ReadTimeout", None, None),  # nobody's answer
        FailedRequest(13.1, 13.2, "GET", "/", "HTTPError: 500", "demo-c", "v2"),  # after
    ]
    broken = a.version_error_rate(points, failures, version="v2", max_error_rate=0.0,
                                  since=9.5, until=13, what="canary at 33%")  # fmt: skip
    assert not broken.passed and broken.verdict.measured == 2 / 15
    assert broken.verdict.note == "2 of 15 answers failed"
    # Read live, the failures may run ahead of the series: a second not in it yet (13) does
    # not count.
    ahead = a.version_error_rate(points, failures, version="v2", max_error_rate=0.0,
                                 since=9.5, until=15, what="canary at 33%")  # fmt: skip
    assert ahead.verdict.measured == 2 / 15
    within = a.version_error_rate(points, failures, version="v2", max_error_rate=0.2,
                                  since=9.5, until=13, what="canary at 33%")  # fmt: skip
    assert within.passed
    no_limit = a.version_error_rate(points, failures, version="v2", max_error_rate=None,
                                    since=10, until=13, what="x")  # fmt: skip
    assert no_limit.verdict.status == "inconclusive" and "no error rate" in no_limit.verdict.note
    silent = a.version_error_rate(points, failures, version="v3", max_error_rate=0.0,
                                  since=10, until=13, what="x")  # fmt: skip
    assert silent.verdict.status == "inconclusive" and not silent.passed


CANARY_TEST = "test_canary_steps_hold_their_share_and_promote_or_abort_on_the_slo_demo-canary"
CANARY_RUN = (
    Path(__file__).parent
    / "data"
    / "runs"
    / "valid-canary"
    / (f"scenarios.test_canary.py__{CANARY_TEST}")
)


def recorded_load(folder: Path) -> LoadResult:
    """The per-second series and failures of a recorded run's first load."""
    lines = (folder / "load-1" / "load-events.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    failures = [FailedRequest.from_record(r) for r in records if r["kind"] == "failure"]
    return load_result(series=merge_seconds(records), failures=failures)


def test_a_recorded_canary_holds_its_steps_shares_and_fails_a_share_it_never_had():
    """The canary scenario's record (a third of the pods, then half, then the promotion):
    each step's share of v2's answers is judged as the run judged it; the promotion left
    v1 no answer; a step judged against a share it never had fails."""
    load = recorded_load(CANARY_RUN)
    timeline = Timeline.load(CANARY_RUN / "timeline.jsonl")
    verdicts = json.loads((CANARY_RUN / "result.json").read_text())["verdicts"]
    third = next(
        v for v in verdicts if v["name"].startswith("canary at 33%") and "share" in v["name"]
    )
    window = {"since": third["since"], "until": third["until"]}
    kept = a.version_share(load, version="v2", weight=0.33, tolerance=0.12, what="33%", **window)
    assert kept.passed and kept.verdict.measured == third["measured"] == 0.3125
    never = a.version_share(load, version="v2", weight=0.66, tolerance=0.12, what="66%", **window)
    assert not never.passed
    promoted, ended = marked(timeline, "promoted"), marked(timeline, "load ends")
    after = a.answered_by(load, version="v2", since=promoted + 3, until=ended, what="after")
    assert after.passed and after.verdict.measured == 0
    stepped = marked(timeline, "canary at 33%") + 3
    before = a.answered_by(load, version="v2", since=stepped, until=promoted, what="before")
    assert not before.passed and "v1=" in before.verdict.note
