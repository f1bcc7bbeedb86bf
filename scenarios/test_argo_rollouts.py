"""Releases carried out by Argo Rollouts (`rollout: {controller: argo-rollouts}`) under
steady load, each request on a new connection (replica counts weigh connections).

Canary: the harness changes the Deployment the Rollout refers to (the next image) and
follows the Rollout's own steps on the timeline. At each setWeight step the canary's share
of the answers stays within the tolerance of the weight; an indefinite pause is promoted by
the harness as `kubectl argo rollouts promote` would; the Rollout then becomes Healthy on
the next version with failed requests within the budget. When its analysis fails, Argo
aborts it: the scenario shows the canary scaled to 0 and the stable version answering
alone, and fails with the analysis's reason and the canary's answers.

Blue-green: the next version comes up behind the preview Service while the active one keeps
the current version; the harness smoke-tests the preview (through the API server's service
proxy) while the Rollout's pre-promotion analysis reads it, and promotes it once the
analysis passed; from the grace after the switch every answer comes from the next version,
with failed requests within the budget. A failing analysis aborts it: the active Service
never moves, and the scenario fails with Argo's reason and the preview's answers.
"""

import time
from contextlib import contextmanager
from typing import NamedTuple

import pytest

from harness.argo_rollouts import (
    ArgoRollout,
    canary_steps,
    release_marks,
    rollout_for,
    rollout_steps,
    smoke,
    weight_windows,
)
from harness.assertions import (
    Evidence,
    answered_by,
    argo_release_promoted,
    canary_ended,
    failed_requests,
    slo_checks,
    smoke_answered_by,
    version_error_rate,
    version_share,
)
from harness.load.merge import version_reader
from harness.scenario import judge, steady_load

WARM_UP_S = 5
# The smoke test of a blue-green preview: four requests a second for 25 seconds, while the
# analysis before the promotion reads what they did to the preview's pods.
PREVIEW_REQUESTS, PREVIEW_EVERY_S = 100, 0.25
# Argo pauses a release whose analysis could not decide (e.g. nothing to measure): the
# harness promotes nothing then, and the release check says so.
INCONCLUSIVE = "InconclusiveAnalysisRun"
# Seconds of load after the promotion or the abort (and its grace): what shows who answers.
HOLD_S = 10


class Release(NamedTuple):
    """An Argo release under way: the Rollout as rendered and live, the steady load, and
    the pod-template hash it ran and the time the next version was applied."""

    made: dict
    rollout: ArgoRollout
    run: object
    before: str
    started: float


@contextmanager
def argo_release(service_spec, deployed, timeline, load, *, seconds):
    """The Rollout that runs the service's Deployment, under the steady load (each request
    on a new connection) for at most `seconds`, each change of it marked on the timeline;
    after the warm-up the next version applied to the Deployment it refers to."""
    made = rollout_for(deployed.objects, service_spec.deployment)
    assert made is not None, f"{deployed.source}: no Rollout runs {service_spec.deployment}"
    rollout = ArgoRollout(deployed.kube, deployed.namespace, made["metadata"]["name"])
    with (
        steady_load(load, service_spec, deployed, seconds=seconds, new_connections=True) as run,
        rollout_steps(rollout, timeline),
    ):
        time.sleep(WARM_UP_S)
        before = rollout.state().current
        started = timeline.mark("release starts", image=service_spec.images["next"]).t
        deployed.update(service_spec.image_override("next"))
        yield Release(made, rollout, run, before, started)


def _is_indefinite_pause(steps, state):
    """Paused at a `pause: {}` step: waiting to be promoted."""
    return (
        "CanaryPauseStep" in state.paused
        and state.step is not None
        and state.step < len(steps)
        and "duration" not in steps[state.step].get("pause", {"duration": None})
    )


@pytest.mark.promises("rollout.controller=argo-rollouts", "rollout.strategy=canary")
def test_argo_canary_holds_each_weight_and_is_promoted_or_aborted_by_its_analysis(
    service_spec, deployed, timeline, load, test_report_dir
):
    expect = service_spec.rollout
    stable, next_version = (service_spec.answers_version(v) for v in ("current", "next"))
    waits = 3 * expect.complete_within_s
    budget = WARM_UP_S + 2 * waits + expect.grace_s + HOLD_S + 30
    promoted_at = aborted_at = None
    with argo_release(service_spec, deployed, timeline, load, seconds=budget) as release:
        made, rollout, run, before, started = release
        steps = canary_steps(made)
        state = rollout.wait(
            lambda s: (
                s.current != before
                and (
                    s.aborted
                    or s.healthy
                    or INCONCLUSIVE in s.paused
                    or _is_indefinite_pause(steps, s)
                )
            ),
            what="its steps up to a pause for promotion",
            timeout=waits,
        )
        if _is_indefinite_pause(steps, state):
            promoted_at = timeline.mark("promotion", step=state.step, paused=state.paused).t
            rollout.promote()
            state = rollout.wait(
                lambda s: s.aborted or s.healthy, what="healthy after the promotion", timeout=waits
            )
        if state.aborted:
            aborted_at = timeline.mark("aborted by Argo", why=state.message).t
            state = rollout.wait(
                lambda s: s.updated == 0 and s.available >= made["spec"]["replicas"],
                what="the canary scaled to 0 and the stable pods back",
                timeout=expect.complete_within_s,
                after_abort=True,
            )
        settled = timeline.mark("canary out" if aborted_at else "promoted").t
        time.sleep(expect.grace_s + HOLD_S)
        ended = timeline.mark("load ends").t
    result = run.result()
    record = timeline.timeline()
    evidence = Evidence("argo canary", record, loads=[result])
    cut = promoted_at or aborted_at or settled
    marks = release_marks(record.entries, rollout=rollout.name, since=started)
    for _, weight, since, until in weight_windows(marks, steps, ends=cut):
        what = f"canary at {weight:.0%}"
        evidence.add(
            version_share(result, version=next_version, weight=weight,
                          tolerance=expect.tolerance, since=since + expect.grace_s,
                          until=until, what=what),
            version_error_rate(result.series, result.failures, version=next_version,
                               max_error_rate=service_spec.slo.max_error_rate,
                               since=since + expect.grace_s, until=until, what=what),
        )  # fmt: skip
    evidence.add(
        argo_release_promoted(record, rollout=rollout.name, released=started,
                              since=promoted_at or started, within_s=expect.complete_within_s)
    )  # fmt: skip
    evidence.add(
        *canary_ended(result, aborted=aborted_at is not None, stable=stable,
                      canary=next_version, started=started, settled=settled, ended=ended,
                      grace_s=expect.grace_s, max_failed_requests=expect.max_failed_requests)
    )  # fmt: skip
    if aborted_at is not None:
        evidence.measurements["seconds from the abort to the canary out"] = settled - aborted_at
    evidence.add(*slo_checks(service_spec.slo, result, what="argo canary"))
    evidence.measurements["requests per version"] = result.versions
    judge(evidence, test_report_dir)


@pytest.mark.promises("rollout.controller=argo-rollouts", "rollout.strategy=blue-green")
def test_argo_blue_green_previews_then_switches_on_promotion_or_aborts_on_its_analysis(
    service_spec, deployed, timeline, load, test_report_dir
):
    expect = service_spec.rollout
    blue, green = (service_spec.answers_version(v) for v in ("current", "next"))
    budget = WARM_UP_S + 3 * expect.complete_within_s + expect.grace_s + HOLD_S + 30
    promoted_at = None
    with argo_release(service_spec, deployed, timeline, load, seconds=budget) as release:
        made, rollout, run, before, started = release
        preview = made["spec"]["strategy"]["blueGreen"]["previewService"]
        # Once the preview's pods all run, Argo starts the analysis before the promotion
        # (which needs the smoke's answers), or else pauses for the promotion.
        state = rollout.wait(
            lambda s: s.current != before and s.preview == s.current
            and bool(s.analysis or s.paused),
            what="the preview's pods to run", timeout=expect.complete_within_s,
        )  # fmt: skip
        previewed = timeline.mark("preview ready", service=preview, paused=state.paused).t
        answers = smoke(
            deployed.kube, deployed.namespace, preview, path=service_spec.load.path,
            read_version=version_reader(service_spec.load.version_from),
            requests=PREVIEW_REQUESTS, every_s=PREVIEW_EVERY_S,
        )  # fmt: skip
        state = rollout.wait(
            lambda s: (
                s.aborted
                or INCONCLUSIVE in s.paused
                or ("BlueGreenPause" in s.paused and s.analysis in ("", "Successful"))
            ),
            what="its analysis passed and a pause for promotion",
            timeout=expect.complete_within_s,
        )
        if not state.aborted and INCONCLUSIVE not in state.paused:
            promoted_at = timeline.mark("promotion", paused=state.paused).t
            rollout.promote()
            state = rollout.wait(
                lambda s: s.aborted or s.healthy, what="the switch to the preview",
                timeout=expect.complete_within_s,
            )  # fmt: skip
        if state.aborted:
            timeline.mark("aborted by Argo", why=state.message)
        switched = timeline.mark("active is " + (green if state.healthy else blue)).t
        time.sleep(expect.grace_s + HOLD_S)
        ended = timeline.mark("load ends").t
    result = run.result()
    record = timeline.timeline()
    evidence = Evidence("argo blue-green", record, loads=[result])
    evidence.add(
        smoke_answered_by(answers, version=green, what=f"preview ({preview})"),
        answered_by(result, version=blue, since=started, until=promoted_at or ended,
                    what="active, before the promotion"),
        argo_release_promoted(record, rollout=rollout.name, released=started,
                              since=promoted_at or started, within_s=expect.complete_within_s),
        failed_requests(result, since=started, until=ended, budget=expect.max_failed_requests,
                        what="preview and switch"),
        *slo_checks(service_spec.slo, result, what="argo blue-green"),
    )  # fmt: skip
    # Not promoted, the release check says why; who answered then is no promise.
    if state.healthy:
        evidence.add(
            answered_by(result, version=green, since=switched + expect.grace_s, until=ended,
                        what="active, after the promotion")
        )  # fmt: skip
    evidence.measurements["seconds from the release to the preview ready"] = previewed - started
    evidence.measurements["requests per version"] = result.versions
    judge(evidence, test_report_dir)
