"""The plugin's command-line options (one "kube-harness" group, beside pytest-kind's) and
the cluster options they make, checked before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cluster import (
    CHOICES,
    ClusterOptions,
)
from harness.cluster.provider import DEFAULT_CLUSTER_NAME, PYTEST_KIND_DEFAULT_NAME
from harness.errors import InvalidConfiguration
from harness.load.runner import PLACEMENTS
from harness.spec import MAX_LOAD_WORKERS


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(
        "kube-harness",
        "kube-harness (also uses pytest-kind's "
        "--cluster-name, --keep-cluster, --kubeconfig, --kind-image)",
    )
    group.addoption(
        "--cluster-provider",
        choices=CHOICES,
        default=None,
        help="where the cluster comes from (default: $HARNESS_PROVIDER, else detected: "
        "--kubeconfig given -> existing, Docker able to run kind -> kind, else local)",
    )
    group.addoption(
        "--cluster-context", default=None, help="kubeconfig context (existing provider)"
    )
    group.addoption(
        "--cluster-workers",
        type=int,
        default=0,
        help="worker nodes besides the control plane (kind)",
    )
    group.addoption(
        "--load-workers",
        type=int,
        default=None,
        metavar="N",
        help="send every load run from Locust's distributed mode, a master and N workers "
        "(0: one Locust process; default: the spec's load.workers, else 0)",
    )
    group.addoption(
        "--load-placement",
        choices=PLACEMENTS,
        default=None,
        help="where every load run's Locust runs: host (this machine, through a NodePort on "
        "127.0.0.1) or cluster (pods in the test's namespace, through the Service's name; "
        "default: the spec's load.placement, else host)",
    )
    group.addoption(
        "--allow-chaos-on-existing",
        action="store_true",
        help="allow faults against an existing cluster (only in harness namespaces)",
    )
    group.addoption(
        "--keep-failed-namespaces",
        action="store_true",
        help="keep the namespace of a failing test for debugging",
    )
    group.addoption(
        "--reports-dir", default="reports", help="folder for reports/<run-id>/ (default: reports)"
    )
    group.addoption("--run-id", default=None, help="run id (default: generated)")
    group.addoption(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run every scenario and experiment N times; the report counts passes per "
        "scenario, so a flaky one shows as flaky",
    )
    group.addoption(
        "--experiment-service",
        default=None,
        metavar="NAME",
        help="run every experiment against this service of the spec (default: the one its "
        "kube-harness extension names, else the spec's first)",
    )
    group.addoption(
        "--resilience-spec",
        default=None,
        help="the services and promises the scenarios check; also collects kube-harness's "
        "built-in scenarios and experiments (default: scenarios/demo-service.spec.yaml under "
        "the rootdir, else the demo service's spec shipped with kube-harness)",
    )
    group.addoption(
        "--no-builtin-suite",
        action="store_true",
        help="with --resilience-spec: collect only the paths given (or testpaths), not the "
        "built-in scenarios and experiments",
    )
    group.addoption(
        "--builtin-suite-only",
        action="store_true",
        help="collect only the built-in scenarios and experiments (select with -m or -k)",
    )


def checked_options(config: pytest.Config) -> ClusterOptions:
    """The cluster asked for, with bad counts and a bad cluster name refused before anything
    runs, not when the first test that needs them starts.

    Raises:
        InvalidConfiguration: naming the option and the fix.
    """
    repeat, load_workers = config.getoption("repeat"), config.getoption("load_workers")
    if repeat < 1:
        raise InvalidConfiguration(
            f"--repeat needs N >= 1, not {repeat}", fix="give how many times each test runs"
        )
    if load_workers is not None and not 0 <= load_workers <= MAX_LOAD_WORKERS:
        raise InvalidConfiguration(
            f"--load-workers={load_workers} is not a worker count",
            fix=f"give 0 (one Locust process) to {MAX_LOAD_WORKERS} (a master and N workers)",
        )
    return cluster_options_from(config)  # checks --cluster-name, --cluster-workers


def cluster_options_from(config: pytest.Config) -> ClusterOptions:
    opt = config.getoption
    name, kubeconfig = opt("cluster_name"), opt("kubeconfig")
    return ClusterOptions(
        name=DEFAULT_CLUSTER_NAME if name == PYTEST_KIND_DEFAULT_NAME else name,
        workers=opt("cluster_workers"),
        kubeconfig=Path(kubeconfig) if kubeconfig else None,
        context=opt("cluster_context"),
        node_image=opt("kind_image"),
        allow_chaos=opt("allow_chaos_on_existing"),
    )
