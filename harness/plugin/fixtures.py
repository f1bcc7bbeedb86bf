"""What a test gets on the cluster: a namespace of its own, the service deployed and
rolled out, a timeline of what happened, load, and a report folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cluster import ClusterProvider
from harness.deploy import Deployed
from harness.diagnostics import collect_diagnostics
from harness.errors import HarnessError
from harness.kube import Kube
from harness.load import Load
from harness.load.cluster import ClusterSite
from harness.namespaces import create_namespace, delete_namespace, namespace_name
from harness.observe import TimelineRecorder
from harness.plugin.shared import (
    DIAGNOSTICS_KEY,
    PHASE_REPORTS_KEY,
    SERVICE_MARKER,
    fail_on_harness_error,
    resilience_spec_of,
)
from harness.run import Run
from harness.scenario import (
    deploy_service,
    provide_images,
    provide_load_image,
)
from harness.spec import ResilienceSpec, ServiceSpec


@pytest.fixture
def test_report_dir(request: pytest.FixtureRequest, harness_run: Run) -> Path:
    """reports/<run-id>/<test-id>/ for this test's own output (created on first use)."""
    path = harness_run.test_directory(request.node.nodeid)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def load_image(cluster: ClusterProvider) -> str:
    """The load image (Locust and the harness's recorder from this venv), built on this
    machine and loaded into the run's cluster: for load from the cluster."""
    return provide_load_image(cluster)


@pytest.fixture
def load(request: pytest.FixtureRequest, test_report_dir: Path) -> Iterator[Load]:
    """Locust load against a URL: `with load.run(url, Ramp(...)) as run: ...; run.result()`.

    Every run keeps Locust's CSV/HTML output and its event record in the test's report folder;
    a run still going when the test ends is stopped.
    """

    def site() -> ClusterSite:  # the cluster's fixtures only when load runs there
        return ClusterSite(
            request.getfixturevalue("kube_api"),
            request.getfixturevalue("namespace"),
            request.getfixturevalue("load_image"),
        )

    with Load(
        test_report_dir,
        workers=request.config.getoption("load_workers"),
        placement=request.config.getoption("load_placement"),
        cluster_site=site,
    ) as runs:
        yield runs


@pytest.fixture
def namespace(
    request: pytest.FixtureRequest, kube_api: Kube, cluster: ClusterProvider, harness_run: Run
) -> Iterator[str]:
    """A fresh namespace for this test, labelled as the harness's; deleted afterwards.

    When the test fails, a diagnostics bundle is written to
    reports/<run-id>/<test-id>/diagnostics/ first; with --keep-failed-namespaces the
    namespace is then kept for inspection.
    """
    name = namespace_name(harness_run.run_id)
    create_namespace(kube_api, name, run_id=harness_run.run_id, test=request.node.nodeid)
    yield name
    phases = request.node.stash.get(PHASE_REPORTS_KEY, {})
    failed = any(report.failed for report in phases.values())
    try:
        if failed:
            dest = harness_run.test_directory(request.node.nodeid) / "diagnostics"
            collect_diagnostics(kube_api, name, dest, cluster)
            request.config.hook.pytest_harness_collect_diagnostics(
                kube=kube_api, namespace=name, dest=dest
            )
            request.config.stash[DIAGNOSTICS_KEY].append(dest)
    finally:  # diagnostics that break (an API that stopped answering) keep nothing behind
        if not (failed and request.config.getoption("keep_failed_namespaces")):
            delete_namespace(kube_api, name)


@pytest.fixture(scope="session")
def resilience_spec(request: pytest.FixtureRequest) -> ResilienceSpec:
    """The validated resilience spec (--resilience-spec, default: the demo service's)."""
    return resilience_spec_of(request.config)


@pytest.fixture
def service_spec(request: pytest.FixtureRequest, resilience_spec: ResilienceSpec) -> ServiceSpec:
    """The service named by the test's `harness_service` marker, else the spec's first.

    Scenario functions that ask for `service_spec` are parametrized with every service
    instead (pytest_generate_tests), which takes precedence over this fixture.
    """
    marker = request.node.get_closest_marker(SERVICE_MARKER)
    return resilience_spec.service(marker.args[0]) if marker else resilience_spec.services[0]


@pytest.fixture(scope="session")
def service_images(cluster: ClusterProvider, resilience_spec: ResilienceSpec) -> list[Path]:
    """The images the spec asks the harness to build, built and loaded into the cluster."""
    try:
        return provide_images(cluster, resilience_spec)
    except HarnessError as exc:
        fail_on_harness_error(exc)
        raise


@pytest.fixture
def timeline(kube_api: Kube, namespace: str, test_report_dir: Path) -> Iterator[TimelineRecorder]:
    """Records the test namespace's pods, workloads, HPAs, endpoints, events and the nodes to
    reports/<run-id>/<test-id>/timeline.jsonl; `timeline.mark(...)` adds the test's own events."""
    with TimelineRecorder(kube_api, namespace, test_report_dir / "timeline.jsonl") as recorder:
        yield recorder


@pytest.fixture
def deployed(
    request: pytest.FixtureRequest,
    cluster: ClusterProvider,
    kube_api: Kube,
    namespace: str,
    service_spec: ServiceSpec,
    service_images: list[Path],
    timeline: TimelineRecorder,
) -> Iterator[Deployed]:
    """The spec's service deployed into the test namespace and rolled out; removed afterwards."""
    try:
        placement = request.config.getoption("load_placement") or service_spec.load.placement
        service = deploy_service(
            cluster, kube_api, namespace, service_spec, load_placement=placement
        )
    except HarnessError as exc:
        fail_on_harness_error(exc)
        raise
    timeline.mark("deployed", base_url=service.base_url)
    yield service
    service.teardown()
