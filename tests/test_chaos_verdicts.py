"""An experiment's verdicts: what the journal holds, most telling first, each failed one told in
a sentence; the failure and summary.txt begin with the first of them."""

import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.assertions import BehaviourViolation, Check
from harness.chaos import verdicts as vd
from harness.chaos.explain import JOIN
from harness.chaos.facts import ProbeRun, RunFacts, Timing, Timings, collect_facts
from harness.load import SLO, LoadResult, Verdict
from harness.load.result import EndpointStats, FailedRequest, Generator
from harness.observe import Entry, Timeline
from harness.spec import load_spec

NO_GENERATOR = Generator("host", ())

ROOT = Path(__file__).resolve().parents[1]
DEMO = load_spec(ROOT / "scenarios" / "demo-service.spec.yaml").service("demo")
PROBES = "harness.chaos.probes"


def run(name, status="succeeded", output=None, kind="action", **activity_keys):
    entry = {"activity": {"type": kind, "name": name, **activity_keys}, "status": status}
    entry["output"] = output
    if status != "succeeded":
        entry["exception"] = ["Traceback...\n", f"ActivityFailed: {name} broke\n"]
    return entry


def met(*probes):
    return {"steady_state_met": all(p.get("tolerance_met") for p in probes), "probes": probes}


def probe_run(name, output, ok, **activity_keys):
    return run(name, output=output, kind="probe", tolerance=True, **activity_keys) | {
        "tolerance_met": ok
    }


def journal(**changes):
    return {
        "status": "completed",
        "deviated": False,
        "steady_states": {
            "before": met(probe_run("service-answers", True, True)),
            "after": met(probe_run("service-answers", True, True)),
        },
        "run": [run("kill"), run("check", kind="probe", output=2, tolerance=2)],
        "rollbacks": [run("undo")],
    } | changes


def facts(*entries, **changes):
    return RunFacts(
        **(
            dict(
                deployment="demo",
                container="demo",
                replicas=2,
                timings=Timings.of(DEMO),
                timeline=Timeline(list(entries)),
                started=0.0,
            )
            | changes
        )
    )


def verdicts(j, may_fail=()):
    checks = vd.journal_checks(j, {}, facts(), may_fail=may_fail, since=0, until=10)
    return {c.verdict.name: c for c in [*checks, vd.completion_check(j, 0, 10)]}


def failed(j, may_fail=()):
    return {name: c.verdict.note for name, c in verdicts(j, may_fail).items() if not c.passed}


def test_a_completed_run_with_the_steady_state_kept_passes_and_the_order_is_most_telling_first():
    checks = verdicts(journal())
    assert list(checks) == [
        "steady-state probes not met before the method",
        "activities failed",
        "method probes outside their tolerance",
        "steady-state probes not met after the method",
        "chaos run not completed",
    ]
    assert all(c.passed for c in checks.values())


def test_a_deviated_steady_state_says_what_the_probe_saw_after_the_fault():
    after = met(probe_run("service-answers", False, False))
    assert failed(journal(deviated=True, steady_states={"before": met(), "after": after})) == {
        "steady-state probes not met after the method": "after the fault, the probe "
        "service-answers returned false, outside its tolerance true"
    }


def test_the_harness_probes_get_their_own_sentence():
    answers = probe_run(
        "service-answers", False, False, provider={"module": PROBES, "func": "service_answers"}
    )
    states = {"before": met(answers), "after": None}
    problems = failed(journal(status="failed", steady_states=states, run=[], rollbacks=[]))
    assert problems == {
        "steady-state probes not met before the method": "before the fault, the service did not "
        "answer / with a 2xx within 5s (the spec's load.timeout), and no replica of demo was in "
        "the Service's endpoints: 2 replica(s) without a pod",
        "steady-state probes not met after the method": "the hypothesis was not checked: the run "
        "stopped before it",
        "chaos run not completed": "the steady state did not hold before the fault, so the "
        "method never ran",
    }


def test_failed_activities_fail_unless_the_extension_allows_it():
    j = journal(run=[run("drain", status="failed")], rollbacks=[run("undo", status="failed")])
    assert failed(j) == {
        "activities failed": "the action drain failed: ActivityFailed: drain broke; "
        "the action undo failed: ActivityFailed: undo broke"
    }
    assert failed(j, may_fail=("drain",)) == {
        "activities failed": "the action undo failed: ActivityFailed: undo broke"
    }


def test_method_probes_are_judged_by_their_tolerance():
    j = journal(
        run=[
            run("left", kind="probe", output=False, tolerance=True),
            run("ready", kind="probe", output=0, tolerance={"type": "range", "range": [1, 9]}),
            run("untolerant", kind="probe", output="anything"),
        ]
    )
    assert failed(j) == {
        "method probes outside their tolerance": "the probe left returned false, outside its "
        'tolerance true; the probe ready returned 0, outside its tolerance {"type": "range", '
        '"range": [1, 9]}'
    }


def test_the_journals_times_place_a_probe_on_the_timeline():
    entry = run("ready", kind="probe", output=False, tolerance=True)
    entry |= {"start": "2026-11-30T10:00:00+00:00", "end": "2026-11-30T10:01:00.500000+00:00"}
    probe = ProbeRun.of(entry, default_start=0)
    ten = datetime(2026, 11, 30, 10, tzinfo=UTC).timestamp()
    assert (probe.started, probe.ended) == (ten, ten + 60.5)


# ---------------------------------------------------------------- explained checks, the SLO


def check(name, ok, note=""):
    return Check(Verdict(name, 1, 0, "", "pass" if ok else "fail", note), 0, 10)


def test_a_sentence_leads_a_failed_checks_note_and_leaves_a_passed_one_alone():
    assert vd.explained(check("x", False, "1/2 Ready"), "it broke").verdict.note == (
        "it broke (1/2 Ready)"
    )
    assert vd.explained(check("x", True), "it broke").verdict.note == ""


def test_slo_verdicts_are_explained_with_who_set_the_limit():
    stats = EndpointStats(None, "Aggregated", 100, 5, 5, 1, 50, 5, 20, 40, 10)
    failures = [FailedRequest(1, 1.1, "GET", "/", "ConnectionRefusedError", "demo-a")] * 5
    result = LoadResult(
        "u", 0, 10, stats, [stats], [], failures, {}, {}, NO_GENERATOR, None, Path()
    )
    (rate,) = vd.slo_verdicts(
        SLO(max_error_rate=0.01), result, overridden={"max_error_rate"}, what="whole chaos run"
    )
    assert rate.verdict.note == (
        "5 of 100 requests failed (5%), over the 1% the experiment allows (max_error_rate): most "
        "with ConnectionRefusedError (5), sent to demo-a"
    )


# ---------------------------------------------------------------- the evidence


def evidence(*checks):
    found = vd.ExperimentEvidence("chaos experiment 'x' on demo", Timeline([]))
    found.add(*checks)
    return found


def test_the_failure_begins_with_the_first_failed_checks_first_sentence():
    judged = evidence(
        check("steady-state probes not met before the method", True),
        check("method probes outside their tolerance", False, "the pod stayed Ready; other"),
        check("whole chaos run: error rate", False, "12 of 400 requests failed"),
    )
    with pytest.raises(BehaviourViolation) as caught:
        judged.assert_all()
    first, second = str(caught.value).splitlines()[:2]
    assert first == "The pod stayed Ready."
    assert second == "chaos experiment 'x' on demo: 2 promise(s) not kept"


def test_summary_txt_is_written_beside_result_json(tmp_path):
    judged = evidence(check("activities failed", False, "the action drain-node failed: x"))
    judged.write(tmp_path)
    assert (tmp_path / "result.json").exists()
    assert (tmp_path / vd.SUMMARY_FILE).read_text().splitlines() == [
        "The action drain-node failed: x.",
        "chaos experiment 'x' on demo: 1 promise(s) not kept",
        "- activities failed: 1 (limit 0): fail - the action drain-node failed: x",
    ]
    evidence(check("a", True), check("b", True)).write(tmp_path)
    assert (tmp_path / vd.SUMMARY_FILE).read_text().startswith("Every promise kept (2 verdicts).")


def test_ready_after_the_rollbacks_is_waited_for_and_judged():
    states = iter([1, 2])  # one wait of a second

    def read(name, namespace):
        return SimpleNamespace(
            spec=SimpleNamespace(replicas=2),
            status=SimpleNamespace(ready_replicas=next(states), unavailable_replicas=None),
        )

    kube = SimpleNamespace(apps=SimpleNamespace(read_namespaced_deployment=read))
    within = Timings.of(DEMO).ready_within
    ready = vd.ready_again(kube, "kh-1", "demo", since=time.time(), within=within)
    assert ready.passed and ready.verdict.limit == 60


def test_facts_come_from_the_api_and_a_silent_api_leaves_them_out():
    probe = client.V1Probe(_exec=client.V1ExecAction(command=["true"]))
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": "demo"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="demo", readiness_probe=probe)]),
    )
    deployment = client.V1Deployment(
        spec=client.V1DeploymentSpec(
            replicas=3, selector=client.V1LabelSelector(match_labels={"app": "demo"}),
            template=template,
        )
    )  # fmt: skip
    budget = client.V1PodDisruptionBudget(
        metadata=client.V1ObjectMeta(name="demo"),
        spec=client.V1PodDisruptionBudgetSpec(min_available=1),
    )
    kube = SimpleNamespace(
        api_client=client.ApiClient(),
        apps=SimpleNamespace(read_namespaced_deployment=lambda name, ns: deployment),
        policy=SimpleNamespace(
            list_namespaced_pod_disruption_budget=lambda ns: SimpleNamespace(items=[budget])
        ),
        core=SimpleNamespace(list_namespaced_pod=lambda ns: SimpleNamespace(items=[])),
    )
    run_journal = {"run": [{"activity": {"type": "action", "provider": {"func": "drain_node"}}}]}
    kwargs = dict(journal=run_journal, timeline=Timeline([]), timings=Timings.of(DEMO), started=0)
    read = collect_facts(kube, "kh-1", DEMO, **kwargs)
    assert read.replicas == 3
    assert read.containers == ({"name": "demo", "readinessProbe": {"exec": {"command": ["true"]}}},)
    assert read.pod_labels == {"app": "demo"}
    assert read.pdbs == ({"metadata": {"name": "demo"}, "spec": {"minAvailable": 1}},)
    assert read.actions == (("drain_node", None),)

    def refused(name, namespace):
        raise ApiException(status=403)

    kube.apps.read_namespaced_deployment = refused
    silent = collect_facts(kube, "kh-1", DEMO, **kwargs)
    assert (silent.replicas, silent.containers, silent.actions) == (0, (), (("drain_node", None),))


def test_entries_of_the_timeline_are_what_the_sentences_read():
    # A smoke test of the pieces together: a replica not Ready again, told from the timeline.
    pods = [
        Entry(1, "ADDED", "Pod", "demo-a", {"owner": "demo-7f", "ready": True}),
        Entry(
            5, "ADDED", "Pod", "demo-c", {"owner": "demo-7f", "ready": False, "phase": "Pending"}
        ),
    ]
    j = journal(
        run=[
            run("kill"),
            run(
                "again",
                kind="probe",
                output=False,
                tolerance=True,
                provider={"module": PROBES, "func": "deployment_ready_again"},
            ),
        ]
    )
    checks = vd.journal_checks(j, {}, facts(*pods, started=2.0), since=0, until=10)
    (bad,) = [c for c in checks if not c.passed]
    assert bad.verdict.note == (
        "1 of 2 replicas of demo were not Ready again within 60s (the spec's "
        "self_healing.ready_within): demo-c: Pending"
    )


# ---------------------------------------------------------------- every verdict made to fail


def test_sentence_check_fails_counting_its_sentences_and_passes_with_none():
    kept = vd.sentence_check("activities failed", [], 0, 10)
    assert kept.passed and (kept.verdict.measured, kept.verdict.note) == (0, "")
    broken = vd.sentence_check("activities failed", ["the action a failed", "the action b failed"],
                               0, 10)  # fmt: skip
    assert not broken.passed and broken.verdict.measured == 2
    assert broken.verdict.note == JOIN.join(["the action a failed", "the action b failed"])
    assert (broken.since, broken.until, broken.kinds) == (0, 10, vd.RUN_KINDS)


def slo_load(failed: int) -> LoadResult:
    stats = EndpointStats(None, "Aggregated", 100, failed, 5, 1, 50, 5, 20, 40, 10)
    failures = [FailedRequest(1, 1.1, "GET", "/", "ConnectionRefusedError", "demo-a")] * failed
    return LoadResult("u", 0, 10, stats, [stats], [], failures, {}, {}, NO_GENERATOR, None, Path())


def test_slo_verdicts_pass_within_the_limit_and_fail_over_it_with_a_sentence():
    slo = SLO(max_error_rate=0.01)
    (kept,) = vd.slo_verdicts(slo, slo_load(1), overridden=(), what="whole chaos run")
    assert kept.passed and kept.verdict.note == ""
    (broken,) = vd.slo_verdicts(slo, slo_load(5), overridden=(), what="whole chaos run")
    assert not broken.passed and broken.verdict.measured == 0.05
    assert broken.verdict.note.startswith("5 of 100 requests failed (5%), over the 1%")


def test_slo_verdicts_of_a_saturated_generator_are_inconclusive_not_passed():
    load = replace(slo_load(5), unreliable_reason="CPU at 100%")
    rate, busy = vd.slo_verdicts(SLO(max_error_rate=0.01), load, overridden=(), what="run")
    assert rate.verdict.status == busy.verdict.status == "inconclusive"
    assert not rate.passed and not busy.passed
    assert rate.verdict.note == (
        "the error rate cannot be judged (the load generator saturated, see below)"
    )
    assert busy.verdict.note == "the load generator busy cannot be judged (CPU at 100%)"


def test_a_steady_state_not_met_without_a_probe_outside_its_tolerance_still_fails():
    states = {"before": {"steady_state_met": False, "probes": []}, "after": met()}
    assert failed(journal(steady_states=states)) == {
        "steady-state probes not met before the method": "before the fault, the steady state "
        "was not met"
    }


def test_a_journal_without_steady_states_fails_both_hypotheses_not_passes_them():
    problems = failed(journal(steady_states=None))
    assert problems == {
        f"steady-state probes not met {when} the method": "the hypothesis was not checked: the "
        "run stopped before it"
        for when in ("before", "after")
    }


def test_completion_check_fails_on_any_status_but_completed():
    check = vd.completion_check({"status": "interrupted"}, 0, 10)
    assert not check.passed
    assert check.verdict.note == "chaoslib ended the run with status 'interrupted'"
    assert vd.completion_check({"status": "completed"}, 0, 10).passed


def deployment_reader(replicas, ready, unavailable=None):
    def read(name, namespace):
        return SimpleNamespace(
            spec=SimpleNamespace(replicas=replicas),
            status=SimpleNamespace(ready_replicas=ready, unavailable_replicas=unavailable),
        )

    return SimpleNamespace(apps=SimpleNamespace(read_namespaced_deployment=read))


SHORT = Timing(0.05, "the test's ready_within")  # the wait sleeps at most this long


def test_ready_again_fails_when_replicas_stay_unready_for_the_whole_wait():
    check = vd.ready_again(deployment_reader(2, 1), "kh-1", "demo", since=0, within=SHORT)
    assert not check.passed and check.verdict.measured is None
    assert check.verdict.note == "1/2 Ready"


def test_ready_again_fails_while_a_replica_is_unavailable_though_ready():
    kube = deployment_reader(2, 2, unavailable=1)
    check = vd.ready_again(kube, "kh-1", "demo", since=0, within=SHORT)
    assert not check.passed and check.verdict.note == "2/2 Ready"


def test_ready_again_of_a_deployment_left_at_zero_replicas_is_not_a_pass():
    check = vd.ready_again(deployment_reader(0, None), "kh-1", "demo", since=0, within=SHORT)
    assert not check.passed
