"""Configuration files and command lines of the cluster's components.

Pure functions of the layout, the options and the binary paths: `write_configs` puts the
files in the state folder, `component_specs` returns what the supervisor runs.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from harness.cluster.local.layout import (
    APISERVER_PORT,
    CLUSTER_DOMAIN,
    DNS_SERVICE_IP,
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    KUBELET_PORT,
    LOOPBACK_PORTS,
    NODE_CIDR,
    NODE_IP,
    POD_CIDR,
    POD_GATEWAY,
    SERVICE_CIDR,
    Layout,
)
from harness.cluster.provider import ClusterOptions
from harness.images.builders import PAUSE_REF

CNI_BIN_DIR = Path("/usr/lib/cni")
RUNC = Path("/usr/sbin/runc")
APISERVER_URL = f"https://{NODE_IP}:{APISERVER_PORT}"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig_text(layout: Layout, cert: str, user: str) -> str:
    """A kubeconfig for `user` authenticating with the client certificate `cert`."""
    pki = layout.pki_dir
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": layout.name,
                "cluster": {
                    "server": APISERVER_URL,
                    "certificate-authority-data": _b64(pki / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(pki / f"{cert}.crt"),
                    "client-key-data": _b64(pki / f"{cert}.key"),
                },
            }
        ],
        "contexts": [{"name": layout.name, "context": {"cluster": layout.name, "user": user}}],
        "current-context": layout.name,
    }
    return yaml.safe_dump(config, sort_keys=False)


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path` readable by its owner only (mode 0600 from the start).

    A symlink at `path` is replaced, never followed: the file is created anew (O_EXCL).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    return path


def containerd_config(layout: Layout) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""\
version = 2
root = "{layout.state_dir / "containerd"}"
state = "{layout.run_dir / "containerd"}"
# Snapshotters this machine cannot use only slow the start down.
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{layout.containerd_socket}"

[{cri}]
  sandbox_image = "{PAUSE_REF}"
  # This process may not lower oom_score_adj (no CAP_SYS_RESOURCE): clamp instead of failing.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  BinaryName = "{RUNC}"

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{layout.cni_conf_dir}"
"""


def cni_config(layout: Layout) -> dict[str, Any]:
    # The harness gives the bridge its addresses (node address and pod gateway) itself:
    # with isGateway the plugin refuses a bridge that holds any address but the gateway.
    # No masquerading: pod traffic has no business leaving this machine.
    return {
        "cniVersion": "0.4.0",
        "name": f"kube-harness-{layout.name}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": layout.bridge,
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(POD_CIDR), "gateway": POD_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.state_dir / "cni-ipam"),
                },
            },
        ],
    }


def kubelet_config(layout: Layout, options: ClusterOptions) -> dict[str, Any]:
    pki = layout.pki_dir
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": LOOPBACK_PORTS["kubelet healthz"],
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki / "kubelet-server.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-server.key"),
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": layout.cgroup_parent,
        "failSwapOn": False,
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        # No host resolvers in pods: cluster traffic stays on this machine.
        "resolvConf": "",
        # containerd 1.6 cannot pin images and no registry can give the pause image back.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "nodeStatusUpdateFrequency": f"{options.timings.kubelet_node_status_update_s}s",
        "serializeImagePulls": False,
        "maxPods": 110,
        "kubeAPIQPS": 50,
        "kubeAPIBurst": 100,
        "syncFrequency": "10s",
        # Inside the state folder, so that `down` removes container logs too.
        "podLogsDir": str(layout.pod_logs_dir),
    }


def kube_proxy_config(layout: Layout) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.config_dir / "kube-proxy.kubeconfig")},
        # iptables mode: the nftables mode cannot serve NodePorts on 127.0.0.1.
        "mode": "iptables",
        "clusterCIDR": str(POD_CIDR),
        "hostnameOverride": layout.node_name,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{LOOPBACK_PORTS['kube-proxy healthz']}",
        "metricsBindAddress": f"127.0.0.1:{LOOPBACK_PORTS['kube-proxy metrics']}",
        # NodePorts answer on loopback and the node address, never on external interfaces.
        "nodePortAddresses": ["127.0.0.0/8", str(NODE_CIDR)],
        "iptables": {"localhostNodePorts": True, "minSyncPeriod": "1s", "syncPeriod": "30s"},
        # Leave the machine-wide conntrack sysctls alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


KUBECONFIG_USERS = {
    "kube-controller-manager": "system:kube-controller-manager",
    "kube-scheduler": "system:kube-scheduler",
    "kube-proxy": "system:kube-proxy",
    "kubelet": "system:node",
}


def write_configs(layout: Layout, options: ClusterOptions) -> None:
    """Write every component's configuration into the state folder."""
    config = layout.config_dir
    config.mkdir(parents=True, exist_ok=True)
    for component, user in KUBECONFIG_USERS.items():
        cert = "kubelet-client" if component == "kubelet" else component
        write_private(config / f"{component}.kubeconfig", kubeconfig_text(layout, cert, user))
    (config / "containerd.toml").write_text(containerd_config(layout))
    layout.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    (layout.cni_conf_dir / "10-kube-harness.conflist").write_text(
        json.dumps(cni_config(layout), indent=2)
    )
    (config / "kubelet.yaml").write_text(yaml.safe_dump(kubelet_config(layout, options)))
    (config / "kube-proxy.yaml").write_text(yaml.safe_dump(kube_proxy_config(layout)))


def _flags(flags: Mapping[str, str]) -> list[str]:
    return [f"--{k}={v}" for k, v in flags.items()]


def component_specs(
    layout: Layout, options: ClusterOptions, binaries: Mapping[str, Path]
) -> list[dict[str, Any]]:
    """What the supervisor runs, in start order: name, argv and files to wait for."""
    pki = layout.pki_dir
    config = layout.config_dir
    etcd_url = f"https://127.0.0.1:{ETCD_CLIENT_PORT}"
    peer_url = f"https://127.0.0.1:{ETCD_PEER_PORT}"
    etcd = {
        "name": "node",
        "data-dir": str(layout.state_dir / "etcd"),
        "listen-client-urls": etcd_url,
        "advertise-client-urls": etcd_url,
        "listen-peer-urls": peer_url,
        "initial-advertise-peer-urls": peer_url,
        "initial-cluster": f"node={peer_url}",
        "cert-file": str(pki / "etcd-server.crt"),
        "key-file": str(pki / "etcd-server.key"),
        "trusted-ca-file": str(pki / "etcd-ca.crt"),
        "client-cert-auth": "true",
        "peer-cert-file": str(pki / "etcd-server.crt"),
        "peer-key-file": str(pki / "etcd-server.key"),
        "peer-trusted-ca-file": str(pki / "etcd-ca.crt"),
        "peer-client-cert-auth": "true",
    }
    apiserver = {
        "advertise-address": NODE_IP,
        "bind-address": NODE_IP,
        "secure-port": str(APISERVER_PORT),
        "etcd-servers": etcd_url,
        "etcd-cafile": str(pki / "etcd-ca.crt"),
        "etcd-certfile": str(pki / "apiserver-etcd-client.crt"),
        "etcd-keyfile": str(pki / "apiserver-etcd-client.key"),
        "client-ca-file": str(pki / "ca.crt"),
        "tls-cert-file": str(pki / "apiserver.crt"),
        "tls-private-key-file": str(pki / "apiserver.key"),
        "kubelet-client-certificate": str(pki / "apiserver-kubelet-client.crt"),
        "kubelet-client-key": str(pki / "apiserver-kubelet-client.key"),
        "kubelet-certificate-authority": str(pki / "ca.crt"),
        "kubelet-preferred-address-types": "InternalIP",
        "service-cluster-ip-range": str(SERVICE_CIDR),
        "service-account-issuer": f"https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
        "service-account-key-file": str(pki / "sa.pub"),
        "service-account-signing-key-file": str(pki / "sa.key"),
        "authorization-mode": "Node,RBAC",
        "anonymous-auth": "false",
        "enable-admission-plugins": "NodeRestriction",
        "allow-privileged": "true",
        # Aggregation layer, for metrics-server.
        "requestheader-client-ca-file": str(pki / "front-proxy-ca.crt"),
        "requestheader-allowed-names": "front-proxy-client",
        "requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "requestheader-group-headers": "X-Remote-Group",
        "requestheader-username-headers": "X-Remote-User",
        "proxy-client-cert-file": str(pki / "front-proxy-client.crt"),
        "proxy-client-key-file": str(pki / "front-proxy-client.key"),
        "enable-aggregator-routing": "true",
        **options.timings.apiserver_flags(),
    }
    controller_kubeconfig = str(config / "kube-controller-manager.kubeconfig")
    controller_manager = {
        "kubeconfig": controller_kubeconfig,
        "authentication-kubeconfig": controller_kubeconfig,
        "authorization-kubeconfig": controller_kubeconfig,
        "bind-address": "127.0.0.1",
        "secure-port": str(LOOPBACK_PORTS["kube-controller-manager"]),
        "cluster-name": layout.name,
        "cluster-signing-cert-file": str(pki / "ca.crt"),
        "cluster-signing-key-file": str(pki / "ca.key"),
        "root-ca-file": str(pki / "ca.crt"),
        "service-account-private-key-file": str(pki / "sa.key"),
        "use-service-account-credentials": "true",
        "service-cluster-ip-range": str(SERVICE_CIDR),
        "allocate-node-cidrs": "false",
        # One instance only: leader election would just delay the start.
        "leader-elect": "false",
        # At start it creates a service account and token per controller: do not throttle.
        "kube-api-qps": "100",
        "kube-api-burst": "200",
        **options.timings.controller_manager_flags(),
    }
    scheduler_kubeconfig = str(config / "kube-scheduler.kubeconfig")
    scheduler = {
        "kubeconfig": scheduler_kubeconfig,
        "authentication-kubeconfig": scheduler_kubeconfig,
        "authorization-kubeconfig": scheduler_kubeconfig,
        "bind-address": "127.0.0.1",
        "secure-port": str(LOOPBACK_PORTS["kube-scheduler"]),
        "leader-elect": "false",
    }
    kubelet = {
        "config": str(config / "kubelet.yaml"),
        "kubeconfig": str(config / "kubelet.kubeconfig"),
        "hostname-override": layout.node_name,
        "node-ip": NODE_IP,
        "root-dir": str(layout.state_dir / "kubelet"),
    }
    # Started before the API server listens, they would exit and wait out a back-off.
    api_port = f"tcp://{NODE_IP}:{APISERVER_PORT}"
    return [
        {"name": "etcd", "argv": [str(binaries["etcd"]), *_flags(etcd)]},
        {
            "name": "containerd",
            "argv": ["containerd", "--config", str(config / "containerd.toml")],
        },
        {"name": "kube-apiserver", "argv": [str(binaries["kube-apiserver"]), *_flags(apiserver)]},
        {
            "name": "kube-controller-manager",
            "argv": [str(binaries["kube-controller-manager"]), *_flags(controller_manager)],
            "wait_for": [api_port],
        },
        {
            "name": "kube-scheduler",
            "argv": [str(binaries["kube-scheduler"]), *_flags(scheduler)],
            "wait_for": [api_port],
        },
        {
            "name": "kubelet",
            "argv": [str(binaries["kubelet"]), *_flags(kubelet)],
            "wait_for": [str(layout.containerd_socket), str(layout.images_ready)],
        },
        {
            "name": "kube-proxy",
            "argv": [
                str(binaries["kube-proxy"]),
                f"--config={config / 'kube-proxy.yaml'}",
            ],
        },
    ]
