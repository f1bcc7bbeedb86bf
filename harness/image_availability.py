"""Whether the images a rollout needs can start at all: on a node already, or pullable.

An image that no node holds and whose registry cannot be reached would only show as
ErrImagePull once the rollout is under way; checked first, it is named with the fix before
anything is created or changed.

What the nodes hold is asked of their container runtimes where the provider reaches the
nodes (`crictl images`, exact at once); elsewhere it is read from the nodes' status, which the
kubelet refreshes from its runtime every 30 s: an image loaded a moment ago is waited for.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.cluster.provider import NodeLifecycle, NodeShell
from harness.errors import InvalidConfiguration
from harness.kube import Kube

# The kubelet lists at most this many images per node (--node-status-max-images): a longer
# list may leave out the one looked for, and proves nothing.
NODE_STATUS_MAX_IMAGES = 50
# An image loaded a moment ago reaches the node's status after the kubelet's image cache
# refresh (30 s) and its next status update (10 s).
NODE_STATUS_LAG_S = 60.0
REGISTRY_CONNECT_TIMEOUT_S = 3.0
DOCKER_HUB = "registry-1.docker.io"


def workload_images(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every container image of the Deployments, StatefulSets and DaemonSets, in order."""
    images: dict[str, None] = {}
    for obj in objects:
        if obj.get("kind") not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            if container.get("image"):
                images[container["image"]] = None
    return list(images)


def registry_of(image: str) -> str:
    """The registry host an image reference is pulled from (Docker Hub when it names none).

    Example:
        >>> registry_of("ghcr.io/mccutchen/go-httpbin:v2.26.0"), registry_of("nginx:1.27")
        ('ghcr.io', 'registry-1.docker.io')
    """
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def registry_reachable(host: str) -> bool:
    """A TLS port that accepts a connection (`localhost` is a name, not a registry here)."""
    name, _, port = host.partition(":")
    if name == "localhost":
        return False
    try:
        with socket.create_connection((name, int(port or 443)), REGISTRY_CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def runtime_images(cluster: object) -> set[str] | None:
    """Image names the container runtimes of the cluster's nodes hold, or None where the
    provider cannot reach its nodes (an `existing` cluster)."""
    if not (isinstance(cluster, NodeShell) and isinstance(cluster, NodeLifecycle)):
        return None
    names: set[str] = set()
    for node in cluster.nodes():
        listed = json.loads(cluster.node_exec(node, ["crictl", "images", "--output", "json"]))
        for image in listed.get("images") or []:
            names.update(image.get("repoTags") or [])
    return names


@dataclass(frozen=True)
class NodeImages:
    """The images one node's status lists."""

    node: str
    names: frozenset[str]
    complete: bool  # under the kubelet's limit: an image not listed is not there
    takes_pods: bool  # no NoSchedule taint

    @classmethod
    def of_nodes(cls, kube: Kube) -> list[NodeImages]:
        return [
            cls(
                node=node.metadata.name,
                names=frozenset(
                    name for entry in node.status.images or [] for name in entry.names or []
                ),
                complete=len(node.status.images or []) < NODE_STATUS_MAX_IMAGES,
                takes_pods=not any(t.effect == "NoSchedule" for t in node.spec.taints or []),
            )
            for node in kube.core.list_node(_request_timeout=30).items
        ]


def nodes_without(kube: Kube, image: str) -> list[str]:
    """The nodes that take pods (no NoSchedule taint) whose status does not list `image`.

    A node whose list is full (the kubelet's limit) may hold it unlisted: it is not named.
    """
    names = _normalised(image)
    return [
        node.node
        for node in NodeImages.of_nodes(kube)
        if node.takes_pods and node.complete and not names & node.names
    ]


def _normalised(image: str) -> set[str]:
    """The names containerd may list `image` under (docker.io/library/ prefixes)."""
    names = {image}
    if registry_of(image) == DOCKER_HUB and not image.startswith("docker.io/"):
        path = image if "/" in image else f"library/{image}"
        names.add(f"docker.io/{path}")
    return names


def unavailable_images(
    kube: Kube,
    images: Sequence[str],
    *,
    held: Callable[[], set[str] | None] | None = None,
    lag_s: float = NODE_STATUS_LAG_S,
) -> list[str]:
    """The images no node holds and no reachable registry serves.

    Args:
        held: what the nodes' runtimes hold (`runtime_images`), when the provider can say;
            else the nodes' status is read, waiting up to `lag_s` for a recent load.
    """
    reachable = {host: registry_reachable(host) for host in {registry_of(i) for i in images}}
    candidates = [i for i in images if not reachable[registry_of(i)]]
    listed = held() if held is not None and candidates else None
    if listed is not None:
        return [i for i in candidates if not _normalised(i) & listed]
    deadline = time.monotonic() + lag_s
    while candidates:
        nodes = NodeImages.of_nodes(kube)
        on_nodes = {name for node in nodes for name in node.names}
        complete = all(node.complete for node in nodes)
        candidates = [i for i in candidates if not _normalised(i) & on_nodes]
        if not complete or not candidates or time.monotonic() >= deadline:
            return candidates if complete else []
        time.sleep(2)
    return []


def check_images_available(
    kube: Kube,
    objects: Iterable[Mapping[str, Any]],
    *,
    held: Callable[[], set[str] | None] | None = None,
    lag_s: float = NODE_STATUS_LAG_S,
) -> None:
    """Raise, naming each image and the fix, when an image can neither start from a node nor
    be pulled.

    Raises:
        InvalidConfiguration: an image is not on any node and its registry is unreachable.
    """
    missing = unavailable_images(kube, workload_images(objects), held=held, lag_s=lag_s)
    if missing:
        listing = ", ".join(
            f"{image} (registry {registry_of(image)} unreachable)" for image in missing
        )
        raise InvalidConfiguration(
            f"image(s) on no node of the cluster and not pullable: {listing}",
            fix="list the image's archive under the spec's `archives:` (docker save or OCI "
            "layout), let the harness build it (`build:`), or load it with `harness images "
            "load ARCHIVE`; check the image name in the manifests and the spec's `images:`",
        )
