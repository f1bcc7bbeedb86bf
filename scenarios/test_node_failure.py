"""Node failure under load: a worker node stops; the pods it ran are Ready on the other nodes
within the spec's time, and the error rate over the window after the failure stays within the
spec's limit. This is node evacuation without a drain: the node is found unreachable and its
pods are evicted (the harness's control plane shortens both timings; see the README).

It needs a provider that stops nodes and two or more nodes that can run the service (kind with
`--cluster-workers=2`); elsewhere it is skipped with the reason.
"""

import time

import pytest

from harness.assertions import Evidence, availability, recovered
from harness.chaos import Target, revert, stop_node
from harness.kube import wait_nodes_ready
from harness.scenario import judge, steady_load, wait_for_check

# Stopping a node disturbs everything else on the cluster.
pytestmark = [pytest.mark.exclusive_cluster, pytest.mark.promises("node_failure")]

WARM_UP_S = 5
SETTLE_S = 5
NODE_BACK_TIMEOUT_S = 180


def schedulable_nodes(kube) -> list[str]:
    return [
        n.metadata.name
        for n in kube.core.list_node().items
        if not n.spec.unschedulable
        and not any(t.effect == "NoSchedule" for t in n.spec.taints or [])
    ]


def test_pods_of_a_stopped_node_are_ready_elsewhere(
    service_spec, deployed, kube_api, cluster, node_lifecycle, timeline, load, test_report_dir
):
    expect = service_spec.node_failure
    nodes = schedulable_nodes(kube_api)
    if len(nodes) < 2:
        pytest.skip(
            f"node failure needs two nodes that can run pods; this cluster has {nodes} "
            "(kind: --cluster-workers=2)"
        )
    deployment = service_spec.deployment
    pods = deployed.pods()
    replicas = len(pods)
    victim = kube_api.core.read_namespaced_pod(pods[0], deployed.namespace).spec.node_name
    target = Target.of(cluster, kube_api, deployed.namespace)

    budget = WARM_UP_S + max(expect.ready_elsewhere_within_s, expect.window_s) + SETTLE_S + 30
    # Load from the cluster keeps off the victim: a generator stopped with it would measure
    # nothing of the service's failover.
    with steady_load(load, service_spec, deployed, seconds=budget, avoid_nodes=[victim]) as run:
        time.sleep(WARM_UP_S)
        fault_at = timeline.mark("node stopped", node=victim).t
        injected = stop_node(target, victim)
        try:
            healed = wait_for_check(
                lambda: recovered(
                    timeline.timeline(),
                    deployment=deployment,
                    replicas=replicas,
                    fault_at=fault_at,
                    within_s=expect.ready_elsewhere_within_s,
                    what="node stopped",
                ),
                timeout=expect.ready_elsewhere_within_s + 10,
                what=f"{deployment} to be Ready without {victim}",
            )
            time.sleep(max(SETTLE_S, fault_at + expect.window_s + 1 - time.time()))
        finally:
            revert(cluster, kube_api, injected)
    wait_nodes_ready(kube_api, timeout=NODE_BACK_TIMEOUT_S)
    result = run.result()
    record = timeline.timeline()
    evidence = Evidence("node failure", record, loads=[result])
    evidence.add(
        healed,
        availability(
            result,
            since=fault_at,
            until=fault_at + expect.window_s,
            max_error_rate=expect.max_error_rate,
            what=f"node stopped, {expect.window_s:g}s after",
        ),
    )
    evidence.measurements["node stopped: seconds to Ready elsewhere"] = healed.verdict.measured
    evidence.measurements["node stopped: failed requests"] = len(
        result.failures_between(fault_at, fault_at + expect.window_s)
    )
    judge(evidence, test_report_dir)
