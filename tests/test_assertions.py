"""Behaviour checks on recorded timelines and load records (pure logic, no cluster)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import assertions as a
from harness.load import SLO, LoadResult
from harness.load.result import EndpointStats, FailedRequest, SeriesPoint
from harness.observe import Entry, Timeline


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
        [],
        0,
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
    load = LoadResult(load.base_url, 0, 100, stats, [stats], [], [], {}, {}, [], 0, None, Path("."))
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
