"""Which Service the load goes through (harness.access), on rendered manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.access import MANAGED_BY, LoadEntry, reach
from harness.errors import InvalidConfiguration
from harness.render import render

PLAIN = Path(__file__).parent / "data" / "render" / "plain-folder"
CI_OVERLAY = Path(__file__).resolve().parents[1] / "manifests" / "overlays" / "ci"


def deployment(name: str = "web", ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    container = {"name": name, "image": "x"} | ({"ports": ports} if ports is not None else {})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "t1"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": "front"}},
                "spec": {"containers": [container]},
            },
        },
    }


def service(name: str, ports: list[dict[str, Any]], kind: str = "ClusterIP", **selector: str):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "t1"},
        "spec": {"type": kind, "selector": selector or {"app": "web"}, "ports": ports},
    }


def test_a_nodeport_service_of_the_manifests_is_used_as_it_is() -> None:
    objects = render(CI_OVERLAY, namespace="t1")
    reached = reach(objects, LoadEntry("demo"))
    assert not reached.own
    assert reached.service["spec"]["type"] == "NodePort"


def test_a_clusterip_service_is_mirrored_by_a_nodeport_service_of_the_harness() -> None:
    objects = render(PLAIN, namespace="t1")
    reached = reach(objects, LoadEntry("web"))
    assert reached.own and reached.port_index == 0
    own = reached.service
    assert own["metadata"] == {"name": "kube-harness-web", "labels": MANAGED_BY, "namespace": "t1"}
    assert own["spec"] == {
        "type": "NodePort",
        "selector": {"app": "web"},
        "ports": [{"name": "load", "port": 80, "targetPort": "http", "protocol": "TCP"}],
    }
    assert own not in objects  # deploy() adds it


def test_the_spec_names_the_port_of_a_service_with_several() -> None:
    ports = [{"name": "admin", "port": 9000}, {"name": "http", "port": 80, "targetPort": 8080}]
    objects = [deployment(), service("web", ports)]
    with pytest.raises(InvalidConfiguration, match=r"has 2 ports \(admin, http\)") as caught:
        reach(objects, LoadEntry("web"))
    assert "`port:`" in (caught.value.fix or "")
    by_name = reach(objects, LoadEntry("web", "http")).service["spec"]["ports"][0]
    by_number = reach(objects, LoadEntry("web", 8080)).service["spec"]["ports"][0]
    assert by_name == by_number == {"name": "load", "port": 80, "targetPort": 8080,
                                    "protocol": "TCP"}  # fmt: skip
    with pytest.raises(InvalidConfiguration, match="has no port 'grpc'"):
        reach(objects, LoadEntry("web", "grpc"))


def test_a_nodeport_service_with_several_ports_takes_the_named_one() -> None:
    ports = [{"name": "admin", "port": 9000}, {"name": "http", "port": 80}]
    reached = reach([deployment(), service("web", ports, "NodePort")], LoadEntry("web", "http"))
    assert (reached.own, reached.port_index) == (False, 1)


def test_without_a_service_the_container_port_is_used() -> None:
    objects = [deployment(ports=[{"name": "http", "containerPort": 8080}])]
    own = reach(objects, LoadEntry("web")).service
    assert own["spec"]["ports"] == [{"name": "load", "port": 8080, "targetPort": "http"}]
    assert own["spec"]["selector"] == {"app": "web", "tier": "front"}
    undeclared = reach([deployment(ports=[])], LoadEntry("web", 9898)).service
    assert undeclared["spec"]["ports"][0]["port"] == 9898


def test_a_service_selecting_other_pods_is_not_used() -> None:
    other = service("other", [{"port": 80}], "NodePort", app="other")
    reached = reach([deployment(ports=[{"containerPort": 8080}]), other], LoadEntry("web"))
    assert reached.own


@pytest.mark.parametrize(
    ("objects", "entry", "complaint"),
    [
        ([deployment()], LoadEntry("api"), r"no Deployment 'api' \(they have: web\)"),
        ([deployment()], LoadEntry("web"), "declares no container ports and no Service"),
        ([deployment(ports=[])], LoadEntry("web", "http"), "no container port 'http'"),
    ],
)
def test_what_cannot_be_reached_is_said(objects, entry: LoadEntry, complaint: str) -> None:
    with pytest.raises(InvalidConfiguration, match=complaint):
        reach(objects, entry)
