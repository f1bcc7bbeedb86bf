"""Rendering a service's manifests as its authors ship them, into objects the harness applies.

Four shapes are accepted, none of them changed on disk: a kustomization directory (base or
overlay), a single manifest file, a folder of plain manifest files (`*.yaml`, `*.yml`,
`*.json`, searched recursively; no kustomization needed), or a Helm chart (folder or .tgz,
rendered by `helm template` with the spec's values). Each is rendered through a throw-away
kustomization on top of it, so the test namespace and the image overrides are set the same
way for all four.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from harness.commands import run
from harness.errors import CommandFailed, InvalidConfiguration
from harness.helm import CHART_ARCHIVE_SUFFIXES, HelmRelease, is_chart, template
from harness.images.oci import split_ref

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# Cluster-scoped objects a service brings for itself (its ClusterRole, and the binding to its
# ServiceAccount): renamed per test namespace, `<name>-<namespace>`, so that tests running side
# by side neither share nor overwrite them; kustomize renames the references along (roleRef).
PER_NAMESPACE_KINDS = ("ClusterRole", "ClusterRoleBinding")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

Object = dict[str, Any]


def describe(obj: Mapping[str, Any]) -> str:
    """`Kind namespace/name` of a manifest object, for messages."""
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def image_override(name: str, ref: str) -> dict[str, str]:
    """A kustomize `images:` entry that makes image `name` become `ref`.

    Example:
        >>> image_override("demo", "localhost:5000/demo:v2")
        {'name': 'demo', 'newName': 'localhost:5000/demo', 'newTag': 'v2'}
    """
    if not name or not ref:
        raise InvalidConfiguration(
            f"image override {name!r} -> {ref!r} is incomplete",
            fix="map an image name of the manifests to a full reference, e.g. "
            "{'localhost/kube-harness/demo-service': 'localhost/kube-harness/demo-service:v2'}",
        )
    repository, tag, digest = split_ref(ref)
    if digest:
        return {"name": name, "newName": repository, "digest": digest}
    if tag:
        return {"name": name, "newName": repository, "newTag": tag}
    return {"name": name, "newName": ref}


def own_by_namespace(objects: list[Object], namespace: str, uid: str) -> list[Object]:
    """`objects`, the per-namespace cluster-scoped ones made dependents of the namespace, so
    the garbage collector removes them with it (even when the run was killed before its
    teardown)."""
    for obj in objects:
        if obj["kind"] in PER_NAMESPACE_KINDS and not obj["metadata"].get("namespace"):
            obj["metadata"]["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Namespace", "name": namespace, "uid": uid}
            ]
    return objects


def is_kustomization(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in KUSTOMIZATION_FILES)


def plain_manifest_files(path: Path) -> list[Path]:
    """The manifest files `path` stands for: itself, or every manifest file below it.

    Raises:
        InvalidConfiguration: the path does not exist, or holds no manifest file.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InvalidConfiguration(
            f"manifests {path} do not exist",
            fix="point `manifests:` at a kustomization directory, a manifest file or a "
            "folder of manifest files",
        )
    files = sorted(
        p
        for p in path.rglob("*")
        if p.suffix in MANIFEST_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise InvalidConfiguration(
            f"{path} holds no kustomization.yaml and no manifest files "
            f"({', '.join('*' + s for s in MANIFEST_SUFFIXES)})",
            fix="point at a kustomization directory, a manifest file or a folder of them",
        )
    return files


def check_source(path: Path) -> Path:
    """`path`, resolved, once it is something `render` can render.

    Raises:
        InvalidConfiguration: see `plain_manifest_files`.
    """
    path = Path(path).resolve()
    if not (is_kustomization(path) or is_chart(path)):
        plain_manifest_files(path)
    return path


def _kustomize_error(message: str) -> str:
    """The `err="..."` part of kubectl's failure lines, or the whole message."""
    found = re.findall(r'err="(.*)"\s*$', message, flags=re.MULTILINE)
    return "; ".join(found) if found else message


def _plain_resources(source: Path, into: Path) -> list[str]:
    """Copy the plain manifests under `into` (kustomize reads only files below its root),
    each checked first so that a broken file is named, not kustomize's view of it."""
    names = []
    for number, file in enumerate(plain_manifest_files(source)):
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidConfiguration(
                f"manifest file {file} cannot be read: {exc}", fix="make it a readable text file"
            ) from None
        if not parse_objects(text, source=str(file)):
            continue  # an empty file (or only comments) adds nothing
        name = f"{number:04d}-{file.name}"
        (into / name).write_text(text)
        names.append(name)
    return names


def render(
    source: Path,
    *,
    namespace: str | None = None,
    images: Mapping[str, str] | None = None,
    kubectl: str | Path = "kubectl",
    release: HelmRelease | None = None,
    kube_version: str | None = None,
) -> list[Object]:
    """Render a service's manifests into objects (dicts), through `kubectl kustomize`.

    Args:
        source: a kustomization directory, a manifest file, a folder of manifest files or
            a Helm chart (folder or .tgz; rendered by `helm template` first).
        namespace: namespace for every namespaced object.
        images: image name in the manifests -> reference to use instead.
        kubectl: the kubectl binary (its built-in kustomize renders).
        release: for a chart, its release name, values and `--set` values (default: the
            chart's own values, released under the chart's file name).
        kube_version: for a chart, the cluster's Kubernetes version (`.Capabilities`).

    Raises:
        InvalidConfiguration: nothing renderable there, kubectl missing, the manifests do not
            build (invalid YAML, a missing file, a template error, ...), or the output is not
            objects.

    Example:
        >>> render(Path("manifests/overlays/ci"), namespace="t1")[0]["kind"]  # doctest: +SKIP
        'ConfigMap'
    """
    directory = check_source(source)
    if is_chart(directory):
        release = release or HelmRelease(name=chart_release_name(directory), chart=directory)
        return render_text(
            template(release, namespace, kube_version),
            source=f"chart {directory}",
            namespace=namespace,
            images=images,
            kubectl=kubectl,
        )
    with _kustomization(namespace, images, kubectl) as (tmp, build):
        if is_kustomization(directory):
            # kustomize refuses absolute paths as resources; a relative one reaches anywhere.
            resources = [os.path.relpath(directory, tmp)]
        else:
            resources = _plain_resources(directory, tmp)
            if not resources:
                raise InvalidConfiguration(
                    f"{directory} holds no Kubernetes objects (every manifest file is empty)",
                    fix="point at the folder or file that holds the service's manifests",
                )
        try:
            output = build(resources)
        except CommandFailed as exc:
            raise InvalidConfiguration(
                f"manifests {directory} do not build: {_kustomize_error(exc.message)}",
                fix=f"run `kubectl kustomize {directory}` and fix what it reports"
                if is_kustomization(directory)
                else "fix the manifest files named above",
            ) from None
    return parse_objects(output, source=str(directory))


def render_text(
    text: str,
    *,
    source: str,
    namespace: str | None = None,
    images: Mapping[str, str] | None = None,
    kubectl: str | Path = "kubectl",
) -> list[Object]:
    """Objects of a YAML stream (e.g. Helm's output), with namespace and images set as
    `render` sets them.

    Raises:
        InvalidConfiguration: the text is not objects, or kustomize refuses them.
    """
    parse_objects(text, source=source)  # name a broken document before kustomize does
    with _kustomization(namespace, images, kubectl) as (tmp, build):
        (tmp / "manifests.yaml").write_text(text)
        try:
            output = build(["manifests.yaml"])
        except CommandFailed as exc:
            raise InvalidConfiguration(
                f"{source} do not build: {_kustomize_error(exc.message)}",
                fix="fix the objects kustomize names above",
            ) from None
    return parse_objects(output, source=source)


def chart_release_name(chart: Path) -> str:
    """`podinfo` for charts/podinfo or podinfo-6.9.0.tgz: the release name by default."""
    name = chart.name
    for suffix in CHART_ARCHIVE_SUFFIXES:
        name = name.removesuffix(suffix)
    return re.sub(r"-v?\d+(\.\d+)*$", "", name) or "release"


@contextmanager
def _kustomization(
    namespace: str | None, images: Mapping[str, str] | None, kubectl: str | Path
) -> Iterator[tuple[Path, Callable[[list[str]], str]]]:
    """A throw-away kustomization folder, and a function that builds it over resources."""
    if shutil.which(str(kubectl)) is None:
        raise InvalidConfiguration(
            f"{kubectl} is needed to render manifests and was not found",
            fix="install kubectl (it includes kustomize) or pass its path as kubectl=",
        )
    wrapper: Object = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    per_namespace: Object = {}
    if namespace:
        wrapper["namespace"] = namespace
        wrapper["transformers"] = ["per-namespace-names.yaml"]
        per_namespace = {
            "apiVersion": "builtin",
            "kind": "PrefixSuffixTransformer",
            "metadata": {"name": "kube-harness-per-namespace-names"},
            "suffix": f"-{namespace}",
            "fieldSpecs": [{"kind": kind, "path": "metadata/name"} for kind in PER_NAMESPACE_KINDS],
        }
    if images:
        wrapper["images"] = [image_override(name, ref) for name, ref in images.items()]
    with tempfile.TemporaryDirectory(prefix="kh-render-") as tmp:

        def build(resources: list[str]) -> str:
            (Path(tmp) / "kustomization.yaml").write_text(
                yaml.safe_dump({**wrapper, "resources": resources})
            )
            if per_namespace:
                (Path(tmp) / "per-namespace-names.yaml").write_text(yaml.safe_dump(per_namespace))
            return run([str(kubectl), "kustomize", tmp], timeout=120)

        yield Path(tmp), build


def parse_objects(text: str, *, source: str) -> list[Object]:
    """Parse a multi-document YAML stream into Kubernetes objects.

    Raises:
        InvalidConfiguration: the text is not YAML, or a document lacks apiVersion, kind or
            metadata.name.
    """
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise InvalidConfiguration(
            f"{source}: not valid YAML: {exc}", fix="fix the YAML syntax at the line shown"
        ) from None
    for number, document in enumerate(documents, start=1):
        meta = document.get("metadata") if isinstance(document, dict) else None
        if not (
            isinstance(document, dict)
            and document.get("apiVersion")
            and document.get("kind")
            and isinstance(meta, dict)
            and meta.get("name")
        ):
            snippet = json.dumps(document)[:120]
            raise InvalidConfiguration(
                f"{source}: document {number} is not a Kubernetes object: {snippet}",
                fix="every document needs apiVersion, kind and metadata.name",
            )
    return documents
