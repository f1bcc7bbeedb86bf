"""Faults on nodes and cluster components: cordon, drain, stopped components and nodes, and
the record that stands for an experiment's own node actions."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.chaos.faults.recording import inject, new_entry, revert, reverted_by
from harness.chaos.faults.target import (
    DrainTimeout,
    NotInjectable,
    Target,
    able_to,
    guard,
    guard_node,
)
from harness.chaos.ledger import Injected
from harness.cluster.provider import ClusterProvider, ComponentControl, NodeLifecycle
from harness.errors import HarnessError, WaitTimeout
from harness.kube import Kube
from harness.wait import Pending, wait_for

CORDONED_BY = "kube-harness.io/cordoned-by"
# The ledger entry that stands for an experiment's own node actions (chaostoolkit-kubernetes).
NODE_ACTIONS = "node_actions"
DRAIN_RETRY_S = 1.0  # between eviction attempts a PodDisruptionBudget refused (HTTP 429)
COMPONENT_TIMEOUT_S = 60.0  # for a started or restarted component to run again
CONFLICT_RETRIES = 5  # node patches that lost a race with another writer


def cordon_ids(node: client.V1Node) -> list[str]:
    value = (node.metadata.annotations or {}).get(CORDONED_BY, "")
    return [i for i in value.split(",") if i]


def _change_cordon(
    kube: Kube, node: str, fault_id: str, *, cordoned: bool, keep: bool = False
) -> None:
    """Add or remove a fault's id in the node's cordon annotation; cordoned while any is left.

    Nothing is patched when the id already is (or is not) there, so reverting twice does
    not uncordon a node someone cordoned in between. `keep`: the node was unschedulable
    before the harness touched it, so it stays so. The patch names the resourceVersion it
    read, so a concurrent writer makes it retry instead of being overwritten.
    """
    for _ in range(CONFLICT_RETRIES):
        current = kube.core.read_node(node)
        ids = cordon_ids(current)
        if (fault_id in ids) == cordoned:
            return
        ids = [*ids, fault_id] if cordoned else [i for i in ids if i != fault_id]
        patch: dict[str, Any] = {
            "metadata": {
                "resourceVersion": current.metadata.resource_version,
                "annotations": {CORDONED_BY: ",".join(ids) or None},
            }
        }
        if ids or not keep:
            patch["spec"] = {"unschedulable": bool(ids)}
        try:
            kube.core.patch_node(node, patch)
            return
        except ApiException as exc:
            if exc.status != 409:
                raise
    raise HarnessError(
        f"node {node} kept changing while its cordon was updated",
        fix="retry; if it persists, see who else patches the node (kubectl get node -w)",
    )


def _uncordon(cluster: ClusterProvider, kube: Kube, entry: Injected) -> None:
    undo = entry.undo
    try:
        _change_cordon(
            kube, undo["node"], entry.id, cordoned=False, keep=undo.get("was_unschedulable", False)
        )
    except ApiException as exc:
        if exc.status != 404:  # a node that is gone is not cordoned
            raise


def _restore_schedulability(cluster: ClusterProvider, kube: Kube, entry: Injected) -> None:
    for node in cordoned_since(kube, entry):  # cordoned with no mark: uncordoned plainly
        kube.core.patch_node(node, {"spec": {"unschedulable": False}})


def _start_component(cluster: ClusterProvider, kube: Kube, entry: Injected) -> None:
    control = able_to(cluster, ComponentControl)
    control.start_component(entry.undo["component"])
    _wait_running(control, entry.undo["component"])


def _start_node(cluster: ClusterProvider, kube: Kube, entry: Injected) -> None:
    able_to(cluster, NodeLifecycle).start_node(entry.undo["node"])


@reverted_by(_restore_schedulability, fault=NODE_ACTIONS)
def hold_node_schedulability(t: Target) -> Injected:
    """Record which nodes are unschedulable now, before an experiment's own node actions
    (chaostoolkit-kubernetes's cordon_node, drain_nodes) run: they leave no mark of their own,
    and reverting this entry uncordons every node cordoned since (`cordoned_since`).

    Raises:
        NotInjectable: see `target`'s guards (node faults need a cluster the harness made,
            or on an existing one the opt-in and the experiment's allow-list).
    """
    guard(t.cluster, t.kube, t.namespace)
    nodes = t.kube.core.list_node().items
    before = sorted(n.metadata.name for n in nodes if n.spec.unschedulable)
    entry = new_entry(t, NODE_ACTIONS, node=None, target="nodes",
                      undo={"unschedulable_before": before})  # fmt: skip
    t.ledger.add(entry)
    return entry


def cordoned_since(kube: Kube, entry: Injected) -> list[str]:
    """Nodes unschedulable now that were not when `entry` (`hold_node_schedulability`) was
    recorded, leaving out those a harness fault cordons (they have their own entries)."""
    before = set(entry.undo["unschedulable_before"])
    return sorted(
        node.metadata.name
        for node in kube.core.list_node().items
        if node.spec.unschedulable and node.metadata.name not in before and not cordon_ids(node)
    )


def _cordon(t: Target, node: str, fault: str) -> Injected:
    guard_node(t, fault)
    try:
        current = t.kube.core.read_node(node)
    except ApiException as exc:
        if exc.status == 404:
            raise NotInjectable(f"node {node} does not exist", fix="name a node") from None
        raise
    was = bool(current.spec.unschedulable) and not cordon_ids(current)
    entry = new_entry(t, fault, node=node, target=node,
                      undo={"node": node, "was_unschedulable": was})  # fmt: skip
    return inject(t, entry, lambda: _change_cordon(t.kube, node, entry.id, cordoned=True))


@reverted_by(_uncordon)
def cordon(t: Target, node: str) -> Injected:
    """Mark the node unschedulable, annotated `kube-harness.io/cordoned-by=<id>`.

    Raises:
        NotInjectable: see `target`'s guards (node faults need a cluster the harness made).
    """
    return _cordon(t, node, "cordon")


def _evictable(pod: client.V1Pod) -> bool:
    """What `kubectl drain` evicts: not finished, not leaving, not a DaemonSet's or static."""
    owners = pod.metadata.owner_references or []
    return (
        pod.metadata.deletion_timestamp is None
        and pod.status.phase not in ("Succeeded", "Failed")
        and not any(o.kind == "DaemonSet" for o in owners)
        and "kubernetes.io/config.mirror" not in (pod.metadata.annotations or {})
    )


def _refusal(exc: ApiException) -> str:
    """Why the API refused an eviction (the PDB's own words when it says them)."""
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        return str(exc.reason)
    causes = [c.get("message", "") for c in (body.get("details") or {}).get("causes") or []]
    return "; ".join(c for c in causes if c) or body.get("message") or str(exc.reason)


def _evict_all(t: Target, node: str, timeout: float) -> list[str]:
    """Evict the namespace's pods on `node`, retrying PDB refusals; wait until they are gone."""
    listed = t.kube.core.list_namespaced_pod(t.namespace, field_selector=f"spec.nodeName={node}")
    waiting = {p.metadata.name: p.metadata.uid for p in listed.items if _evictable(p)}
    evicted: dict[str, str] = {}
    refused: dict[str, str] = {}

    def still_there(name: str, uid: str) -> bool:
        try:
            return t.kube.core.read_namespaced_pod(name, t.namespace).metadata.uid == uid
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def all_gone() -> list[str] | Pending:
        for name in list(waiting):
            body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=t.namespace))
            try:
                t.kube.core.create_namespaced_pod_eviction(name, t.namespace, body)
            except ApiException as exc:
                if exc.status == 429:
                    refused[name] = _refusal(exc)
                    continue
                if exc.status != 404:
                    raise
            evicted[name] = waiting.pop(name)
        leaving = [n for n, uid in evicted.items() if still_there(n, uid)]
        if not waiting and not leaving:
            return sorted(evicted)
        return Pending(
            "; ".join(
                [f"{n}: eviction refused: {refused.get(n, 'not tried yet')}" for n in waiting]
                + [f"{n}: evicted, still terminating" for n in leaving]
            )
        )

    return wait_for(
        all_gone,
        what=f"the pods of {t.namespace} to be evicted from node {node}",
        timeout=timeout,
        interval=DRAIN_RETRY_S,
    )


@reverted_by(_uncordon)
def drain(t: Target, node: str, *, timeout: float = 120) -> Injected:
    """Cordon the node, then evict the harness namespace's pods on it (Eviction API).

    Evictions a PodDisruptionBudget refuses (HTTP 429) are retried until `timeout`; the
    drain returns once every evicted pod is gone. Only `t.namespace`'s pods are evicted.

    Raises:
        DrainTimeout: a WaitTimeout naming the pods still there and why; the node stays
            cordoned and in the ledger (`exc.injected`), so `revert` uncordons it.
        NotInjectable: see `target`'s guards.
    """
    entry = _cordon(t, node, "drain")
    try:
        _evict_all(t, node, timeout)
    except WaitTimeout as exc:
        raise DrainTimeout(exc.what, exc.timeout, exc.last_state, entry) from None
    except BaseException:
        revert(t.cluster, t.kube, entry, ledger=t.ledger)
        raise
    return entry


def _wait_running(
    control: ComponentControl, component: str, *, not_pid: int | None = None
) -> dict[str, Any]:
    def running() -> dict | Pending:
        status = control.component_status()[component]
        if status["running"] and status["pid"] != not_pid:
            return status
        return Pending(f"{component}: {status}")

    return wait_for(running, what=f"{component} to run again", timeout=COMPONENT_TIMEOUT_S)


def _component_guard(t: Target, fault: str, component: str) -> ComponentControl:
    guard_node(t, fault)
    control = able_to(t.cluster, ComponentControl)
    _check_known(t, "component", component, control.component_status())
    return control


def _check_known(t: Target, kind: str, name: str, known: Iterable[str]) -> None:
    known = list(known)
    if name not in known:
        raise NotInjectable(
            f"the {t.cluster.name} cluster has no {kind} {name!r}",
            fix=f"name one of: {', '.join(known)}",
        )


@reverted_by(_start_component, first=True)
def stop_component(t: Target, component: str) -> Injected:
    """Stop a cluster component (e.g. "kubelet", "containerd") until reverted.

    Raises:
        NotInjectable: see `target`'s guards; the provider cannot stop components.
    """
    control = _component_guard(t, "stop_component", component)
    entry = new_entry(t, "stop_component", node=None, target=component,
                      undo={"component": component})  # fmt: skip
    return inject(t, entry, lambda: control.stop_component(component))


@reverted_by(_start_node, first=True)
def stop_node(t: Target, node: str) -> Injected:
    """Stop a whole node (kind: its container; local: every component) until reverted.

    Raises:
        NotInjectable: see `target`'s guards; the provider cannot stop nodes, or has no
            node of that name.
    """
    guard_node(t, "stop_node")
    lifecycle = able_to(t.cluster, NodeLifecycle)
    _check_known(t, "node", node, lifecycle.nodes())
    entry = new_entry(t, "stop_node", node=node, target=node, undo={"node": node})
    return inject(t, entry, lambda: lifecycle.stop_node(node))


def restart_component(t: Target, component: str) -> None:
    """Restart a cluster component and wait until it runs again (nothing to revert).

    Raises:
        NotInjectable: see `target`'s guards; the provider cannot restart components.
        WaitTimeout: the component did not run again within a minute.
    """
    control = _component_guard(t, "restart_component", component)
    before = control.component_status()[component]["pid"]
    control.restart_component(component)
    _wait_running(control, component, not_pid=before)
