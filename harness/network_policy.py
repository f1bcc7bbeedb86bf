"""NetworkPolicy: enforcement installed on demand, and the connectivity matrix that proves it.

Neither the local provider's bridge CNI nor kind's flannel enforces NetworkPolicies. The
harness installs kube-router's firewall (its network policy controller alone: iptables rules
and ipsets, no routing, no service proxy), built from the Go module proxy at the version
harness/cluster/versions.yaml pins, as upstream's firewall DaemonSet runs it (privileged, on
the host's network, in kube-system) with upstream's RBAC. kube-network-policies, what kind's
kindnetd embeds, needs the nft `queue` expression, which this machine's kernel lacks. It is
installed the first time a service whose spec has `expect.network_policy` is deployed on
local or kind; on an `existing` cluster, its own CNI enforces the policies or not, and the
matrix says which.

The matrix: probe pods (the harness's busybox) in the service's namespace and in a namespace
of the harness's beside it, one of them carrying the labels each policy's `from` names, try
every port of one of the service's pods: those the spec promises, those the policies and the
containers name, and one it does not use (`UNUSED_PORT`). A listener of the harness's in
that pod takes every one of them the service leaves, so a connection is accepted where the
policies let it through, and refused (kube-router rejects) or timed out (other enforcers
drop) where they do not. The probes in the service's namespace also look the service's name
up in DNS. Each pair is judged
against what the service's NetworkPolicies admit (`admits`, the API's rules evaluated here)
and against what the spec promises (harness.assertions.connectivity_*).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from harness.images.builders import RESTRICTED
from harness.kube import API_NOT_UP, Kube
from harness.render import Object
from harness.service_discovery import WHOLE_NAME_SCRIPT
from harness.wait import Pending, wait_for

ADDON = "kube-router"
NAMESPACE = "kube-system"
ENFORCER_READY_S = 120.0
# Upstream's manifests, in the module: the firewall DaemonSet, and the RBAC of the generic one.
FIREWALL_DAEMONSET = "daemonset/kube-router-firewall-daemonset.yaml"
RBAC_SOURCE = "daemonset/generic-kuberouter.yaml"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
# The API server's default; the local and kind providers keep it.
NODE_PORT_RANGE = "30000-32767"
# A port of the service's pod that it does not use: the harness's listener takes it, so that
# a policy that admits every port shows.
UNUSED_PORT = 39999
# The listener: an ephemeral container in the service's pod (its network namespace) that
# accepts on every port the probes try that the service's containers do not declare. A
# connection is then accepted where the policies let it through, and refused (kube-router
# rejects) or timed out (other enforcers drop) where they do not.
LISTENER = "kh-listener"
LISTENER_LIFETIME_S = 900
# Every probe pod carries these beside the labels it stands for.
PROBE_LABELS = {"kube-harness/probe": "connectivity"}
# The enforcer learns a new pod from the API: a probe waits this long before its first
# connection, so that it is judged as the pod it is, not as an unknown address.
PROBE_SETTLE_S = 5
CONNECT_TIMEOUT_S = 2
DNS_PORT = 53
# Namespaces carry this label from the API server; a namespaceSelector on it names one.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@functools.cache
def pinned() -> tuple[str, str]:
    """(module, version) of the enforcer as versions.yaml pins it (read once: the image
    reference is asked for at every look at the DaemonSet)."""
    from harness.cluster.build import load_versions

    source = load_versions().go_source(ADDON)
    return source.modules[0], source.version


def enforcer_ref() -> str:
    return f"localhost/kube-harness/{ADDON}:{pinned()[1]}"


def enforcer_image() -> Path:
    """Archive of the enforcer's image: the pinned binary on a Debian layer with the iptables
    and ipset it runs, entrypoint /usr/local/bin/kube-router, as upstream's image."""
    from harness.cluster.build import ensure_binaries
    from harness.images.builders import layered_image
    from harness.images.cache import images_dir
    from harness.images.kind_node import IPTABLES_PACKAGES
    from harness.images.rootfs import debian_rootfs

    binary = ensure_binaries([ADDON])[ADDON]
    base = debian_rootfs(
        images_dir() / "rootfs" / "iptables-ipset.tar", include=[*IPTABLES_PACKAGES, "ipset"]
    )
    return layered_image(
        enforcer_ref(),
        files={"usr/local/bin/kube-router": binary},
        entrypoint=["/usr/local/bin/kube-router"],
        base=base,
        name=ADDON,
    )


def install_manifests(
    firewall_yaml: str, rbac_yaml: str, *, image: str, service_cidrs: Sequence[str]
) -> list[Object]:
    """Upstream's firewall DaemonSet with upstream's RBAC, running `image` (loaded on the
    nodes, never pulled) with the API server's in-cluster credentials.

    Without what it has for a node where kube-router is also the CNI: the init container
    that writes a CNI configuration, the host folders (CNI configuration, kubeconfig,
    kernel modules) and the xtables lock, which iptables' nft backend, the one in its image
    and on the nodes here, does not take.
    """
    objects: list[Object] = [
        made for made in yaml.safe_load_all(rbac_yaml) if made and made["kind"] in RBAC_KINDS
    ]
    for made in yaml.safe_load_all(firewall_yaml):
        if not made or made["kind"] != "DaemonSet":
            continue
        pod = made["spec"]["template"]["spec"]
        pod.pop("initContainers", None)
        pod.pop("volumes", None)
        pod["serviceAccountName"] = "kube-router"
        for container in pod["containers"]:
            container["image"] = image
            container["imagePullPolicy"] = "IfNotPresent"
            container.pop("volumeMounts", None)
            container["env"] = [e for e in container.get("env", []) if e["name"] == "NODE_NAME"]
            container["args"] = [
                *(a for a in container["args"] if not a.startswith("--kubeconfig")),
                f"--service-cluster-ip-range={','.join(service_cidrs)}",
                f"--service-node-port-range={NODE_PORT_RANGE}",
                "--metrics-port=0",
            ]
        objects.append(made)
    return objects


def service_cidrs(kube: Kube) -> list[str]:
    """The cluster's Service address ranges (the ServiceCIDR `kubernetes`, GA in 1.33)."""
    made = kube.custom.get_cluster_custom_object(
        "networking.k8s.io", "v1", "servicecidrs", "kubernetes"
    )
    return list(made["spec"]["cidrs"])


def provide_network_policies(cluster: Any, kube: Kube) -> None:
    """Make `cluster` enforce NetworkPolicies: install the pinned kube-router firewall once
    on local and kind, and wait until it runs on every node; nothing on `existing`.

    Raises:
        BuildFailed, GoToolchainMissing: the enforcer cannot be built.
        WaitTimeout: it did not run on every node.
    """
    from harness.cluster.addons import install_on_demand
    from harness.cluster.build import module_source

    if cluster.name == "existing":
        return
    module, version = pinned()

    def manifests() -> list[Object]:
        source = module_source(module, version)
        return install_manifests(
            (source / FIREWALL_DAEMONSET).read_text(),
            (source / RBAC_SOURCE).read_text(),
            image=enforcer_ref(),
            service_cidrs=service_cidrs(kube),
        )

    install_on_demand(
        cluster,
        addon=ADDON,
        shown=f"{ADDON} {version} (its NetworkPolicy firewall)",
        running=lambda: _enforcer_running(kube),
        images=lambda: [enforcer_image()],
        manifests=manifests,
        timeout=ENFORCER_READY_S,
    )


def _enforcer_running(kube: Kube) -> bool:
    """The pinned enforcer's DaemonSet is ready on every node."""
    try:
        daemon_set = kube.apps.read_namespaced_daemon_set(ADDON, NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    images = [c.image for c in daemon_set.spec.template.spec.containers]
    status = daemon_set.status
    return (
        images == [enforcer_ref()]
        and status.observed_generation == daemon_set.metadata.generation
        and bool(status.desired_number_scheduled)
        and status.number_ready == status.desired_number_scheduled
        and (status.updated_number_scheduled or 0) == status.desired_number_scheduled
    )


# --- what the policies admit -----------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """One end of a connection: a pod's namespace (and its labels), labels and address."""

    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    ip: str = ""
    named_ports: Mapping[str, int] = field(default_factory=dict)  # its containers' port names
    container_ports: tuple[int, ...] = ()  # the ports its containers declare

    def __post_init__(self) -> None:
        # The API server sets this label to the namespace's name, whatever else asks.
        labels = {**self.namespace_labels, NAMESPACE_NAME_LABEL: self.namespace}
        object.__setattr__(self, "namespace_labels", labels)


@dataclass(frozen=True)
class Admission:
    """Whether the policies let a connection through, and which rule says so."""

    allowed: bool
    why: str


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions) selects `labels`; an empty
    selector selects everything.

    >>> selects({"matchLabels": {"app": "demo"}}, {"app": "demo", "x": "y"}), selects({}, {})
    (True, True)
    """
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"label selector operator {operator!r} is not one the API knows")
    return True


def _peer_matches(rule_peer: Mapping[str, Any], policy_namespace: str, other: Peer) -> bool:
    if "ipBlock" in rule_peer:
        block = rule_peer["ipBlock"]
        if not other.ip:
            return False
        address = ipaddress.ip_address(other.ip)
        if address not in ipaddress.ip_network(block["cidr"], strict=False):
            return False
        return not any(
            address in ipaddress.ip_network(cidr, strict=False)
            for cidr in block.get("except") or []
        )
    namespace_selector = rule_peer.get("namespaceSelector")
    if namespace_selector is None:
        if other.namespace != policy_namespace:
            return False
    elif not selects(namespace_selector, other.namespace_labels):
        return False
    pod_selector = rule_peer.get("podSelector")
    return pod_selector is None or selects(pod_selector, other.labels)


def _port_matches(
    rule_ports: Sequence[Mapping[str, Any]] | None,
    port: int,
    protocol: str,
    named_ports: Mapping[str, int],
) -> bool:
    if not rule_ports:
        return True
    for rule_port in rule_ports:
        if rule_port.get("protocol", "TCP") != protocol:
            continue
        if "port" not in rule_port:
            return True
        wanted = rule_port["port"]
        number = named_ports.get(wanted) if isinstance(wanted, str) else int(wanted)
        if number is not None and number <= port <= int(rule_port.get("endPort", number)):
            return True
    return False


def policy_types(policy: Object) -> list[str]:
    spec = policy.get("spec") or {}
    # Without policyTypes, Egress only when there are egress rules (`egress: []` has none).
    return spec.get("policyTypes") or ["Ingress", *(["Egress"] if spec.get("egress") else [])]


def _direction_admits(
    policies: Sequence[Object],
    pod: Peer,
    other: Peer,
    *,
    port: int,
    protocol: str,
    named_ports: Mapping[str, int],
    direction: str,
) -> Admission:
    """What the policies that select `pod` for `direction` say of its connection with
    `other`; every connection, when none selects it."""
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace") == pod.namespace
        and direction in policy_types(p)
        and selects((p.get("spec") or {}).get("podSelector"), pod.labels)
    ]
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    if not selecting:
        return Admission(True, f"no NetworkPolicy selects it for {direction.lower()}")
    for policy in selecting:
        for index, rule in enumerate((policy.get("spec") or {}).get(rules_key) or []):
            peers = rule.get(peers_key)
            namespace = policy["metadata"]["namespace"]
            if (
                not peers or any(_peer_matches(p, namespace, other) for p in peers)
            ) and _port_matches(rule.get("ports"), port, protocol, named_ports):
                name = policy["metadata"]["name"]
                return Admission(True, f"NetworkPolicy {name} {rules_key}[{index}] admits it")
    names = ", ".join(p["metadata"]["name"] for p in selecting)
    return Admission(False, f"NetworkPolicy {names} selects it and no {rules_key} rule admits it")


def admits(
    policies: Sequence[Object], source: Peer, target: Peer, *, port: int, protocol: str = "TCP"
) -> Admission:
    """Whether `policies` let `source` open a connection to `target`'s `port`: the source's
    egress and the target's ingress must both admit it (the NetworkPolicy API's rules;
    named ports are the target's).

    >>> deny_all = {"metadata": {"name": "deny", "namespace": "a"}, "spec": {"podSelector": {}}}
    >>> admits([deny_all], Peer("b"), Peer("a"), port=80)
    Admission(allowed=False, why='NetworkPolicy deny selects it and no ingress rule admits it')
    """
    named = target.named_ports
    egress = _direction_admits(
        policies, source, target, port=port, protocol=protocol, named_ports=named,
        direction="Egress",
    )  # fmt: skip
    if not egress.allowed:
        return replace(egress, why=f"the source's egress: {egress.why}")
    return _direction_admits(
        policies, target, source, port=port, protocol=protocol, named_ports=named,
        direction="Ingress",
    )  # fmt: skip


def policies_of(objects: Sequence[Object], namespace: str) -> list[Object]:
    """The NetworkPolicies of rendered manifests, in `namespace` (where they are applied)."""
    found = []
    for made in objects:
        if made.get("kind") == "NetworkPolicy":
            metadata = {**made["metadata"], "namespace": namespace}
            found.append({**made, "metadata": metadata})
    return found


# --- the connectivity matrix -----------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """A probe pod: where it runs and with which labels, and how a reader knows it."""

    name: str
    peer: Peer
    about: str


@dataclass(frozen=True)
class Pair:
    """One probe and one port of the service's pod (or, protocol DNS, a lookup of the
    service's name): what the policies admit, what the spec promises, what happened."""

    probe: Probe
    port: int
    protocol: str  # TCP, or DNS
    admission: Admission
    promised: bool
    # connected, refused, timed out, resolved, not resolved, or error: ... ("" no result)
    seen: str = ""

    @property
    def reached(self) -> bool | None:
        """Accepted (or resolved), kept out (refused, timed out, not resolved), or unknown:
        something listens on every port tried, so a refusal is the enforcer's."""
        return {
            "connected": True, "resolved": True,
            "refused": False, "timed out": False, "not resolved": False,
        }.get(self.seen)  # fmt: skip

    def describe(self, target: str) -> str:
        what = "a DNS lookup of the service" if self.protocol == "DNS" else f"{target}:{self.port}"
        return f"{self.probe.about} -> {what}: {self.seen or 'no result'}"


def plan_probes(
    policies: Sequence[Object], *, namespace: str, namespace_labels: Mapping[str, str]
) -> list[Probe]:
    """The probes that tell the service's policies apart: one in its namespace (labelled
    `namespace_labels`) and one in another without labels any policy names, and one for each
    `from` peer that names labels (its pod labels, in a namespace with its namespace
    labels). A peer that names them only by expressions is not probed as itself."""
    peer_namespace = f"{namespace}-peer"
    own = dict(namespace_labels)
    probes = {
        (namespace, ()): Probe(
            "probe-plain", Peer(namespace, PROBE_LABELS, own), "a pod of the same namespace"
        ),
        (peer_namespace, ()): Probe(
            "probe-peer", Peer(peer_namespace, PROBE_LABELS), "a pod of another namespace"
        ),
    }
    namespaces = {(): peer_namespace}
    for policy in policies:
        for index, rule in enumerate((policy.get("spec") or {}).get("ingress") or []):
            for peer in rule.get("from") or []:
                if "ipBlock" in peer:
                    continue
                pod_labels = (peer.get("podSelector") or {}).get("matchLabels") or {}
                labels = tuple(sorted(pod_labels.items()))
                where = namespace
                namespace_labels: tuple[tuple[str, str], ...] = ()
                if "namespaceSelector" in peer:
                    selected = peer["namespaceSelector"].get("matchLabels") or {}
                    namespace_labels = tuple(sorted(selected.items()))
                    where = namespaces.setdefault(
                        namespace_labels, f"{peer_namespace}{len(namespaces) + 1}"
                    )
                if (where, labels) in probes:
                    continue
                probes[(where, labels)] = Probe(
                    f"probe-{len(probes)}",
                    Peer(
                        where,
                        {**dict(labels), **PROBE_LABELS},
                        own if where == namespace else dict(namespace_labels),
                    ),
                    f"a pod labelled {_shown(labels) or 'with no labels'} in "
                    f"{_place(where, namespace, namespace_labels)} "
                    f"({policy['metadata']['name']} ingress[{index}])",
                )
    return list(probes.values())


def _shown(labels: Sequence[tuple[str, str]]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels)


def _place(where: str, namespace: str, namespace_labels: Sequence[tuple[str, str]]) -> str:
    if where == namespace:
        return "the same namespace"
    if namespace_labels:
        return f"a namespace labelled {_shown(namespace_labels)}"
    return "another namespace"


def probed_ports(policies: Sequence[Object], target: Peer, promised: Sequence[int]) -> list[int]:
    """The ports worth trying: promised, named by a policy, declared by a container, and
    one the service does not use."""
    ports = {UNUSED_PORT, *promised, *target.container_ports}
    for policy in policies:
        for rule in (policy.get("spec") or {}).get("ingress") or []:
            for rule_port in rule.get("ports") or []:
                if isinstance(rule_port.get("port"), int):
                    ports.add(rule_port["port"])
    return sorted(ports)


LISTENER_SCRIPT = f"""
for port in $PORTS; do
  if httpd -p "$port" -h / 2>/dev/null; then echo "LISTEN $port ok"
  else echo "LISTEN $port failed"; fi
done
exec sleep {LISTENER_LIFETIME_S}
"""

PROBE_SCRIPT = f"""
sleep {PROBE_SETTLE_S}
for port in $PORTS; do
  out=$(timeout {CONNECT_TIMEOUT_S + 3} nc -w {CONNECT_TIMEOUT_S} "$TARGET" "$port" </dev/null 2>&1)
  rc=$?
  case "$out" in
    *refused*) seen=refused ;;
    *"timed out"*) seen="timed out" ;;
    *) seen=connected
       if [ $rc -ne 0 ] && [ -n "$out" ]; then seen="error: $(echo $out)"; fi ;;
  esac
  echo "TCP $port $seen"
done
if [ -n "$DNS_NAME" ]; then
{WHOLE_NAME_SCRIPT}  if out=$(timeout 10 nslookup "$name" 2>&1); then echo "DNS {DNS_PORT} resolved"
  else
    case "$out" in
      *"timed out"*|*"no servers"*|"") echo "DNS {DNS_PORT} not resolved" ;;
      *) echo "DNS {DNS_PORT} error:" $out ;;
    esac
  fi
fi
"""


def listener_container(image: str, ports: Sequence[int]) -> dict[str, Any]:
    """The ephemeral container that accepts on `ports` in the service's pod (those below
    1024 it cannot take)."""
    return {
        "name": LISTENER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", LISTENER_SCRIPT],
        "env": [{"name": "PORTS", "value": " ".join(str(p) for p in ports)}],
        "securityContext": RESTRICTED,
    }


def probe_pod(
    probe: Probe, *, image: str, target_ip: str, ports: Sequence[int], dns_name: str
) -> dict[str, Any]:
    """The pod of `probe`: busybox trying each port of `target_ip`, then the DNS name."""
    env = {"TARGET": target_ip, "PORTS": " ".join(str(p) for p in ports), "DNS_NAME": dns_name}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": probe.name,
            "namespace": probe.peer.namespace,
            "labels": dict(probe.peer.labels),
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", PROBE_SCRIPT],
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "securityContext": RESTRICTED,
                }
            ],
        },
    }


def read_probe_log(text: str) -> dict[tuple[str, int], str]:
    """(protocol, port) -> what the probe saw (or the listener did: protocol LISTEN), from
    its log.

    >>> read_probe_log("TCP 8080 connected\\nTCP 9 timed out\\nDNS 53 resolved\\n")
    {('TCP', 8080): 'connected', ('TCP', 9): 'timed out', ('DNS', 53): 'resolved'}
    """
    seen = {}
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] in ("TCP", "DNS", "LISTEN") and parts[1].isdigit():
            seen[(parts[0], int(parts[1]))] = parts[2].strip()
    return seen


def target_peer(kube: Kube, namespace: str, pod_name: str) -> Peer:
    """The service's pod the probes try: its labels, address and ports."""
    pod = kube.core.read_namespaced_pod(pod_name, namespace)
    ports = [port for container in pod.spec.containers for port in container.ports or []]
    namespace_labels = kube.core.read_namespace(namespace).metadata.labels or {}
    return Peer(
        namespace,
        labels=pod.metadata.labels or {},
        namespace_labels=namespace_labels,
        ip=pod.status.pod_ip or "",
        named_ports={p.name: p.container_port for p in ports if p.name},
        container_ports=tuple(sorted({p.container_port for p in ports if p.protocol != "UDP"})),
    )


def start_listener(
    kube: Kube, namespace: str, pod: str, *, image: str, ports: Sequence[int]
) -> set[int]:
    """Add the listener to `pod` for `ports`; the ports it holds once it started.

    Raises:
        WaitTimeout: it did not start (naming its state).
    """
    body = {"spec": {"ephemeralContainers": [listener_container(image, ports)]}}
    kube.core.patch_namespaced_pod_ephemeralcontainers(pod, namespace, body)

    def listening() -> set[int] | Pending:
        try:
            # The client answers None, not "", for a log with nothing in it yet.
            log = kube.core.read_namespaced_pod_log(pod, namespace, container=LISTENER) or ""
        except ApiException as exc:
            return Pending(f"the listener has not started ({exc.reason})")
        said = read_probe_log(log)
        if len([key for key in said if key[0] == "LISTEN"]) < len(ports):
            return Pending(f"the listener has taken {len(said)} of {len(ports)} ports")
        return {port for (kind, port), how in said.items() if kind == "LISTEN" and how == "ok"}

    return wait_for(
        listening,
        what=f"the listener in pod {pod} to take ports {', '.join(map(str, ports))}",
        timeout=60,
        transient=API_NOT_UP,
    )


def run_probes(
    kube: Kube,
    probes: Sequence[Probe],
    *,
    namespace: str,
    run_id: str,
    test: str,
    image: str,
    target_ip: str,
    ports: Sequence[int],
    dns_name: str,
) -> tuple[list[Probe], dict[str, dict[tuple[str, int], str]]]:
    """Run every probe against `target_ip`'s `ports` (those in `namespace` also look
    `dns_name` up) at once: the probes with the addresses their pods had (what an ipBlock
    matches), and what each saw, by probe name. The namespaces the probes need beside
    `namespace` are made as the harness's for the run, and removed with the probes.

    Raises:
        WaitTimeout: a probe did not finish (naming its phase).
    """
    from harness.namespaces import create_namespace, delete_namespace

    made = sorted({p.peer.namespace for p in probes} - {namespace})
    labels_of = {p.peer.namespace: p.peer.namespace_labels for p in probes}
    timeout = PROBE_SETTLE_S + len(ports) * (CONNECT_TIMEOUT_S + 3) + 10 + 90
    try:
        for name in made:
            own = {k: v for k, v in labels_of[name].items() if k != NAMESPACE_NAME_LABEL}
            create_namespace(kube, name, run_id=run_id, test=test, labels=own)
        for probe in probes:
            lookup = dns_name if probe.peer.namespace == namespace else ""
            body = probe_pod(probe, image=image, target_ip=target_ip, ports=ports, dns_name=lookup)
            kube.core.create_namespaced_pod(probe.peer.namespace, body)

        def finished() -> bool | Pending:
            waiting = []
            for probe in probes:
                pod = kube.core.read_namespaced_pod(probe.name, probe.peer.namespace)
                if pod.status.phase not in ("Succeeded", "Failed"):
                    waiting.append(f"{probe.name} {pod.status.phase}")
            return Pending(", ".join(waiting)) if waiting else True

        wait_for(
            finished,
            what="the connectivity probes to finish",
            timeout=timeout,
            transient=(*API_NOT_UP, ApiException),
        )
        ran = []
        seen = {}
        for probe in probes:
            pod = kube.core.read_namespaced_pod(probe.name, probe.peer.namespace)
            ran.append(replace(probe, peer=replace(probe.peer, ip=pod.status.pod_ip or "")))
            log = kube.core.read_namespaced_pod_log(probe.name, probe.peer.namespace) or ""
            seen[probe.name] = read_probe_log(log)
        return ran, seen
    finally:
        # The namespaces go whatever happened to a pod's deletion (theirs go with them).
        for probe in probes:
            with contextlib.suppress(ApiException):
                kube.core.delete_namespaced_pod(
                    probe.name, probe.peer.namespace, grace_period_seconds=0
                )
        for name in made:
            delete_namespace(kube, name)


def connectivity_matrix(
    kube: Kube,
    objects: Sequence[Object],
    *,
    namespace: str,
    pod: str,
    promised: Any,
    dns_name: str,
    run_id: str,
    test: str,
    image: str,
) -> tuple[list[Pair], Peer]:
    """Every probe against every port worth trying of `pod` (and the DNS lookups), each
    pair with what the manifests' policies admit, what `promised` (the spec's
    NetworkPolicyExpectation) says, and what the probe saw; and the pod tried. Ports that
    neither a container declares nor the listener could take are left out."""
    policies = policies_of(objects, namespace)
    target = target_peer(kube, namespace, pod)
    planned = plan_probes(policies, namespace=namespace, namespace_labels=target.namespace_labels)
    wanted = probed_ports(policies, target, promised.ingress_ports)
    free = [port for port in wanted if port not in target.container_ports]
    held = start_listener(kube, namespace, pod, image=image, ports=free) if free else set()
    # A promised port the listener could not take is one the service listens on undeclared
    # (or one below 1024); either way it is tried.
    kept = {*target.container_ports, *held, *promised.ingress_ports}
    ports = [port for port in wanted if port in kept]
    probes, seen = run_probes(
        kube, planned, namespace=namespace, run_id=run_id, test=test, image=image,
        target_ip=target.ip, ports=ports, dns_name=dns_name,
    )  # fmt: skip
    dns = Peer(NAMESPACE, labels={"k8s-app": "kube-dns"})
    pairs = []
    for probe in probes:
        same = probe.peer.namespace == namespace
        for port in ports:
            pairs.append(Pair(
                probe, port, "TCP", admits(policies, probe.peer, target, port=port),
                promised.admits(same_namespace=same, port=port),
                seen[probe.name].get(("TCP", port), ""),
            ))  # fmt: skip
        if same and dns_name:
            pairs.append(Pair(
                probe, DNS_PORT, "DNS",
                admits(policies, probe.peer, dns, port=DNS_PORT, protocol="UDP"),
                promised.dns, seen[probe.name].get(("DNS", DNS_PORT), ""),
            ))  # fmt: skip
    return pairs, target
