"""Where one local cluster keeps its files, which addresses it uses, and what it names things.

Everything is derived from the cluster name, so that cleanup can find a cluster's bridge,
folders and cgroups even when the run that made them was killed before recording anything.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

STATE_ROOT = Path("/var/lib/kube-harness/clusters")
RUN_ROOT = Path("/run/kube-harness")
CGROUP_ROOT = Path("/sys/fs/cgroup")

# Private ranges picked to stay clear of Docker (172.17+), kind (10.244, 10.96) and home LANs.
NODE_CIDR = ipaddress.ip_network("10.213.0.0/24")
POD_CIDR = ipaddress.ip_network("10.214.0.0/16")
SERVICE_CIDR = ipaddress.ip_network("10.215.0.0/16")
CLUSTER_CIDRS = (NODE_CIDR, POD_CIDR, SERVICE_CIDR)
NODE_IP = str(NODE_CIDR[1])
POD_GATEWAY = str(POD_CIDR[1])
KUBERNETES_SERVICE_IP = str(SERVICE_CIDR[1])
DNS_SERVICE_IP = str(SERVICE_CIDR[10])
CLUSTER_DOMAIN = "cluster.local"

APISERVER_PORT = 6443
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
KUBELET_PORT = 10250
# Loopback ports the components listen on; a second cluster would collide on these.
LOOPBACK_PORTS = {
    "etcd": ETCD_CLIENT_PORT,
    "etcd peer": ETCD_PEER_PORT,
    "kube-controller-manager": 10257,
    "kube-scheduler": 10259,
    "kubelet healthz": 10248,
    "kube-proxy metrics": 10249,
    "kube-proxy healthz": 10256,
}

COMPONENTS = (
    "etcd",
    "containerd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
)
NODE_COMPONENTS = ("containerd", "kubelet")
# Prefixes of the iptables chains Kubernetes components and CNI plugins create.
CHAIN_PREFIXES = ("KUBE-", "CNI-", "KH-")


@dataclass(frozen=True)
class Layout:
    """Paths and names of one local cluster."""

    name: str

    @property
    def state_dir(self) -> Path:
        return STATE_ROOT / self.name

    @property
    def run_dir(self) -> Path:
        return RUN_ROOT / self.name

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def config_dir(self) -> Path:
        return self.state_dir / "config"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pod_logs_dir(self) -> Path:
        return self.state_dir / "pod-logs"

    @property
    def cni_conf_dir(self) -> Path:
        return self.config_dir / "cni"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd" / "containerd.sock"

    @property
    def supervisor_socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    @property
    def images_ready(self) -> Path:
        """Marker the kubelet waits for: the pause image is imported."""
        return self.run_dir / "images-imported"

    @property
    def record_file(self) -> Path:
        return self.state_dir / "cluster.json"

    @property
    def node_name(self) -> str:
        return f"{self.name}-node"

    @property
    def bridge(self) -> str:
        # Interface names have at most 15 characters.
        if len(self.name) <= 12:
            return f"kh-{self.name}"
        digest = hashlib.sha256(self.name.encode()).hexdigest()[:4]
        return f"kh-{self.name[:7]}-{digest}"

    @property
    def forward_chain(self) -> str:
        return f"KH-{self.bridge.removeprefix('kh-').upper()}"[:28]

    @property
    def cgroup_parent(self) -> str:
        """The kubelet's cgroup root: pods live under it, so cleanup knows which are ours."""
        return f"/kube-harness-{self.name}"

    def component_log(self, component: str) -> Path:
        return self.log_dir / f"{component}.log"


def cluster_names() -> list[str]:
    """Names of the local clusters with a state folder on this machine."""
    names = {p.name for root in (STATE_ROOT, RUN_ROOT) if root.is_dir() for p in root.iterdir()}
    return sorted(names)
