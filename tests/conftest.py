"""Fixtures the end-to-end tests of every provider share: a namespace per module and `web`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from harness.cluster.build import ensure_binaries
from harness.cluster.provider import ClusterProvider
from harness.commands import run
from harness.deploy import Deployed, deploy
from harness.images.builders import busybox_image
from harness.kube import Kube
from harness.namespaces import create_namespace, namespace_name
from harness.run import Run
from harness.scenario import load_once
from harness.wait import Pending, wait_for

CLUSTER_DATA = Path(__file__).parent / "data" / "cluster"
WEB_PLACEHOLDER = "kube-harness/web-placeholder"


class Kubectl:
    """kubectl against the run's cluster, in one namespace."""

    def __init__(self, cluster: ClusterProvider, namespace: str) -> None:
        kubectl = ensure_binaries(["kubectl"])["kubectl"]
        self.base = [str(kubectl), "--kubeconfig", str(cluster.kubeconfig()), "-n", namespace]

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        return run([*self.base, *args], input=input, timeout=timeout)


@pytest.fixture(scope="module")
def module_namespace(
    kube_api: Kube, harness_run: Run, request: pytest.FixtureRequest
) -> Iterator[str]:
    """One namespace for a whole test module (the plugin's `namespace` is per test)."""
    name = namespace_name(harness_run.run_id)
    create_namespace(kube_api, name, run_id=harness_run.run_id, test=request.module.__name__)
    yield name
    kube_api.core.delete_namespace(name)

    def gone() -> bool | Pending:
        try:
            phase = kube_api.core.read_namespace(name).status.phase
        except client.ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return Pending(f"namespace {name} is {phase}")

    wait_for(gone, what=f"namespace {name} to be deleted", timeout=120)


@pytest.fixture(scope="module")
def web(cluster: ClusterProvider, kube_api: Kube, module_namespace: str) -> Deployed:
    """The `web` Deployment (2 busybox httpd pods answering their names), a NodePort Service
    on 127.0.0.1 and an HPA on CPU, deployed the way the scenarios deploy services."""
    archive, ref = busybox_image()
    load_once(cluster, [archive])
    return deploy(kube_api, module_namespace, CLUSTER_DATA / "web", images={WEB_PLACEHOLDER: ref})


@pytest.fixture(scope="module")
def kubectl(cluster: ClusterProvider, module_namespace: str) -> Kubectl:
    return Kubectl(cluster, module_namespace)
