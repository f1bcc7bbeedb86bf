"""What every provider's cluster must do for the scenarios, checked end to end on the run's
cluster (local by default; `--cluster-provider=kind` runs the same checks on kind): Services
by name and on 127.0.0.1, pod-to-pod traffic, DNS, the API from pods, metrics, HPA
utilisation, self-healing and liveness probes."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path
from string import Template

from harness.cluster.provider import ClusterProvider
from harness.deploy import Deployed
from harness.images.builders import busybox_image
from harness.kube import Kube
from harness.wait import Pending, wait_for

CLUSTER_DATA = Path(__file__).parent / "data" / "cluster"
Kubectl = Callable[..., str]  # the `kubectl` fixture: kubectl in the module's namespace


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


def _web_pods(kube: Kube, web: Deployed) -> list:
    return kube.core.list_namespaced_pod(web.namespace, label_selector="app=web").items


def test_every_node_is_ready(kube_api: Kube, cluster: ClusterProvider) -> None:
    nodes = kube_api.core.list_node().items
    assert nodes
    for node in nodes:
        assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    if cluster.capabilities.creates_clusters:
        assert len(nodes) == 1 + cluster.options.workers


def test_pods_get_their_own_addresses(kube_api: Kube, web: Deployed) -> None:
    pods = _web_pods(kube_api, web)
    node_ips = {a.address for n in kube_api.core.list_node().items for a in n.status.addresses}
    addresses = {p.status.pod_ip for p in pods}
    assert len(addresses) == len(pods) == 2
    assert not addresses & node_ips


def test_service_answers_on_a_localhost_nodeport(kube_api: Kube, web: Deployed) -> None:
    assert web.base_url.startswith("http://127.0.0.1:")
    names = {p.metadata.name for p in _web_pods(kube_api, web)}
    with urllib.request.urlopen(web.base_url + "/", timeout=5) as response:
        assert response.read().decode().strip() in names


def test_pods_reach_each_other_and_resolve_service_names(
    kube_api: Kube, web: Deployed, kubectl: Kubectl
) -> None:
    first, second = _web_pods(kube_api, web)[:2]
    fqdn = f"web.{web.namespace}.svc.cluster.local"
    service_ip = kube_api.core.read_namespaced_service("web", web.namespace).spec.cluster_ip
    assert service_ip in kubectl("exec", first.metadata.name, "--", "nslookup", fqdn)
    # On a multi-node cluster the two pods usually sit on different nodes.
    direct = kubectl(
        "exec", first.metadata.name, "--", "wget", "-qO-", f"http://{second.status.pod_ip}:8080/"
    )
    assert direct.strip() == second.metadata.name
    through_service = kubectl("exec", first.metadata.name, "--", "wget", "-qO-", f"http://{fqdn}/")
    assert through_service.strip() in {first.metadata.name, second.metadata.name}


def test_pods_reach_the_api_server_through_the_kubernetes_service(
    kube_api: Kube, web: Deployed, kubectl: Kubectl
) -> None:
    pod = _web_pods(kube_api, web)[0]
    # The pod's service-account token, over TLS, through the `kubernetes` Service's ClusterIP.
    token = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    script = (
        f'wget -qO- --no-check-certificate --header "Authorization: Bearer $(cat {token})" '
        "https://kubernetes.default.svc.cluster.local/api"
    )
    answer = json.loads(kubectl("exec", pod.metadata.name, "--", "sh", "-c", script))
    assert answer["kind"] == "APIVersions"


def test_kubectl_top_pods_returns_numbers(web: Deployed, kubectl: Kubectl) -> None:
    def numbers() -> str | Pending:
        try:
            out = kubectl("top", "pods")
        except Exception as exc:
            return Pending(str(exc).splitlines()[0])
        return out if re.search(r"web-\S+\s+\d+m\s+\d+Mi", out) else Pending(out)

    assert "web-" in wait_for(numbers, what="kubectl top pods to list web", timeout=90, interval=2)


def test_hpa_reports_current_cpu_utilisation(kube_api: Kube, web: Deployed) -> None:
    def utilisation() -> int | Pending:
        hpa = kube_api.autoscaling.read_namespaced_horizontal_pod_autoscaler("web", web.namespace)
        for metric in hpa.status.current_metrics or []:
            if metric.resource and metric.resource.current.average_utilization is not None:
                return metric.resource.current.average_utilization
        conditions = {c.type: c.message for c in hpa.status.conditions or []}
        return Pending(str(conditions.get("ScalingActive", "no status yet")))

    assert (
        wait_for(utilisation, what="the HPA to see CPU utilisation", timeout=120, interval=2) >= 0
    )


def test_deleted_pod_is_replaced_by_its_replicaset(kube_api: Kube, web: Deployed) -> None:
    victim = _web_pods(kube_api, web)[0]
    kube_api.core.delete_namespaced_pod(victim.metadata.name, web.namespace)

    def replaced() -> list | Pending:
        ready = _ready_pods(kube_api, web.namespace, "app=web", 2)
        if isinstance(ready, Pending):
            return ready
        if victim.metadata.name in {p.metadata.name for p in ready}:
            return Pending(f"{victim.metadata.name} still listed")
        return ready

    assert len(wait_for(replaced, what="a replacement web pod", timeout=90)) >= 2


def test_failing_liveness_probe_restarts_the_container(
    kube_api: Kube, web: Deployed, kubectl: Kubectl
) -> None:
    manifest = Template((CLUSTER_DATA / "liveness.yaml").read_text())
    kubectl("apply", "-f", "-", input=manifest.substitute(IMAGE=busybox_image()[1]))

    def restarted() -> int | Pending:
        statuses = kube_api.core.read_namespaced_pod(
            "flaky", web.namespace
        ).status.container_statuses
        count = statuses[0].restart_count if statuses else 0
        return count if count >= 1 else Pending(f"restart count {count}")

    try:
        assert wait_for(restarted, what="flaky to be restarted", timeout=60, interval=1) >= 1
    finally:
        kube_api.core.delete_namespaced_pod("flaky", web.namespace, grace_period_seconds=0)
