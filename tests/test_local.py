"""End-to-end tests of the local provider on a real single-node cluster (one per module)."""

from __future__ import annotations

import json
import re
import socket
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from string import Template

import pytest
from kubernetes import client

from harness.cluster.local import LocalProvider
from harness.cluster.local.layout import (
    APISERVER_PORT,
    NODE_IP,
    POD_CIDR,
    SERVICE_CIDR,
)
from harness.cluster.provider import ClusterOptions, ClusterProvider
from harness.commands import run
from harness.errors import InvalidConfiguration
from harness.images.builders import busybox_image
from harness.kube import Kube
from harness.namespaces import create_namespace, namespace_name
from harness.run import Run
from harness.wait import Pending, wait_for

# These check the run's cluster; the two that stop part of it run alone (exclusive_cluster).
pytestmark = [pytest.mark.e2e]

DATA = Path(__file__).parent / "data" / "local"


@pytest.fixture(scope="module")
def local_cluster(cluster: ClusterProvider) -> LocalProvider:
    """The run's cluster, which these tests need to be the local provider's."""
    if not isinstance(cluster, LocalProvider):
        pytest.skip(f"these tests check the local provider; this run uses {cluster.name}")
    cluster.load_image(busybox_image()[0])
    return cluster


class Kubectl:
    def __init__(self, provider: LocalProvider, namespace: str) -> None:
        self.base = [
            provider.binaries()["kubectl"], "--kubeconfig", provider.kubeconfig(), "-n", namespace
        ]  # fmt: skip

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        return run([*self.base, *args], input=input, timeout=timeout)

    def apply(self, manifest: str, **values: str) -> None:
        text = Template((DATA / manifest).read_text()).substitute(values)
        self("apply", "-f", "-", input=text)


@pytest.fixture(scope="module")
def namespace(kube: Kube, harness_run: Run) -> Iterator[str]:
    """One namespace for the whole module (the plugin's is per test), shared by `web`."""
    name = namespace_name(harness_run.run_id)
    create_namespace(kube, name, run_id=harness_run.run_id, test=__name__)
    yield name
    kube.core.delete_namespace(name)

    def gone() -> bool | Pending:
        try:
            phase = kube.core.read_namespace(name).status.phase
        except client.ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return Pending(f"namespace {name} is {phase}")

    wait_for(gone, what=f"namespace {name} to be deleted", timeout=120)


@pytest.fixture(scope="module")
def web(local_cluster: LocalProvider, kube: Kube, namespace: str) -> Kubectl:
    """The `web` Deployment (2 busybox httpd pods), its NodePort Service and an HPA."""
    kubectl = Kubectl(local_cluster, namespace)
    kubectl.apply("web.yaml", IMAGE=busybox_image()[1])
    wait_for(
        lambda: _ready_pods(kube, namespace, "app=web", 2),
        what="2 web pods Running and Ready",
        timeout=120,
    )
    return kubectl


def _ready_pods(kube: Kube, namespace: str, selector: str, count: int) -> list | Pending:
    pods = kube.core.list_namespaced_pod(namespace, label_selector=selector).items
    ready = [
        p
        for p in pods
        if p.status.phase == "Running"
        and p.metadata.deletion_timestamp is None
        and all(c.ready for c in p.status.container_statuses or [])
    ]
    if len(ready) < count:
        return Pending(f"{len(ready)}/{count} ready: " + ", ".join(
            f"{p.metadata.name}={p.status.phase}" for p in pods))  # fmt: skip
    return ready


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def test_node_is_ready(kube: Kube, local_cluster: LocalProvider) -> None:
    (node,) = kube.core.list_node().items
    assert node.metadata.name == local_cluster.layout.node_name
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    assert node.status.addresses[0].address == NODE_IP


def test_deployment_pods_run_on_the_pod_network(kube: Kube, namespace: str, web: Kubectl) -> None:
    pods = kube.core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    assert all(p.status.phase == "Running" for p in pods)
    assert all(p.status.pod_ip.startswith("10.214.") for p in pods)


def test_service_answers_by_cluster_ip_and_on_localhost_nodeport(
    kube: Kube, namespace: str, web: Kubectl
) -> None:
    service = kube.core.read_namespaced_service("web", namespace)
    names = {p.metadata.name for p in kube.core.list_namespaced_pod(namespace).items}
    by_cluster_ip = wait_for(
        lambda: _get(f"http://{service.spec.cluster_ip}/"),
        what="the web Service by ClusterIP",
        timeout=30,
        transient=(OSError,),
    )
    node_port = service.spec.ports[0].node_port
    by_node_port = wait_for(
        lambda: _get(f"http://127.0.0.1:{node_port}/"),
        what="the web Service on 127.0.0.1 NodePort",
        timeout=30,
        transient=(OSError,),
    )
    assert by_cluster_ip.strip() in names
    assert by_node_port.strip() in names


def test_pods_reach_each_other_and_resolve_service_names(
    kube: Kube, namespace: str, web: Kubectl
) -> None:
    pods = kube.core.list_namespaced_pod(namespace, label_selector="app=web").items
    first, second = pods[0], pods[1]
    fqdn = f"web.{namespace}.svc.cluster.local"
    service_ip = kube.core.read_namespaced_service("web", namespace).spec.cluster_ip
    looked_up = web("exec", first.metadata.name, "--", "nslookup", fqdn)
    assert service_ip in looked_up
    direct = web(
        "exec", first.metadata.name, "--", "wget", "-qO-", f"http://{second.status.pod_ip}:8080/"
    )
    assert direct.strip() == second.metadata.name
    through_service = web("exec", first.metadata.name, "--", "wget", "-qO-", f"http://{fqdn}/")
    assert through_service.strip() in {p.metadata.name for p in pods}


def test_pods_reach_the_api_server_through_the_kubernetes_service(
    web: Kubectl, kube: Kube, namespace: str
) -> None:
    pod = kube.core.list_namespaced_pod(namespace, label_selector="app=web").items[0]
    # The pod's service-account token, over TLS, through the `kubernetes` Service's ClusterIP.
    token = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    script = (
        f'wget -qO- --no-check-certificate --header "Authorization: Bearer $(cat {token})" '
        "https://kubernetes.default.svc.cluster.local/api"
    )
    answer = json.loads(web("exec", pod.metadata.name, "--", "sh", "-c", script))
    assert answer["kind"] == "APIVersions"


def test_kubectl_top_pods_returns_numbers(local_cluster: LocalProvider, web: Kubectl) -> None:
    def numbers() -> str | Pending:
        try:
            out = web("top", "pods")
        except Exception as exc:
            return Pending(str(exc).splitlines()[0])
        return out if re.search(r"web-\S+\s+\d+m\s+\d+Mi", out) else Pending(out)

    assert "web-" in wait_for(numbers, what="kubectl top pods to list web", timeout=90, interval=2)


def test_deleted_pod_is_replaced_by_its_replicaset(
    kube: Kube, namespace: str, web: Kubectl
) -> None:
    victim = kube.core.list_namespaced_pod(namespace, label_selector="app=web").items[0]
    kube.core.delete_namespaced_pod(victim.metadata.name, namespace)

    def replaced() -> list | Pending:
        ready = _ready_pods(kube, namespace, "app=web", 2)
        if isinstance(ready, Pending):
            return ready
        if victim.metadata.name in {p.metadata.name for p in ready}:
            return Pending(f"{victim.metadata.name} still listed")
        return ready

    assert len(wait_for(replaced, what="a replacement web pod", timeout=90)) >= 2


def test_failing_liveness_probe_restarts_the_container(
    kube: Kube, local_cluster: LocalProvider, namespace: str
) -> None:
    Kubectl(local_cluster, namespace).apply("liveness.yaml", IMAGE=busybox_image()[1])

    def restarted() -> int | Pending:
        statuses = kube.core.read_namespaced_pod("flaky", namespace).status.container_statuses
        count = statuses[0].restart_count if statuses else 0
        return count if count >= 1 else Pending(f"restart count {count}")

    try:
        assert wait_for(restarted, what="flaky to be restarted", timeout=60, interval=1) >= 1
    finally:
        kube.core.delete_namespaced_pod("flaky", namespace, grace_period_seconds=0)


def test_hpa_reports_current_cpu_utilisation(kube: Kube, namespace: str, web: Kubectl) -> None:
    def utilisation() -> int | Pending:
        hpa = kube.autoscaling.read_namespaced_horizontal_pod_autoscaler("web", namespace)
        for metric in hpa.status.current_metrics or []:
            if metric.resource and metric.resource.current.average_utilization is not None:
                return metric.resource.current.average_utilization
        conditions = {c.type: c.message for c in hpa.status.conditions or []}
        return Pending(str(conditions.get("ScalingActive", "no status yet")))

    assert (
        wait_for(utilisation, what="the HPA to see CPU utilisation", timeout=120, interval=2) >= 0
    )


def _route(address: str) -> dict:
    return json.loads(run(["ip", "-j", "route", "get", address]))[0]


def test_no_cluster_address_routes_via_the_default_gateway(
    kube: Kube, namespace: str, web: Kubectl, local_cluster: LocalProvider
) -> None:
    default = json.loads(run(["ip", "-j", "route", "show", "default"]))
    pod_ip = kube.core.list_namespaced_pod(namespace).items[0].status.pod_ip
    cluster_ip = kube.core.read_namespaced_service("web", namespace).spec.cluster_ip
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
    kube: Kube, local_cluster: LocalProvider
) -> None:
    (node,) = local_cluster.nodes()

    def ready_is(wanted: str) -> bool | Pending:
        conditions = kube.core.read_node(node).status.conditions
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
