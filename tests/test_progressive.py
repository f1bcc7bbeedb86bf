"""Blue-green and canary with plain Kubernetes objects (harness.deploy.progressive): the
Deployment's copy beside it, the canary's replicas for a share, and the built-in blue-green
and canary scenarios failing, saying why, for a broken next version."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from suite_runs import ROOT, broken_next_variant, run_example

from harness.deploy.progressive import canary_replicas, copy_of
from harness.render import render
from harness.spec import load_spec

BLUE_GREEN = ROOT / "manifests" / "overlays" / "blue-green"


def blue() -> dict:
    return next(o for o in render(BLUE_GREEN) if o["kind"] == "Deployment")


def test_a_copy_is_the_deployment_renamed_relabelled_for_its_role_and_sized() -> None:
    original = blue()
    kept = copy.deepcopy(original)
    green = copy_of(original, label="slot", role="green", replicas=3)
    assert original == kept, "blue itself is left as it is"
    assert green["metadata"]["name"] == "demo-green"
    assert green["metadata"]["labels"]["slot"] == "green"
    assert green["spec"]["selector"]["matchLabels"]["slot"] == "green"
    assert green["spec"]["template"]["metadata"]["labels"]["slot"] == "green"
    assert green["spec"]["replicas"] == 3
    # Everything else is what blue runs: probes, resources, the image as rendered.
    assert green["spec"]["template"]["spec"] == original["spec"]["template"]["spec"]
    others = {k: v for k, v in green["spec"]["selector"]["matchLabels"].items() if k != "slot"}
    assert others == {
        k: v for k, v in original["spec"]["selector"]["matchLabels"].items() if k != "slot"
    }


@pytest.mark.parametrize(
    ("stable", "weight", "canary"),
    [(2, 0.33, 1), (2, 0.5, 2), (3, 0.25, 1), (3, 0.5, 3), (2, 0.05, 1), (4, 0.9, 36)],
)
def test_the_canary_gets_the_replicas_closest_to_its_share_and_at_least_one(
    stable: int, weight: float, canary: int
) -> None:
    assert canary_replicas(stable, weight) == canary


def test_the_broken_next_variant_is_valid(tmp_path: Path) -> None:
    spec = load_spec(broken_next_variant(tmp_path))
    assert spec.service("demo").images["next"].endswith(":v2")
    for name in ("demo-blue-green", "demo-canary", "demo-argo-canary"):
        broken = spec.service(name)
        assert broken.images["next"].endswith(":v2-broken")
        assert broken.answers_version("next") == "v2-broken"


def test_a_broken_next_version_fails_blue_green_and_aborts_the_canary(
    pytester: pytest.Pytester, monkeypatch, cluster, test_report_dir
) -> None:
    """The next version broken (half of its answers 500, its probes passing), in one run of
    both scenarios. Blue-green: green becomes Ready and takes the traffic, the scenario fails
    on the failed requests, and the switch back to blue serves without them. Canary: its
    answers break the SLO's error rate at the first step, the harness aborts it (scaled to 0)
    and the stable version answers alone afterwards."""
    found = run_example(
        pytester,
        monkeypatch,
        cluster,
        test_report_dir,
        broken_next_variant(pytester.path),
        "test_blue_green.py",
        "test_canary.py",
    )
    outcome, message = found["test_blue_green_switches_to_green_and_back_without_failed_requests"]
    assert outcome == "failed", message[:3000]
    assert "FAILED both switches: failed requests: " in message, message[:3000]
    assert "failed requests in this window" in message and "code=500" in message
    # Green did take the traffic: the failure is its answers, not the switch.
    assert "FAILED green, after the switch" not in message, message[:3000]
    assert "FAILED blue, after the switch back" not in message, message[:3000]
    outcome, message = found["test_canary_steps_hold_their_share_and_promote_or_abort_on_the_slo"]
    assert outcome == "failed", message[:3000]
    assert "FAILED canary at 33% (33% of the pods): error rate of the answers by v2-broken" in (
        message
    ), message[:3000]
    assert "canary at 50%" not in message, "aborted at the first step"
    assert "FAILED after the abort" not in message, message[:3000]
