"""What the manifests say about a Deployment (harness.workload): spec checks and findings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.render import render
from harness.spec import load_spec
from harness.workload import Workload, spec_problems

ROOT = Path(__file__).resolve().parents[1]
HTTPBIN = ROOT / "examples" / "go-httpbin"
DEMO_SPEC = ROOT / "scenarios" / "demo-service.spec.yaml"


@pytest.fixture(scope="module")
def httpbin() -> Workload:
    workload = Workload.of(render(HTTPBIN / "kustomize"), "httpbin")
    assert workload is not None
    return workload


@pytest.fixture(scope="module")
def demo() -> tuple[Any, list[dict[str, Any]]]:
    service = load_spec(DEMO_SPEC).services[0]
    return service, render(service.manifests)


def test_a_single_replica_left_at_the_default_is_named_as_the_cause(httpbin: Workload) -> None:
    assert (httpbin.replicas, httpbin.replicas_set, httpbin.serves_alone) == (1, False, True)
    assert httpbin.why_unavailable_during_replacement() == (
        "Deployment httpbin runs 1 replica (the manifests set no replicas: 1 is the default): "
        "while its only pod is replaced or restarted, nothing serves"
    )
    assert "new connections are refused" in (httpbin.why_unavailable_when_unready() or "")


def test_a_rollout_without_a_prestop_hook_says_so(httpbin: Workload) -> None:
    why = httpbin.why_requests_failed_in_rollout("httpbin") or ""
    assert why.startswith("container httpbin has no preStop hook: an old pod stops serving")
    assert "runs 1 replica" in why


def test_the_default_progress_deadline_cannot_report_a_stuck_rollout_in_a_minute(
    httpbin: Workload,
) -> None:
    assert httpbin.why_stuck_not_reported(60) == (
        "Deployment httpbin's progressDeadlineSeconds is 600s (the default: the manifests set "
        "none): Kubernetes reports a stuck rollout only after that, not within 60s"
    )
    assert httpbin.why_stuck_not_reported(600) is None


def test_a_start_longer_than_liveness_allows_without_a_startup_probe_is_named(
    httpbin: Workload,
) -> None:
    assert httpbin.why_slow_start_restarted("httpbin", 20) is None  # 3 x 10s allows it
    assert httpbin.why_slow_start_restarted("httpbin", 45) == (
        "container httpbin has no startupProbe, and its livenessProbe restarts it after "
        "10s x 3 failures = 30s without an answer, shorter than the 45s start-up"
    )


def test_a_startup_probe_shorter_than_the_start_is_named(demo) -> None:
    service, objects = demo
    workload = Workload.of(objects, "demo")
    assert workload is not None
    assert workload.why_slow_start_restarted("demo", service.probes.startup_delay_s) is None
    why = workload.why_slow_start_restarted("demo", 60) or ""
    assert why.startswith("container demo's startupProbe gives up after 1s x 20 failures = 20s")


def test_the_demo_keeps_what_httpbin_cannot(demo) -> None:
    service, objects = demo
    workload = Workload.of(objects, "demo")
    assert workload is not None and not workload.serves_alone  # its HPA keeps 2 or more
    assert workload.why_unavailable_during_replacement() is None
    assert workload.why_requests_failed_in_rollout("demo") is None  # preStop, readiness
    assert workload.why_stuck_not_reported(service.rollout.stuck_detected_within_s) is None
    assert spec_problems(service, objects) == []


def rename(objects: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    out = [dict(o) for o in objects]
    for obj in out:
        if obj["kind"] == kind:
            obj["metadata"] = {**obj["metadata"], "name": name}
    return out


def test_names_the_manifests_lack_are_spec_problems(demo) -> None:
    service, objects = demo
    assert spec_problems(service, rename(objects, "Deployment", "web")) == [
        "deployment: the manifests have no Deployment 'demo' (they have: web)"
    ]
    assert spec_problems(service, rename(objects, "HorizontalPodAutoscaler", "other")) == [
        "expect.hpa.name: no HorizontalPodAutoscaler 'demo' targets Deployment demo "
        "(HPAs that do: other)"
    ]


def test_other_hpa_bounds_and_a_missing_container_are_spec_problems(demo) -> None:
    service, objects = demo
    changed = []
    for obj in objects:
        if obj["kind"] == "HorizontalPodAutoscaler":
            obj = {**obj, "spec": {**obj["spec"], "maxReplicas": 9}}
        if obj["kind"] == "Deployment":
            template = obj["spec"]["template"]
            containers = [{**c, "name": "app"} for c in template["spec"]["containers"]]
            template = {**template, "spec": {**template["spec"], "containers": containers}}
            obj = {**obj, "spec": {**obj["spec"], "template": template}}
        changed.append(obj)
    assert spec_problems(service, changed) == [
        "container: Deployment demo has no container 'demo' (it has: app)",
        "expect.hpa: min 2 / max 5, but HorizontalPodAutoscaler demo says 2 / 9",
    ]


def test_a_blue_green_release_needs_the_blue_slot_in_selector_template_and_a_service() -> None:
    service = load_spec(DEMO_SPEC).service("demo-blue-green")
    assert spec_problems(service, render(service.manifests)) == []
    plain = render(ROOT / "manifests" / "overlays" / "ci")  # no slot label anywhere
    assert spec_problems(service, plain) == [
        "expect.rollout: strategy blue-green needs `slot: blue` in Deployment demo's selector "
        "and pod template (see manifests/overlays/blue-green for the patches that do it)",
        "expect.rollout: strategy blue-green switches the Services that select `slot: blue`, "
        "and no Service of the manifests does (see manifests/overlays/blue-green for the "
        "patches that do it)",
    ]


def test_a_canary_release_needs_the_stable_track_and_a_service_reaching_both() -> None:
    service = load_spec(DEMO_SPEC).service("demo-canary")
    assert spec_problems(service, render(service.manifests)) == []
    plain = render(ROOT / "manifests" / "overlays" / "ci")
    assert spec_problems(service, plain) == [
        "expect.rollout: strategy canary needs `track: stable` in Deployment demo's selector "
        "and pod template (see manifests/overlays/canary for the patches that do it)",
    ]
    relabelled = [
        {**o, "spec": {**o["spec"], "selector": {"track": "stable"}}} if o["kind"] == "Service"
        else o
        for o in render(service.manifests)
    ]  # fmt: skip
    assert spec_problems(service, relabelled) == [
        "expect.rollout: strategy canary needs a Service that selects Deployment demo's pods "
        "without `track`, so that it reaches the canary's too (see manifests/overlays/canary "
        "for the patches that do it)",
    ]
