"""Service discovery: a client pod of the service's namespace looks its Service's name up and
sends a request to the address it gets, four times a second, while the service rolls out
its next version (when the spec has one) and one of its pods is deleted. Every lookup is
answered (no NXDOMAIN window), and the requests by name fail within the spec's budget."""

import time
from urllib.parse import urlsplit

import pytest

from harness.assertions import Evidence, lookups_answered, recovered, requests_by_name
from harness.images.builders import busybox_image
from harness.scenario import judge, load_once, wait_for_check
from harness.service_discovery import discovery_client

WARM_UP_S = 5
SETTLE_S = 5
ROLLOUT_S = 180  # at most, for the rollout to the next version
RECOVERY_S = 90  # at most, for the deleted pod's replacement to be Ready

pytestmark = pytest.mark.promises("service_discovery")


def test_the_service_is_found_by_its_name_through_a_rollout_and_a_pod_deletion(
    cluster, kube_api, deployed, service_spec, timeline, test_report_dir
):
    expect = service_spec.service_discovery
    deployment = service_spec.deployment
    archive, image = busybox_image()
    load_once(cluster, [archive])
    name = urlsplit(deployed.service_url).hostname or deployed.service_url
    seconds = WARM_UP_S + ROLLOUT_S + RECOVERY_S + SETTLE_S
    with discovery_client(
        kube_api, deployed.namespace, image=image, service_url=deployed.service_url,
        path=service_spec.load.path, seconds=seconds,
    ) as client:  # fmt: skip
        started = timeline.mark("discovery client running").t
        time.sleep(WARM_UP_S)
        if "next" in service_spec.images:
            timeline.mark("rollout starts", image=service_spec.images["next"])
            deployed.rollout(service_spec.image_override("next"), timeout=ROLLOUT_S)
            timeline.mark("rollout finished")
        replicas = len(deployed.pods())
        victim = deployed.pods()[0]
        deleted_at = timeline.mark("pod deleted", pod=victim).t
        kube_api.core.delete_namespaced_pod(victim, deployed.namespace)
        healed = wait_for_check(
            lambda: recovered(
                timeline.timeline(), deployment=deployment, replicas=replicas,
                fault_at=deleted_at, within_s=RECOVERY_S, what="pod deletion",
            ),
            timeout=RECOVERY_S + 10,
            what=f"{deployment} to replace the deleted pod",
        )  # fmt: skip
        time.sleep(SETTLE_S)
        ended = timeline.mark("judging ends").t
        rounds = client.rounds()
    evidence = Evidence("service discovery", timeline.timeline())
    evidence.measurements["rounds"] = len([r for r in rounds if started <= r.t <= ended])
    evidence.add(
        lookups_answered(
            rounds, name=name, budget=expect.max_failed_lookups, since=started, until=ended
        ),
        requests_by_name(
            rounds, name=name, budget=expect.max_failed_requests, since=started, until=ended
        ),
        healed,
    )
    judge(evidence, test_report_dir)
