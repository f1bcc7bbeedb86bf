"""Self-healing under load: a deleted pod, a killed container and a crashed process each come
back Ready within the spec's time, and the error rate over the window after the fault stays
within the spec's limit."""

import time

import pytest

from harness.assertions import Evidence, availability, container_restarted, recovered
from harness.chaos import Target, kill_container
from harness.scenario import crash, judge, steady_load, wait_for_check, workload_of

WARM_UP_S = 5  # steady load before the fault, so the baseline is in the record
SETTLE_S = 5  # load after recovery, so that late failures are in the record too

pytestmark = pytest.mark.promises("self_healing")


def heal(kind, inject, *, service_spec, deployed, timeline, load, report_dir, in_place):
    """Inject `kind` into one pod under steady load and judge the recovery."""
    expect = service_spec.self_healing
    deployment = service_spec.deployment
    replicas = len(deployed.pods())

    def back(fault_at):
        return recovered(
            timeline.timeline(),
            deployment=deployment,
            replicas=replicas,
            fault_at=fault_at,
            within_s=expect.ready_within_s,
            what=kind,
        )

    budget = WARM_UP_S + max(expect.ready_within_s, expect.window_s) + SETTLE_S + 30
    with steady_load(load, service_spec, deployed, seconds=budget) as run:
        time.sleep(WARM_UP_S)
        victim = deployed.pods()[0]
        fault_at = timeline.mark(kind, pod=victim).t
        inject(victim)
        healed = wait_for_check(
            lambda: back(fault_at),
            timeout=expect.ready_within_s + 10,
            what=f"{deployment} to recover from {kind}",
        )
        # The load goes on through the whole availability window, and a little past recovery.
        time.sleep(max(SETTLE_S, fault_at + expect.window_s + 1 - time.time()))
    result = run.result()
    record = timeline.timeline()
    evidence = Evidence(kind, record, loads=[result])
    evidence.add(back(fault_at))
    evidence.add(
        availability(
            result,
            since=fault_at,
            until=fault_at + expect.window_s,
            max_error_rate=expect.max_error_rate,
            what=f"{kind}, {expect.window_s:g}s after",
        ),
        why=workload_of(deployed, service_spec).why_unavailable_during_replacement(),
    )
    if in_place:
        evidence.add(
            container_restarted(
                record, pod=victim, since=fault_at, within_s=expect.ready_within_s, what=kind
            )
        )
    evidence.measurements[f"{kind}: seconds to Ready"] = healed.verdict.measured
    evidence.measurements[f"{kind}: failed requests"] = len(
        result.failures_between(fault_at, fault_at + expect.window_s)
    )
    judge(evidence, report_dir)


def test_deleted_pod_is_replaced(service_spec, deployed, kube_api, timeline, load, test_report_dir):
    def delete(pod):
        kube_api.core.delete_namespaced_pod(pod, deployed.namespace)

    heal(
        "pod deleted",
        delete,
        service_spec=service_spec,
        deployed=deployed,
        timeline=timeline,
        load=load,
        report_dir=test_report_dir,
        in_place=False,
    )


def test_killed_container_is_restarted(
    service_spec, deployed, kube_api, cluster, timeline, load, test_report_dir
):
    def kill(pod):
        kill_container(
            Target.of(cluster, kube_api, deployed.namespace), pod, service_spec.container
        )

    heal(
        "container killed",
        kill,
        service_spec=service_spec,
        deployed=deployed,
        timeline=timeline,
        load=load,
        report_dir=test_report_dir,
        in_place=True,
    )


def test_crashed_process_is_restarted(
    service_spec, deployed, kube_api, cluster, timeline, load, test_report_dir
):
    heal(
        "process crashed",
        lambda pod: crash(cluster, kube_api, deployed, service_spec, pod),
        service_spec=service_spec,
        deployed=deployed,
        timeline=timeline,
        load=load,
        report_dir=test_report_dir,
        in_place=True,
    )
