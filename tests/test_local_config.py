"""Pure logic of the local provider: names, addresses, component configuration, addons."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

from harness.cluster import addons
from harness.cluster.local import components
from harness.cluster.local.layout import (
    CLUSTER_CIDRS,
    DNS_SERVICE_IP,
    KUBERNETES_SERVICE_IP,
    NODE_IP,
    Layout,
)
from harness.cluster.local.pki import certificates
from harness.cluster.provider import ClusterOptions, Timings
from harness.errors import InvalidConfiguration

BINARIES = {
    name: Path(f"/bin/{name}")
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                 "kubelet", "kube-proxy")
}  # fmt: skip


@pytest.mark.parametrize("name", ["kube-harness", "a", "a-very-long-cluster-name-indeed"])
def test_interface_and_chain_names_fit_kernel_limits(name: str) -> None:
    layout = Layout(name)
    assert len(layout.bridge) <= 15
    assert len(layout.forward_chain) <= 28
    assert layout.bridge.startswith("kh-")


def test_long_names_that_share_a_prefix_get_different_bridges() -> None:
    assert Layout("cluster-number-one").bridge != Layout("cluster-number-two").bridge


def test_cluster_ranges_are_private_and_disjoint() -> None:
    assert all(cidr.is_private for cidr in CLUSTER_CIDRS)
    for i, a in enumerate(CLUSTER_CIDRS):
        assert not any(a.overlaps(b) for b in CLUSTER_CIDRS[i + 1 :])
    assert ipaddress.ip_address(KUBERNETES_SERVICE_IP) in CLUSTER_CIDRS[2]
    assert ipaddress.ip_address(DNS_SERVICE_IP) in CLUSTER_CIDRS[2]


def flags(spec: dict) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in spec["argv"][1:] if "=" in a)


def test_control_plane_flags_carry_security_settings_and_timings() -> None:
    timings = Timings(hpa_sync_period_s=3, node_monitor_grace_period_s=11, not_ready_toleration_s=7)
    specs = components.component_specs(Layout("t"), ClusterOptions(timings=timings), BINARIES)
    by_name = {s["name"]: s for s in specs}
    apiserver = flags(by_name["kube-apiserver"])
    assert apiserver["bind-address"] == NODE_IP
    assert apiserver["anonymous-auth"] == "false"
    assert apiserver["authorization-mode"] == "Node,RBAC"
    assert apiserver["default-not-ready-toleration-seconds"] == "7"
    assert "proxy-client-cert-file" in apiserver and "requestheader-client-ca-file" in apiserver
    controller_manager = flags(by_name["kube-controller-manager"])
    assert controller_manager["horizontal-pod-autoscaler-sync-period"] == "3s"
    assert controller_manager["node-monitor-grace-period"] == "11s"
    assert controller_manager["bind-address"] == "127.0.0.1"
    assert flags(by_name["etcd"])["client-cert-auth"] == "true"
    assert by_name["kubelet"]["wait_for"][-1].endswith("images-imported")


def test_kubelet_and_kube_proxy_configuration_fit_this_machine() -> None:
    layout = Layout("t")
    kubelet = components.kubelet_config(
        layout, ClusterOptions(timings=Timings(kubelet_node_status_update_s=3))
    )
    assert kubelet["cgroupDriver"] == "cgroupfs"
    assert kubelet["failSwapOn"] is False
    assert kubelet["imageGCHighThresholdPercent"] == 100
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    assert kubelet["readOnlyPort"] == 0
    assert kubelet["nodeStatusUpdateFrequency"] == "3s"
    assert kubelet["cgroupRoot"] == "/kube-harness-t"
    proxy = components.kube_proxy_config(layout)
    assert proxy["mode"] == "iptables"
    assert proxy["conntrack"]["maxPerCore"] == 0
    assert "127.0.0.0/8" in proxy["nodePortAddresses"]
    assert "0.0.0.0/0" not in proxy["nodePortAddresses"]


def test_containerd_config_clamps_oom_score_and_names_the_pause_image() -> None:
    text = components.containerd_config(Layout("t"))
    assert "restrict_oom_score_adj = true" in text
    assert 'sandbox_image = "localhost/kube-harness/pause:1.0"' in text
    assert "SystemdCgroup = false" in text


def test_certificates_cover_every_component() -> None:
    certs = {c.name: c for c in certificates(Layout("t"))}
    assert certs["kubelet-client"].common_name == "system:node:t-node"
    assert certs["kubelet-client"].organization == "system:nodes"
    assert NODE_IP in certs["apiserver"].hosts and KUBERNETES_SERVICE_IP in certs["apiserver"].hosts
    assert certs["etcd-server"].ca == "etcd-ca"
    assert certs["front-proxy-client"].ca == "front-proxy-ca"


def test_addons_render_to_valid_manifests() -> None:
    coredns = list(
        yaml.safe_load_all(
            addons.render(
                "coredns",
                IMAGE="x/coredns:1",
                DNS_IP=DNS_SERVICE_IP,
                CLUSTER_DOMAIN="cluster.local",
            )
        )
    )
    service = next(d for d in coredns if d["kind"] == "Service")
    assert service["spec"]["clusterIP"] == DNS_SERVICE_IP
    corefile = next(d for d in coredns if d["kind"] == "ConfigMap")["data"]["Corefile"]
    assert "forward" not in corefile  # names outside the cluster are never sent off the machine
    metrics = list(yaml.safe_load_all(addons.render(
        "metrics-server", IMAGE="x/ms:1", METRIC_RESOLUTION="15s",
        KUBELET_TLS_ARGS="--kubelet-insecure-tls")))  # fmt: skip
    deployment = next(d for d in metrics if d["kind"] == "Deployment")
    assert (
        "--metric-resolution=15s" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    with pytest.raises(KeyError):
        addons.render("coredns", IMAGE="x")


def test_the_local_provider_runs_one_node_only() -> None:
    from harness.cluster.local import LocalProvider

    with pytest.raises(InvalidConfiguration, match="one node"):
        LocalProvider(ClusterOptions(workers=1))


def test_waiting_for_a_cluster_that_is_not_up_says_so() -> None:
    from harness.cluster.local import LocalProvider

    with pytest.raises(InvalidConfiguration, match="kh-absent is not up"):
        LocalProvider(ClusterOptions(name="kh-absent")).wait_ready(timeout=1)


def test_private_files_replace_a_symlink_instead_of_following_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    path = tmp_path / "kubeconfig"
    path.symlink_to(victim)
    components.write_private(path, "secret")
    assert victim.read_text() == "keep"
    assert not path.is_symlink() and path.read_text() == "secret"
    assert path.stat().st_mode & 0o777 == 0o600
