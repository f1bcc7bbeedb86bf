"""A canary under steady load (`rollout: {strategy: canary}`): the next version beside the
stable one, weighted by replica counts, at each of the spec's steps. At each step the
canary's share of the answers stays within the tolerance of the step's share, and the
harness's judge watches its answers every second: a canary whose error rate breaks the SLO
is aborted within a second (scaled to 0; then the stable version answers alone). Else the
stable Deployment is rolled out to the next version and the canary removed, with failed
requests within the budget. Each request is a new connection, as a new client's would be:
replica counts weigh connections, not the requests on one kept open."""

import time

import pytest

from harness.assertions import (
    Evidence,
    canary_ended,
    slo_checks,
    version_error_rate,
    version_share,
)
from harness.deploy.progressive import Canary
from harness.scenario import judge, steady_load

WARM_UP_S = 5
# Seconds of load after the promotion or the abort (and its grace): what shows who answers.
HOLD_S = 10

pytestmark = pytest.mark.promises("rollout.strategy=canary", "rollout.controller=native")


def unreachable_share(weight, pods, tolerance):
    """Why a step's share could not be kept: the replica counts cannot make it."""
    if abs(pods - weight) <= tolerance:
        return None
    return (
        f"the canary's pods were {pods:.0%} of all the pods, more than {tolerance:.0%} points "
        f"from the step's {weight:.0%}: replica counts only make shares of k / (stable + k) "
        "pods; choose steps they reach, or run more stable replicas"
    )


def healthy_until_the_step_ends(run, *, version, max_error_rate, since, until, what):
    """Judge the canary's answers every second from `since` until `until`, as a controller's
    analysis would; the first failing verdict at once, else the last one."""
    while True:
        time.sleep(max(0.0, min(1.0, until - time.time())))
        health = version_error_rate(
            run.series(), run.failures(), version=version, max_error_rate=max_error_rate,
            since=since, until=time.time(), what=what,
        )  # fmt: skip
        if health.verdict.status == "fail" or time.time() >= until:
            return health


def test_canary_steps_hold_their_share_and_promote_or_abort_on_the_slo(
    service_spec, deployed, timeline, load, test_report_dir
):
    expect = service_spec.rollout
    canary = Canary(deployed, service_spec.deployment, label=expect.label)
    stable, next_version = (service_spec.answers_version(v) for v in ("current", "next"))
    images = service_spec.image_override("next")
    max_error_rate = service_spec.slo.max_error_rate
    per_step = expect.complete_within_s + expect.grace_s + expect.step_for_s
    budget = WARM_UP_S + len(expect.steps) * per_step + 2 * expect.complete_within_s + 60
    steps, aborted = [], None
    with steady_load(load, service_spec, deployed, seconds=budget, new_connections=True) as run:
        time.sleep(WARM_UP_S)
        started = timeline.mark("canary starts", image=service_spec.images["next"]).t
        for weight in expect.steps:
            pods = canary.set_weight(images, weight, timeout=expect.complete_within_s)
            at = timeline.mark(f"canary at {weight:.0%}", share_of_pods=round(pods, 3)).t
            time.sleep(expect.grace_s)
            health = healthy_until_the_step_ends(
                run, version=next_version, max_error_rate=max_error_rate,
                since=at + expect.grace_s, until=at + expect.grace_s + expect.step_for_s,
                what=f"canary at {weight:.0%}",
            )  # fmt: skip
            aborting = health.verdict.status == "fail"
            steps.append((weight, pods, (at + expect.grace_s, time.time()), aborting))
            if aborting:  # the judge aborts it, as a controller would
                aborted = timeline.mark("canary aborted", why=str(health.verdict)).t
                canary.abort(timeout=expect.complete_within_s)
                break
        if aborted is None:
            timeline.mark("promotion starts")
            canary.promote(images, timeout=expect.complete_within_s)
        settled = timeline.mark("canary out" if aborted else "promoted").t
        time.sleep(expect.grace_s + HOLD_S)
        ended = timeline.mark("load ends").t
    result = run.result()
    evidence = Evidence("canary", timeline.timeline(), loads=[result])
    for weight, pods, (since, until), cut_short in steps:
        what = f"canary at {weight:.0%} ({pods:.0%} of the pods)"
        if not cut_short:  # a share of the answers of the seconds before an abort says little
            evidence.add(
                version_share(result, version=next_version, weight=weight,
                              tolerance=expect.tolerance, since=since, until=until, what=what),
                why=unreachable_share(weight, pods, expect.tolerance),
            )  # fmt: skip
        evidence.add(
            version_error_rate(result.series, result.failures, version=next_version,
                               max_error_rate=max_error_rate, since=since, until=until,
                               what=what),
        )  # fmt: skip
    evidence.add(
        *canary_ended(result, aborted=aborted is not None, stable=stable, canary=next_version,
                      started=started, settled=settled, ended=ended, grace_s=expect.grace_s,
                      max_failed_requests=expect.max_failed_requests)
    )  # fmt: skip
    if aborted is not None:
        evidence.measurements["seconds from the abort to the canary out"] = settled - aborted
    evidence.add(*slo_checks(service_spec.slo, result, what="canary"))
    evidence.measurements["requests per version"] = result.versions
    judge(evidence, test_report_dir)
