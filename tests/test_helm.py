"""Helm charts: rendering with values, the post-renderer, the spec's `helm:` section, and a
real release installed, upgraded and rolled back on the cluster."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness.access import LoadEntry
from harness.cluster.provider import ClusterProvider
from harness.deploy import deploy
from harness.helm import Helm, HelmRelease, PostRender, is_chart, template
from harness.images.demo import DEMO_REPOSITORY, build_demo_images, demo_image_ref
from harness.kube import Kube
from harness.kubectl import kubectl_path
from harness.render import chart_release_name, render
from harness.spec import InvalidSpec, load_spec
from harness.wait import wait_for

DEMO_CHART = Path(__file__).parent / "data" / "charts" / "demo"


def deployment_of(objects: list[dict]) -> dict:
    return next(o for o in objects if o["kind"] == "Deployment")


def test_a_chart_is_a_folder_with_chart_yaml_or_a_tgz(tmp_path: Path) -> None:
    (tmp_path / "web-1.2.3.tgz").write_bytes(b"")
    assert is_chart(DEMO_CHART)
    assert is_chart(tmp_path / "web-1.2.3.tgz")
    assert not is_chart(tmp_path)
    assert chart_release_name(tmp_path / "web-1.2.3.tgz") == "web"
    assert chart_release_name(DEMO_CHART) == "demo"


@pytest.mark.builds
def test_a_chart_renders_with_values_set_values_namespace_and_images(tmp_path: Path) -> None:
    values = tmp_path / "ci.yaml"
    values.write_text("drainDelaySeconds: 5\n")
    release = HelmRelease("shop", DEMO_CHART, values=(values,), set=(("replicaCount", "3"),))
    objects = render(DEMO_CHART, namespace="t-1", kubectl=kubectl_path(), release=release,
                     images={DEMO_REPOSITORY: "localhost/other:v9"})  # fmt: skip
    assert {(o["kind"], o["metadata"]["name"], o["metadata"]["namespace"]) for o in objects} == {
        ("Deployment", "shop", "t-1"),
        ("Service", "shop", "t-1"),
    }
    deployment = deployment_of(objects)
    assert deployment["spec"]["replicas"] == 3
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "localhost/other:v9"
    assert container["env"] == [{"name": "DRAIN_DELAY_S", "value": "5"}]


@pytest.mark.builds
def test_a_chart_that_does_not_render_is_named_with_the_helm_command(tmp_path: Path) -> None:
    chart = tmp_path / "broken"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 0.1.0\n")
    (chart / "templates" / "x.yaml").write_text("kind: {{ .Values.missing.key }}\n")
    with pytest.raises(Exception) as raised:
        template(HelmRelease("broken", chart), "t-1")
    assert f"chart {chart} does not render" in str(raised.value)
    assert "helm template broken" in str(raised.value)


@pytest.mark.builds
def test_the_post_renderer_sets_namespace_images_node_ports_and_replicas(tmp_path: Path) -> None:
    manifests = template(HelmRelease("shop", DEMO_CHART, set=(("service.type", "NodePort"),)), None)
    config = PostRender(
        namespace="t-2",
        images={DEMO_REPOSITORY: demo_image_ref("v2")},
        kubectl=str(kubectl_path()),
        node_ports={"shop": [30123]},
        replicas={"shop": 4},
    )
    file = tmp_path / "config.json"
    file.write_text(json.dumps(config.__dict__))
    done = subprocess.run(
        [sys.executable, "-m", "harness.helm", "post-render", str(file)],
        input=manifests, text=True, capture_output=True, check=True,
    )  # fmt: skip
    objects = list(yaml.safe_load_all(done.stdout))
    service = next(o for o in objects if o["kind"] == "Service")
    assert service["spec"]["ports"][0]["nodePort"] == 30123
    assert {o["metadata"]["namespace"] for o in objects} == {"t-2"}
    deployment = deployment_of(objects)
    assert deployment["spec"]["replicas"] == 4
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == demo_image_ref("v2")


def spec_text(helm: str, manifests: str = "chart") -> str:
    return f"""
apiVersion: kube-harness/v1
kind: ResilienceSpec
services:
  - name: shop
    manifests: {manifests}
    deployment: shop
    container: demo
    images: {{current: "{demo_image_ref("v1")}", next: "{demo_image_ref("v2")}"}}
    load: {{path: /, users: 1}}
    slo: {{error_rate: 1%}}
{helm}
    expect: {{}}
"""


def write_spec(tmp_path: Path, helm: str, manifests: str = "chart") -> Path:
    shutil.copytree(DEMO_CHART, tmp_path / "chart")
    (tmp_path / "ci.yaml").write_text("drainDelaySeconds: 2\n")
    path = tmp_path / "spec.yaml"
    path.write_text(spec_text(helm, manifests))
    return path


def test_the_spec_reads_release_values_and_what_the_upgrade_moves_to(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        "    helm:\n      values: [ci.yaml]\n      set: {replicaCount: 3}\n"
        "      next:\n        set: {drainDelaySeconds: 4}\n",
    )
    release = load_spec(path).services[0].helm
    assert release == HelmRelease(
        "shop", tmp_path / "chart", values=(tmp_path / "ci.yaml",), set=(("replicaCount", "3"),)
    )
    assert release.upgraded().values == (tmp_path / "ci.yaml",)  # kept unless given
    assert release.upgraded().set == (("drainDelaySeconds", "4"),)


def test_a_chart_without_a_helm_section_is_released_under_the_service_name(tmp_path: Path) -> None:
    release = load_spec(write_spec(tmp_path, "")).services[0].helm
    assert release == HelmRelease("shop", tmp_path / "chart")
    assert release.upgraded() is release


def test_the_spec_names_a_missing_values_file_and_helm_on_a_non_chart(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "    helm:\n      values: [nope.yaml]\n      sett: {}\n")
    (tmp_path / "plain.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n")
    with pytest.raises(InvalidSpec) as raised:
        load_spec(path)
    message = str(raised.value)
    assert (
        f"services[0].helm.values: values file {tmp_path / 'nope.yaml'} does not exist" in message
    )
    assert "services[0].helm.sett: unknown key (did you mean 'set'?)" in message
    path.write_text(spec_text("    helm: {release: shop}", manifests="plain.yaml"))
    with pytest.raises(InvalidSpec, match=r"plain\.yaml is not a Helm chart"):
        load_spec(path)


# --- on a real cluster --------------------------------------------------------------------


def version_answering(base_url: str) -> str:
    with urllib.request.urlopen(base_url + "/version", timeout=5) as response:
        return json.load(response)["version"]


def test_a_chart_installs_upgrades_and_rolls_back_as_a_helm_release(
    cluster: ClusterProvider, kube_api: Kube, namespace: str
) -> None:
    for archive in build_demo_images(["v1", "v2"]):
        cluster.load_image(archive)
    release = HelmRelease("shop", DEMO_CHART, next=HelmRelease(
        "shop", DEMO_CHART, set=(("drainDelaySeconds", "2"),)))  # fmt: skip
    helm = Helm(kube_api.kubeconfig, kube_api.context)
    shop = deploy(kube_api, namespace, DEMO_CHART, images={DEMO_REPOSITORY: demo_image_ref("v1")},
                  timeout=120, release=release, entry=LoadEntry("shop", "http"))  # fmt: skip
    try:
        assert shop.own_service is not None  # the chart's Service is a ClusterIP one
        assert version_answering(shop.base_url) == "v1"
        shop.rollout({DEMO_REPOSITORY: demo_image_ref("v2")}, timeout=120)
        assert version_answering(shop.base_url) == "v2"
        live = kube_api.apps.read_namespaced_deployment("shop", namespace)
        env = live.spec.template.spec.containers[0].env
        assert [(e.name, e.value) for e in env] == [("DRAIN_DELAY_S", "2")]  # the next values

        shop.update({DEMO_REPOSITORY: "localhost/kube-harness/no-such-image:broken"})
        shop.roll_back()
        wait_for(
            lambda: kube_api.apps.read_namespaced_deployment("shop", namespace)
            .spec.template.spec.containers[0].image == demo_image_ref("v2"),
            what="helm rollback to put v2 back", timeout=30,
        )  # fmt: skip
        history = helm.history(release, namespace)
        assert [(h["revision"], h["status"]) for h in history] == [
            (1, "superseded"), (2, "superseded"), (3, "superseded"), (4, "deployed"),
        ]  # fmt: skip
        assert history[-1]["description"] == "Rollback to 2"
    finally:
        shop.teardown()
    assert helm.releases(namespace) == []


@pytest.mark.builds
def test_charts_render_for_a_current_kubernetes_not_helms_default() -> None:
    """gubernator's chart picks its HPA API by .Capabilities.KubeVersion: rendered for Helm's
    built-in default (v1.20) it asks for autoscaling/v2beta2, which no current cluster serves."""
    chart = Path(__file__).parents[1] / "examples" / "gubernator" / "chart"
    objects = render(chart, kubectl=kubectl_path())
    (hpa,) = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    older = render(chart, kubectl=kubectl_path(), kube_version="v1.22.0")
    assert [o["apiVersion"] for o in older if o["kind"] == "HorizontalPodAutoscaler"] == [
        "autoscaling/v2beta2"
    ]
