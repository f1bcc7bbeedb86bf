"""Which images can start at all: held by a node, or served by a reachable registry."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from harness import image_availability
from harness.errors import InvalidConfiguration
from harness.image_availability import (
    NODE_STATUS_MAX_IMAGES,
    check_images_available,
    nodes_without,
    registry_of,
    registry_reachable,
    runtime_images,
    unavailable_images,
    workload_images,
)


def node(names: list[str], name: str = "node-1", *, tainted: bool = False) -> SimpleNamespace:
    """A node whose status lists `names`; a tainted one carries NoSchedule (a control plane)."""
    return SimpleNamespace(
        metadata=SimpleNamespace(name=name),
        spec=SimpleNamespace(taints=[SimpleNamespace(effect="NoSchedule")] if tainted else None),
        status=SimpleNamespace(images=[SimpleNamespace(names=[n]) for n in names]),
    )


class FakeKube:
    """Nodes node-1, node-2, ... whose status lists `held` image names; `tainted` nodes
    carry a NoSchedule taint (a control plane)."""

    def __init__(self, *held: list[str], tainted: tuple[int, ...] = ()) -> None:
        nodes = [
            node(names, f"node-{index}", tainted=index in tainted)
            for index, names in enumerate(held, start=1)
        ]
        self.core = SimpleNamespace(list_node=lambda **_: SimpleNamespace(items=nodes))


def deployment(*images: str, init: str | None = None) -> dict:
    pod = {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}
    if init:
        pod["initContainers"] = [{"name": "init", "image": init}]
    return {"kind": "Deployment", "spec": {"template": {"spec": pod}}}


@pytest.fixture(autouse=True)
def no_registry(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No registry answers, as on this machine; the hosts asked are recorded."""
    asked: list[str] = []
    monkeypatch.setattr(
        image_availability, "registry_reachable", lambda h: asked.append(h) or False
    )
    return asked


def test_images_of_every_workload_container_once_in_order() -> None:
    objects = [
        deployment("a:1", "b:1", init="init:1"),
        {"kind": "Service", "spec": {}},
        deployment("a:1"),
    ]
    assert workload_images(objects) == ["init:1", "a:1", "b:1"]


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("ghcr.io/mccutchen/go-httpbin:v2.26.0", "ghcr.io"),
        ("nginx:1.27", "registry-1.docker.io"),
        ("library/nginx", "registry-1.docker.io"),
        ("localhost/kube-harness/demo-service:v1", "localhost"),
        ("registry.local:5000/x/y:1", "registry.local:5000"),
    ],
)
def test_registry_of_a_reference(image: str, registry: str) -> None:
    assert registry_of(image) == registry


def test_localhost_is_never_taken_for_a_registry() -> None:
    assert registry_reachable("localhost") is False
    assert registry_reachable("localhost:5000") is False


def test_an_image_a_node_holds_is_available() -> None:
    kube = FakeKube(["localhost/demo:v1"], ["docker.io/library/nginx:1.27"])
    assert unavailable_images(kube, ["localhost/demo:v1", "nginx:1.27"], lag_s=0) == []


def test_an_image_on_no_node_with_an_unreachable_registry_is_named() -> None:
    kube = FakeKube(["localhost/demo:v1"])
    with pytest.raises(InvalidConfiguration) as raised:
        check_images_available(kube, [deployment("localhost/demo:v1", "ghcr.io/x/y:2")], lag_s=0)
    assert "not pullable: ghcr.io/x/y:2 (registry ghcr.io unreachable)" in raised.value.message
    assert "`archives:`" in raised.value.fix


def test_an_image_from_a_reachable_registry_is_left_to_the_pull(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(image_availability, "registry_reachable", lambda host: host == "ghcr.io")
    assert unavailable_images(FakeKube([]), ["ghcr.io/x/y:2", "quay.io/z:1"], lag_s=0) == [
        "quay.io/z:1"
    ]


def test_a_full_node_image_list_proves_nothing() -> None:
    """The kubelet lists at most 50 images: the one looked for may be left out."""
    kube = FakeKube([f"filler/{n}:1" for n in range(NODE_STATUS_MAX_IMAGES)])
    assert unavailable_images(kube, ["localhost/demo:v1"], lag_s=0) == []


def test_an_image_loaded_a_moment_ago_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    held = ["localhost/demo:v1"]

    def list_node(**_: object) -> SimpleNamespace:
        calls["n"] += 1
        return SimpleNamespace(items=[node(held if calls["n"] > 1 else [])])

    monkeypatch.setattr(image_availability.time, "sleep", lambda s: None)
    kube = SimpleNamespace(core=SimpleNamespace(list_node=list_node))
    assert unavailable_images(kube, ["localhost/demo:v1"], lag_s=30) == []
    assert calls["n"] == 2


class FakeNodes:
    """A provider that reaches its nodes: `crictl images` answers per node."""

    def __init__(self, **held: list[str]) -> None:
        self.held = held

    def nodes(self) -> list[str]:
        return list(self.held)

    def stop_node(self, node: str) -> None: ...

    def start_node(self, node: str) -> None: ...

    def node_exec(self, node: str, argv: list[str]) -> str:
        assert argv == ["crictl", "images", "--output", "json"]
        return json.dumps({"images": [{"id": "sha256:x", "repoTags": self.held[node]}]})


def test_the_runtimes_of_reachable_nodes_say_at_once_what_they_hold() -> None:
    cluster = FakeNodes(one=["localhost/demo:v1"], two=["localhost/other:v2"])
    assert runtime_images(cluster) == {"localhost/demo:v1", "localhost/other:v2"}
    assert runtime_images(object()) is None  # an existing cluster: nodes out of reach
    never_listed = FakeKube([])  # the node status has not caught up yet
    held = lambda: runtime_images(cluster)  # noqa: E731
    assert unavailable_images(never_listed, ["localhost/demo:v1"], held=held, lag_s=60) == []
    assert unavailable_images(never_listed, ["localhost/gone:v0"], held=held, lag_s=60) == [
        "localhost/gone:v0"
    ]


def test_nodes_without_an_image_are_the_schedulable_ones_that_do_not_list_it() -> None:
    kube = FakeKube(["localhost/app:v1"], ["other:1"], [], tainted=(3,))
    assert nodes_without(kube, "localhost/app:v1") == ["node-2"]
    assert nodes_without(kube, "nginx:1.27") == ["node-1", "node-2"]
    assert nodes_without(FakeKube(["docker.io/library/nginx:1.27"]), "nginx:1.27") == []


def test_a_node_with_a_full_image_list_is_not_named() -> None:
    full = [f"filler:{i}" for i in range(NODE_STATUS_MAX_IMAGES)]
    assert nodes_without(FakeKube(full, []), "app:v1") == ["node-2"]
