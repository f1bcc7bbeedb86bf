"""Hooks the kube-harness pytest plugin calls; implement them in a conftest.py or plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cluster.provider import ClusterProvider
from harness.kube import Kube


@pytest.hookspec
def pytest_harness_cluster_ready(cluster: ClusterProvider, kube: Kube) -> None:
    """Called once per session when the cluster is up and every node is Ready."""


@pytest.hookspec
def pytest_harness_collect_diagnostics(kube: Kube, namespace: str, dest: Path) -> None:
    """Called for a failing test after the built-in bundle is written; add files under `dest`."""
