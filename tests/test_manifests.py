"""Each overlay of manifests/, rendered and checked as data: what the issue promises is there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.cluster.provider import DEFAULT_NODE_PORTS
from harness.images.demo import demo_image_ref
from harness.render import render

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"
OVERLAYS = ("dev", "ci", "prod")
CORES_ON_THE_TEST_MACHINE = 2
Overlay = tuple[str, dict[str, Any]]  # overlay name, objects by "Kind/name"


def rendered(overlay: str) -> dict[str, Any]:
    """Objects of one overlay by "Kind/name"."""
    objects = render(MANIFESTS / "overlays" / overlay)
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> Overlay:
    return request.param, rendered(request.param)


def cpu_cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def pod_spec(objects: dict[str, Any]) -> dict[str, Any]:
    return objects["Deployment/demo"]["spec"]["template"]["spec"]


def container(objects: dict[str, Any]) -> dict[str, Any]:
    [only] = pod_spec(objects)["containers"]
    return only


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_rolling_update_never_drops_below_the_wanted_count(overlay: Overlay) -> None:
    _, objects = overlay
    strategy = objects["Deployment/demo"]["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }


def test_requests_and_limits_are_set(overlay: Overlay) -> None:
    _, objects = overlay
    resources = container(objects)["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}
    assert cpu_cores(resources["requests"]["cpu"]) < cpu_cores(resources["limits"]["cpu"])


def test_probes_point_at_the_service_endpoints(overlay: Overlay) -> None:
    _, objects = overlay
    demo = container(objects)
    assert demo["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert demo["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert demo["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port_names = {p["name"] for p in demo["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert demo[probe]["httpGet"]["port"] in port_names


def test_pre_stop_and_grace_period_leave_time_to_drain(overlay: Overlay) -> None:
    _, objects = overlay
    pre_stop_s = container(objects)["lifecycle"]["preStop"]["sleep"]["seconds"]
    config = objects["ConfigMap/demo-config"]["data"]
    drain_s = float(config["DRAIN_DELAY_S"])
    # preStop, then the app's own drain, then the longest request (/work) must fit.
    longest_request_s = int(config["MAX_WORK_MS"]) / 1000
    grace_s = pod_spec(objects)["terminationGracePeriodSeconds"]
    assert pre_stop_s + drain_s + longest_request_s <= grace_s


def test_runs_as_non_root_on_a_read_only_root_filesystem(overlay: Overlay) -> None:
    _, objects = overlay
    pod = pod_spec(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    security = container(objects)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # The only writable place is an emptyDir.
    [mount] = container(objects)["volumeMounts"]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume


def test_hpa_targets_70_percent_cpu_between_2_and_5(overlay: Overlay) -> None:
    _, objects = overlay
    hpa = objects["HorizontalPodAutoscaler/demo"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "demo",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    # A fresh apply starts at the HPA's minimum.
    assert objects["Deployment/demo"]["spec"]["replicas"] == hpa["spec"]["minReplicas"]


def test_pdb_keeps_a_pod_of_the_deployment(overlay: Overlay) -> None:
    _, objects = overlay
    pdb = objects["PodDisruptionBudget/demo"]
    assert pdb["apiVersion"] == "policy/v1"
    labels = objects["Deployment/demo"]["spec"]["template"]["metadata"]["labels"]
    assert selects(pdb["spec"]["selector"]["matchLabels"], labels)
    assert (
        1
        <= pdb["spec"]["minAvailable"]
        < objects["HorizontalPodAutoscaler/demo"]["spec"]["minReplicas"]
    )


def test_services_select_the_pods_on_a_named_port(overlay: Overlay) -> None:
    _, objects = overlay
    labels = objects["Deployment/demo"]["spec"]["template"]["metadata"]["labels"]
    port_names = {p["name"] for p in container(objects)["ports"]}
    services = [o for key, o in objects.items() if key.startswith("Service/")]
    assert services
    for service in services:
        assert selects(service["spec"]["selector"], labels)
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_config_and_secret_reach_the_container(overlay: Overlay) -> None:
    name, objects = overlay
    demo = container(objects)
    [config_ref] = demo["envFrom"]
    assert f"ConfigMap/{config_ref['configMapRef']['name']}" in objects
    env = {e["name"]: e for e in demo["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    secret_name = env["ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"]
    # prod gets its Secret out of band; the others ship a development token.
    assert (f"Secret/{secret_name}" in objects) is (name != "prod")


def test_image_is_the_one_the_harness_builds(overlay: Overlay) -> None:
    _, objects = overlay
    assert container(objects)["image"] == demo_image_ref("v1")
    assert container(objects)["imagePullPolicy"] == "IfNotPresent"


@pytest.mark.parametrize("name", ["dev", "ci"])
def test_nodeport_is_one_the_harness_reserves(name: str) -> None:
    service = rendered(name)["Service/demo-nodeport"]
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"][0]["nodePort"] in DEFAULT_NODE_PORTS


def test_prod_has_no_nodeport_and_default_scale_down_window() -> None:
    objects = rendered("prod")
    assert "Service/demo-nodeport" not in objects
    behavior = objects["HorizontalPodAutoscaler/demo"]["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_ci_windows_are_short_enough_for_tests() -> None:
    objects = rendered("ci")
    behavior = objects["HorizontalPodAutoscaler/demo"]["spec"]["behavior"]
    assert 15 <= behavior["scaleDown"]["stabilizationWindowSeconds"] <= 30
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    demo = container(objects)
    assert demo["readinessProbe"]["periodSeconds"] <= 2
    assert objects["Deployment/demo"]["spec"]["progressDeadlineSeconds"] <= 180


def test_ci_max_replicas_fit_the_test_machine() -> None:
    objects = rendered("ci")
    requests = container(objects)["resources"]["requests"]
    max_replicas = objects["HorizontalPodAutoscaler/demo"]["spec"]["maxReplicas"]
    # Leave at least half of the machine to the control plane and the load generator.
    assert max_replicas * cpu_cores(requests["cpu"]) <= CORES_ON_THE_TEST_MACHINE / 2


def test_no_overlay_pins_a_namespace(overlay: Overlay) -> None:
    _, objects = overlay
    assert all("namespace" not in o["metadata"] for o in objects.values())
