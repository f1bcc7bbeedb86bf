"""Where a fault goes (`Target`), the guards every fault passes before anything changes, and
how a pod's containers, sandbox and cgroups are found on its node."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.chaos.faults.node_side import READ_FILES
from harness.chaos.ledger import Injected, Ledger
from harness.cluster.provider import (
    ABILITIES,
    ClusterProvider,
    ComponentControl,
    NodeLifecycle,
    NodeShell,
    lacks,
)
from harness.errors import InvalidConfiguration, WaitTimeout
from harness.kube import Kube, cluster_uid
from harness.namespaces import is_harness_namespace


class NotInjectable(InvalidConfiguration):
    """The fault cannot be injected here (provider lacks the ability, or target not ours)."""


class SandboxNotRunning(NotInjectable):
    """The pod has no running sandbox yet (or any more): its network namespace is not there."""


class DrainTimeout(WaitTimeout):
    """A drain ran out of time, most often on a PodDisruptionBudget.

    The node stays cordoned and in the ledger; `injected` is its entry, for `revert`.
    """

    def __init__(self, what: str, timeout: float, last_state: str, injected: Injected) -> None:
        super().__init__(what, timeout, last_state)
        self.injected = injected


@dataclass(frozen=True)
class Target:
    """Where faults go: a cluster, its API, one harness namespace and the cluster's ledger."""

    cluster: ClusterProvider
    kube: Kube
    namespace: str
    ledger: Ledger

    @classmethod
    def of(
        cls,
        cluster: ClusterProvider,
        kube: Kube,
        namespace: str,
        *,
        ledger: Ledger | None = None,
    ) -> Target:
        """The target for `namespace`, with the cluster's own ledger unless one is given."""
        return cls(cluster, kube, namespace, ledger or Ledger(cluster.options.name))

    @functools.cached_property
    def cluster_uid(self) -> str:
        """What tells the cluster from another of its name (`harness.kube.cluster_uid`);
        read once, since every fault's ledger entry carries it."""
        return cluster_uid(self.kube)


@dataclass(frozen=True)
class Usage:
    """CPU time and memory a container's cgroup has accounted (what its limits act on)."""

    cpu_usec: int
    memory_bytes: int


# --- guards ---------------------------------------------------------------------------------


def guard(cluster: ClusterProvider, kube: Kube, namespace: str) -> None:
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


def guard_node(t: Target, fault: str) -> None:
    """Node faults reach beyond harness namespaces: only on clusters the harness made."""
    guard(t.cluster, t.kube, t.namespace)
    if not t.cluster.capabilities.creates_clusters:
        raise NotInjectable(
            f"{fault} changes a node that other workloads share; it is refused on the "
            f"{t.cluster.name} provider, which does not create its clusters",
            fix="run node faults on a cluster the harness creates (local or kind provider)",
        )


Ability = TypeVar("Ability", NodeShell, NodeLifecycle, ComponentControl)


def able_to(cluster: ClusterProvider, ability: type[Ability]) -> Ability:
    """`cluster` as the provider protocol `ability` a fault needs; refused where it has not it.

    Example:
        >>> able_to(cluster, NodeShell).node_exec(node, ["true"])      # doctest: +SKIP
    """
    if cannot := lacks(cluster, ability):
        raise NotInjectable(cannot, fix=f"{ABILITIES[ability][1]} for this fault")
    return cluster  # type: ignore[return-value]


# --- looking things up on the node ----------------------------------------------------------


def read_pod(t: Target, pod: str) -> client.V1Pod:
    try:
        return t.kube.core.read_namespaced_pod(pod, t.namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise NotInjectable(
                f"pod {pod} does not exist in namespace {t.namespace}",
                fix="name a pod of the namespace (e.g. from deployed.pods())",
            ) from None
        raise


def container_status(pod: client.V1Pod, container: str) -> client.V1ContainerStatus | None:
    """The status of one container of `pod`, or None before the kubelet reports it."""
    return next((s for s in pod.status.container_statuses or [] if s.name == container), None)


def running_container_id(pod: client.V1Pod, container: str) -> str:
    status = container_status(pod, container)
    if status is not None and status.container_id:
        return status.container_id.split("://", 1)[-1]
    raise NotInjectable(
        f"pod {pod.metadata.name} has no running container {container!r}",
        fix="wait until the pod runs, and name a container of its spec",
    )


def container_pid(shell: NodeShell, node: str, container_id: str) -> int:
    info = json.loads(shell.node_exec(node, ["crictl", "inspect", "-o", "json", container_id]))
    pid = int((info.get("info") or {}).get("pid") or 0)
    if not pid:
        raise NotInjectable(
            f"container {container_id[:13]} is not running on {node}",
            fix="wait until the container runs again",
        )
    return pid


def sandbox_infos(shell: NodeShell, node: str, sandbox_ids: Sequence[str]) -> list[dict]:
    """`crictl inspectp` of each sandbox (one object for one id, a list for several)."""
    if not sandbox_ids:
        return []
    found = json.loads(shell.node_exec(node, ["crictl", "inspectp", "-o", "json", *sandbox_ids]))
    return found if isinstance(found, list) else [found]


def sandbox_pid(shell: NodeShell, node: str, pod: client.V1Pod) -> int:
    """Pid of the pod's sandbox (pause) process: it holds the pod's network namespace for as
    long as the pod lives, whereas container processes come and go with restarts."""
    ids = shell.node_exec(
        node,
        ["crictl", "pods", "--label", f"io.kubernetes.pod.uid={pod.metadata.uid}",
         "--state", "ready", "-q"],
    ).split()  # fmt: skip
    infos = sandbox_infos(shell, node, ids[:1])
    pid = int((infos[0].get("info") or {}).get("pid") or 0) if infos else 0
    if not pid:
        raise SandboxNotRunning(
            f"pod {pod.metadata.name} has no running sandbox on {node}",
            fix="wait until the pod runs",
        )
    return pid


def cgroup_dirs(proc_cgroup: str, mountinfo: str) -> list[str]:
    """The cgroup directories of a process, in every hierarchy mounted on its node.

    Args:
        proc_cgroup: the process's /proc/<pid>/cgroup.
        mountinfo: the node's /proc/self/mountinfo (where each hierarchy is mounted).

    Works for cgroup v1, v2 and the hybrid of both.

    Example:
        >>> cgroup_dirs("0::/kubepods/pod1/c1\\n",
        ...             "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\\n")
        ['/sys/fs/cgroup/kubepods/pod1/c1']
    """
    mounts = []  # (fstype, super options, root inside the hierarchy, mount point)
    for line in mountinfo.splitlines():
        left, dash, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if dash and len(fields) >= 5 and tail and tail[0] in ("cgroup", "cgroup2"):
            options = set(tail[2].split(",")) if len(tail) > 2 else set()
            mounts.append((tail[0], options, fields[3], fields[4]))
    found = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        wanted = set(controllers.split(",")) if controllers else set()
        for fstype, options, root, point in mounts:
            if (fstype == "cgroup2") == (not wanted) and wanted <= options:
                if root != "/" and path.startswith(root):
                    path = path[len(root) :]
                found.append(point.rstrip("/") + "/" + path.strip("/"))
                break
    return [d.rstrip("/") for d in found]


def container_cgroups(shell: NodeShell, node: str, pid: int) -> list[str]:
    dirs = cgroup_dirs(
        shell.node_exec(node, ["cat", f"/proc/{pid}/cgroup"]),
        shell.node_exec(node, ["cat", "/proc/self/mountinfo"]),
    )
    if not dirs:
        raise NotInjectable(
            f"no cgroup of process {pid} is mounted on {node}",
            fix="mount the cgroup hierarchies on the node (/sys/fs/cgroup)",
        )
    return dirs


def container_usage(t: Target, pod: str, container: str) -> Usage:
    """What a container's cgroup has accounted so far, read on its node.

    Counters only grow (CPU) or follow the working set (memory), so read it twice to see
    what happened in between; metrics-server would lag behind by its resolution.

    Raises:
        NotInjectable: the provider cannot reach its nodes, or the container is not running.
    """
    shell = able_to(t.cluster, NodeShell)
    obj = read_pod(t, pod)
    node = obj.spec.node_name
    pid = container_pid(shell, node, running_container_id(obj, container))
    dirs = container_cgroups(shell, node, pid)
    names = ("cpu.stat", "cpuacct.usage", "memory.current", "memory.usage_in_bytes")
    text = shell.node_exec(
        node, ["sh", "-c", READ_FILES, "sh", *(f"{d}/{n}" for d in dirs for n in names)]
    )
    values: dict[str, int] = {}  # cgroup v2 first: cpu.stat's usage_usec, memory.current
    for chunk in text.split("== ")[1:]:
        path, _, content = chunk.partition("\n")
        name, fields = path.rsplit("/", 1)[-1], content.split()
        if name == "cpu.stat" and "usage_usec" in fields[:-1]:
            values.setdefault("cpu", int(fields[fields.index("usage_usec") + 1]))
        elif name == "cpuacct.usage" and fields:
            values.setdefault("cpu_v1", int(fields[0]) // 1000)
        elif name == "memory.current" and fields:
            values.setdefault("memory", int(fields[0]))
        elif name == "memory.usage_in_bytes" and fields:
            values.setdefault("memory_v1", int(fields[0]))
    cpu = values.get("cpu", values.get("cpu_v1"))
    memory = values.get("memory", values.get("memory_v1"))
    if cpu is None or memory is None:
        raise NotInjectable(
            f"no CPU or memory accounting for {pod}/{container} under {', '.join(dirs)}",
            fix="enable the cpu/cpuacct and memory cgroup controllers on the node",
        )
    return Usage(cpu_usec=cpu, memory_bytes=memory)
