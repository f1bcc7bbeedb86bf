"""Chaos Toolkit actions: the harness's faults as `python` activities of experiment files.

Each takes the `configuration` Chaos Toolkit passes and finds its cluster, namespace and
service in the keys the harness's runner sets (`harness chaos run` and the pytest items do):

    harness_kubeconfig, harness_cluster_provider, harness_cluster_name, harness_namespace,
    harness_deployment, harness_selector, harness_base_url, harness_container,
    harness_allow_chaos (optional, the --allow-chaos-on-existing opt-in);
    the spec's times: harness_ready_within_s (self_healing.ready_within),
    harness_leaves_endpoints_within_s (probes.readiness_leaves_endpoints_within),
    harness_request_timeout_s (load.timeout);
    harness_pods_at_start (the service's pods and their restarts as the experiment began).

Experiment files declare none of them: the harness sets them for every run, so a file
validates anywhere (`chaos validate FILE`) and names no service. An activity run without
them (a plain `chaos run`) is refused with the key it misses. There, the keys come from the
experiment or the environment, so a claimed `local` or `kind` provider (which turns on node
faults on this machine's cluster of that name) is checked against the cluster the kubeconfig
reaches: its nodes must be the ones that provider runs here.

Faults that stay in place are in the ledger; an experiment's rollbacks call
`revert_faults` (and the runner reverts whatever is left in any case).

Example (experiment file):
    {"type": "action", "name": "cut off one pod",
     "provider": {"type": "python", "module": "harness.chaos.actions",
                  "func": "partition_one_pod"}}
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from chaoslib.types import Configuration

from harness.chaos import faults
from harness.chaos.faults import NotInjectable, Target
from harness.cluster import make_provider
from harness.cluster.provider import (
    ClusterOptions,
    ClusterProvider,
    ComponentControl,
    NodeLifecycle,
    NodeShell,
)
from harness.errors import InvalidConfiguration
from harness.kube import Kube

__all__ = [
    "cpu_hog",
    "crash_via_service",
    "drain_node",
    "fail_dns",
    "kill_container",
    "kill_pods",
    "memory_pressure",
    "partition_one_pod",
    "restart_component",
    "revert_faults",
    "stop_component",
]

REQUIRED_KEYS = (
    "harness_kubeconfig",
    "harness_cluster_provider",
    "harness_cluster_name",
    "harness_namespace",
    "harness_selector",
)


def setting(configuration: Configuration | None, key: str) -> Any:
    """One harness key of the configuration.

    Raises:
        InvalidConfiguration: the key is not set (the experiment was not run by the harness).
    """
    value = (configuration or {}).get(key)
    if value in (None, ""):
        raise InvalidConfiguration(
            f"the experiment's configuration has no {key}",
            fix="run the experiment with `harness chaos run` or as a pytest item, which set "
            "the harness_* keys",
        )
    return value


# The claims `verify_provider` has checked in this process: once per run, not per activity
# (a probe run while the API server is stopped must not fail on the check).
_VERIFIED: set[tuple[str, str, str]] = set()


@contextmanager
def harness_target(configuration: Configuration | None, *, verify: bool = True) -> Iterator[Target]:
    """The Target the configuration names, with an API client closed afterwards.

    `verify`: check the claimed provider against the cluster first (`verify_provider`), once
    per claim; reverting skips it (it only undoes what the ledger of that cluster holds, and
    must work while the API is down).
    """
    for key in REQUIRED_KEYS:
        setting(configuration, key)
    config = configuration or {}
    kubeconfig = Path(config["harness_kubeconfig"])
    options = ClusterOptions(
        name=config["harness_cluster_name"],
        kubeconfig=kubeconfig,
        allow_chaos=str(config.get("harness_allow_chaos", "")).lower() in ("1", "true", "yes"),
    )
    cluster = make_provider(config["harness_cluster_provider"], options)
    kube = Kube(kubeconfig)
    claim = (cluster.name, cluster.options.name, str(kubeconfig))
    try:
        if verify and claim not in _VERIFIED:
            verify_provider(cluster, kube)
            _VERIFIED.add(claim)
        yield Target.of(cluster, kube, config["harness_namespace"])
    finally:
        kube.close()


def verify_provider(cluster: ClusterProvider, kube: Kube) -> None:
    """Check that `kube` reaches the cluster `cluster`'s provider runs on this machine.

    Raises:
        InvalidConfiguration: its nodes are not the provider's (another cluster's kubeconfig,
            or a provider claimed for a cluster it does not run).
    """
    if not cluster.capabilities.creates_clusters or not isinstance(cluster, NodeLifecycle):
        return  # an existing cluster's provider acts through the API only
    runs = set(cluster.nodes())
    served = {node.metadata.name for node in kube.core.list_node(_request_timeout=30).items}
    if not runs or runs != served:
        raise InvalidConfiguration(
            f"the configuration names the {cluster.name} cluster {cluster.options.name}, whose "
            f"nodes here are {', '.join(sorted(runs)) or 'none'}, but {kube.kubeconfig} reaches "
            f"a cluster with nodes {', '.join(sorted(served)) or 'none'}",
            fix="run the experiment with `harness chaos run` (it sets these keys from the "
            "active cluster), or name the provider and cluster the kubeconfig belongs to "
            "(harness_cluster_provider: existing for a cluster the harness did not create)",
        )


def ready_service_pods(t: Target, selector: str) -> list[str]:
    """Names of the Ready, not terminating pods matching `selector`, sorted."""
    pods = t.kube.core.list_namespaced_pod(t.namespace, label_selector=selector).items
    return sorted(
        p.metadata.name
        for p in pods
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    )


def _one_pod(t: Target, configuration: Configuration | None) -> str:
    pods = ready_service_pods(t, setting(configuration, "harness_selector"))
    if not pods:
        raise NotInjectable(
            f"no Ready pod of the service in {t.namespace}",
            fix="check the experiment's steady state: the service must run before a fault",
        )
    return random.choice(pods)


Action = TypeVar("Action", bound=Callable[..., Any])


def needs(ability: type) -> Callable[[Action], Action]:
    """Declare the provider ability (`harness.cluster.provider.ABILITIES`) an action cannot
    run without, so an experiment that uses it is refused up front where it is missing."""

    def declare(action: Action) -> Action:
        action.needs = ability  # type: ignore[attr-defined]
        return action

    return declare


def ability_needed(action: str) -> type | None:
    """The ability the action named `action` declared with `needs`, if any."""
    return getattr(globals().get(action), "needs", None)


def kill_pods(
    count: int = 1,
    percent: int | None = None,
    selector: str | None = None,
    configuration: Configuration | None = None,
) -> list[str]:
    """Delete `count` (or `percent`) of the service's running pods; return their names."""
    with harness_target(configuration) as t:
        return faults.kill_pods(
            t,
            selector or setting(configuration, "harness_selector"),
            count=None if percent is not None else count,
            percent=percent,
        )


@needs(NodeShell)
def kill_container(configuration: Configuration | None = None) -> dict[str, str]:
    """SIGKILL the service container of one of its pods; the kubelet restarts it."""
    with harness_target(configuration) as t:
        pod = _one_pod(t, configuration)
        container_id = faults.kill_container(t, pod, setting(configuration, "harness_container"))
        return {"pod": pod, "container_id": container_id}


def crash_via_service(
    path: str = "/admin/crash",
    token_secret: str = "demo-admin",
    token_key: str = "token",
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Crash one pod's service through its own admin hook; the kubelet restarts it."""
    with harness_target(configuration) as t:
        pod = _one_pod(t, configuration)
        status = faults.crash_via_service(
            t,
            pod,
            setting(configuration, "harness_container"),
            path,
            token_secret=token_secret,
            token_key=token_key,
        )
        return {"pod": pod, "status": status}


@needs(NodeShell)
def cpu_hog(
    seconds: float, cores: int = 1, configuration: Configuration | None = None
) -> dict[str, str]:
    """Burn `cores` CPUs in one service pod's container for `seconds`."""
    with harness_target(configuration) as t:
        pod = _one_pod(t, configuration)
        container = setting(configuration, "harness_container")
        entry = faults.cpu_hog(t, pod, container, cores=cores, seconds=seconds)
        return {"pod": pod, "id": entry.id}


@needs(NodeShell)
def memory_pressure(
    mib: int, seconds: float, configuration: Configuration | None = None
) -> dict[str, str]:
    """Hold `mib` MiB in one service pod's container for `seconds`."""
    with harness_target(configuration) as t:
        pod = _one_pod(t, configuration)
        container = setting(configuration, "harness_container")
        entry = faults.memory_pressure(t, pod, container, mib=mib, seconds=seconds)
        return {"pod": pod, "id": entry.id}


@needs(NodeShell)
def partition_one_pod(configuration: Configuration | None = None) -> dict[str, str]:
    """Cut one service pod off the network until reverted; it leaves the endpoints."""
    with harness_target(configuration) as t:
        pod = _one_pod(t, configuration)
        return {"pod": pod, "id": faults.partition_pod(t, pod).id}


@needs(NodeShell)
def fail_dns(configuration: Configuration | None = None) -> dict[str, list[str]]:
    """Make DNS lookups from every Ready service pod time out until reverted."""
    with harness_target(configuration) as t:
        pods = ready_service_pods(t, setting(configuration, "harness_selector"))
        return {"pods": pods, "ids": [faults.dns_failure(t, pod).id for pod in pods]}


def drain_node(
    node: str | None = None,
    timeout: float | None = None,
    configuration: Configuration | None = None,
) -> dict[str, str]:
    """Drain a node of the service's pods (default: the node of one of them).

    A PodDisruptionBudget that still holds after `timeout` seconds fails the action (default:
    the spec's ready_within, the time a replacement has to become Ready and release the
    budget); the node stays cordoned until the rollbacks' `revert_faults`.
    """
    if timeout is None:
        timeout = float(setting(configuration, "harness_ready_within_s"))
    with harness_target(configuration) as t:
        if node is None:
            pod = _one_pod(t, configuration)
            node = t.kube.core.read_namespaced_pod(pod, t.namespace).spec.node_name
        return {"node": node, "id": faults.drain(t, node, timeout=timeout).id}


@needs(ComponentControl)
def stop_component(component: str, configuration: Configuration | None = None) -> dict[str, str]:
    """Stop a cluster component (local provider: "kubelet", "containerd", ...)."""
    with harness_target(configuration) as t:
        return {"component": component, "id": faults.stop_component(t, component).id}


@needs(ComponentControl)
def restart_component(component: str, configuration: Configuration | None = None) -> dict[str, str]:
    """Restart a cluster component and wait until it runs again."""
    with harness_target(configuration) as t:
        faults.restart_component(t, component)
        return {"component": component}


def revert_faults(
    fault: str | None = None, configuration: Configuration | None = None
) -> list[str]:
    """Revert the faults still in place in this namespace (or only those of one kind)."""
    with harness_target(configuration, verify=False) as t:
        done = faults.revert_all(
            t.cluster, t.kube, namespace=t.namespace, fault=fault, ledger=t.ledger
        )
        return [e.describe() for e in done]
