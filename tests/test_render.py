"""Rendering a service's manifests (harness.render): kustomizations, plain files and folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import InvalidConfiguration
from harness.render import (
    _kustomize_error,
    image_override,
    own_by_namespace,
    parse_objects,
    render,
)

ROOT = Path(__file__).resolve().parents[1]
CI_OVERLAY = ROOT / "manifests" / "overlays" / "ci"
BAD_MANIFESTS = Path(__file__).parent / "data" / "manifests"
PLAIN = Path(__file__).parent / "data" / "render"


# --- rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "entry"),
    [
        ("demo:v2", {"newName": "demo", "newTag": "v2"}),
        ("localhost:5000/demo:v2", {"newName": "localhost:5000/demo", "newTag": "v2"}),
        ("localhost:5000/demo", {"newName": "localhost:5000/demo"}),
        ("demo@sha256:abc", {"newName": "demo", "digest": "sha256:abc"}),
    ],
)
def test_image_override(ref: str, entry: dict[str, str]) -> None:
    assert image_override("x", ref) == {"name": "x", **entry}


def test_image_override_needs_both_sides() -> None:
    with pytest.raises(InvalidConfiguration, match="incomplete"):
        image_override("demo", "")


def test_render_sets_namespace_and_images_without_touching_the_overlay() -> None:
    before = (CI_OVERLAY / "kustomization.yaml").read_text()
    objects = render(
        CI_OVERLAY,
        namespace="t-42",
        images={"localhost/kube-harness/demo-service": "127.0.0.1:1/other:v9"},
    )
    assert (CI_OVERLAY / "kustomization.yaml").read_text() == before
    assert {o["metadata"].get("namespace") for o in objects} == {"t-42"}
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "127.0.0.1:1/other:v9"
    )


def test_render_refuses_a_directory_without_kustomization(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfiguration, match=r"holds no kustomization\.yaml and no manifest"):
        render(tmp_path)


def test_render_names_the_broken_file_and_line() -> None:
    with pytest.raises(InvalidConfiguration) as caught:
        render(BAD_MANIFESTS / "invalid-yaml")
    message = str(caught.value)
    assert "do not build" in message
    assert "broken.yaml" in message
    assert "line 4" in message
    assert "run.go" not in message  # kubectl's log prefix is stripped
    assert "kubectl kustomize" in (caught.value.fix or "")


def test_render_names_a_missing_resource() -> None:
    with pytest.raises(InvalidConfiguration, match=r"not-there\.yaml"):
        render(BAD_MANIFESTS / "invalid-missing-resource")


def test_render_passes_unknown_kinds_on_to_the_cluster_check() -> None:
    kinds = [o["kind"] for o in render(BAD_MANIFESTS / "invalid-unknown-kind")]
    assert "Deploymnet" in kinds


def test_render_without_kubectl(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfiguration, match="kubectl-nope"):
        render(CI_OVERLAY, kubectl=tmp_path / "kubectl-nope")


def test_kustomize_error_keeps_only_the_error_text() -> None:
    stderr = (
        'kubectl kustomize /tmp/x exited 1:\n    E1123 01:00:00.1 2146 run.go:72] "command failed" '
        'err="accumulating resources: boom"'
    )
    assert _kustomize_error(stderr) == "accumulating resources: boom"
    assert _kustomize_error("plain failure") == "plain failure"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("a: [", "not valid YAML"),
        ("- just\n- a list\n", "document 1 is not a Kubernetes object"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "document 1 is not"),
        ("apiVersion: v1\nkind: A\nmetadata: {name: a}\n---\nkind: B\n", "document 2 is not"),
    ],
)
def test_parse_objects_refuses_what_is_not_an_object(text: str, complaint: str) -> None:
    with pytest.raises(InvalidConfiguration, match=complaint):
        parse_objects(text, source="test")


def test_render_a_folder_of_plain_manifests_in_order_with_namespace_and_images() -> None:
    objects = render(
        PLAIN / "plain-folder", namespace="t-7", images={"example.org/web": "local/web:2.0"}
    )
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("Service", "web"),
        ("Deployment", "web"),
        ("PodDisruptionBudget", "web"),
    ]  # kustomize's order: Services before workloads
    assert {o["metadata"]["namespace"] for o in objects} == {"t-7"}
    deployment = objects[1]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "local/web:2.0"


def test_render_a_single_manifest_file() -> None:
    objects = render(PLAIN / "plain-folder" / "nested" / "service.yml")
    assert [o["kind"] for o in objects] == ["Service", "PodDisruptionBudget"]


def test_render_names_the_plain_file_that_is_not_an_object() -> None:
    with pytest.raises(InvalidConfiguration, match=r"values\.yaml: document 1 is not"):
        render(PLAIN / "invalid-not-an-object")


def test_render_refuses_a_path_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfiguration, match="do not exist") as caught:
        render(tmp_path / "nope")
    assert "kustomization directory" in (caught.value.fix or "")


def test_render_refuses_a_folder_of_empty_manifests(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("# nothing yet\n")
    with pytest.raises(InvalidConfiguration, match="holds no Kubernetes objects"):
        render(tmp_path)


def test_cluster_roles_and_bindings_are_named_per_namespace_with_their_references() -> None:
    objects = render(Path(__file__).parent / "data" / "deploy" / "cluster-rbac", namespace="t-7")
    named = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    binding = named["ClusterRoleBinding", "pod-reader-t-7"]
    assert ("ClusterRole", "pod-reader-t-7") in named
    assert binding["roleRef"]["name"] == "pod-reader-t-7"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "pod-reader", "namespace": "t-7"}
    ]
    assert ("ServiceAccount", "pod-reader") in named  # namespaced objects keep their names


def test_a_binding_to_a_cluster_role_the_manifests_do_not_bring_keeps_its_reference(
    tmp_path: Path,
) -> None:
    (tmp_path / "binding.yaml").write_text(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n"
        "metadata: {name: viewers}\n"
        "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\n"
        "subjects: [{kind: ServiceAccount, name: default}]\n"
    )
    (binding,) = render(tmp_path, namespace="t-7")
    assert (binding["metadata"]["name"], binding["roleRef"]["name"]) == ("viewers", "view")


def test_per_namespace_cluster_objects_are_owned_by_the_namespace() -> None:
    objects = own_by_namespace(
        render(Path(__file__).parent / "data" / "deploy" / "cluster-rbac", namespace="t-7"),
        "t-7",
        "uid-1",
    )
    owned = {o["kind"] for o in objects if o["metadata"].get("ownerReferences")}
    assert owned == {"ClusterRole", "ClusterRoleBinding"}
    role = next(o for o in objects if o["kind"] == "ClusterRole")
    assert role["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Namespace", "name": "t-7", "uid": "uid-1"}
    ]
