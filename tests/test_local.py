"""End-to-end tests of the local provider on a real single-node cluster (one per module)."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness.cluster.local import LocalProvider
from harness.cluster.local.layout import (
    APISERVER_PORT,
    NODE_IP,
    POD_CIDR,
    SERVICE_CIDR,
)
from harness.cluster.provider import ClusterOptions, ClusterProvider
from harness.commands import run
from harness.deploy import Deployed
from harness.errors import InvalidConfiguration
from harness.kube import Kube
from harness.wait import Pending, wait_for

# These check the run's cluster; the two that stop part of it run alone (exclusive_cluster).


@pytest.fixture(scope="module")
def local_cluster(cluster: ClusterProvider) -> LocalProvider:
    """The run's cluster, which these tests need to be the local provider's."""
    if not isinstance(cluster, LocalProvider):
        pytest.skip(f"these tests check the local provider; this run uses {cluster.name}")
    return cluster


def test_node_is_ready(kube_api: Kube, local_cluster: LocalProvider) -> None:
    (node,) = kube_api.core.list_node().items
    assert node.metadata.name == local_cluster.layout.node_name
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    assert node.status.addresses[0].address == NODE_IP


def test_service_answers_by_cluster_ip_from_this_machine(
    kube_api: Kube, web: Deployed, local_cluster: LocalProvider
) -> None:
    """The Service range is routed onto the node's bridge, so ClusterIPs answer from here."""
    service = kube_api.core.read_namespaced_service("web", web.namespace)
    names = {p.metadata.name for p in kube_api.core.list_namespaced_pod(web.namespace).items}
    by_cluster_ip = wait_for(
        lambda: _get(f"http://{service.spec.cluster_ip}/"),
        what="the web Service by ClusterIP",
        timeout=30,
        transient=(OSError,),
    )
    assert by_cluster_ip.strip() in names


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def _route(address: str) -> dict:
    return json.loads(run(["ip", "-j", "route", "get", address]))[0]


def test_no_cluster_address_routes_via_the_default_gateway(
    kube_api: Kube, web: Deployed, local_cluster: LocalProvider
) -> None:
    default = json.loads(run(["ip", "-j", "route", "show", "default"]))
    pod_ip = kube_api.core.list_namespaced_pod(web.namespace).items[0].status.pod_ip
    cluster_ip = kube_api.core.read_namespaced_service("web", web.namespace).spec.cluster_ip
    addresses = [
        NODE_IP, pod_ip, cluster_ip,
        str(POD_CIDR[-2]), str(SERVICE_CIDR[-2]), str(SERVICE_CIDR[1]), "10.213.0.254",
    ]  # fmt: skip
    for address in addresses:
        route = _route(address)
        assert "gateway" not in route, f"{address} routes via {route['gateway']}"
        assert route["dev"] in ("lo", local_cluster.layout.bridge), f"{address}: {route}"
    assert all(_route(a)["dev"] != d["dev"] for a in addresses for d in default)


def test_pod_packets_to_other_destinations_are_dropped_on_this_machine(
    local_cluster: LocalProvider,
) -> None:
    chain = local_cluster.layout.forward_chain
    assert f"-A FORWARD -j {chain}" in run(["iptables", "-S", "FORWARD"])
    rules = run(["iptables", "-S", chain]).splitlines()
    assert rules[-1] == f"-A {chain} -s {POD_CIDR} -j DROP"


def test_api_server_listens_only_on_the_node_address(local_cluster: LocalProvider) -> None:
    lines = run(["ss", "-Hltn", f"sport = :{APISERVER_PORT}"]).splitlines()
    listeners = [line.split()[3] for line in lines]
    assert f"{NODE_IP}:{APISERVER_PORT}" in listeners
    assert not any(a.startswith(("0.0.0.0", "*", "[::]")) for a in listeners)
    external = json.loads(run(["ip", "-j", "-4", "addr", "show", "scope", "global"]))
    for link in external:
        if link["ifname"] == local_cluster.layout.bridge:
            continue
        for addr in link.get("addr_info", []):
            with socket.socket() as s, pytest.raises(OSError):
                s.settimeout(2)
                s.connect((addr["local"], APISERVER_PORT))


def test_api_refuses_anonymous_requests_and_kubeconfig_is_private(
    local_cluster: LocalProvider,
) -> None:
    assert stat.S_IMODE(local_cluster.kubeconfig().stat().st_mode) == 0o600
    ca = local_cluster.layout.pki_dir / "ca.crt"
    import ssl

    context = ssl.create_default_context(cafile=str(ca))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(
            f"https://{NODE_IP}:{APISERVER_PORT}/api/v1/namespaces", context=context, timeout=5
        )
    assert refused.value.code == 401


def test_component_logs_are_collected(local_cluster: LocalProvider, tmp_path: Path) -> None:
    logs = {p.stem: p for p in local_cluster.collect_logs(tmp_path)}
    for component in ("etcd", "containerd", "kube-apiserver", "kube-controller-manager",
                      "kube-scheduler", "kubelet", "kube-proxy", "supervisor"):  # fmt: skip
        assert logs[component].stat().st_size > 0, component


@pytest.mark.exclusive_cluster
def test_supervisor_restarts_a_killed_component(local_cluster: LocalProvider) -> None:
    before = local_cluster.component_status()["kube-scheduler"]
    subprocess.run(["kill", "-9", str(before["pid"])], check=True)

    def restarted() -> dict | Pending:
        now = local_cluster.component_status()["kube-scheduler"]
        if now["running"] and now["pid"] != before["pid"]:
            return now
        return Pending(f"kube-scheduler: {now}")

    after = wait_for(restarted, what="kube-scheduler to be restarted", timeout=30)
    assert after["restarts"] == before["restarts"] + 1


def test_up_again_reuses_the_running_cluster(local_cluster: LocalProvider) -> None:
    pid = local_cluster.component_status()["kube-apiserver"]["pid"]
    LocalProvider(ClusterOptions()).create()
    assert local_cluster.component_status()["kube-apiserver"]["pid"] == pid


def test_a_second_cluster_is_refused_and_leaves_nothing(local_cluster: LocalProvider) -> None:
    second = LocalProvider(ClusterOptions(name="kh-second"), binaries=local_cluster.binaries())
    with pytest.raises(InvalidConfiguration, match="local cluster 'kube-harness' is running"):
        second.create()
    assert not second.layout.state_dir.exists()
    assert not second.layout.run_dir.exists()
    assert not Path("/sys/class/net", second.layout.bridge).exists()


@pytest.mark.exclusive_cluster
def test_stopped_node_goes_not_ready_and_comes_back(
    kube_api: Kube, local_cluster: LocalProvider
) -> None:
    (node,) = local_cluster.nodes()

    def ready_is(wanted: str) -> bool | Pending:
        conditions = kube_api.core.read_node(node).status.conditions
        status = {c.type: c.status for c in conditions}["Ready"]
        return True if status == wanted else Pending(f"Ready={status}")

    local_cluster.stop_node(node)
    try:
        status = local_cluster.component_status()
        assert not status["kubelet"]["running"] and not status["containerd"]["running"]
        grace = local_cluster.options.timings.node_monitor_grace_period_s
        wait_for(lambda: ready_is("Unknown"), what=f"{node} NotReady", timeout=grace + 30)
    finally:
        local_cluster.start_node(node)
    wait_for(lambda: ready_is("True"), what=f"{node} Ready again", timeout=60)
