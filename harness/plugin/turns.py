"""How tests take turns on the run's cluster under pytest-xdist."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from harness.cluster import ClusterProvider
from harness.errors import HarnessError
from harness.locks import file_lock
from harness.paths import lock_file
from harness.plugin.shared import CPU_MARKER, EXCLUSIVE_MARKER, RUN_KEY, TURN_HELD_ENV


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # xdist: every worker shares the controller's run
    node.workerinput["harness_run_id"] = node.config.stash[RUN_KEY].run_id


@pytest.fixture(autouse=True)
def _cluster_turn(request: pytest.FixtureRequest) -> Iterator[None]:
    """Share the run's cluster between pytest-xdist workers safely.

    A test that uses the cluster holds a shared lock for its whole setup, call and teardown;
    one marked `exclusive_cluster` holds it alone (nothing else runs on the cluster meanwhile),
    and one marked `cpu_sensitive` also holds the CPU lock, so that no two HPA or capacity
    measurements overlap. Without xdist every lock is free at once.

    An exclusive test may leave the cluster recovering (a kubelet restarted, a node back):
    it hands its turn on only once the cluster is Ready again (`wait_ready`), so that the
    next test does not start on, or get blamed for, what it left.
    """
    node = request.node
    exclusive = node.get_closest_marker(EXCLUSIVE_MARKER) is not None
    if "cluster" not in request.fixturenames and not exclusive:
        yield
        return
    name = request.getfixturevalue("cluster_options").name
    with ExitStack() as held:
        # A pytest run by a test of another (an example suite) gets its turn from that test:
        # waiting for the lock its parent holds would wait forever.
        if os.environ.get(TURN_HELD_ENV) != name:
            held.enter_context(file_lock(lock_file(f"use-{name}.lock"), shared=not exclusive))
        if node.get_closest_marker(CPU_MARKER) is not None:
            held.enter_context(file_lock(lock_file(f"cpu-{name}.lock")))
        yield
        if exclusive and "cluster" in request.fixturenames:
            _hand_on_ready(request.getfixturevalue("cluster"), node.nodeid)


# Long enough for a restarted kubelet's pods to pass their readiness probes again (the
# provider's wait_ready takes it for the nodes, then for the add-ons).
READY_AGAIN_WITHIN_S = 180


def _hand_on_ready(cluster: ClusterProvider, test: str) -> None:
    try:
        cluster.wait_ready(timeout=READY_AGAIN_WITHIN_S)
    except HarnessError as exc:
        raise HarnessError(
            f"{test} held the cluster alone and left it not ready: {exc.message}",
            fix="revert what the test changed on the cluster (its nodes, components and "
            "kube-system) before it ends",
        ) from None
