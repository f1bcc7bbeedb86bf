"""Fault primitives shared by the scenarios and the chaos experiments."""

from __future__ import annotations

from harness.cluster.provider import ClusterProvider, NodeShell
from harness.errors import InvalidConfiguration
from harness.kube import Kube
from harness.namespaces import is_harness_namespace


class NotInjectable(InvalidConfiguration):
    """The fault cannot be injected here (provider lacks the ability, or target not ours)."""


def _guard(cluster: ClusterProvider, kube: Kube, namespace: str) -> None:
    if not cluster.capabilities.chaos_allowed:
        raise NotInjectable(
            f"faults are not allowed on this {cluster.name} cluster",
            fix="pass --allow-chaos-on-existing to opt in (only harness namespaces are touched)",
        )
    if not is_harness_namespace(kube, namespace):
        raise NotInjectable(
            f"namespace {namespace} was not created by the harness; no fault is injected there",
            fix="target a namespace from the `namespace` fixture",
        )


def kill_container(
    cluster: ClusterProvider, kube: Kube, namespace: str, pod: str, container: str
) -> str:
    """Kill a running container's processes at once (SIGKILL through the node's runtime).

    The kubelet sees the container die and restarts it, as after an OOM kill or a crash.

    Returns:
        The killed container's id.

    Raises:
        NotInjectable: the provider cannot run commands on nodes, chaos is not allowed, or
            the namespace is not the harness's.
    """
    _guard(cluster, kube, namespace)
    if not isinstance(cluster, NodeShell):
        raise NotInjectable(
            f"the {cluster.name} provider cannot reach its nodes' runtime",
            fix="use the local or kind provider for container faults",
        )
    status = kube.core.read_namespaced_pod(pod, namespace)
    for cs in status.status.container_statuses or []:
        if cs.name == container and cs.container_id:
            container_id = cs.container_id.split("://", 1)[-1]
            cluster.node_exec(
                status.spec.node_name, ["crictl", "stop", "--timeout", "0", container_id]
            )
            return container_id
    raise NotInjectable(
        f"pod {pod} has no running container {container!r}",
        fix="wait until the pod runs, and name a container of its spec",
    )
