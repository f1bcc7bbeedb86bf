"""How the load reaches a service's pods from 127.0.0.1, whatever Services its manifests have.

Load enters a cluster through a NodePort on 127.0.0.1. Teams rarely ship one: their
Services are ClusterIP, or there is none. The harness then adds a NodePort Service of its
own with the same selector and the port the spec names (`port:`), created and removed with
the service, so the manifests stay as their authors wrote them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import InvalidConfiguration
from harness.render import Object, describe

MANAGED_BY = {"app.kubernetes.io/managed-by": "kube-harness"}
OWN_SERVICE_PREFIX = "kube-harness-"


@dataclass(frozen=True)
class LoadEntry:
    """Which pods take the load (a Deployment's) and on which port (name or number; None:
    the only one there is)."""

    deployment: str
    port: str | int | None = None


@dataclass(frozen=True)
class Reach:
    """The NodePort Service the load goes through and which of its ports."""

    service: Object
    port_index: int
    own: bool  # made by the harness, not part of the manifests


def _deployment(objects: Sequence[Object], name: str) -> Object:
    found = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
    if not found:
        have = [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"]
        raise InvalidConfiguration(
            f"the manifests have no Deployment {name!r} (they have: {', '.join(have) or 'none'})",
            fix="set `deployment:` in the spec to one of the Deployments the manifests hold",
        )
    return found[0]


def _selects(service: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    selector = (service.get("spec") or {}).get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _matches(entry: Mapping[str, Any], port: str | int, *keys: str) -> bool:
    return any(entry.get(key) == port for key in keys)


def _port_index(service: Object, port: str | int | None, deployment: str) -> int:
    ports = service["spec"].get("ports") or []
    if port is None:
        if len(ports) == 1:
            return 0
        names = ", ".join(str(p.get("name") or p.get("port")) for p in ports)
        raise InvalidConfiguration(
            f"{describe(service)} (selecting Deployment {deployment}) has {len(ports)} ports "
            f"({names}): which one takes the load?",
            fix="name it with `port:` in the spec's service (a port name or number)",
        )
    for index, entry in enumerate(ports):
        if _matches(entry, port, "name", "port", "targetPort"):
            return index
    raise InvalidConfiguration(
        f"{describe(service)} has no port {port!r} "
        f"(it has: {', '.join(str(p.get('name') or p.get('port')) for p in ports)})",
        fix="set `port:` in the spec to one of the Service's port names or numbers",
    )


def _container_port(deployment: Object, port: str | int | None) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"].get("containers") or []
    declared = [p for c in containers for p in c.get("ports") or []]
    if port is not None:
        for entry in declared:
            if _matches(entry, port, "name", "containerPort"):
                return entry
        if isinstance(port, int):
            return {"containerPort": port}  # undeclared ports are reachable all the same
    elif declared:
        return declared[0]
    which = "no container ports" if port is None else f"no container port {port!r}"
    raise InvalidConfiguration(
        f"{describe(deployment)} declares {which} and no Service selects it, so the harness "
        "cannot tell where the load goes",
        fix="name the port the service listens on with `port:` in the spec (a number)",
    )


def _own_service(name: str, selector: Mapping[str, str], port: Mapping[str, Any]) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": (OWN_SERVICE_PREFIX + name)[:63].rstrip("-"), "labels": MANAGED_BY},
        "spec": {"type": "NodePort", "selector": dict(selector), "ports": [dict(port)]},
    }


def reach(objects: Sequence[Object], entry: LoadEntry) -> Reach:
    """The NodePort Service through which load reaches `entry`'s pods: one of the manifests'
    when it selects them, else a new one of the harness's (not yet part of `objects`).

    Raises:
        InvalidConfiguration: no such Deployment; a Service with several ports and no
            `port:`; a port that is not there.

    Example:
        >>> reach(render(Path("manifests/overlays/ci")), LoadEntry("demo")).own  # doctest: +SKIP
        False
    """
    deployment = _deployment(objects, entry.deployment)
    labels = (deployment["spec"]["template"].get("metadata") or {}).get("labels") or {}
    selecting = [o for o in objects if o["kind"] == "Service" and _selects(o, labels)]
    for service in selecting:
        if service["spec"].get("type") == "NodePort":
            return Reach(service, _port_index(service, entry.port, entry.deployment), own=False)
    namespace = deployment["metadata"].get("namespace")
    if selecting:
        service = selecting[0]
        chosen = service["spec"]["ports"][_port_index(service, entry.port, entry.deployment)]
        port = {
            "name": "load",
            "port": chosen["port"],
            "targetPort": chosen.get("targetPort", chosen["port"]),
            "protocol": chosen.get("protocol", "TCP"),
        }
        own = _own_service(entry.deployment, service["spec"]["selector"], port)
    else:
        container_port = _container_port(deployment, entry.port)
        number = container_port["containerPort"]
        port = {"name": "load", "port": number, "targetPort": container_port.get("name", number)}
        # The pod template's labels: a selector with matchExpressions has no plain form.
        own = _own_service(entry.deployment, labels, port)
    if namespace:
        own["metadata"]["namespace"] = namespace
    return Reach(own, 0, own=True)
