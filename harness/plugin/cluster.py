"""The run's cluster: chosen, created once for every xdist worker under a lock, cleared of
what killed runs left, and deleted at the end unless --keep-cluster."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cluster import (
    ClusterOptions,
    ClusterProvider,
    NodeLifecycle,
    Selection,
    bring_up,
    delete_cluster,
    make_provider,
    select_provider,
)
from harness.cluster.provider import lacks
from harness.errors import HarnessError
from harness.kube import Kube
from harness.paths import cache_dir
from harness.plugin.shared import OPTIONS_KEY, RUN_KEY, fail_on_harness_error
from harness.run import Run


@pytest.fixture(scope="session")
def harness_run(request: pytest.FixtureRequest) -> Run:
    """This run's id and report folder (shared by all xdist workers)."""
    return request.config.stash[RUN_KEY]


@pytest.fixture(scope="session")
def cluster_options(request: pytest.FixtureRequest) -> ClusterOptions:
    """The cluster asked for on the command line."""
    return request.config.stash[OPTIONS_KEY]


@pytest.fixture(scope="session")
def cluster_selection(request: pytest.FixtureRequest, cluster_options: ClusterOptions) -> Selection:
    """Which provider this run uses and why (option, environment or detection)."""
    try:
        return select_provider(
            request.config.getoption("cluster_provider"), kubeconfig=cluster_options.kubeconfig
        )
    except HarnessError as exc:
        fail_on_harness_error(exc)
        raise


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest,
    harness_run: Run,
    cluster_selection: Selection,
    cluster_options: ClusterOptions,
) -> ClusterProvider:
    """The run's cluster, created (or reused) and Ready, with no fault a killed run left.

    Under pytest-xdist every worker asks for it; the first creates it under a file lock and
    the others reuse it. It is deleted once, by the main process at the end of the run,
    unless --keep-cluster is given.
    """
    try:
        provider = make_provider(cluster_selection.name, cluster_options)
        bring_up(provider)
    except HarnessError as exc:
        fail_on_harness_error(exc)
        raise
    run_cluster_file(harness_run).parent.mkdir(parents=True, exist_ok=True)
    run_cluster_file(harness_run).write_text(provider.name)
    return provider


def run_cluster_file(run: Run) -> Path:
    """Where a run notes which provider brought its cluster up, for the final teardown."""
    return cache_dir() / "runs" / run.run_id / "cluster-provider"


def tear_down_cluster(config: pytest.Config) -> None:
    marker = run_cluster_file(config.stash[RUN_KEY])
    if not marker.exists():
        return
    provider_name = marker.read_text()
    shutil.rmtree(marker.parent, ignore_errors=True)
    if config.getoption("keep_cluster"):
        return
    options = config.stash[OPTIONS_KEY]
    provider = make_provider(provider_name, options)
    if provider.capabilities.creates_clusters:
        delete_cluster(provider)


@pytest.fixture(scope="session")
def kube_api(request: pytest.FixtureRequest, cluster: ClusterProvider) -> Iterator[Kube]:
    """API clients for the session's cluster (`kube_api.core`, `kube_api.apps`,
    `kube_api.autoscaling`...); not `kube`, which is kubetest's fixture."""
    api = Kube(cluster.kubeconfig(), request.config.getoption("cluster_context"))
    request.config.hook.pytest_harness_cluster_ready(cluster=cluster, kube=api)
    yield api
    api.close()


@pytest.fixture
def node_lifecycle(cluster: ClusterProvider) -> NodeLifecycle:
    """The cluster's node stop/start ability; skips the test where the provider lacks it."""
    if cannot := lacks(cluster, NodeLifecycle):
        pytest.skip(cannot)
    return cluster  # type: ignore[return-value]
