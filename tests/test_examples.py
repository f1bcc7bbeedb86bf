"""The example services under examples/: each is a service this project did not write, held to
what its authors' own manifests promise, with no change to them.

The end-to-end test runs the built-in scenario suite against the example on the run's
cluster, in a pytest of its own, and compares every item's outcome with what the service's
manifests lead to: a promise kept passes, a promise broken fails with a sentence that says
why, a promise the harness cannot test skips with the reason.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
from suite_runs import run_example, spec_variant

from harness.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCENARIOS = ROOT / "scenarios"


def recorded_digests(source_md: Path) -> dict[str, str]:
    return dict(
        (name, digest)
        for digest, name in (
            (m[2], m[1])
            for m in re.finditer(r"sha256 (\S+)\s+([0-9a-f]{64})", source_md.read_text())
        )
    )


@pytest.mark.parametrize(
    "source_md", sorted(EXAMPLES.glob("*/*/SOURCE.md")), ids=lambda p: p.parent.parent.name
)
def test_example_manifests_are_the_authors_unchanged(source_md: Path) -> None:
    digests = recorded_digests(source_md)
    assert digests, f"{source_md} records no sha256 digests"
    for name, digest in digests.items():
        actual = hashlib.sha256((source_md.parent / name).read_bytes()).hexdigest()
        assert actual == digest, f"{source_md.parent / name} differs from the author's file"


@pytest.mark.parametrize(
    "spec", sorted(EXAMPLES.glob("*/*.spec.yaml")), ids=lambda p: p.parent.name
)
def test_example_specs_are_valid(spec: Path) -> None:
    assert load_spec(spec).services


# The skips a suite run may show, and why: none. A scenario whose promise a spec does not
# make is not collected for it (`promises` marker), so what is left runs.
NO_SKIPS: dict[str, str] = {}
# Faults of the harness's own that must work on a service without admin hooks, whatever
# the timing (the others' error rates with one replica sit near their limits: they pass,
# or fail saying why): a liveness probe made to fail, and a start-up slowed by 20s that
# liveness' 3 x 10s allows.
HTTPBIN_PASSES = (
    "test_failing_liveness_restarts_the_container",
    "test_slow_starter_is_protected_by_its_startup_probe",
)


def unexplained(found: Mapping[str, tuple[str, str]], skips: Mapping[str, str]) -> list[str]:
    """Items that neither passed, nor failed saying why, nor skipped for an expected reason."""
    bad = []
    for name, (outcome, message) in found.items():
        if outcome == "failed" and "why: " not in message:
            bad.append(f"{name} failed without saying why: {message[:300]}")
        elif outcome == "skipped" and skips.get(name, "\0") not in message:
            bad.append(f"{name} skipped: {message[:300]}")
        elif outcome == "error":
            bad.append(f"{name} errored: {message[:300]}")
    return bad


def assert_suite_outcomes(
    found: Mapping[str, tuple[str, str]],
    findings: Mapping[str, str],
    skips: Mapping[str, str],
    passes: tuple[str, ...],
) -> None:
    """A whole suite's outcomes as the service's manifests lead to them: each item in
    `findings` fails naming its finding, each in `passes` passes, and the rest pass, fail
    saying why, or skip for the reason in `skips`."""
    for name, finding in findings.items():
        assert found[name][0] == "failed" and finding in found[name][1], found[name][1][:3000]
    rest = {k: v for k, v in found.items() if k not in findings}
    assert unexplained(rest, skips) == []
    for name in passes:
        assert found[name][0] == "passed", found[name][1][:3000]


def test_unexplained_outcomes_are_found() -> None:
    found = {
        "a": ("passed", ""),
        "b": ("failed", "FAILED x\n  why: one replica"),
        "c": ("failed", "FAILED x"),
        "d": ("skipped", "the spec promises no start-up"),
        "e": ("skipped", "the harness cannot do this"),
        "f": ("error", "boom"),
    }
    assert [line.split(" ")[0] for line in unexplained(found, {"d": "promises no start-up"})] == [
        "c",
        "e",
        "f",
    ]


HTTPBIN = EXAMPLES / "go-httpbin" / "go-httpbin.spec.yaml"


def test_go_httpbin_as_its_authors_ship_it(
    pytester: pytest.Pytester, monkeypatch, cluster, test_report_dir
) -> None:
    """Self-healing and probes on go-httpbin's own kustomization: every promise is kept or
    broken with a sentence that says why; the harness's own probe fault works on it."""
    found = run_example(
        pytester,
        monkeypatch,
        cluster,
        test_report_dir,
        HTTPBIN,
        "test_self_healing.py",
        "test_probes.py",
    )
    assert unexplained(found, NO_SKIPS) == []
    for name in HTTPBIN_PASSES:
        assert found[name][0] == "passed", found[name][1][:2000]
    # One replica, as shipped: a deleted pod leaves nothing serving, and the finding says so.
    deleted = found["test_deleted_pod_is_replaced"]
    assert deleted[0] == "passed" or "runs 1 replica" in deleted[1], deleted[1][:2000]


@pytest.mark.test_all
def test_go_httpbin_rollouts_and_capacity(
    pytester: pytest.Pytester, monkeypatch, cluster, test_report_dir
) -> None:
    """Rollouts (and the broken image) and the capacity scenario on go-httpbin as shipped."""
    found = run_example(
        pytester,
        monkeypatch,
        cluster,
        test_report_dir,
        HTTPBIN,
        "test_zero_downtime_rollout.py",
        "test_capacity.py",
    )
    assert unexplained(found, NO_SKIPS) == []
    # The default progress deadline (600s) cannot report a stuck rollout within the spec's 60s.
    stuck = found["test_broken_image_is_detected_and_rolled_back"]
    assert stuck[0] == "failed" and "progressDeadlineSeconds is 600s" in stuck[1], stuck[1][:2000]


DEMO_SPEC = SCENARIOS / "demo-service.spec.yaml"


def cpu_pressure_variant(directory: Path) -> Path:
    """The demo's spec with no CPU-heavy path to load: its HPA driven by cpu-pressure."""
    return spec_variant(
        DEMO_SPEC,
        directory,
        ("../manifests/overlays/", f"{ROOT / 'manifests' / 'overlays'}/"),
        ("cpu_path: /work?ms=60", "cpu_path: /"),
        ("        max_direction_changes: 2\n", "        max_direction_changes: 2\n"
                                             "        driver: cpu-pressure\n"),
    )  # fmt: skip


def test_the_cpu_pressure_variant_is_valid(tmp_path: Path) -> None:
    service = load_spec(cpu_pressure_variant(tmp_path)).service("demo")
    assert (service.hpa.driver, service.load.cpu_path) == ("cpu-pressure", "/")


def test_cpu_pressure_drives_the_hpa_of_a_service_without_a_cpu_heavy_path(
    pytester: pytest.Pytester, monkeypatch, cluster, test_report_dir
) -> None:
    spec = cpu_pressure_variant(pytester.path)
    found = run_example(
        pytester, monkeypatch, cluster, test_report_dir, spec, "test_hpa_scaling.py"
    )
    (outcome, message) = found["test_hpa_scales_up_under_cpu_load_and_back_down"]
    assert outcome == "passed", message[:3000]


def longer_start_variant(directory: Path) -> Path:
    """go-httpbin's spec promising a 45s start-up: longer than its liveness probe allows."""
    return spec_variant(
        HTTPBIN,
        directory,
        ("manifests: kustomize", f"manifests: {HTTPBIN.parent / 'kustomize'}"),
        ("startup_delay: 20s", "startup_delay: 45s"),
    )


def test_the_longer_start_variant_is_valid(tmp_path: Path) -> None:
    (service,) = load_spec(longer_start_variant(tmp_path)).services
    assert service.probes.startup_delay_s == 45


def test_a_start_longer_than_liveness_allows_fails_saying_why(
    pytester: pytest.Pytester, monkeypatch, cluster, test_report_dir
) -> None:
    """The harness slows go-httpbin's start-up by 45s; with no startup probe, its liveness
    probe (3 x 10s) restarts it first: the scenario fails, naming that."""
    spec = longer_start_variant(pytester.path)
    found = run_example(
        pytester,
        monkeypatch,
        cluster,
        test_report_dir,
        spec,
        "test_probes.py::test_slow_starter_is_protected_by_its_startup_probe",
    )
    outcome, message = found["test_slow_starter_is_protected_by_its_startup_probe"]
    assert outcome == "failed", message[:3000]
    assert "restarts of slow starters" in message
    assert "why: container httpbin has no startupProbe" in message, message[:3000]


GUBERNATOR = EXAMPLES / "gubernator" / "gubernator.spec.yaml"
# What gubernator's chart as shipped cannot keep, and the finding each failure must name.
GUBERNATOR_FINDINGS = {
    "test_new_version_rolls_out_without_failed_requests": "has no readiness probe: new pods "
    "take traffic before they answer",
    "test_broken_image_is_detected_and_rolled_back": "progressDeadlineSeconds is 600s",
    "drain-blocked-by-pdb": "the drain evicted every replica: no PodDisruptionBudget selects",
    "partition-one-replica": "its container gubernator has no readiness probe, so nothing "
    "takes it out",
}


@pytest.mark.test_all
@pytest.mark.exclusive_cluster  # the suite drains and stops nodes
def test_gubernator_as_its_authors_chart_ships_it(
    pytester: pytest.Pytester, monkeypatch, cluster, test_report_dir
) -> None:
    """The whole built-in suite and every experiment on gubernator's Helm chart, installed
    by Helm: its HPA scales on CPU the harness raises, it heals, and what the chart lacks
    (probes, a PodDisruptionBudget, a short progress deadline) fails with that finding."""
    found = run_example(pytester, monkeypatch, cluster, test_report_dir, GUBERNATOR, ".")
    assert_suite_outcomes(
        found,
        GUBERNATOR_FINDINGS,
        NO_SKIPS,
        ("test_hpa_scales_up_under_cpu_load_and_back_down", "container-kill"),
    )


KUBE_STATE_METRICS = EXAMPLES / "kube-state-metrics" / "kube-state-metrics.spec.yaml"
# What kube-state-metrics' plain manifests as shipped (one replica, no PodDisruptionBudget)
# cannot keep under the experiments, and the finding each failure must name; its scenarios'
# failures say why by themselves (one replica, no preStop hook, the default progress deadline).
KUBE_STATE_METRICS_FINDINGS = {
    "container-kill": "Deployment kube-state-metrics runs 1 replica",
    "pod-kill-under-load": "Deployment kube-state-metrics runs 1 replica",
    "drain-blocked-by-pdb": "the drain evicted every replica: no PodDisruptionBudget selects",
    "partition-one-replica": "no replica of kube-state-metrics was in the Service's endpoints",
}
# Its httpGet probes (liveness on the metrics port, readiness on the telemetry port), made to
# fail by the harness, and a start-up slowed within what liveness allows.
KUBE_STATE_METRICS_PASSES = (
    "test_failing_readiness_removes_the_pod_from_traffic",
    "test_failing_liveness_restarts_the_container",
    "test_slow_starter_is_protected_by_its_startup_probe",
)


@pytest.mark.test_all
@pytest.mark.exclusive_cluster  # the suite drains and stops nodes
def test_kube_state_metrics_as_its_plain_manifests_ship_it(
    pytester: pytest.Pytester, monkeypatch, cluster, test_report_dir
) -> None:
    """The whole built-in suite and every experiment on kube-state-metrics' plain manifest
    files: its ClusterRole and binding per test namespace, its probes failed by the harness,
    and what one replica without a PodDisruptionBudget cannot keep, failing with that."""
    found = run_example(pytester, monkeypatch, cluster, test_report_dir, KUBE_STATE_METRICS, ".")
    assert_suite_outcomes(found, KUBE_STATE_METRICS_FINDINGS, NO_SKIPS, KUBE_STATE_METRICS_PASSES)


PODINFO = EXAMPLES / "podinfo" / "podinfo.spec.yaml"
# Its exec probes (`podcli check http localhost:9898/...`), made to fail by the harness
# dropping what they send to localhost inside the pod (over IPv4 and IPv6), and a start-up
# slowed within what its liveness probe allows.
PODINFO_PROBES = (
    "test_failing_readiness_removes_the_pod_from_traffic",
    "test_failing_liveness_restarts_the_container",
    "test_slow_starter_is_protected_by_its_startup_probe",
)


def test_podinfo_exec_probes_fail_through_the_harness(
    pytester: pytest.Pytester, monkeypatch, cluster, test_report_dir
) -> None:
    """podinfo's own kustomization, its images laid out as its Dockerfile lays them out
    (podinfo and podcli, workdir /home/app): each exec probe fails when the harness makes it
    fail, and the kubelet acts on it as the spec promises."""
    found = run_example(pytester, monkeypatch, cluster, test_report_dir, PODINFO, "test_probes.py")
    for name in PODINFO_PROBES:
        assert found[name][0] == "passed", found[name][1][:3000]


# What podinfo's kustomization as shipped cannot keep, and the finding each failure names.
PODINFO_FINDINGS = {
    "drain-blocked-by-pdb": "the drain evicted every replica: no PodDisruptionBudget selects",
    "partition-one-replica": "its readiness probe is an exec probe that dials localhost",
}


@pytest.mark.test_all
@pytest.mark.exclusive_cluster  # the suite drains and stops nodes
def test_podinfo_as_its_kustomization_ships_it(
    pytester: pytest.Pytester, monkeypatch, cluster, test_report_dir
) -> None:
    """The whole built-in suite and every experiment on podinfo's kustomization: its HPA
    (2-4) scales on the CPU the harness raises, it heals and rolls out without a failed
    request, and what it lacks fails with that finding (no PodDisruptionBudget; exec probes
    that a partition does not reach)."""
    found = run_example(pytester, monkeypatch, cluster, test_report_dir, PODINFO, ".")
    assert_suite_outcomes(
        found,
        PODINFO_FINDINGS,
        NO_SKIPS,
        (*PODINFO_PROBES, "test_hpa_scales_up_under_cpu_load_and_back_down"),
    )
