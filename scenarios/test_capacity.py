"""Capacity: a step load on the service's CPU path measures the requests/s a replica sustains at
the SLO, the knee where latency breaks, and how fast the HPA reacts to the rising load.

The figures are measurements, not promises (the report shows them and their trend); what is
judged is that the service meets its SLO at the lowest step, that the HPA reacts within the
spec's time and stays within its bounds, and that every step was measured.
"""

import pytest

from harness.assertions import Check, Evidence, hpa_within_bounds
from harness.load import Step, Verdict
from harness.report import capacity
from harness.scenario import PATHS_LOCUSTFILE, judge

# Four steps of 2 users (4 requests/s each on the CPU path): from well within two replicas'
# CPU to past what this machine serves, in under two minutes.
STEP_USERS = 2
STEP_S = 25
STEPS = 4


def _check(
    name: str,
    measured: float | None,
    limit: float,
    unit: str,
    ok: bool,
    since: float,
    until: float,
    note: str = "",
) -> Check:
    return Check(
        Verdict(f"capacity: {name}", measured, limit, unit, "pass" if ok else "fail", note),
        since,
        until,
        ("HorizontalPodAutoscaler", "Deployment", "Pod", "Mark"),
    )


@pytest.mark.cpu_sensitive
@pytest.mark.promises("slo.max_p95_ms")  # the knee is where p95 crosses it
def test_step_load_measures_capacity_and_hpa_reaction(
    service_spec, deployed, timeline, load, test_report_dir
):
    slo = service_spec.slo
    shape = Step(step_users=STEP_USERS, step_time=STEP_S, steps=STEPS)
    placement = load.placement_for(service_spec.load.placement)
    with load.run(
        deployed.load_url(placement),
        shape,
        locustfile=PATHS_LOCUSTFILE,
        env={
            "LOAD_PATH": service_spec.load.cpu_path,
            "LOAD_USER_RPS": f"{service_spec.load.rps:g}",
        },
        workers=service_spec.load.workers,
        placement=placement,
    ) as run:
        started = timeline.mark("step load starts", **shape.to_spec()).t
        run.wait()
    result = run.result()
    ended = timeline.mark("step load stopped").t
    record = timeline.timeline()
    analysis = capacity.analyse(
        result.series,
        record,
        max_p95_ms=slo.max_p95_ms,
        max_error_rate=slo.max_error_rate,
        generator=result.generator,
    )

    evidence = Evidence("capacity", record, loads=[result])
    evidence.add(
        _check(
            "load steps measured",
            len(analysis.steps),
            STEPS,
            "steps",
            len(analysis.steps) == STEPS,
            started,
            ended,
        )
    )
    if analysis.steps:
        lowest = analysis.steps[0]
        note = "" if result.reliable else result.unreliable_reason or ""
        evidence.add(
            _check(
                f"p95 at the lowest step ({lowest.users} users)",
                lowest.p95_ms,
                slo.max_p95_ms,
                "ms",
                lowest.p95_ms is not None and lowest.p95_ms <= slo.max_p95_ms,
                lowest.start,
                lowest.end,
                note,
            ),
            _check(
                f"error rate at the lowest step ({lowest.users} users)",
                lowest.error_rate,
                slo.max_error_rate if slo.max_error_rate is not None else 1.0,
                "ratio",
                slo.max_error_rate is None or lowest.error_rate <= slo.max_error_rate,
                lowest.start,
                lowest.end,
            ),
        )
    hpa = service_spec.hpa
    if hpa is not None and hpa.driver == "load":
        evidence.add(
            _check(
                "load rise to first scale-up",
                analysis.first_scale_up_s,
                hpa.scale_up_within_s,
                "s",
                analysis.first_scale_up_s is not None
                and analysis.first_scale_up_s <= hpa.scale_up_within_s,
                started,
                started + hpa.scale_up_within_s,
                "" if analysis.first_scale_up_s is not None else "the HPA never scaled up",
            )
        )
    # With `driver: cpu-pressure` the spec says requests do not raise CPU: how soon the HPA
    # reacts is test_hpa_scaling's to judge; the step load's reaction is only measured.
    if hpa is not None:
        evidence.add(
            hpa_within_bounds(
                record, hpa=hpa.name, deployment=service_spec.deployment, maximum=hpa.max,
                since=started, until=ended,
            ),
        )  # fmt: skip
    evidence.measurements[capacity.MEASUREMENT] = analysis.to_json()
    judge(evidence, test_report_dir)
