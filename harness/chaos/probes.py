"""Chaos Toolkit probes: what an experiment's steady state and checks ask of the service.

Each takes the `configuration` Chaos Toolkit passes; see harness.chaos.actions for its keys.

Example (steady-state hypothesis):
    {"type": "probe", "name": "service answers", "tolerance": true,
     "provider": {"type": "python", "module": "harness.chaos.probes",
                  "func": "service_answers"}}
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request

from chaoslib.types import Configuration
from kubernetes.client.exceptions import ApiException

from harness.chaos.actions import harness_target, ready_service_pods, setting
from harness.chaos.faults import leftovers

__all__ = [
    "container_restarts",
    "deployment_ready",
    "no_leftovers",
    "partitioned_pod_left_endpoints",
    "pods_in_endpoints",
    "ready_pods",
    "service_answers",
]

logger = logging.getLogger("chaostoolkit")


def service_answers(
    path: str = "/", timeout_s: float = 2, configuration: Configuration | None = None
) -> bool:
    """Whether the service answers `path` with a 2xx status within `timeout_s`."""
    url = setting(configuration, "harness_base_url").rstrip("/") + "/" + path.lstrip("/")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def deployment_ready(configuration: Configuration | None = None) -> bool:
    """Whether the service's Deployment has all its replicas updated, Ready and available."""
    name = setting(configuration, "harness_deployment")
    with harness_target(configuration) as t:
        try:
            deployment = t.kube.apps.read_namespaced_deployment(name, t.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
    wanted, status = deployment.spec.replicas or 0, deployment.status
    return (status.observed_generation or 0) >= (deployment.metadata.generation or 0) and all(
        (count or 0) == wanted
        for count in (status.ready_replicas, status.available_replicas, status.updated_replicas)
    )


def container_restarts(configuration: Configuration | None = None) -> int:
    """Restarts of the service's containers, summed over its pods (0 while none restarted)."""
    with harness_target(configuration) as t:
        pods = t.kube.core.list_namespaced_pod(
            t.namespace, label_selector=setting(configuration, "harness_selector")
        ).items
    return sum(c.restart_count for p in pods for c in p.status.container_statuses or [])


def ready_pods(configuration: Configuration | None = None) -> int:
    """How many of the service's pods are Ready."""
    with harness_target(configuration) as t:
        return len(ready_service_pods(t, setting(configuration, "harness_selector")))


def pods_in_endpoints(configuration: Configuration | None = None) -> list[str]:
    """The service's pods that its EndpointSlices list as ready (those that get traffic)."""
    with harness_target(configuration) as t:
        selector = setting(configuration, "harness_selector")
        pods = {p.metadata.name for p in t.kube.core.list_namespaced_pod(
            t.namespace, label_selector=selector).items}  # fmt: skip
        slices = t.kube.discovery.list_namespaced_endpoint_slice(t.namespace).items
    return sorted(
        {
            e.target_ref.name
            for s in slices
            for e in s.endpoints or []
            if e.target_ref
            and e.target_ref.name in pods
            and e.conditions is not None
            and e.conditions.ready
        }
    )


def partitioned_pod_left_endpoints(configuration: Configuration | None = None) -> bool:
    """Whether every pod partitioned in this namespace is out of the endpoints (False when
    no partition is in place)."""
    with harness_target(configuration) as t:
        cut_off = {e.target for e in t.ledger.pending(namespace=t.namespace, fault="partition_pod")}
    return bool(cut_off) and not cut_off & set(pods_in_endpoints(configuration))


def no_leftovers(configuration: Configuration | None = None) -> bool:
    """Whether nothing of this namespace's faults, nor of no known fault, is left on the
    cluster (each one found is logged)."""
    with harness_target(configuration) as t:
        found = leftovers(t.cluster, t.kube, namespace=t.namespace, ledger=t.ledger)
    for line in found:
        logger.warning("chaos leftover: %s", line)
    return not found
