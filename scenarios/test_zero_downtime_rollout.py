"""Rollouts under constant load: a new version rolls out within T with failed requests within
the budget and maxUnavailable held at every observed moment; a broken image is detected as
stuck while the old version keeps serving, and rolling back restores it."""

import time

import pytest

from harness.assertions import (
    Evidence,
    all_pods_run,
    failed_requests,
    max_unavailable_respected,
    rollout_completed,
    rollout_stuck_detected,
    slo_checks,
)
from harness.scenario import (
    judge,
    max_unavailable,
    steady_load,
    wait_for_check,
    workload_of,
)

WARM_UP_S = 5
SETTLE_S = 5
# An image no node has and no registry is asked for: "localhost/" names fail to pull at once,
# whatever registry the service's own images come from.
BROKEN_IMAGE = "localhost/kube-harness/no-such-image:broken"


pytestmark = pytest.mark.promises("rollout.strategy=rolling")


def test_new_version_rolls_out_without_failed_requests(
    service_spec, deployed, kube_api, timeline, load, test_report_dir
):
    expect = service_spec.rollout
    deployment = service_spec.deployment
    replicas, allowed = max_unavailable(kube_api, deployed.namespace, deployment)
    budget = WARM_UP_S + expect.complete_within_s + SETTLE_S + 30
    with steady_load(load, service_spec, deployed, seconds=budget) as run:
        time.sleep(WARM_UP_S)
        started = timeline.mark("rollout starts", image=service_spec.images["next"]).t
        deployed.rollout(service_spec.image_override("next"), timeout=expect.complete_within_s + 30)
        finished = timeline.mark("rollout finished").t
        time.sleep(SETTLE_S)
    result = run.result()
    record = timeline.timeline()
    evidence = Evidence("rollout", record, loads=[result])
    completed = rollout_completed(
        record,
        deployment=deployment,
        image=service_spec.images["next"],
        replicas=replicas,
        started=started,
        within_s=expect.complete_within_s,
    )
    why = workload_of(deployed, service_spec).why_requests_failed_in_rollout(service_spec.container)
    evidence.add(
        failed_requests(
            result,
            since=started,
            until=finished + SETTLE_S,
            budget=expect.max_failed_requests,
            what="rollout",
        ),
        *slo_checks(service_spec.slo, result, what="rollout"),
        why=why,
    )
    evidence.add(
        completed,
        max_unavailable_respected(
            record,
            deployment=deployment,
            replicas=replicas,
            max_unavailable=allowed,
            since=started,
            until=finished,
        ),
        all_pods_run(
            kube_api,
            deployed.namespace,
            deployment=deployment,
            image=service_spec.images["next"],
            at=finished,
        ),
    )
    evidence.measurements["rollout seconds"] = completed.verdict.measured
    evidence.measurements["requests per version"] = result.versions
    judge(evidence, test_report_dir)


def test_broken_image_is_detected_and_rolled_back(
    service_spec, deployed, kube_api, timeline, load, test_report_dir
):
    expect = service_spec.rollout
    deployment, namespace = service_spec.deployment, deployed.namespace
    replicas, allowed = max_unavailable(kube_api, namespace, deployment)
    broken = BROKEN_IMAGE
    current = service_spec.images["current"]
    budget = WARM_UP_S + expect.stuck_detected_within_s + expect.complete_within_s + 60
    with steady_load(load, service_spec, deployed, seconds=budget) as run:
        time.sleep(WARM_UP_S)
        started = timeline.mark("rollout to a broken image", image=broken).t
        deployed.update({service_spec.image_name: broken})  # `helm upgrade` for a chart
        stuck = wait_for_check(
            lambda: rollout_stuck_detected(
                timeline.timeline(), deployment=deployment, started=started,
                within_s=expect.stuck_detected_within_s,
            ),
            timeout=expect.stuck_detected_within_s + 5,
            what=f"{deployment} to be reported stuck",
        )  # fmt: skip
        rolled_back = timeline.mark("rollback", image=current).t
        deployed.roll_back()  # `helm rollback` for a chart
        # Not deploy's own wait: the broken pods still fail to pull while they go away.
        back = wait_for_check(
            lambda: rollout_completed(
                timeline.timeline(), deployment=deployment, image=current, replicas=replicas,
                started=rolled_back, within_s=expect.complete_within_s,
            ),
            timeout=expect.complete_within_s + 5,
            what=f"{deployment} to roll back",
        )  # fmt: skip
        restored = timeline.mark("rollback finished").t
        time.sleep(SETTLE_S)
    result = run.result()
    record = timeline.timeline()
    evidence = Evidence("broken rollout", record, loads=[result])
    workload = workload_of(deployed, service_spec)
    evidence.add(stuck, why=workload.why_stuck_not_reported(expect.stuck_detected_within_s))
    evidence.add(
        failed_requests(result, since=started, until=restored + SETTLE_S,
                        budget=expect.max_failed_requests, what="broken rollout and rollback"),
        max_unavailable_respected(record, deployment=deployment, replicas=replicas,
                                  max_unavailable=allowed, since=started, until=restored),
        back,
        all_pods_run(kube_api, namespace, deployment=deployment, image=current, at=restored),
    )  # fmt: skip
    evidence.measurements["seconds until stuck was reported"] = stuck.verdict.measured
    evidence.measurements["seconds to roll back"] = back.verdict.measured
    judge(evidence, test_report_dir)
