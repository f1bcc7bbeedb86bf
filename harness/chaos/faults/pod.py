"""Faults in one pod: deleted pods and killed containers (their controllers heal them),
processes in a container's cgroups (CPU, memory) and rules in its network namespace
(partition, DNS, a failing probe)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException

from harness.chaos.faults.node_side import (
    CHAOS_MARKER,
    HOG,
    PROCESSES,
    RULES_DELETE,
    RULES_INSERT,
    duration,
    fault_marker,
    halves,
)
from harness.chaos.faults.recording import inject, new_entry, reverted_by
from harness.chaos.faults.target import (
    NotInjectable,
    Target,
    able_to,
    container_cgroups,
    container_pid,
    guard,
    read_pod,
    running_container_id,
    sandbox_pid,
)
from harness.chaos.ledger import Injected
from harness.chaos.probe_failure import probe_block
from harness.cluster.provider import ClusterProvider, NodeShell
from harness.errors import InvalidConfiguration
from harness.kube import Kube, container_port, secret_value
from harness.kubectl import post_to_pod
from harness.wait import Pending, wait_for

GONE_TIMEOUT_S = 10.0  # for killed fault processes to disappear
PARTITION_RULES = ("INPUT ! -i lo", "OUTPUT ! -o lo")
DNS_RULES = ("OUTPUT -p udp --dport 53", "OUTPUT -p tcp --dport 53")


def _kill_marked(cluster: ClusterProvider, kube: Kube, entry: Injected) -> None:
    shell, marker = able_to(cluster, NodeShell), f"{CHAOS_MARKER}-{entry.id}"

    def gone() -> bool | Pending:
        shell.node_exec(entry.node, ["sh", "-c", PROCESSES, "sh", "kill", *halves(marker)])
        left = shell.node_exec(
            entry.node, ["sh", "-c", PROCESSES, "sh", "list", *halves(marker)]
        ).strip()
        return Pending(left) if left else True

    wait_for(gone, what=f"the processes of {entry.describe()} to exit", timeout=GONE_TIMEOUT_S)


def _delete_rules(cluster: ClusterProvider, kube: Kube, entry: Injected) -> None:
    undo = entry.undo
    able_to(cluster, NodeShell).node_exec(
        entry.node,
        ["sh", "-c", RULES_DELETE, "sh", str(undo["pid"]), undo["netns"],
         *halves(fault_marker(entry)), *undo["rules"]],
    )  # fmt: skip


def _pick(
    names: Sequence[str], *, count: int | None, percent: int | None, rng: Any = random
) -> list[str]:
    """Choose the victims among `names`: `count` of them, or `percent` (rounded up), or one.

    Raises:
        InvalidConfiguration: both or out-of-range count and percent.
    """
    if count is not None and percent is not None:
        raise InvalidConfiguration(
            f"kill_pods got count={count} and percent={percent}", fix="pass one of them"
        )
    if count is not None and count < 1:
        raise InvalidConfiguration(f"count must be 1 or more, not {count}", fix="pass count>=1")
    if percent is not None and not 0 < percent <= 100:
        raise InvalidConfiguration(
            f"percent must be in 1..100, not {percent}", fix="pass a percentage of the pods"
        )
    wanted = count if count is not None else math.ceil(len(names) * (percent or 0) / 100) or 1
    return sorted(rng.sample(sorted(names), min(wanted, len(names))))


def kill_pods(
    t: Target,
    selector: str,
    *,
    count: int | None = None,
    percent: int | None = None,
    grace_period_s: int = 0,
) -> list[str]:
    """Delete running pods of the namespace matching `selector` (one, `count`, or `percent`).

    Their controller replaces them, so nothing goes into the ledger.

    Returns:
        The deleted pods' names.

    Raises:
        NotInjectable: chaos not allowed, the namespace is not the harness's, or no running
            pod matches.
    """
    guard(t.cluster, t.kube, t.namespace)
    pods = t.kube.core.list_namespaced_pod(t.namespace, label_selector=selector).items
    running = [
        p.metadata.name
        for p in pods
        if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
    ]
    if not running:
        raise NotInjectable(
            f"no running pod in {t.namespace} matches {selector!r}",
            fix="check the selector (kubectl get pods -l ...) and wait until the pods run",
        )
    victims = _pick(running, count=count, percent=percent)
    for name in victims:
        try:
            t.kube.core.delete_namespaced_pod(
                name, t.namespace, grace_period_seconds=grace_period_s
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
    return victims


def kill_container(t: Target, pod: str, container: str) -> str:
    """Kill a running container's processes at once (SIGKILL through the node's runtime).

    The kubelet sees the container die and restarts it, as after an OOM kill or a crash.

    Returns:
        The killed container's id.

    Raises:
        NotInjectable: the provider cannot run commands on nodes, chaos is not allowed, or
            the namespace is not the harness's.
    """
    guard(t.cluster, t.kube, t.namespace)
    shell = able_to(t.cluster, NodeShell)
    obj = read_pod(t, pod)
    container_id = running_container_id(obj, container)
    shell.node_exec(obj.spec.node_name, ["crictl", "stop", "--timeout", "0", container_id])
    return container_id


def crash_via_service(
    t: Target, pod: str, container: str, path: str, *, token_secret: str, token_key: str
) -> int:
    """Ask one pod's service to crash through its own admin hook (POST `path` with the token
    from Secret `token_secret`); the kubelet restarts the container, so nothing is recorded.

    Returns:
        The HTTP status, 0 when the process died before answering.

    Raises:
        NotInjectable: chaos is not allowed or the namespace is not the harness's.
        InvalidConfiguration: the Secret has no `token_key`, or the container declares no port.
    """
    guard(t.cluster, t.kube, t.namespace)
    token = secret_value(t.kube, t.namespace, token_secret, token_key)
    port = container_port(t.kube, t.namespace, pod, container)
    return post_to_pod(t.kube.kubeconfig, t.namespace, pod, port, path, token=token)


def _hog(
    t: Target, fault: str, pod: str, container: str, hog: str, seconds: float, undo: dict
) -> Injected:
    """Run the shell snippet `hog` inside the container's cgroups for at most `seconds`."""
    if seconds <= 0:
        raise InvalidConfiguration(
            f"{fault} needs a duration, not {seconds}s", fix="pass seconds > 0"
        )
    guard(t.cluster, t.kube, t.namespace)
    shell = able_to(t.cluster, NodeShell)
    obj = read_pod(t, pod)
    node = obj.spec.node_name
    pid = container_pid(shell, node, running_container_id(obj, container))
    procs = [f"{d}/cgroup.procs" for d in container_cgroups(shell, node, pid)]
    entry = new_entry(t, fault, node=node, target=f"{pod}/{container}", undo=undo)
    marker = halves(fault_marker(entry))
    argv = ["sh", "-ec", HOG, "sh", *marker, duration(seconds), hog, *procs]
    return inject(t, entry, lambda: shell.node_exec(node, argv))


@reverted_by(_kill_marked)
def cpu_hog(t: Target, pod: str, container: str, *, cores: int = 1, seconds: float) -> Injected:
    """Burn `cores` CPUs inside the container's cgroup for `seconds` (or until reverted).

    The busy loops count against the container's CPU limit and show in its usage, as if
    the service itself were busy.

    Raises:
        NotInjectable: see `target`'s guards; the container is not running.
    """
    if cores < 1:
        raise InvalidConfiguration(f"cpu_hog needs 1 or more cores, not {cores}", fix="cores>=1")
    loops = f"i=0; while [ $i -lt {cores} ]; do (while :; do :; done) & i=$((i+1)); done; wait"
    return _hog(t, "cpu_hog", pod, container, loops, seconds, {"cores": cores, "seconds": seconds})


@reverted_by(_kill_marked)
def memory_pressure(t: Target, pod: str, container: str, *, mib: int, seconds: float) -> Injected:
    """Hold `mib` MiB of memory inside the container's cgroup for `seconds`.

    The memory counts against the container's limit: past it, the kernel's OOM killer
    picks a process of the container, as when the service itself leaks.

    Raises:
        NotInjectable: see `target`'s guards; the container is not running.
    """
    if mib < 1:
        raise InvalidConfiguration(f"memory_pressure needs mib >= 1, not {mib}", fix="mib>=1")
    # `tail` keeps its whole input when it holds no newline; `sleep` keeps the pipe open.
    hold = f"{{ head -c {mib}M /dev/zero; sleep {duration(seconds)}; }} | tail"
    undo = {"mib": mib, "seconds": seconds}
    return _hog(t, "memory_pressure", pod, container, hold, seconds, undo)


def _netns_fault(
    t: Target, fault: str, pod: str, rules: Sequence[str], *, what: str | None = None
) -> Injected:
    guard(t.cluster, t.kube, t.namespace)
    shell = able_to(t.cluster, NodeShell)
    obj = read_pod(t, pod)
    if obj.spec.host_network:
        raise NotInjectable(
            f"pod {pod} uses the node's network; {fault} would cut off the node itself",
            fix="target a pod with its own network namespace",
        )
    node = obj.spec.node_name
    pid = sandbox_pid(shell, node, obj)
    netns = shell.node_exec(node, ["readlink", f"/proc/{pid}/ns/net"]).strip()
    if netns == shell.node_exec(node, ["readlink", "/proc/self/ns/net"]).strip():
        raise NotInjectable(
            f"pod {pod}'s sandbox shares the node's network namespace",
            fix="target a pod with its own network namespace",
        )
    undo = {"pid": pid, "netns": netns, "rules": list(rules)} | ({"what": what} if what else {})
    entry = new_entry(t, fault, node=node, target=pod, undo=undo)
    argv = ["sh", "-ec", RULES_INSERT, "sh", str(pid), *halves(fault_marker(entry)), *rules]
    return inject(t, entry, lambda: shell.node_exec(node, argv))


@reverted_by(_delete_rules)
def partition_pod(t: Target, pod: str) -> Injected:
    """Drop every packet into and out of the pod except on loopback.

    The kubelet's probes fail too, so the pod leaves its Services' endpoints (and a
    liveness probe restarts its containers, which stay cut off until reverted).

    Raises:
        NotInjectable: see `target`'s guards; the pod runs in the node's network.
    """
    return _netns_fault(t, "partition_pod", pod, PARTITION_RULES)


@reverted_by(_delete_rules)
def fail_probe(t: Target, pod: str, container: str, probe: str) -> Injected:
    """Make one container's `probe` ("readiness", "liveness", "startup") fail, without the
    service's help, until reverted: what the probe sends is dropped in the pod's network
    namespace (harness.chaos.probe_failure says how, per probe kind).

    Raises:
        NotInjectable: see `target`'s guards; the pod runs in the node's network.
        ProbeNotFailable: the container has no such probe, or an exec probe that dials
            nothing the harness can see.
    """
    guard(t.cluster, t.kube, t.namespace)
    able_to(t.cluster, NodeShell)  # refused before anything is read where nodes are out of reach
    spec = t.kube.api_client.sanitize_for_serialization(read_pod(t, pod).spec)
    found = [c for c in spec.get("containers") or [] if c.get("name") == container]
    if not found:
        raise NotInjectable(
            f"pod {pod} has no container {container!r}", fix="name a container of its spec"
        )
    block = probe_block(found[0], probe)
    return _netns_fault(t, "fail_probe", pod, block.rules, what=f"{probe} probe: {block.what}")


def crash_process(t: Target, pod: str, container: str) -> int:
    """Kill a container's main process with SIGKILL from its node, as a crash ends it.

    Unlike `kill_container` (the runtime stops the container), the runtime sees its process
    die on its own, exit code 137; the kubelet restarts the container.

    Returns:
        The killed process's pid on its node.

    Raises:
        NotInjectable: see `target`'s guards; the container is not running.
    """
    guard(t.cluster, t.kube, t.namespace)
    shell = able_to(t.cluster, NodeShell)
    obj = read_pod(t, pod)
    node = obj.spec.node_name
    pid = container_pid(shell, node, running_container_id(obj, container))
    shell.node_exec(node, ["kill", "-KILL", str(pid)])
    return pid


@reverted_by(_delete_rules)
def dns_failure(t: Target, pod: str) -> Injected:
    """Drop the pod's DNS queries (UDP and TCP port 53): lookups time out, all else works.

    Raises:
        NotInjectable: see `target`'s guards; the pod runs in the node's network.
    """
    return _netns_fault(t, "dns_failure", pod, DNS_RULES)
