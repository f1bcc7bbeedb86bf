"""Fixtures the end-to-end tests of every provider share: a namespace per module and `web`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
from harness.paths import CACHE_DIR_ENV
from harness.run import Run
from harness.scenario import load_once
from harness.wait import Pending, wait_for

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_DATA = Path(__file__).parent / "data" / "cluster"
WEB_PLACEHOLDER = "kube-harness/web-placeholder"


@pytest.hookimpl(tryfirst=True)  # before the plugin parametrizes `service_spec` by it
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The harness's own tests run against the demo service alone: its blue-green and
    canary variants in the same spec are for the scenarios that promise those releases."""
    if metafunc.definition.get_closest_marker("promises") is None:
        metafunc.definition.add_marker(pytest.mark.promises("name=demo"))


class Kubectl:
    """kubectl against the run's cluster, in one namespace."""

    def __init__(self, cluster: ClusterProvider, namespace: str) -> None:
        kubectl = ensure_binaries(["kubectl"])["kubectl"]
        self.base = [str(kubectl), "--kubeconfig", str(cluster.kubeconfig()), "-n", namespace]

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        return run([*self.base, *args], input=input, timeout=timeout)


@pytest.fixture
def temp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder in place of ~/.cache/kube-harness ($HARNESS_CACHE_DIR)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(cache))
    return cache


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


def _source_tree(dest: Path) -> Path:
    """The checkout's files (tracked and new, not ignored), as a git URL install sees them:
    the build's own build/ and *.egg-info stay out of the shared checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


# What would make another installation's Python or pytest use this checkout's settings.
LEAKS = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")


@pytest.fixture(scope="session")
def installation_env() -> dict[str, str]:
    """This process's environment without what would leak this run into a separately
    installed kube-harness (a user's virtualenv, a workflow's runner)."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in LEAKS and not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))
    }


@pytest.fixture(scope="session")
def kube_harness_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout (as `pip install git+URL` would build it)."""
    work = tmp_path_factory.mktemp("wheel-build")
    source = _source_tree(work / "source")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(source), "-w", "dist"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (work / "dist").glob("kube_harness-*.whl")
    return wheel
