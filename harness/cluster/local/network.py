"""The cluster's network on this machine: a bridge, routes that keep every cluster range
on local devices, the kernel switches Kubernetes needs, and iptables bookkeeping.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

from harness import host_changes
from harness.cluster.local.layout import (
    CHAIN_PREFIXES,
    CLUSTER_CIDRS,
    NODE_CIDR,
    NODE_IP,
    POD_CIDR,
    POD_GATEWAY,
    SERVICE_CIDR,
    Layout,
)
from harness.commands import run
from harness.errors import InvalidConfiguration

IPTABLES = ("iptables", "ip6tables")
# libcni caches each attachment here; containerd 1.6 gives no way to move it.
CNI_RESULTS = Path("/var/lib/cni/results")
TABLES = ("filter", "nat", "mangle", "raw")
SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    # Pod-to-Service traffic between pods on one bridge must pass kube-proxy's iptables rules.
    "net/bridge/bridge-nf-call-iptables": "1",
}
# kube-proxy turns this on itself for NodePorts on 127.0.0.1 (localhostNodePorts).
KUBE_PROXY_SYSCTLS = ("net/ipv4/conf/all/route_localnet",)

ChainSnapshot = dict[str, list[str]]
# The ipsets of kube-router's firewall (harness.network_policy), in the host's namespace where
# the local provider's pods run; its iptables chains carry the KUBE- prefix too.
IPSET_PREFIXES = ("KUBE-", "inet6:KUBE-")


def routes() -> list[dict]:
    return json.loads(
        run(["ip", "-j", "route", "show", "table", "all"], fix="apt-get install iproute2")
    )


def foreign_overlaps(layout: Layout) -> list[str]:
    """Routes of other devices that overlap the cluster's ranges (they would steal its traffic)."""
    found = []
    for route in routes():
        dst = route.get("dst", "")
        if dst in ("", "default") or route.get("dev") == layout.bridge or ":" in dst:
            continue
        try:
            network = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if any(network.overlaps(cidr) for cidr in CLUSTER_CIDRS):
            found.append(f"{dst} dev {route.get('dev')}")
    return found


def set_sysctls(layout: Layout) -> None:
    """The kernel switches the cluster needs, each recorded (`harness.host_changes`) so that
    `release_sysctls` puts back what no other cluster still needs."""
    if not Path("/proc/sys/net/bridge").is_dir():
        run(["modprobe", "br_netfilter"], fix="load the br_netfilter kernel module")
    host_changes.set_sysctls(SYSCTLS, _owner(layout), hold=KUBE_PROXY_SYSCTLS)


def release_sysctls(layout: Layout) -> list[str]:
    """Put back the switches this cluster changed that nothing else still needs."""
    return host_changes.release(_owner(layout))


def _owner(layout: Layout) -> str:
    return f"local:{layout.name}"


def create_bridge(layout: Layout) -> None:
    """The node's bridge: node address, pod gateway, and the Service range routed onto it."""
    overlaps = foreign_overlaps(layout)
    if overlaps:
        raise InvalidConfiguration(
            "the cluster's address ranges "
            + ", ".join(str(c) for c in CLUSTER_CIDRS)
            + " overlap routes of this machine: "
            + "; ".join(overlaps),
            fix="remove those routes or the cluster they belong to (`harness cluster down`)",
        )
    bridge = layout.bridge
    run(["ip", "link", "add", "name", bridge, "type", "bridge"])
    run(["ip", "addr", "add", f"{NODE_IP}/{NODE_CIDR.prefixlen}", "dev", bridge])
    run(["ip", "addr", "add", f"{POD_GATEWAY}/{POD_CIDR.prefixlen}", "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])
    # Not a blackhole: locally made connections to a ClusterIP must reach nat OUTPUT's DNAT.
    run(["ip", "route", "add", str(SERVICE_CIDR), "dev", bridge])


def add_forward_guard(layout: Layout) -> None:
    """Drop pod packets bound for anything but the cluster's own ranges: nothing leaves."""
    chain = layout.forward_chain
    run(["iptables", "-N", chain])
    for cidr in CLUSTER_CIDRS:
        run(["iptables", "-A", chain, "-s", str(POD_CIDR), "-d", str(cidr), "-j", "RETURN"])
    run(["iptables", "-A", chain, "-s", str(POD_CIDR), "-j", "DROP"])
    run(["iptables", "-I", "FORWARD", "-j", chain])


def delete_bridge(layout: Layout) -> None:
    """Remove the bridge and any veth still attached to it."""
    if not Path("/sys/class/net", layout.bridge).exists():
        return
    for port in Path("/sys/class/net", layout.bridge, "brif").iterdir():
        subprocess.run(["ip", "link", "del", port.name], capture_output=True, check=False)
    run(["ip", "link", "del", layout.bridge])


def _chains(binary: str, table: str) -> tuple[list[str], list[str]]:
    """(chain names, rule lines) of one table, from `<binary>-save`."""
    done = subprocess.run(
        [f"{binary}-save", "-t", table], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return [], []
    lines = done.stdout.splitlines()
    chains = [line[1:].split()[0] for line in lines if line.startswith(":")]
    rules = [line for line in lines if line.startswith("-A ")]
    return chains, rules


def chain_snapshot() -> ChainSnapshot:
    """Chains with the cluster prefixes that exist now (so cleanup leaves them alone)."""
    snapshot: ChainSnapshot = {}
    for binary in IPTABLES:
        for table in TABLES:
            chains, _ = _chains(binary, table)
            snapshot[f"{binary}/{table}"] = [c for c in chains if c.startswith(CHAIN_PREFIXES)]
    return snapshot


def remove_chains(before: ChainSnapshot | None) -> list[str]:
    """Delete every prefixed chain not in `before`, and the rules that jump to them.

    Returns:
        "binary/table/chain" of each chain removed.
    """
    removed = []
    for binary in IPTABLES:
        for table in TABLES:
            chains, rules = _chains(binary, table)
            keep = set((before or {}).get(f"{binary}/{table}", []))
            doomed = [c for c in chains if c.startswith(CHAIN_PREFIXES) and c not in keep]
            if not doomed:
                continue
            script = [f"*{table}"]
            for rule in rules:
                owner = rule.split()[1]
                target = rule.split(" -j ")[-1].split()[0] if " -j " in rule else ""
                if owner not in doomed and target in doomed:
                    script.append("-D " + rule[3:])
            script += [f"-F {c}" for c in doomed] + [f"-X {c}" for c in doomed] + ["COMMIT", ""]
            run([f"{binary}-restore", "--noflush"], input="\n".join(script))
            removed += [f"{binary}/{table}/{c}" for c in doomed]
    return removed


def ipset_snapshot() -> list[str]:
    """The prefixed ipsets that exist now (so cleanup leaves them alone)."""
    try:
        done = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True, check=False)
    except FileNotFoundError:  # no ipset here: nothing on this machine made one either
        return []
    return [name for name in done.stdout.split() if name.startswith(IPSET_PREFIXES)]


def remove_ipsets(before: list[str]) -> list[str]:
    """Destroy every prefixed ipset not in `before` (after the chains that used them)."""
    doomed = [name for name in ipset_snapshot() if name not in set(before)]
    for name in doomed:
        subprocess.run(["ipset", "destroy", name], capture_output=True, check=False)
    return doomed


def remove_cni_results(layout: Layout) -> list[Path]:
    """Delete the CNI result cache entries of the cluster's pods (they name its netns folder)."""
    if not CNI_RESULTS.is_dir():
        return []
    marker = f"{layout.run_dir}/".encode()
    removed = []
    for entry in CNI_RESULTS.iterdir():
        try:
            if marker in entry.read_bytes():
                entry.unlink()
                removed.append(entry)
        except OSError:
            continue
    return removed
