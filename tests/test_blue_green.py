"""Blue-green with plain Kubernetes objects (harness.deploy.blue_green): green as the blue
Deployment's copy, and the built-in blue-green scenario failing, saying why, for a broken
next version."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from suite_runs import ROOT, SCENARIOS, run_example, spec_variant

from harness.deploy.blue_green import green_of
from harness.render import render
from harness.spec import load_spec

DEMO_SPEC = SCENARIOS / "demo-service.spec.yaml"
BLUE_GREEN = ROOT / "manifests" / "overlays" / "blue-green"


def blue() -> dict:
    return next(o for o in render(BLUE_GREEN) if o["kind"] == "Deployment")


def test_green_is_blue_renamed_relabelled_and_sized_like_blue_now() -> None:
    original = blue()
    kept = copy.deepcopy(original)
    green = green_of(original, label="slot", replicas=3)
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


def broken_next_variant(directory: Path) -> Path:
    """The demo's blue-green service whose next version answers half its requests 500."""
    return spec_variant(
        DEMO_SPEC,
        directory,
        ("../manifests/overlays/", f"{ROOT / 'manifests' / 'overlays'}/"),
        ("      next: localhost/kube-harness/demo-service:v2\n    load:\n      path: /\n"
         "      users: 4\n      rps: 4",
         "      next: localhost/kube-harness/demo-service:v2-broken\n    load:\n      path: /\n"
         "      users: 4\n      rps: 4"),
    )  # fmt: skip


def test_the_broken_next_variant_is_valid(tmp_path: Path) -> None:
    spec = load_spec(broken_next_variant(tmp_path))
    assert spec.service("demo").images["next"].endswith(":v2")
    broken = spec.service("demo-blue-green")
    assert broken.images["next"].endswith(":v2-broken")
    assert broken.answers_version("next") == "v2-broken"


def test_a_broken_green_fails_the_switch_saying_which_requests_failed(
    pytester: pytest.Pytester, monkeypatch, cluster, test_report_dir
) -> None:
    """Green with the next version broken (half of its answers 500, its probes passing)
    becomes Ready and takes the traffic: the scenario fails on the failed requests after the
    switch, and the switch back to blue serves without them."""
    found = run_example(
        pytester,
        monkeypatch,
        cluster,
        test_report_dir,
        broken_next_variant(pytester.path),
        "test_blue_green.py",
    )
    outcome, message = found["test_blue_green_switches_to_green_and_back_without_failed_requests"]
    assert outcome == "failed", message[:3000]
    assert "FAILED both switches: failed requests: " in message, message[:3000]
    assert "failed requests in this window" in message and "code=500" in message
    # Green did take the traffic: the failure is its answers, not the switch.
    assert "FAILED green, after the switch" not in message, message[:3000]
    assert "FAILED blue, after the switch back" not in message, message[:3000]
