"""Argo Rollouts (harness.argo_rollouts): the controller's install manifests, a Rollout's
state as its status says it, the marks of a release and the windows of its weights, and
the check that judges the release."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from suite_runs import broken_next_variant, run_example

from harness.argo_rollouts import (
    CONTROLLER_REF,
    NAMESPACE,
    canary_steps,
    describe,
    install_manifests,
    release_marks,
    rollout_for,
    rollout_state,
    rollout_steps,
    uses_argo_rollouts,
    weight_windows,
)
from harness.assertions import argo_release_promoted
from harness.observe import Entry, Timeline
from harness.render import render
from harness.workload import _argo_problems

ROOT = Path(__file__).resolve().parents[1]
ARGO_CANARY = ROOT / "manifests" / "overlays" / "argo-canary"
STEPS = [
    {"setWeight": 25},
    {"pause": {"duration": "20s"}},
    {"setWeight": 50},
    {"analysis": {"templates": [{"templateName": "demo-error-rate"}]}},
    {"pause": {}},
]

INSTALL = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: rollouts.argoproj.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: argo-rollouts}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: argo-rollouts}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: argo-rollouts}
spec:
  template:
    spec:
      containers:
        - name: argo-rollouts
          image: quay.io/argoproj/argo-rollouts:latest
          imagePullPolicy: Always
"""


def test_the_install_runs_the_image_built_here_in_its_namespace_never_pulled() -> None:
    objects = install_manifests(INSTALL, image=CONTROLLER_REF)
    assert objects[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    by_kind = {o["kind"]: o for o in objects}
    assert "namespace" not in by_kind["CustomResourceDefinition"]["metadata"]
    assert "namespace" not in by_kind["ClusterRole"]["metadata"]
    assert by_kind["ServiceAccount"]["metadata"]["namespace"] == NAMESPACE
    container = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["imagePullPolicy"]) == (CONTROLLER_REF, "IfNotPresent")


def rollout(status: dict, steps: list | None = STEPS) -> dict:
    strategy = {"canary": {"steps": steps}} if steps is not None else {"blueGreen": {}}
    return {"spec": {"strategy": strategy}, "status": status}


def test_a_rollout_paused_at_a_step_has_the_weight_of_the_last_set_weight_before_it() -> None:
    state = rollout_state(
        rollout(
            {
                "phase": "Paused",
                "currentStepIndex": 1,
                "pauseConditions": [{"reason": "CanaryPauseStep"}],
                "stableRS": "aaa",
                "currentPodHash": "bbb",
                "updatedReplicas": 1,
                "availableReplicas": 4,
            }
        )
    )
    assert (state.step, state.weight, state.paused) == (1, 0.25, ("CanaryPauseStep",))
    assert (state.updated, state.available) == (1, 4)
    assert not state.healthy, "its new ReplicaSet is not the stable one yet"
    assert describe(state.summary()) == "argo: Paused, step 1, weight 25%, paused (CanaryPauseStep)"


def test_a_rollout_past_its_last_step_on_its_new_revision_is_promoted() -> None:
    done = {"phase": "Healthy", "currentStepIndex": 5, "stableRS": "b", "currentPodHash": "b"}
    state = rollout_state(rollout(done))
    assert state.healthy and state.weight == 1.0
    aborted = rollout_state(rollout(done | {"abort": True, "message": "RolloutAborted: x"}))
    assert not aborted.healthy and aborted.aborted and "aborted" in describe(aborted.summary())


def test_an_analysis_and_a_blue_green_state_are_read() -> None:
    analysing = {
        "currentStepIndex": 3,
        "canary": {"currentStepAnalysisRunStatus": {"name": "r", "status": "Running"}},
    }
    assert rollout_state(rollout(analysing)).analysis == "Running"
    blue_green = {"blueGreen": {"activeSelector": "a", "previewSelector": "b"}}
    state = rollout_state(rollout(blue_green, steps=None))
    assert (state.active, state.preview, state.step, state.weight) == ("a", "b", None, 0.0)


def mark(t: float, step: int | None, *, promoted: bool = False, aborted: bool = False) -> Entry:
    state = {"rollout": "demo", "step": step, "promoted": promoted, "aborted": aborted,
             "message": "analysis failed" if aborted else ""}  # fmt: skip
    return Entry(t, "MARK", "Mark", "argo: ...", state)


def test_a_release_begins_with_its_first_mark_that_is_not_promoted() -> None:
    entries = [mark(1, 5, promoted=True), mark(10, 5, promoted=True), mark(11, 0), mark(12, 1)]
    other = Entry(13, "MARK", "Mark", "argo: ...", {"rollout": "other", "step": 0})
    assert [e.t for e in release_marks([*entries, other], rollout="demo", since=5)] == [11, 12]


def test_each_weight_is_judged_from_its_step_done_until_the_next_weight_begins() -> None:
    marks = [mark(11, 0), mark(14, 1), mark(34, 2), mark(38, 3), mark(55, 4)]
    assert weight_windows(marks, STEPS, ends=60) == [(0, 0.25, 14, 34), (2, 0.5, 38, 60)]
    # Aborted at the first pause: the second weight was never reached.
    assert weight_windows(marks[:2], STEPS, ends=20) == [(0, 0.25, 14, 20)]


def timeline(*entries: Entry) -> Timeline:
    return Timeline(list(entries))


def test_the_release_check_passes_when_promoted_in_time_and_fails_late_aborted_or_never() -> None:
    before = mark(1, 5, promoted=True)
    moving, done = mark(11, 0), mark(70, 5, promoted=True)
    check = argo_release_promoted(timeline(before, moving, done), rollout="demo",
                                  released=10, since=10, within_s=120)  # fmt: skip
    assert check.passed and check.verdict.measured == 60
    late = argo_release_promoted(timeline(before, moving, done), rollout="demo",
                                 released=10, since=10, within_s=30)  # fmt: skip
    assert not late.passed
    aborted = argo_release_promoted(timeline(before, moving, mark(40, 3, aborted=True)),
                                    rollout="demo", released=10, since=10,
                                    within_s=120)  # fmt: skip
    assert not aborted.passed and "Argo aborted it: analysis failed" in str(aborted.verdict)
    # The state before the release is promoted: it does not count.
    never = argo_release_promoted(timeline(before, mark(12, 5, promoted=True)), rollout="demo",
                                  released=10, since=10, within_s=120)  # fmt: skip
    assert not never.passed and "not Healthy" in str(never.verdict)


def test_the_argo_canary_overlay_runs_its_deployment_through_a_rollout() -> None:
    objects = render(ARGO_CANARY)
    assert uses_argo_rollouts(objects)
    made = rollout_for(objects, "demo")
    assert made is not None and made["spec"]["workloadRef"]["name"] == "demo"
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 0, "the Rollout runs the pods, not the Deployment"
    assert not [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    weights = [s["setWeight"] for s in canary_steps(made) if "setWeight" in s]
    assert weights == [25, 50]
    assert rollout_for(objects, "other") is None
    assert not uses_argo_rollouts([deployment])


def test_a_spec_whose_strategy_the_rollout_does_not_use_is_refused() -> None:
    (problem,) = _argo_problems(render(ARGO_CANARY), "demo", "blue-green")
    assert "Rollout demo has strategy canary" in problem
    (problem,) = _argo_problems([o for o in render(ARGO_CANARY) if o["kind"] != "Rollout"],
                                "demo", "canary")  # fmt: skip
    assert "needs a Rollout" in problem and "argo-canary" in problem


def test_install_manifests_read_upstream_yaml() -> None:
    # Multi-document YAML with an empty document, as upstream's file has.
    objects = install_manifests("---\n" + INSTALL + "\n---\n", image="x")
    assert len(objects) == 1 + len(list(d for d in yaml.safe_load_all(INSTALL) if d))


def test_the_release_check_counts_from_the_promotion_when_the_harness_promoted() -> None:
    marks = timeline(mark(11, 0), mark(40, 4), mark(70, 5, promoted=True))
    check = argo_release_promoted(marks, rollout="demo", released=10, since=60, within_s=30)
    assert check.passed and check.verdict.measured == 10


def test_a_broken_release_is_aborted_by_argos_analysis_and_the_scenarios_say_why(
    pytester, monkeypatch, cluster, test_report_dir
) -> None:
    """The next version answers half its requests 500. Canary: the Rollout's analysis (the
    canary pods' own error rate) fails, Argo aborts the release and scales the canary to 0,
    and the scenario fails naming Argo's reason and the canary's failed answers, while the
    stable version answers alone after the abort. Blue-green: the analysis before the
    promotion fails on the preview's answers to the harness's smoke test, Argo aborts it,
    and the active Service never leaves the current version."""
    found = run_example(pytester, monkeypatch, cluster, test_report_dir,
                        broken_next_variant(pytester.path), "test_argo_rollouts.py")  # fmt: skip
    outcome, message = found[
        "test_argo_canary_holds_each_weight_and_is_promoted_or_aborted_by_its_analysis"
    ]
    assert outcome == "failed", message[:3000]
    assert "FAILED Argo Rollout demo promoted" in message, message[:3000]
    assert "Argo aborted it: " in message and "error-rate" in message, message[:3000]
    assert "FAILED canary at 25%: error rate of the answers by v2-broken" in message
    assert "FAILED after the abort" not in message, message[:3000]
    outcome, message = found[
        "test_argo_blue_green_previews_then_switches_on_promotion_or_aborts_on_its_analysis"
    ]
    assert outcome == "failed", message[:3000]
    assert "FAILED preview (demo-preview): smoke answers not a success by v2-broken" in message
    assert "Argo aborted it: " in message and "error-rate" in message, message[:3000]
    assert "FAILED active, before the promotion" not in message, message[:3000]
    assert "failed requests" not in message.split("FAILED")[0], "the active kept serving"


def test_the_timeline_gets_a_mark_per_step_not_per_pod_count() -> None:
    states = iter(
        [
            {"phase": "Progressing", "currentStepIndex": 0, "updatedReplicas": 0},
            {"phase": "Progressing", "currentStepIndex": 0, "updatedReplicas": 1},
            {"phase": "Paused", "currentStepIndex": 1, "updatedReplicas": 1,
             "pauseConditions": [{"reason": "CanaryPauseStep"}]},
        ]
    )  # fmt: skip
    last = {}

    class Rollout:
        name = "demo"

        def state(self):
            nonlocal last
            last = next(states, last)
            return rollout_state(rollout(last))

    class Timeline:
        def __init__(self) -> None:
            self.marks: list = []

        def mark(self, label, **state):
            self.marks.append((label, state["updated"]))

    recorder = Timeline()
    with rollout_steps(Rollout(), recorder, every_s=0.01):
        time.sleep(0.2)
    assert recorder.marks == [
        ("argo: Progressing, step 0, weight 25%", 0),
        ("argo: Paused, step 1, weight 25%, paused (CanaryPauseStep)", 1),
    ]
