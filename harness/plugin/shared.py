"""What the plugin's parts share: the keys of what they keep in `config.stash`, marker and
fixture names, and the resilience spec, read once."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

from harness import suite
from harness.cluster import ClusterOptions
from harness.errors import HarnessError
from harness.run import Run
from harness.scenario import read_spec
from harness.spec import ResilienceSpec

RUN_KEY = pytest.StashKey[Run]()
PHASE_REPORTS_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()
DIAGNOSTICS_KEY = pytest.StashKey[list[Path]]()
SPEC_KEY = pytest.StashKey[ResilienceSpec]()
BUILTIN_SUITE_KEY = pytest.StashKey[suite.Collection]()
EXPERIMENT_KEY = pytest.StashKey[dict]()
OPTIONS_KEY = pytest.StashKey[ClusterOptions]()
SERVICE_MARKER = "harness_service"
# A scenario that judges one promise of the spec runs only for the services that make it.
PROMISES_MARKER = "promises"
# How tests share the run's cluster under pytest-xdist (see harness.plugin.turns).
EXCLUSIVE_MARKER = "exclusive_cluster"
# Set by a test that runs a pytest of its own against its cluster: the cluster it holds the
# turn on (the inner run takes no turn of its own; the test is `exclusive_cluster` when the
# inner run needs the cluster alone).
TURN_HELD_ENV = "KUBE_HARNESS_CLUSTER_TURN_HELD"
CPU_MARKER = "cpu_sensitive"
E2E_MARKER = "e2e"
CLUSTER_FIXTURE = "cluster"
REPEAT_FIXTURE = "harness_repeat"


def loaded_by_entry_point() -> bool:
    """Whether pytest loads the plugin by itself: kube-harness is installed, with its
    `pytest11` entry point (a bare checkout's conftest.py loads it otherwise)."""
    return any(ep.value == "harness.plugin" for ep in entry_points(group="pytest11"))


def resilience_spec_of(config: pytest.Config) -> ResilienceSpec:
    if SPEC_KEY not in config.stash:  # validated once, at collection, before anything runs
        config.stash[SPEC_KEY] = read_spec(config.getoption("resilience_spec"), config.rootpath)
    return config.stash[SPEC_KEY]


def fail_on_harness_error(exc: HarnessError) -> None:
    pytest.fail(f"kube-harness: {exc}", pytrace=False)


def repeat_ids(repeat: int) -> list[str]:
    return [f"run{i}of{repeat}" for i in range(1, repeat + 1)]
