"""NodePort choice and rollout verdicts of harness.deploy, without a cluster."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.cluster.provider import ClusterProvider
from harness.deploy import (
    FATAL_WAITING_REASONS,
    FIXES,
    NodePortPool,
    NodePortRotation,
    apply_all,
    deploy,
    last_probe_failure,
    rollout_verdict,
    wait_node_ports_answer,
)
from harness.errors import HarnessError, InvalidConfiguration, WaitAborted, WaitTimeout
from harness.image_availability import runtime_images
from harness.images.demo import DEMO_REPOSITORY, build_demo_images, demo_image_ref
from harness.kube import Kube
from harness.namespaces import create_namespace, delete_namespace, namespace_name
from harness.run import Run
from harness.wait import Pending, wait_for

ROOT = Path(__file__).resolve().parents[1]
CI_OVERLAY = ROOT / "manifests" / "overlays" / "ci"
STATUS_DATA = sorted((Path(__file__).parent / "data" / "deploy").glob("status-*.yaml"))
BAD_MANIFESTS = Path(__file__).parent / "data" / "manifests"


# --- verdicts on recorded status data -------------------------------------------------------


@pytest.mark.parametrize("path", STATUS_DATA, ids=lambda p: p.stem)
def test_rollout_verdict_on_recorded_status(path: Path) -> None:
    scenario = yaml.safe_load(path.read_text())
    expect = scenario["expect"]
    verdict = rollout_verdict(scenario["deployment"], scenario["pods"], scenario["events"])
    assert verdict.complete is expect["complete"]
    strict = rollout_verdict(
        scenario["deployment"], scenario["pods"], scenario["events"], old_pods_gone=True
    )
    assert strict.complete is expect.get("complete_once_old_pods_gone", expect["complete"])
    if expect["reason"] is None:
        assert verdict.problem is None
        told = verdict.state
    else:
        assert verdict.problem is not None, verdict.state
        assert verdict.problem.reason == expect["reason"]
        told = str(verdict.problem)
    for phrase in expect["mentions"]:
        assert phrase in told


def test_every_reason_that_aborts_the_wait_comes_with_a_fix() -> None:
    assert set(FATAL_WAITING_REASONS) <= set(FIXES)


def test_last_probe_failure_counts_only_that_pod_and_probe() -> None:
    def event(pod: str, message: str, count: int, at: str) -> dict[str, Any]:
        return {
            "involvedObject": {"name": pod},
            "reason": "Unhealthy",
            "message": message,
            "count": count,
            "lastTimestamp": at,
        }

    events = [
        event("a", "Liveness probe failed: timeout", 2, "2026-11-23T01:00:01Z"),
        event("a", "Readiness probe failed: HTTP probe failed with statuscode: 503", 4, "T02"),
        event("a", "Readiness probe failed: HTTP probe failed with statuscode: 503", 1, "T03"),
        event("b", "Readiness probe failed: connection refused", 9, "T09"),
    ]
    assert last_probe_failure("a", events) == (
        "Readiness probe failed: HTTP probe failed with statuscode: 503 (5x)"
    )
    assert last_probe_failure("c", events) is None


# --- NodePorts ------------------------------------------------------------------------------


def node_port_service(name: str, ports: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "t1"},
        "spec": {"type": "NodePort", "ports": [{"port": 80 + i} for i in range(ports)]},
    }


def test_pool_skips_ports_held_elsewhere() -> None:
    pool = NodePortPool(range(30080, 30090), {30080: "a/web", 30081: "b/web"})
    service = node_port_service("demo-nodeport", ports=2)
    assert pool.assign(service) == [30082, 30083]
    assert [p["nodePort"] for p in service["spec"]["ports"]] == [30082, 30083]


def test_rotation_hands_out_the_longest_idle_port_first(tmp_path: Path) -> None:
    """A NodePort used a moment ago may still have conntrack entries of rejected SYNs that
    would refuse the next test's load; the pool starts from the ports idle the longest."""
    rotation = NodePortRotation(tmp_path / "ports.json")
    ports = list(range(30080, 30084))
    assert rotation.order(ports) == ports
    rotation.note([30080])
    time.sleep(0.01)
    rotation.note([30082])
    assert rotation.order(ports) == [30081, 30083, 30080, 30082]
    pool = NodePortPool(rotation.order(ports), {30081: "a/web"})
    assert pool.take("b/web") == 30083


def test_rotation_survives_a_broken_record(tmp_path: Path) -> None:
    (tmp_path / "ports.json").write_text("not json")
    rotation = NodePortRotation(tmp_path / "ports.json")
    assert rotation.order([30081, 30080]) == [30081, 30080]
    rotation.note([30081])
    assert rotation.order([30081, 30080]) == [30080, 30081]


def test_pool_exhausted_names_who_holds_the_ports() -> None:
    pool = NodePortPool([30080, 30081], {30080: "a/web", 30081: "b/web"})
    with pytest.raises(HarnessError) as caught:
        pool.take("Service t1/demo")
    assert "30080: a/web" in str(caught.value)
    assert "30081: b/web" in str(caught.value)
    assert caught.value.fix


class RecordingApplier:
    """Stands in for the API server: refuses given NodePorts as already allocated."""

    def __init__(self, allocated: set[int], refuse: str | None = None) -> None:
        self.allocated = allocated
        self.refuse = refuse
        self.applied: list[tuple[str, bool, list[int]]] = []

    def apply(self, obj: dict[str, Any], *, dry_run: bool = False) -> None:
        ports = [p.get("nodePort") for p in obj.get("spec", {}).get("ports", [])]
        if any(p in self.allocated for p in ports):
            raise api_error(422, f"spec.ports[0].nodePort: Invalid value: {ports[0]}: "
                            "provided port is already allocated")  # fmt: skip
        if obj["metadata"]["name"] == self.refuse:
            raise api_error(422, 'Deployment.apps "demo" is invalid: .spec.foo: field not declared')
        self.applied.append((obj["metadata"]["name"], dry_run, ports))


def api_error(status: int, message: str) -> ApiException:
    error = ApiException(status=status, reason="Unprocessable Entity")
    error.body = json.dumps({"kind": "Status", "message": message})
    return error


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="127.0.0.2 is Linux-only")
def test_node_port_probe_never_comes_from_the_loads_address() -> None:
    """A refused probe leaves a conntrack entry that would later refuse the load's connection
    from the same address and port (kubernetes#48719); the probe must use another address."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        wait_node_ports_answer([port], timeout=5)
        connection, peer = server.accept()
        connection.close()
    assert peer[0] == "127.0.0.2"


def test_a_port_that_accepts_and_closes_at_once_is_not_answering() -> None:
    """What docker-proxy (kind's port mappings) does while the Service behind it refuses."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def close_each() -> None:
        with contextlib.suppress(OSError):  # the server socket is closed at the end
            while True:
                server.accept()[0].close()

    threading.Thread(target=close_each, daemon=True).start()
    try:
        with pytest.raises(WaitTimeout, match="closed the connection"):
            wait_node_ports_answer([port], timeout=1)
    finally:
        server.close()


def test_apply_all_moves_to_another_port_when_one_was_taken_meanwhile() -> None:
    pool = NodePortPool(range(30080, 30083), {})
    service = node_port_service("demo-nodeport")
    pool.assign(service)  # 30080, which another deploy takes before we apply
    applier = RecordingApplier(allocated={30080})
    apply_all(applier, [service], pool, dry_run=True)  # type: ignore[arg-type]
    assert applier.applied == [("demo-nodeport", True, [30081])]


def test_apply_all_reports_a_refused_object_by_name_and_reason() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "demo"}}
    applier = RecordingApplier(allocated=set(), refuse="demo")
    with pytest.raises(InvalidConfiguration) as caught:
        apply_all(applier, [deployment], NodePortPool([], {}), dry_run=True)  # type: ignore[arg-type]
    assert "Deployment demo is refused by the API server (422)" in str(caught.value)
    assert "field not declared" in str(caught.value)


# --- end to end, on the real cluster --------------------------------------------------------

DEMO_OVERLAY = CI_OVERLAY


@pytest.fixture(scope="module")
def demo_images(cluster: ClusterProvider) -> dict[str, str]:
    """The demo images built offline and loaded into the cluster; the mapping for deploy()."""
    for archive in build_demo_images(["v1", "v2"]):
        cluster.load_image(archive)
    return {DEMO_REPOSITORY: demo_image_ref("v1")}


def leftovers(kube: Kube, namespace: str) -> list[str]:
    """Everything a deploy could have created that is still in the namespace."""
    found = [
        f"Deployment {d.metadata.name}"
        for d in kube.apps.list_namespaced_deployment(namespace).items
    ]
    found += [f"Pod {p.metadata.name}" for p in kube.core.list_namespaced_pod(namespace).items]
    found += [
        f"Service {s.metadata.name}" for s in kube.core.list_namespaced_service(namespace).items
    ]
    found += [
        f"ConfigMap {c.metadata.name}"
        for c in kube.core.list_namespaced_config_map(namespace).items
        if c.metadata.name != "kube-root-ca.crt"  # every namespace has it
    ]
    found += [
        f"Secret {s.metadata.name}" for s in kube.core.list_namespaced_secret(namespace).items
    ]
    found += [
        f"HPA {h.metadata.name}"
        for h in kube.autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace).items
    ]
    found += [
        f"PDB {p.metadata.name}"
        for p in kube.policy.list_namespaced_pod_disruption_budget(namespace).items
    ]
    return found


def pods_answering(base_url: str, requests: int) -> dict[str, int]:
    """Send `requests` GET /version, each on its own connection; count answers per pod."""
    url = urlsplit(base_url)
    counts: dict[str, int] = {}
    for _ in range(requests):
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
        try:
            connection.request("GET", "/version")
            response = connection.getresponse()
            body = json.loads(response.read())
        finally:
            connection.close()
        assert response.status == 200
        assert body["pod"] == response.getheader("X-Pod-Name")
        counts[body["pod"]] = counts.get(body["pod"], 0) + 1
    return counts


def test_ci_overlay_rolls_out_and_answers_on_localhost(
    kube_api: Kube, namespace: str, demo_images: dict[str, str]
) -> None:
    demo = deploy(kube_api, namespace, DEMO_OVERLAY, images=demo_images, timeout=120)
    try:
        assert demo.base_url.startswith("http://127.0.0.1:300")
        pods = demo.pods()
        assert len(pods) == 2
        # kube-proxy may add the last endpoint to its rules a moment after the pod is Ready.
        wait_for(
            lambda: set(pods_answering(demo.base_url, 10)) == set(pods) or Pending("one pod"),
            what="both pods to answer through the NodePort",
            timeout=20,
        )
        counts = pods_answering(demo.base_url, 40)
        assert set(counts) == set(pods), counts  # kube-proxy spreads the connections
        token = demo.secret_value("demo-admin", "token")  # the Secret reached the pods
        assert admin_status(demo.base_url, "/admin/recover", token) == 200
        assert admin_status(demo.base_url, "/admin/recover", token + "x") == 403
    finally:
        demo.teardown()
    assert leftovers(kube_api, namespace) == []


def test_rollout_to_v2_keeps_the_nodeport(
    kube_api: Kube, namespace: str, demo_images: dict[str, str]
) -> None:
    demo = deploy(kube_api, namespace, DEMO_OVERLAY, images=demo_images, timeout=120)
    try:
        before = demo.base_url
        demo.rollout({DEMO_REPOSITORY: demo_image_ref("v2")}, timeout=120)
        assert demo.base_url == before
        # Every new connection, on each pod, answers v2 as soon as rollout() returns.
        answers = [version_of(demo.base_url) for _ in range(20)]
        versions = {(s, body["version"], headers["X-App-Version"]) for s, headers, body in answers}
        assert versions == {(200, "v2", "v2")}
    finally:
        demo.teardown()


def admin_status(base_url: str, path: str, token: str) -> int:
    request = urllib.request.Request(
        base_url + path, method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


def version_of(base_url: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    with urllib.request.urlopen(base_url + "/version", timeout=5) as response:
        return response.status, dict(response.headers), json.loads(response.read())


def test_two_namespaces_get_different_nodeports(
    kube_api: Kube, namespace: str, demo_images: dict[str, str], harness_run: Run
) -> None:
    other = namespace_name(harness_run.run_id)
    create_namespace(kube_api, other, run_id=harness_run.run_id, test="second-namespace")
    try:
        first = deploy(kube_api, namespace, DEMO_OVERLAY, images=demo_images, timeout=120)
        second = deploy(kube_api, other, DEMO_OVERLAY, images=demo_images, timeout=120)
        assert first.base_url != second.base_url
        assert version_of(first.base_url)[2]["pod"] in first.pods()
        assert version_of(second.base_url)[2]["pod"] in second.pods()
        first.teardown()
        second.teardown()
    finally:
        delete_namespace(kube_api, other)


CLUSTER_RBAC = Path(__file__).parent / "data" / "deploy" / "cluster-rbac"


def may_list_pods_everywhere(kube: Kube, namespace: str, service_account: str) -> bool:
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{namespace}:{service_account}",
            resource_attributes=client.V1ResourceAttributes(verb="list", resource="pods"),
        )
    )
    return (
        client.AuthorizationV1Api(kube.api_client)
        .create_subject_access_review(review)
        .status.allowed
    )


def cluster_roles(kube: Kube, prefix: str) -> set[str]:
    rbac = client.RbacAuthorizationV1Api(kube.api_client)
    found = {("ClusterRole", r.metadata.name) for r in rbac.list_cluster_role().items}
    found |= {
        ("ClusterRoleBinding", b.metadata.name) for b in rbac.list_cluster_role_binding().items
    }
    return {f"{kind} {name}" for kind, name in found if name.startswith(prefix)}


def test_cluster_wide_rbac_is_per_namespace_and_goes_with_it(
    kube_api: Kube, namespace: str, demo_images: dict[str, str], harness_run: Run
) -> None:
    """Two namespaces deploy the same ClusterRole and binding side by side, each its own;
    teardown removes one, and deleting a namespace without teardown (a killed run) the other."""
    other = namespace_name(harness_run.run_id)
    create_namespace(kube_api, other, run_id=harness_run.run_id, test="cluster-rbac")
    try:
        first = deploy(kube_api, namespace, CLUSTER_RBAC, images=demo_images, timeout=120)
        deploy(kube_api, other, CLUSTER_RBAC, images=demo_images, timeout=120)
        assert cluster_roles(kube_api, "pod-reader") == {
            f"{kind} pod-reader-{ns}"
            for kind in ("ClusterRole", "ClusterRoleBinding")
            for ns in (namespace, other)
        }
        assert may_list_pods_everywhere(kube_api, namespace, "pod-reader")
        assert may_list_pods_everywhere(kube_api, other, "pod-reader")
        first.teardown()
        assert not may_list_pods_everywhere(kube_api, namespace, "pod-reader")
        assert cluster_roles(kube_api, f"pod-reader-{namespace}") == set()
    finally:
        delete_namespace(kube_api, other)
    # The garbage collector removes the other's, owned by its namespace.
    wait_for(
        lambda: (
            cluster_roles(kube_api, f"pod-reader-{other}") == set()
            or Pending(f"left: {cluster_roles(kube_api, f'pod-reader-{other}')}")
        ),
        what="the deleted namespace's ClusterRole and binding to go",
        timeout=120,
    )


REPLICAS_LEFT_TO_THE_HPA = Path(__file__).parent / "data" / "deploy" / "replicas-left-to-the-hpa"


def test_an_update_and_its_roll_back_keep_the_replicas_the_hpa_set(
    kube_api: Kube, namespace: str, demo_images: dict[str, str]
) -> None:
    """Manifests without `replicas` (the HPA's to set): re-applying them must not reset the
    Deployment to Kubernetes' default of 1, neither on update nor on roll back."""
    demo = deploy(kube_api, namespace, REPLICAS_LEFT_TO_THE_HPA, images=demo_images, timeout=120)
    try:
        wait_for(
            lambda: len(demo.pods()) == 2 or Pending(f"ready pods: {demo.pods()}"),
            what="the HPA to bring the demo to its 2 replicas",
            timeout=90,
        )
        demo.update({DEMO_REPOSITORY: demo_image_ref("v2")})
        demo.roll_back()
        scale = kube_api.apps.read_namespaced_deployment(demo.deployments[0], namespace)
        assert scale.spec.replicas == 2
    finally:
        demo.teardown()


@pytest.mark.parametrize(
    ("case", "error", "phrases"),
    [
        ("invalid-yaml", InvalidConfiguration, ["broken.yaml", "line 4"]),
        ("invalid-unknown-kind", InvalidConfiguration, ["Deploymnet", "demo-typo", "not served"]),
        (
            "invalid-missing-secret",
            WaitAborted,
            ["CreateContainerConfigError", 'secret "demo-admin" not found'],
        ),
        ("invalid-crash-loop", WaitAborted, ["CrashLoopBackOff", "refusing to start"]),
    ],
)
def test_bad_input_fails_fast_names_the_cause_and_leaves_nothing(
    kube_api: Kube,
    namespace: str,
    demo_images: dict[str, str],
    case: str,
    error: type[Exception],
    phrases: list[str],
) -> None:
    started = time.monotonic()
    with pytest.raises(error) as caught:
        deploy(kube_api, namespace, BAD_MANIFESTS / case, images=demo_images, timeout=120)
    assert time.monotonic() - started < 90  # well before the timeout, teardown included
    for phrase in phrases:
        assert phrase in str(caught.value)
    assert leftovers(kube_api, namespace) == []


def test_missing_image_is_named_before_anything_is_created(
    cluster: ClusterProvider, kube_api: Kube, namespace: str
) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidConfiguration) as caught:
        deploy(
            kube_api,
            namespace,
            DEMO_OVERLAY,
            images={DEMO_REPOSITORY: f"{DEMO_REPOSITORY}:v0-missing"},
            held_images=lambda: runtime_images(cluster),
        )
    assert time.monotonic() - started < 60
    message = str(caught.value)
    assert "image(s) on no node of the cluster and not pullable: " in message
    assert "demo-service:v0-missing (registry localhost unreachable)" in message
    assert "`archives:`" in message
    assert leftovers(kube_api, namespace) == []


def test_readiness_that_never_passes_is_named_at_the_timeout(
    kube_api: Kube, namespace: str, demo_images: dict[str, str]
) -> None:
    with pytest.raises(WaitTimeout) as caught:
        deploy(
            kube_api,
            namespace,
            BAD_MANIFESTS / "invalid-readiness-never-passes",
            images=demo_images,
            timeout=20,
        )
    message = str(caught.value)
    assert "Readiness probe failed" in message
    assert "404" in message
    assert leftovers(kube_api, namespace) == []


def test_an_update_keeps_the_rollout_hash_argo_put_in_a_services_selector() -> None:
    """A Service's selector is applied whole: without the hash Argo Rollouts added, the
    active Service would reach every version, and Argo would take it for a first deploy."""
    from types import SimpleNamespace

    from harness.deploy.deployed import Deployed

    live = {
        "demo": {"app": "demo", "rollouts-pod-template-hash": "abc123"},
        "demo-other": {"app": "demo"},
    }

    def list_namespaced_service(namespace: str) -> Any:
        items = [
            SimpleNamespace(metadata=SimpleNamespace(name=name),
                            spec=SimpleNamespace(selector=dict(selector)))
            for name, selector in live.items()
        ]  # fmt: skip
        return SimpleNamespace(items=items)

    kube = SimpleNamespace(core=SimpleNamespace(list_namespaced_service=list_namespaced_service))
    rollout = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "r"}}
    services = [
        {"kind": "Service", "metadata": {"name": n}, "spec": {"selector": {"app": "demo"}}}
        for n in ("demo", "demo-other", "demo-new")
    ]
    deployed = Deployed(kube=kube, namespace="ns", source=Path("m"), objects=[rollout],
                        base_url="", node_ports={}, applier=None)  # fmt: skip
    deployed._keep_rollout_selectors(services)
    assert [s["spec"]["selector"] for s in services] == [
        {"app": "demo", "rollouts-pod-template-hash": "abc123"},
        {"app": "demo"},
        {"app": "demo"},
    ]
    # Without a Rollout, nothing is read or changed.
    plain = Deployed(kube=None, namespace="ns", source=Path("m"), objects=[], base_url="",
                     node_ports={}, applier=None)  # fmt: skip
    plain._keep_rollout_selectors(services)
