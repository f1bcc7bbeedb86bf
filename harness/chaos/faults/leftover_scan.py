"""What the harness's faults left in place, found in the ledger and on the cluster itself."""

from __future__ import annotations

import time

from harness.chaos.faults.node import cordon_ids
from harness.chaos.faults.node_side import CHAOS_MARKER, MARKED, PROCESSES, RULES_LIST, halves
from harness.chaos.faults.target import sandbox_infos
from harness.chaos.ledger import Ledger
from harness.cluster.provider import ClusterProvider, ComponentControl, NodeShell
from harness.kube import Kube

RESCAN_S = 1.0  # a process found by `leftovers` must still be there this much later


def _node_leftovers(shell: NodeShell, node: str) -> list[str]:
    pattern = halves(CHAOS_MARKER)
    found = []
    listed = shell.node_exec(node, ["sh", "-c", PROCESSES, "sh", "list", *pattern]).strip()
    if listed:
        # A helper command of an injection running right now is no leftover: it has gone a
        # moment later. Only processes still there are reported.
        time.sleep(RESCAN_S)
        again = shell.node_exec(node, ["sh", "-c", PROCESSES, "sh", "list", *pattern])
        still = set(again.strip().splitlines())
        found += [f"{node}: process {line}" for line in listed.splitlines() if line in still]
    ids = shell.node_exec(node, ["crictl", "pods", "--state", "ready", "-q"]).split()
    sandboxes = [
        f"{info['info']['pid']}=pod {meta['namespace']}/{meta['name']}"
        for info in sandbox_infos(shell, node, ids)
        if (info.get("info") or {}).get("pid")
        and (meta := (info.get("status") or {}).get("metadata") or {})
    ]
    rules = shell.node_exec(node, ["sh", "-c", RULES_LIST, "sh", *pattern, *sandboxes])
    found += [f"{node}: packet filter rule in {line}" for line in rules.strip().splitlines()]
    return found


def leftovers(
    cluster: ClusterProvider,
    kube: Kube,
    *,
    namespace: str | None = None,
    ledger: Ledger | None = None,
) -> list[str]:
    """Everything of the harness's faults still in place, one line each; [] means clean.

    Looks at the ledger, and independently of it at the cluster: nodes cordoned by a fault,
    processes and iptables rules (host and every pod sandbox) carrying the marker on every
    node, and stopped components.

    Args:
        namespace: leave out what belongs to the faults of other namespaces (by the
            namespace in its marker, else by the ledger): under pytest-xdist those are in
            place right now on purpose. What no fault claims is always reported.
    """
    ledger = ledger or Ledger(cluster.options.name)
    pending = ledger.pending()
    found = [(f"pending in the ledger: {e.describe()}", [(e.id, e.namespace)]) for e in pending]
    nodes = kube.core.list_node().items
    for node in nodes:
        if ids := cordon_ids(node):
            line = f"node {node.metadata.name} cordoned by fault(s) {', '.join(ids)}"
            found.append((line, [(i, "") for i in ids]))
    if isinstance(cluster, NodeShell):
        for node in nodes:
            found += [
                (line, MARKED.findall(line))
                for line in _node_leftovers(cluster, node.metadata.name)
            ]
    if isinstance(cluster, ComponentControl):
        for name, status in cluster.component_status().items():
            if not status["wanted"]:
                claimed = [(e.id, "") for e in pending
                           if e.fault == "stop_component" and e.target == name]  # fmt: skip
                found.append((f"component {name} is stopped", claimed))
    if namespace is None:
        return [line for line, _ in found]
    # Read again: a fault injected while the cluster was looked at is in the ledger by now.
    elsewhere = {e.id for e in [*pending, *ledger.pending()] if e.namespace != namespace}

    def theirs(owners: list[tuple[str, str | None]]) -> bool:
        return bool(owners) and all(
            (ns and ns != namespace) or (not ns and id in elsewhere) for id, ns in owners
        )

    return [line for line, owners in found if not theirs(owners)]
