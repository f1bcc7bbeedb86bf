"""HPA: under CPU load the service scales from its minimum to at least N within T, never above
its maximum, returns to the minimum within T once the load stops, and does not flap.

The CPU rises as the spec's `expect.hpa.driver` says: by the CPU load (`load.cpu_path`), or
by the harness burning CPU in the pods (`cpu-pressure`) under the steady load."""

import time
from contextlib import nullcontext

import pytest

from harness.assertions import (
    Evidence,
    hpa_direction_changes,
    hpa_scaled_down,
    hpa_scaled_up,
    hpa_within_bounds,
)
from harness.scenario import cpu_pressure, judge, steady_load, wait_for_check

HOLD_S = 20  # load kept after scaling up: long enough for an overshoot above max to show


@pytest.mark.cpu_sensitive
@pytest.mark.promises("hpa")
def test_hpa_scales_up_under_cpu_load_and_back_down(
    service_spec, deployed, cluster, kube_api, timeline, load, test_report_dir
):
    expect = service_spec.hpa
    deployment = service_spec.deployment

    def up(started):
        return hpa_scaled_up(
            timeline.timeline(),
            deployment=deployment,
            to=expect.scale_up_to,
            load_started=started,
            within_s=expect.scale_up_within_s,
        )

    seconds = expect.scale_up_within_s + HOLD_S + 30
    by_load = expect.driver == "load"
    pressure = (
        nullcontext()
        if by_load
        else cpu_pressure(cluster, kube_api, deployed, service_spec, seconds=seconds)
    )
    steady = steady_load(load, service_spec, deployed, cpu=by_load, seconds=seconds)
    with steady as run, pressure as burning:
        started = timeline.mark("cpu load starts", driver=expect.driver, pods=burning).t
        scaled = wait_for_check(
            lambda: up(started),
            timeout=expect.scale_up_within_s + 5,
            what=f"{deployment} to scale up",
        )
        timeline.mark("holding load", ready=scaled.verdict.measured)
        time.sleep(HOLD_S)
    result = run.result()
    stopped = timeline.mark("cpu load stopped").t

    def down():
        return hpa_scaled_down(
            timeline.timeline(),
            deployment=deployment,
            to=expect.min,
            load_stopped=stopped,
            within_s=expect.scale_down_within_s,
        )

    wait_for_check(
        down, timeout=expect.scale_down_within_s + 5, what=f"{deployment} to scale back down"
    )
    record = timeline.timeline()
    evidence = Evidence("hpa scaling", record, loads=[result])
    checks = [
        hpa_scaled_up(
            record,
            deployment=deployment,
            to=expect.scale_up_to,
            load_started=started,
            within_s=expect.scale_up_within_s,
        ),
        hpa_within_bounds(record, hpa=expect.name, deployment=deployment, maximum=expect.max),
        hpa_scaled_down(
            record,
            deployment=deployment,
            to=expect.min,
            load_stopped=stopped,
            within_s=expect.scale_down_within_s,
        ),
        hpa_direction_changes(
            record, hpa=expect.name, maximum=expect.max_direction_changes, since=started
        ),
    ]
    evidence.add(*checks)
    evidence.measurements.update(
        {
            "seconds to scale up": checks[0].verdict.measured,
            "peak replicas": checks[1].verdict.measured,
            "seconds to scale down": checks[2].verdict.measured,
            # Measured, not judged: the spec's SLO is for steady load, and requests refused while
            # the CPU is saturated are still being investigated (see the note).
            "error rate under cpu load": result.error_rate,
            "failed requests under cpu load": len(result.failures),
        }
    )
    judge(evidence, test_report_dir)
