"""Self-healing under load: a deleted pod, a killed container and a crashed process each come
back Ready within the spec's time, and the service stays within its availability SLO."""

import time

import pytest

from harness.assertions import Evidence, availability, container_restarted, recovered
from harness.chaos import kill_container
from harness.scenario import admin_call, judge, steady_load, wait_for_check

WARM_UP_S = 5  # steady load before the fault, so the baseline is in the record
SETTLE_S = 5  # load after recovery, so that late failures are in the record too


def expectation(service):
    if service.self_healing is None:
        pytest.skip(f"{service.name}: the spec promises no self-healing behaviour")
    return service.self_healing


def _heal(
    kind,
    inject,
    *,
    service_spec,
    deployed,
    kube,
    cluster,
    timeline,
    load,
    test_report_dir,
    restart_in_place,
):
    expect = expectation(service_spec)
    deployment = service_spec.deployment
    replicas = len(deployed.pods())
    budget = WARM_UP_S + expect.ready_within_s + SETTLE_S + 30
    with steady_load(load, service_spec, deployed.base_url, seconds=budget) as run:
        time.sleep(WARM_UP_S)
        victim = deployed.pods()[0]
        fault_at = timeline.mark(kind, pod=victim).t
        inject(victim)
        healed = wait_for_check(
            lambda: recovered(
                timeline.timeline(),
                deployment=deployment,
                replicas=replicas,
                fault_at=fault_at,
                within_s=expect.ready_within_s,
                what=kind,
            ),
            timeout=expect.ready_within_s + 10,
            what=f"{deployment} to recover from {kind}",
        )
        time.sleep(SETTLE_S)
    result = run.result()
    record = timeline.timeline()
    evidence = Evidence(kind, record, loads=[result])
    evidence.add(
        recovered(
            record,
            deployment=deployment,
            replicas=replicas,
            fault_at=fault_at,
            within_s=expect.ready_within_s,
            what=kind,
        ),
        availability(
            result,
            since=fault_at,
            until=result.ended,
            max_error_rate=expect.max_error_rate,
            what=kind,
        ),
    )
    if restart_in_place:
        evidence.add(
            container_restarted(
                record, pod=victim, since=fault_at, within_s=expect.ready_within_s, what=kind
            )
        )
    evidence.measurements[f"{kind}: seconds to Ready"] = healed.verdict.measured
    judge(evidence, test_report_dir)


def test_deleted_pod_is_replaced(
    service_spec, deployed, kube, cluster, timeline, load, test_report_dir
):
    def delete(pod):
        kube.core.delete_namespaced_pod(pod, deployed.namespace)

    _heal(
        "pod deleted",
        delete,
        service_spec=service_spec,
        deployed=deployed,
        kube=kube,
        cluster=cluster,
        timeline=timeline,
        load=load,
        test_report_dir=test_report_dir,
        restart_in_place=False,
    )


def test_killed_container_is_restarted(
    service_spec, deployed, kube, cluster, timeline, load, test_report_dir
):
    def kill(pod):
        kill_container(cluster, kube, deployed.namespace, pod, service_spec.container)

    _heal(
        "container killed",
        kill,
        service_spec=service_spec,
        deployed=deployed,
        kube=kube,
        cluster=cluster,
        timeline=timeline,
        load=load,
        test_report_dir=test_report_dir,
        restart_in_place=True,
    )


def test_crashed_process_is_restarted(
    service_spec, deployed, kube, cluster, timeline, load, test_report_dir
):
    if service_spec.admin is None:
        pytest.skip(f"{service_spec.name}: the spec names no way to crash the service")

    def crash(pod):
        admin_call(kube, deployed, service_spec, pod, service_spec.admin.crash)

    _heal(
        "process crashed",
        crash,
        service_spec=service_spec,
        deployed=deployed,
        kube=kube,
        cluster=cluster,
        timeline=timeline,
        load=load,
        test_report_dir=test_report_dir,
        restart_in_place=True,
    )
