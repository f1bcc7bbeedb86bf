"""Probes: a pod whose readiness fails leaves the endpoints and gets no more requests; a failing
liveness probe restarts its container; a slow starter is protected by its startup probe."""

import time
from contextlib import contextmanager

import pytest

from harness.assertions import (
    Evidence,
    container_restarted,
    left_endpoints,
    no_traffic_to,
    recovered,
    slo_checks,
    start_slowed_from_first_probe,
    startup_protected,
)
from harness.chaos.probe_failure import ProbeNotFailable
from harness.deploy import wait_rolled_out
from harness.scenario import (
    judge,
    probe_failing,
    slowed_start,
    steady_load,
    wait_for_check,
    workload_of,
)

WARM_UP_S = 5
# kube-proxy rewrites its rules after the endpoint change; requests already routed may land.
PROXY_SYNC_S = 2
QUIET_S = 8  # load observed after the pod left, to show it gets nothing

pytestmark = pytest.mark.promises("probes")


@contextmanager
def failing(cluster, kube, deployed, service, pod, probe):
    """The probe fails for the block; a probe the harness cannot fail skips, saying why."""
    try:
        with probe_failing(cluster, kube, deployed, service, pod, probe) as how:
            yield how
    except ProbeNotFailable as exc:
        pytest.skip(f"{service.name}: {exc.message}")


def test_failing_readiness_removes_the_pod_from_traffic(
    service_spec, deployed, kube_api, cluster, timeline, load, test_report_dir
):
    expect = service_spec.probes
    budget = WARM_UP_S + expect.readiness_leaves_endpoints_within_s + PROXY_SYNC_S + QUIET_S + 30
    with steady_load(load, service_spec, deployed, seconds=budget) as run:
        time.sleep(WARM_UP_S)
        victim = deployed.pods()[0]
        failed_at = timeline.mark("readiness made to fail", pod=victim).t
        with failing(cluster, kube_api, deployed, service_spec, victim, "readiness") as how:
            timeline.mark(f"readiness fails through {how}", pod=victim)
            left = wait_for_check(
                lambda: left_endpoints(
                    timeline.timeline(),
                    pod=victim,
                    since=failed_at,
                    within_s=expect.readiness_leaves_endpoints_within_s,
                ),
                timeout=expect.readiness_leaves_endpoints_within_s + 5,
                what=f"{victim} to leave",
            )
            time.sleep(PROXY_SYNC_S + QUIET_S)
            healed_at = time.time()  # the probe passes again from here on
    result = run.result()
    gone_at = failed_at + (left.verdict.measured or 0)
    seen = timeline.timeline()
    evidence = Evidence("readiness probe", seen, loads=[result])
    evidence.add(
        left,
        no_traffic_to(result, seen, pod=victim, after=gone_at + PROXY_SYNC_S, until=healed_at),
    )
    evidence.add(
        *slo_checks(service_spec.slo, result, what="readiness failure"),
        why=workload_of(deployed, service_spec).why_unavailable_when_unready(),
    )
    evidence.measurements["seconds to leave the endpoints"] = left.verdict.measured
    judge(evidence, test_report_dir)


def test_failing_liveness_restarts_the_container(
    service_spec, deployed, kube_api, cluster, timeline, test_report_dir
):
    expect = service_spec.probes
    replicas = len(deployed.pods())
    victim = deployed.pods()[0]
    failed_at = timeline.mark("liveness made to fail", pod=victim).t
    # Once restarted, the container must pass its probes again: a fault of the harness
    # ends with the block; an admin hook's failure ends with the process.
    with failing(cluster, kube_api, deployed, service_spec, victim, "liveness") as how:
        timeline.mark(f"liveness fails through {how}", pod=victim)
        restarted = wait_for_check(
            lambda: container_restarted(
                timeline.timeline(),
                pod=victim,
                since=failed_at,
                within_s=expect.liveness_restarts_within_s,
                what="liveness failure",
            ),
            timeout=expect.liveness_restarts_within_s + 5,
            what=f"{victim} to restart",
        )
    ready_again = wait_for_check(
        lambda: recovered(
            timeline.timeline(),
            deployment=service_spec.deployment,
            replicas=replicas,
            fault_at=failed_at,
            within_s=60,
            what="liveness failure",
        ),
        timeout=65,
        what=f"{victim} to be Ready again",
    )
    evidence = Evidence("liveness probe", timeline.timeline())
    evidence.add(restarted, ready_again)
    evidence.measurements["seconds to restart"] = restarted.verdict.measured
    judge(evidence, test_report_dir)


def test_slow_starter_is_protected_by_its_startup_probe(
    service_spec, deployed, kube_api, cluster, timeline, test_report_dir
):
    expect = service_spec.probes
    if expect.startup_delay_s is None:
        pytest.skip(f"{service_spec.name}: the spec promises no start-up (probes.startup_delay)")
    variable = service_spec.admin.startup_delay_env if service_spec.admin else None
    delay = expect.startup_delay_s
    budget = delay * 4 + 60
    checks = []
    if variable is None:
        started = timeline.mark("start-ups slowed by the harness", delay_s=delay).t
        try:
            starters = slowed_start(cluster, kube_api, deployed, service_spec, delay_s=delay,
                                    timeout=budget)  # fmt: skip
        except ProbeNotFailable as exc:
            pytest.skip(f"{service_spec.name}: {exc.message}")
        checks.append(start_slowed_from_first_probe(
            [s.pod for s in starters], [s.pod for s in starters if s.late],
            since=started, until=timeline.mark("slowed rollout finished").t,
        ))  # fmt: skip
    else:
        started = timeline.mark("slow start-up rolled out", delay_s=delay).t
        env = [{"name": variable, "value": f"{delay:g}"}]
        containers = [{"name": service_spec.container, "env": env}]
        kube_api.apps.patch_namespaced_deployment(
            service_spec.deployment,
            deployed.namespace,
            {"spec": {"template": {"spec": {"containers": containers}}}},
        )
        wait_rolled_out(kube_api, deployed.namespace, [service_spec.deployment], timeout=budget)
    seen = timeline.timeline()
    evidence = Evidence("startup probe", seen)
    evidence.add(*checks)
    evidence.add(
        *startup_protected(seen, deployment=service_spec.deployment, since=started, delay_s=delay),
        why=workload_of(deployed, service_spec).why_slow_start_restarted(
            service_spec.container, delay
        ),
    )
    judge(evidence, test_report_dir)
