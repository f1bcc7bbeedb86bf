"""One sentence per probe or verdict kind, from plain facts: a timeline of a few entries, a pod
template and PodDisruptionBudgets as the API serves them, the times a run went by."""

from dataclasses import replace
from pathlib import Path

import pytest

from harness.chaos import explain
from harness.chaos.facts import RunFacts, Timing, Timings, last_terminations, method_actions
from harness.chaos.ledger import Injected
from harness.load import LoadResult, Verdict
from harness.load.result import EndpointStats, FailedRequest, Generator
from harness.observe import Entry, Timeline
from harness.spec import load_spec

NO_GENERATOR = Generator("host", ())

ROOT = Path(__file__).resolve().parents[1]
DEMO = load_spec(ROOT / "scenarios" / "demo-service.spec.yaml").service("demo")
TIMINGS = Timings.of(DEMO)
STARTED, FAULT, END = 100.0, 105.0, 160.0


def pod_state(*, ready=True, restarts=0, state="running", phase="Running", deleting=False):
    return {
        "phase": phase,
        "ready": ready,
        "deleting": deleting,
        "owner": "demo-7f9c",
        "containers": [{"name": "demo", "ready": ready, "restarts": restarts, "state": state}],
    }


def pods(t, **states):
    return [Entry(t, "MODIFIED", "Pod", name, state) for name, state in states.items()]


def endpoints(t, *ready_pods):
    state = {"service": "demo", "endpoints": [{"pod": p, "ready": True} for p in ready_pods]}
    return Entry(t, "MODIFIED", "EndpointSlice", "demo-abc", state)


def event(t, pod, reason, message):
    state = {"reason": reason, "message": message, "object": f"Pod/{pod}"}
    return Entry(t, "ADDED", "Event", f"{pod}.1", state)


AT_START = pods(STARTED, **{"demo-a": pod_state(), "demo-b": pod_state()})


def facts(*entries, **changes):
    values = dict(
        deployment="demo",
        container="demo",
        replicas=2,
        timings=TIMINGS,
        timeline=Timeline([*AT_START, *entries]),
        started=STARTED,
        containers=({"name": "demo", "readinessProbe": {"httpGet": {"path": "/readyz"},
                                                        "periodSeconds": 1,
                                                        "failureThreshold": 2}},),
        pod_labels={"app.kubernetes.io/component": "server", "app.kubernetes.io/instance": "ci"},
    )  # fmt: skip
    return RunFacts(**(values | changes))


def probe(func, output, *, tolerance=True, arguments=None, start=FAULT, end=END):
    return explain.ProbeRun(func, func, output, tolerance, arguments or {}, start, end)


# ---------------------------------------------------------------- times and facts


def test_the_run_goes_by_the_specs_times_each_with_its_source():
    assert TIMINGS.ready_within == Timing(60.0, "the spec's self_healing.ready_within")
    assert TIMINGS.leaves_endpoints_within == Timing(
        10.0, "the spec's probes.readiness_leaves_endpoints_within"
    )
    assert TIMINGS.request_timeout == Timing(5.0, "the spec's load.timeout")
    assert TIMINGS.configuration() == {
        "harness_ready_within_s": 60.0,
        "harness_leaves_endpoints_within_s": 10.0,
        "harness_request_timeout_s": 5.0,
    }
    assert str(TIMINGS.ready_within) == "60s (the spec's self_healing.ready_within)"


def test_an_experiments_recover_within_wins_and_a_spec_without_expectations_has_defaults():
    from dataclasses import replace

    assert Timings.of(DEMO, 30).ready_within == Timing(30, "the experiment's recover_within_s")
    bare = Timings.of(replace(DEMO, self_healing=None, probes=None))
    assert bare.ready_within.seconds == bare.leaves_endpoints_within.seconds == 60
    assert "the spec has no self_healing.ready_within" in bare.ready_within.source
    assert "the spec has no probes section" in bare.leaves_endpoints_within.source


def test_the_methods_actions_and_the_last_terminations_are_read_from_their_records():
    journal = {
        "run": [
            {"activity": {"type": "action", "provider": {"func": "partition_one_pod"}},
             "output": {"pod": "demo-a"}},
            {"activity": {"type": "probe", "provider": {"func": "ready_pods"}}, "output": 1},
        ]
    }  # fmt: skip
    assert method_actions(journal) == (("partition_one_pod", {"pod": "demo-a"}),)
    served = {
        "metadata": {"name": "demo-a"},
        "status": {"containerStatuses": [
            {"name": "demo", "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}},
            {"name": "side", "lastState": {}},
        ]},
    }  # fmt: skip
    assert last_terminations([served]) == {"demo-a/demo": "OOMKilled, exit 137"}


# ---------------------------------------------------------------- replicas not Ready


def test_replicas_not_ready_again_say_how_many_within_which_time_and_why():
    later = pods(
        150,
        **{
            "demo-a": pod_state(),
            "demo-b": pod_state(ready=False, restarts=3, state="waiting:CrashLoopBackOff"),
        },
    )
    sentence = explain.ready_again_sentence(facts(*later), probe("deployment_ready_again", False))
    assert sentence == (
        "1 of 2 replicas of demo were not Ready again within 60s (the spec's "
        "self_healing.ready_within): demo-b: container demo waiting (CrashLoopBackOff)"
    )


def test_a_fault_that_showed_no_effect_is_named_as_such():
    sentence = explain.ready_again_sentence(facts(), probe("deployment_ready_again", False))
    assert sentence.startswith(
        "no replica of demo was replaced or restarted within 60s (the spec's "
        "self_healing.ready_within): the fault did not take effect"
    )


def test_a_pending_replica_says_why_the_scheduler_left_it():
    pending = pod_state(ready=False, phase="Pending") | {"containers": []}
    later = [
        *pods(150, **{"demo-a": pod_state(deleting=True), "demo-c": pending}),
        event(151, "demo-c", "FailedScheduling", "0/1 nodes are available"),
    ]
    sentence = explain.deployment_ready_sentence(facts(*later), probe("deployment_ready", False))
    assert sentence == (
        "1 of 2 replicas of demo were not Ready within 60s (the spec's self_healing.ready_within)"
        ": demo-c: Pending (0/1 nodes are available)"
    )


def test_replicas_that_kept_turning_not_ready_are_named():
    flaps = [
        *pods(120, **{"demo-b": pod_state(ready=False)}),
        *pods(121, **{"demo-b": pod_state()}),
    ]
    sentence = explain.stays_ready_sentence(facts(*flaps), probe("deployment_stays_ready", False))
    assert sentence == (
        "demo did not stay fully Ready for 10s (the spec's probes."
        "readiness_leaves_endpoints_within) within 60s: demo-b kept turning NotReady"
    )


# ---------------------------------------------------------------- a partitioned pod


PARTITIONED = (("partition_one_pod", {"pod": "demo-a", "id": "p1"}),)


def container(readiness):
    return ({"name": "demo", **({"readinessProbe": readiness} if readiness else {})},)


@pytest.mark.parametrize(
    ("readiness", "why"),
    [
        (
            {"exec": {"command": ["wget", "-qO-", "http://localhost:8080/readyz"]}},
            "its readiness probe is an exec probe that dials localhost (`wget -qO- "
            "http://localhost:8080/readyz`), which runs inside the pod, where the partition "
            "leaves localhost reachable",
        ),
        (
            {"exec": {"command": ["cat", "/tmp/ready"]}},
            "its readiness probe is an exec probe (`cat /tmp/ready`), which runs inside the "
            "pod, where the partition leaves localhost reachable",
        ),
        (None, "its container demo has no readiness probe, so nothing takes it out"),
        (
            {"httpGet": {"host": "127.0.0.1", "path": "/"}},
            "its readiness probe dials 127.0.0.1, which the kubelet finds on the node",
        ),
        (
            {"tcpSocket": {"port": 80}, "periodSeconds": 10, "failureThreshold": 3},
            "its readiness probe turns it NotReady only after 3 failures 10s apart (about 30s), "
            "later than 10s (the spec's probes.readiness_leaves_endpoints_within)",
        ),
    ],
)
def test_a_partitioned_pod_that_stayed_ready_is_explained_by_its_readiness_probe(readiness, why):
    still = facts(actions=PARTITIONED, containers=container(readiness))
    sentence = explain.partition_sentence(still, probe("partitioned_pod_left_endpoints", False))
    assert sentence.startswith(f"the pod stayed Ready while partitioned: {why}")


def test_a_partitioned_pod_not_ready_but_still_listed_blames_the_endpoints():
    later = [*pods(110, **{"demo-a": pod_state(ready=False)}), endpoints(110, "demo-a", "demo-b")]
    sentence = explain.partition_sentence(
        facts(*later, actions=PARTITIONED), probe("partitioned_pod_left_endpoints", False)
    )
    assert sentence == (
        "the partitioned pod demo-a turned NotReady, but the Service's endpoints still listed it "
        "after 10s (the spec's probes.readiness_leaves_endpoints_within): the EndpointSlice "
        "controller lagged"
    )


def test_no_partition_in_place_is_said():
    sentence = explain.partition_sentence(facts(), probe("partitioned_pod_left_endpoints", False))
    assert sentence.startswith("no pod was partitioned when the probe looked")


# ---------------------------------------------------------------- a drain


DRAINED = (("drain_node", {"node": "node-1", "id": "d1"}),)
NONE_READY = [
    Entry(140, "DELETED", "Pod", "demo-a"),
    Entry(140, "DELETED", "Pod", "demo-b"),
    *pods(150, **{"demo-c": pod_state(ready=False, phase="Pending", state="waiting")}),
]


def budget(name, selector, **limits):
    return {"metadata": {"name": name}, "spec": {"selector": selector, **limits}}


COMPONENT = {"matchLabels": {"app.kubernetes.io/component": "server"}}


@pytest.mark.parametrize(
    ("pdbs", "sentence"),
    [
        ((), "the drain evicted every replica: no PodDisruptionBudget selects the Deployment"),
        (
            (budget("other", {"matchLabels": {"app": "other"}}, minAvailable=1),),
            "the drain evicted every replica: no PodDisruptionBudget selects the Deployment",
        ),
        (
            (budget("demo", COMPONENT, minAvailable=0),),
            "the drain evicted every replica: the PodDisruptionBudget demo allows it "
            "(minAvailable 0)",
        ),
        (
            (budget("demo", COMPONENT, maxUnavailable="100%"),),
            "the drain evicted every replica: the PodDisruptionBudget demo allows it "
            "(maxUnavailable 100%)",
        ),
    ],
)
def test_a_drain_that_left_no_replica_names_the_missing_budget(pdbs, sentence):
    drained = facts(*NONE_READY, actions=DRAINED, pdbs=pdbs)
    assert explain.ready_pods_sentence(drained, probe("ready_pods", 0, tolerance=None)) == sentence


def test_a_budget_that_should_have_held_is_named_with_the_pods():
    held = budget("demo", {"matchExpressions": [
        {"key": "app.kubernetes.io/component", "operator": "In", "values": ["server"]},
        {"key": "tier", "operator": "DoesNotExist"},
    ]}, minAvailable=1)  # fmt: skip
    drained = facts(*NONE_READY, actions=DRAINED, pdbs=(held,))
    assert explain.ready_pods_sentence(drained, probe("ready_pods", 0)) == (
        "no replica of demo was Ready after the drain, though the PodDisruptionBudget demo "
        "(minAvailable 1) selects them: demo-c: container demo waiting, 1 replica(s) without a pod"
    )


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        (None, False),
        ({}, True),
        ({"matchLabels": {"app.kubernetes.io/instance": "ci"}}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "app.kubernetes.io/instance", "operator": "NotIn",
                                "values": ["ci"]}]}, False),
    ],
)  # fmt: skip
def test_label_selectors_select_as_kubernetes_does(selector, selected):
    assert explain.selects(selector, facts().pod_labels) is selected


# ---------------------------------------------------------------- restarts and answers


def test_restarts_count_from_the_experiments_start_with_the_last_termination():
    restarted = facts(
        *pods(STARTED, **{"demo-b": pod_state(restarts=5)}),
        *pods(150, **{"demo-b": pod_state(restarts=7), "demo-c": pod_state(restarts=1)}),
        terminations={"demo-b/demo": "OOMKilled, exit 137"},
    )
    assert explain.restarts_sentence(restarted, probe("container_restarts", 3, tolerance=0)) == (
        "containers of demo restarted 3 time(s) since the experiment began, outside 0: "
        "demo-b's demo 2x (OOMKilled, exit 137), demo-c's demo 1x"
    )


def test_a_service_that_did_not_answer_says_whether_any_replica_was_in_its_endpoints():
    gone = facts(*pods(150, **{"demo-a": pod_state(ready=False), "demo-b": pod_state(
        ready=False)}), endpoints(150))  # fmt: skip
    assert explain.answers_sentence(gone, probe("service_answers", False)) == (
        "the service did not answer / with a 2xx within 5s (the spec's load.timeout), and no "
        "replica of demo was in the Service's endpoints: demo-a: Running, not Ready, "
        "demo-b: Running, not Ready"
    )
    served = facts(endpoints(150, "demo-a"))
    asked = probe("service_answers", False, arguments={"path": "/x", "timeout_s": 2})
    assert explain.answers_sentence(served, asked) == (
        "the service did not answer /x with a 2xx within 2s (the probe's timeout_s), though 1 "
        "of 2 replicas were in its endpoints"
    )


def test_a_request_right_after_a_pod_left_names_the_proxy():
    left = facts(endpoints(101, "demo-a", "demo-b"), endpoints(108, "demo-b"))
    sentence = explain.answers_sentence(left, probe("service_answers", False, start=108.03))
    assert sentence.endswith(
        "though 1 of 2 replicas were in its endpoints: demo-a had left them just before, and "
        "the node's proxy may still have routed the request there"
    )


def test_probes_the_harness_has_no_sentence_for_and_failed_ones_get_a_plain_one():
    other = {
        "activity": {
            "name": "p",
            "tolerance": 2,
            "provider": {"module": "x", "func": "ready_pods"},
        },
        "status": "succeeded",
        "output": 1,
    }
    assert explain.probe_sentence(facts(), other) == "the probe p returned 1, outside its "\
        "tolerance 2"  # fmt: skip
    broken = other | {"status": "failed", "exception": ["Traceback", "ApiException: 403\n"]}
    assert explain.probe_sentence(facts(), broken) == "the probe p could not run: ApiException: 403"
    action = {"activity": {"type": "action", "name": "drain-node"}, "exception": ["Boom: x\n"]}
    assert explain.action_sentence(action) == "the action drain-node failed: Boom: x"


# ---------------------------------------------------------------- the SLO and the rest


def load(failures, requests=400, rps=10.0):
    stats = EndpointStats(None, "Aggregated", requests, len(failures), 5, 1, 50, 5, 20, 40, rps)
    return LoadResult(
        "http://x", 0, 100, stats, [stats], [], failures, {}, {}, NO_GENERATOR, None, Path()
    )


def failure(t, error, pod, took=0.1):
    return FailedRequest(t, t + took, "GET", "/", error, pod)


def test_the_error_rate_names_the_failures_and_the_pods_they_went_to():
    failed = [failure(1, "ConnectionRefusedError", "demo-a")] * 8 + [
        failure(2, "ReadTimeout", "demo-b", took=5.0)
    ] * 4
    rate = Verdict("whole chaos run: error rate", 0.03, 0.0, "ratio", "fail")
    source = explain.slo_source("error rate", set())
    assert explain.slo_sentence(rate, load(failed), source) == (
        "12 of 400 requests failed (3%), over the 0% the spec's slo allows (error_rate): most "
        "with ConnectionRefusedError (8), sent to demo-a and demo-b"
    )
    p99 = Verdict("whole chaos run: p99 latency", 5100, 2000, "ms", "fail")
    assert explain.slo_sentence(p99, load(failed), "the spec's slo allows (p99)") == (
        "the p99 latency was 5.1s, over the 2s the spec's slo allows (p99): 4 failed requests "
        "alone took longer (up to 5.0s, waiting for the load's timeout)"
    )


def test_failed_requests_of_a_service_that_serves_alone_say_so():
    rate = Verdict("whole chaos run: error rate", 0.5, 0.1, "ratio", "fail")
    why = "Deployment ksm runs 1 replica: while its only pod is replaced, nothing serves"
    failed = [failure(1, "ConnectionRefusedError", "")] * 2
    sentence = explain.slo_sentence(rate, load(failed, requests=4), "the spec allows", why)
    assert sentence.endswith("most with ConnectionRefusedError (2); " + why)


def test_throughput_and_an_inconclusive_verdict():
    rps = Verdict("whole chaos run: throughput", 3.2, 5, "req/s", "fail")
    assert explain.slo_sentence(rps, load([]), "the spec's slo allows (min_rps)") == (
        "the load reached 3.2 req/s, under the 5 req/s the spec's slo allows (min_rps)"
    )
    busy = Verdict("whole chaos run: p95 latency", 900, 500, "ms", "inconclusive", "saturated")
    assert explain.slo_sentence(busy, load([]), "") == "the p95 latency cannot be judged"
    unsaid = replace(busy, note="")
    assert explain.slo_sentence(unsaid, load([]), "") == (
        "the p95 latency cannot be judged: the load generator saturated"
    )


def test_the_limits_source_is_the_experiment_when_it_set_it():
    assert explain.slo_source("error rate", {"max_error_rate"}) == (
        "the experiment allows (max_error_rate)"
    )
    assert explain.slo_source("p99 latency", {"max_p99_ms"}) == "the experiment allows (slo.p99)"
    assert explain.slo_source("p99 latency", set()) == "the spec's slo allows (p99)"


def test_what_was_left_behind_and_a_run_too_long():
    entry = Injected("1a2b", "partition_pod", "kube-harness", "kh-1", "node-1", "demo-a")
    assert explain.pending_sentence(entry).startswith(
        f"the rollbacks left {entry.describe()} in place (the harness reverted it afterwards)"
    )
    nodes = Injected("3c4d", "node_actions", "kube-harness", "kh-1", None, "nodes")
    assert explain.pending_sentence(nodes).endswith("add a chaosk8s uncordon_node rollback")
    assert explain.duration_sentence(412, 300).startswith(
        "the run took 412s, longer than the experiment's timeout_s of 300s"
    )
    assert (
        explain.completion_sentence(
            {"status": "failed", "steady_states": {"before": {"steady_state_met": False}}}
        )
        == "the steady state did not hold before the fault, so the method never ran"
    )
