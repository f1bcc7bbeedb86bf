"""Fault primitives shared by the scenarios and the chaos experiments.

Every fault is refused before anything changes when it is not allowed (chaos not opted into,
a namespace the harness did not create, a node fault on a cluster the harness does not own,
a provider that cannot reach its nodes). A fault that stays in place (a CPU hog, iptables
rules, a cordon, a stopped component) is written to the ledger before it is injected and
removed from it once reverted; every process, rule and annotation it makes carries
`kube-harness-chaos-<id>`, so `leftovers()` finds what is left even without the ledger.

Where to look: `target` (where a fault goes, the guards, finding a container on its node),
`recording` (the ledger, reverts, `injected`), `pod` and `node` (the faults, each with its
revert), `node_side` (the scripts run on nodes and the marker), `leftover_scan`.

Example:
    >>> t = Target.of(cluster, kube, namespace)                          # doctest: +SKIP
    >>> with injected(t, partition_pod, "demo-7d9f-abcde") as fault:      # doctest: +SKIP
    ...     ...  # the pod is cut off here; it is reconnected on leaving the block
"""

from harness.chaos.faults.leftover_scan import leftovers
from harness.chaos.faults.node import (
    CORDONED_BY,
    NODE_ACTIONS,
    cordon,
    cordoned_since,
    drain,
    hold_node_schedulability,
    restart_component,
    stop_component,
    stop_node,
)
from harness.chaos.faults.node_side import CHAOS_MARKER, fault_marker
from harness.chaos.faults.pod import (
    DNS_RULES,
    PARTITION_RULES,
    cpu_hog,
    crash_process,
    crash_via_service,
    dns_failure,
    fail_probe,
    kill_container,
    kill_pods,
    memory_pressure,
    partition_pod,
)
from harness.chaos.faults.recording import (
    injected,
    revert,
    revert_all,
    revert_orphans,
    reverted_by,
)
from harness.chaos.faults.target import (
    DrainTimeout,
    NotInjectable,
    SandboxNotRunning,
    Target,
    Usage,
    cgroup_dirs,
    container_status,
    container_usage,
)

__all__ = [
    "CHAOS_MARKER",
    "CORDONED_BY",
    "DNS_RULES",
    "NODE_ACTIONS",
    "PARTITION_RULES",
    "DrainTimeout",
    "NotInjectable",
    "SandboxNotRunning",
    "Target",
    "Usage",
    "cgroup_dirs",
    "container_status",
    "container_usage",
    "cordon",
    "cordoned_since",
    "cpu_hog",
    "crash_process",
    "crash_via_service",
    "dns_failure",
    "drain",
    "fail_probe",
    "fault_marker",
    "hold_node_schedulability",
    "injected",
    "kill_container",
    "kill_pods",
    "leftovers",
    "memory_pressure",
    "partition_pod",
    "restart_component",
    "revert",
    "revert_all",
    "revert_orphans",
    "reverted_by",
    "stop_component",
    "stop_node",
]
