"""Blue-green under steady load (`rollout: {strategy: blue-green}`): green, the next version
beside blue, is Ready in time; the Services switch to it and back (the rollback) with failed
requests within the budget; and from the spec's grace after each switch every answer comes
from the slot switched to, by the version the responses name. Each request is a new
connection, as a new client's would be: a switch moves where new connections go, while one a
client keeps open stays on its pod until it is closed, however long the grace."""

import time

import pytest

from harness.assertions import (
    Evidence,
    answered_by,
    failed_requests,
    rollout_completed,
    slo_checks,
)
from harness.deploy.progressive import BLUE, GREEN, BlueGreen
from harness.scenario import judge, steady_load

WARM_UP_S = 5
# Seconds each slot serves alone after its switch and grace: the window its answers are
# judged over.
HOLD_S = 10


pytestmark = pytest.mark.promises("rollout.strategy=blue-green", "rollout.controller=native")


def test_blue_green_switches_to_green_and_back_without_failed_requests(
    service_spec, deployed, timeline, load, test_report_dir
):
    expect = service_spec.rollout
    slots = BlueGreen(deployed, service_spec.deployment, label=expect.label)
    blue, green = service_spec.answers_version("current"), service_spec.answers_version("next")
    next_image = service_spec.images["next"]
    replicas = slots.replicas_of(service_spec.deployment)
    budget = WARM_UP_S + expect.complete_within_s + 2 * (expect.grace_s + HOLD_S) + 30
    with steady_load(load, service_spec, deployed, seconds=budget, new_connections=True) as run:
        time.sleep(WARM_UP_S)
        started = timeline.mark("green starts", image=next_image).t
        slots.start_green(service_spec.image_override("next"), timeout=expect.complete_within_s)
        to_green = timeline.mark("switch to green", services=slots.switch(GREEN)).t
        time.sleep(expect.grace_s + HOLD_S)
        to_blue = timeline.mark("switch back to blue", services=slots.switch(BLUE)).t
        time.sleep(expect.grace_s + HOLD_S)
        ended = timeline.mark("blue serves again").t
    result = run.result()
    evidence = Evidence("blue-green", timeline.timeline(), loads=[result])
    green_ready = rollout_completed(
        timeline.timeline(),
        deployment=slots.name,
        image=next_image,
        replicas=replicas,
        started=started,
        within_s=expect.complete_within_s,
    )
    evidence.add(
        green_ready,
        answered_by(result, version=blue, since=result.started + 1, until=to_green,
                    what="blue, before the switch"),
        answered_by(result, version=green, since=to_green + expect.grace_s, until=to_blue,
                    what="green, after the switch"),
        answered_by(result, version=blue, since=to_blue + expect.grace_s, until=ended,
                    what="blue, after the switch back"),
        failed_requests(result, since=started, until=ended, budget=expect.max_failed_requests,
                        what="both switches"),
        *slo_checks(service_spec.slo, result, what="blue-green"),
    )  # fmt: skip
    evidence.measurements["seconds until green was ready"] = green_ready.verdict.measured
    evidence.measurements["requests per version"] = result.versions
    judge(evidence, test_report_dir)
