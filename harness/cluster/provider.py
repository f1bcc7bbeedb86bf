"""What a cluster provider is: a small Protocol, a capability record, one options object.

Providers live in sibling modules (`kind`, `existing`, `local`). Abilities that only some
providers have are separate Protocols (`NodeLifecycle`); callers check with `isinstance`
and skip with the reason when the provider lacks one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

DEFAULT_CLUSTER_NAME = "kube-harness"
# pytest-kind owns --cluster-name; its default names its own clusters, and a pytest run reads
# it as DEFAULT_CLUSTER_NAME.
PYTEST_KIND_DEFAULT_NAME = "pytest-kind"

# NodePorts reachable on 127.0.0.1 on every provider; manifests pick from these.
DEFAULT_NODE_PORTS: tuple[int, ...] = tuple(range(30080, 30090))


@dataclass(frozen=True)
class Timings:
    """Control-plane timings shortened so scaling and failure scenarios finish in minutes.

    Every provider that runs its own control plane applies these (the README lists them).
    """

    hpa_sync_period_s: int = 5
    node_monitor_period_s: int = 2
    node_monitor_grace_period_s: int = 20
    not_ready_toleration_s: int = 20
    unreachable_toleration_s: int = 20
    kubelet_node_status_update_s: int = 4
    metric_resolution_s: int = 10  # the smallest metrics-server accepts

    def controller_manager_flags(self) -> dict[str, str]:
        return {
            "horizontal-pod-autoscaler-sync-period": f"{self.hpa_sync_period_s}s",
            "node-monitor-period": f"{self.node_monitor_period_s}s",
            "node-monitor-grace-period": f"{self.node_monitor_grace_period_s}s",
        }

    def apiserver_flags(self) -> dict[str, str]:
        return {
            "default-not-ready-toleration-seconds": str(self.not_ready_toleration_s),
            "default-unreachable-toleration-seconds": str(self.unreachable_toleration_s),
        }


@dataclass(frozen=True, kw_only=True)
class ClusterOptions:
    """Everything a provider needs to know about the cluster it is asked for.

    Args:
        name: cluster name (kind cluster name, local state folder name).
        workers: worker nodes besides the control plane (providers that support it).
        kubeconfig: where the kubeconfig is written (kind, local) or read from (existing).
        context: kubeconfig context to use (existing).
        node_image: node image override (kind).
        allow_chaos: the user's explicit opt-in to inject faults into an existing cluster.
        timings: control-plane timings (providers that run their own control plane).
        node_ports: NodePorts that must answer on 127.0.0.1.
    """

    name: str = DEFAULT_CLUSTER_NAME
    workers: int = 0
    kubeconfig: Path | None = None
    context: str | None = None
    node_image: str | None = None
    allow_chaos: bool = False
    timings: Timings = field(default_factory=Timings)
    node_ports: tuple[int, ...] = DEFAULT_NODE_PORTS

    def __post_init__(self) -> None:
        from harness.errors import InvalidConfiguration

        # It names folders, a kind cluster's containers and its nodes ("NAME-control-plane",
        # a DNS label of at most 63).
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?", self.name):
            raise InvalidConfiguration(
                f"cluster name {self.name!r} is not valid",
                fix="use 1 to 40 lower-case letters, digits and '-', starting and ending with a "
                "letter or digit, e.g. --cluster-name=kube-harness",
            )
        if self.name == PYTEST_KIND_DEFAULT_NAME:
            raise InvalidConfiguration(
                f"cluster name {self.name!r} is pytest-kind's default, which pytest runs take "
                f"for {DEFAULT_CLUSTER_NAME}",
                fix="choose another name",
            )
        if self.workers < 0:
            raise InvalidConfiguration(
                f"workers must be 0 or more, not {self.workers}", fix="pass a count >= 0"
            )


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do beyond the `ClusterProvider` protocol that the protocols it
    implements (`NodeLifecycle`, `NodeShell`, `ComponentControl`) do not already say; tests
    that need more are skipped with the reason."""

    creates_clusters: bool
    chaos_allowed: bool
    nodeports_on_localhost: bool


@dataclass(frozen=True)
class Probe:
    """Whether a provider can run on this machine, and if not, how to make it able to."""

    provider: str
    ok: bool
    reason: str
    fix: str = ""
    # False: it runs here, but only when asked for by name (detection passes it over).
    detected: bool = True


@runtime_checkable
class ClusterProvider(Protocol):
    """A way to get a Kubernetes cluster for a test run."""

    name: str
    options: ClusterOptions

    @property
    def capabilities(self) -> Capabilities:
        """What this provider can do."""
        ...

    def create(self) -> None:
        """Create the cluster, or reuse a healthy one of the same name."""
        ...

    def delete(self) -> None:
        """Remove the cluster and everything made for it (no-op where we do not own it)."""
        ...

    def kubeconfig(self) -> Path:
        """Path of a kubeconfig (mode 0600) for the cluster."""
        ...

    def wait_ready(self, timeout: float = 300) -> None:
        """Block until every node is Ready and the API answers."""
        ...

    def collect_logs(self, dest: Path) -> list[Path]:
        """Write the provider's own logs (components, nodes) under `dest`; return the files."""
        ...

    def load_image(self, archive: Path) -> None:
        """Make the image in an OCI/docker archive available to the cluster's nodes."""
        ...


@runtime_checkable
class NodeLifecycle(Protocol):
    """Optional: stop and start whole nodes (node-failure scenarios)."""

    def nodes(self) -> list[str]:
        """Names of the nodes that can be stopped."""
        ...

    def stop_node(self, node: str) -> None:
        """Stop a node as if it failed (its kubelet stops reporting)."""
        ...

    def start_node(self, node: str) -> None:
        """Bring a stopped node back."""
        ...


@runtime_checkable
class NodeShell(Protocol):
    """Optional: run a command on a node, with `crictl` talking to that node's runtime."""

    def node_exec(self, node: str, argv: Sequence[str]) -> str:
        """Run `argv` on `node` (the host for local, the node container for kind); stdout."""
        ...


@runtime_checkable
class ComponentControl(Protocol):
    """Optional: stop, start and restart one cluster component (the local provider's
    supervisor does this for kubelet, containerd, kube-proxy and the control plane; the kind
    provider for the kubelet and containerd units of every node)."""

    def stop_component(self, component: str) -> None: ...

    def start_component(self, component: str) -> None: ...

    def restart_component(self, component: str) -> None: ...

    def component_status(self) -> dict[str, dict[str, Any]]:
        """Per component: pid, running, wanted, restarts, last exit code."""
        ...


# What each optional ability lets the harness do, and which provider to use where it lacks:
# faults, experiment checks and fixtures all say it from here.
ABILITIES: dict[type, tuple[str, str]] = {
    NodeShell: ("reach its nodes' runtime", "use the local or kind provider"),
    NodeLifecycle: (
        "stop and start nodes",
        "use the kind provider (or local, for its single node)",
    ),
    ComponentControl: ("stop and start cluster components", "use the local or kind provider"),
}


def lacks(cluster: ClusterProvider, ability: type) -> str | None:
    """What `cluster`'s provider cannot do for want of `ability` (one of `ABILITIES`), as
    "the existing provider cannot ...", or None where it can."""
    if isinstance(cluster, ability):
        return None
    return f"the {cluster.name} provider cannot {ABILITIES[ability][0]}"
