"""Chaos Toolkit probes: what an experiment's steady state and checks ask of the service.

Each takes the `configuration` Chaos Toolkit passes; see harness.chaos.actions for its keys.
Probes that ask whether something happened ("Ready again?", "left the endpoints?") wait for
it with `harness.wait.wait_for`, up to the time the service's spec gives it, which the harness
puts into the configuration (`harness_ready_within_s`, `harness_leaves_endpoints_within_s`):
an experiment needs no pause tuned to one service, and a fast service is not held up.

Example (steady-state hypothesis):
    {"type": "probe", "name": "service answers", "tolerance": true,
     "provider": {"type": "python", "module": "harness.chaos.probes",
                  "func": "service_answers"}}
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping

from chaoslib.types import Configuration
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.chaos.actions import harness_target, ready_service_pods, setting
from harness.chaos.faults import Target, leftovers
from harness.errors import WaitTimeout
from harness.kube import Kube
from harness.wait import Pending, wait_for

__all__ = [
    "container_restarts",
    "deployment_ready",
    "deployment_ready_again",
    "deployment_stays_ready",
    "no_leftovers",
    "partitioned_pod_left_endpoints",
    "pods_at_start",
    "pods_in_endpoints",
    "ready_pods",
    "service_answers",
]

logger = logging.getLogger("chaostoolkit")

# The configuration keys of the spec's times, and of the pods as the experiment started.
READY_WITHIN = "harness_ready_within_s"
LEAVES_ENDPOINTS_WITHIN = "harness_leaves_endpoints_within_s"
REQUEST_TIMEOUT = "harness_request_timeout_s"
PODS_AT_START = "harness_pods_at_start"
POLL_S = 1.0
# kube-proxy applies an endpoint change within its minSyncPeriod (1 s upstream and on the
# harness's own clusters); until then new connections may still be routed to a pod that has
# left. A property of the cluster, not of the service.
PROXY_SYNC_S = 2.0


def pods_at_start(kube: Kube, namespace: str, selector: str) -> dict[str, dict[str, int]]:
    """The service's pods as an experiment starts, for `harness_pods_at_start`: pod UID ->
    container name -> restart count. Restarts and replacements are counted from it."""
    pods = kube.core.list_namespaced_pod(namespace, label_selector=selector).items
    return {
        p.metadata.uid: {c.name: c.restart_count for c in p.status.container_statuses or []}
        for p in pods
    }


def _seconds(configuration: Configuration | None, key: str) -> float:
    return float(setting(configuration, key))


def _holds(condition: Callable[[], bool | Pending], *, seconds: float, what: str) -> bool:
    """True once `condition` holds within `seconds`; False after them, the last state logged."""
    try:
        return wait_for(condition, what=what, timeout=seconds, interval=POLL_S)
    except WaitTimeout as exc:
        logger.info("%s", exc)
        return False


def _live_pods(t: Target, selector: str) -> list[client.V1Pod]:
    pods = t.kube.core.list_namespaced_pod(t.namespace, label_selector=selector).items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def _is_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _not_fully_ready(t: Target, name: str, selector: str) -> str | None:
    """What keeps the Deployment from being fully Ready (every replica updated, Ready and
    available, by its status and by its pods' own conditions), or None."""
    try:
        deployment = t.kube.apps.read_namespaced_deployment(name, t.namespace)
    except ApiException as exc:
        if exc.status == 404:
            return f"deployment {name} not found"
        raise
    wanted, status = deployment.spec.replicas or 0, deployment.status
    if (status.observed_generation or 0) < (deployment.metadata.generation or 0):
        return f"{name}: its controller has not seen the latest change yet"
    counts = (status.ready_replicas, status.available_replicas, status.updated_replicas)
    if any((count or 0) != wanted for count in counts):
        ready, available, updated = (count or 0 for count in counts)
        return f"{name}: {ready}/{wanted} Ready, {available} available, {updated} updated"
    # The status lags the pods: a pod the kubelet turned NotReady counts as Ready above
    # until the ReplicaSet controller catches up.
    ready = [p.metadata.name for p in _live_pods(t, selector) if _is_ready(p)]
    if len(ready) < wanted:
        return f"{name}: pods Ready {len(ready)}/{wanted} ({', '.join(ready) or 'none'})"
    return None


def _changed_since_start(pod: client.V1Pod, before: Mapping[str, Mapping[str, int]]) -> bool:
    """Whether `pod` was not there when the experiment started, or a container of it has
    restarted since."""
    counts = before.get(pod.metadata.uid)
    if counts is None:
        return True
    return any(c.restart_count > counts.get(c.name, 0) for c in pod.status.container_statuses or [])


def service_answers(
    path: str | None = None,
    timeout_s: float | None = None,
    configuration: Configuration | None = None,
) -> bool:
    """Whether the service answers `path` (default: the spec's load.path,
    `harness_load_path`) with a 2xx status within `timeout_s` (default: the spec's
    load.timeout, `harness_request_timeout_s`)."""
    path = path or setting(configuration, "harness_load_path")
    url = setting(configuration, "harness_base_url").rstrip("/") + "/" + path.lstrip("/")
    timeout = timeout_s if timeout_s is not None else _seconds(configuration, REQUEST_TIMEOUT)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def deployment_ready(configuration: Configuration | None = None) -> bool:
    """Whether every replica of the service's Deployment is updated, Ready and available,
    waiting up to the spec's ready_within for it."""
    name = setting(configuration, "harness_deployment")
    selector = setting(configuration, "harness_selector")
    within = _seconds(configuration, READY_WITHIN)
    with harness_target(configuration) as t:

        def ready() -> bool | Pending:
            missing = _not_fully_ready(t, name, selector)
            return Pending(missing) if missing else True

        return _holds(ready, seconds=within, what=f"every replica of {name} to be Ready")


def deployment_ready_again(configuration: Configuration | None = None) -> bool:
    """Whether every replica is Ready again after a fault that replaced a pod or restarted a
    container, waiting up to the spec's ready_within.

    "Again" needs the fault to show: a pod that was not there when the experiment started, or
    a restart since then. Until then the Deployment's status may still describe the pods from
    before the fault, and a check that passes on it would not have seen a recovery.
    """
    name = setting(configuration, "harness_deployment")
    selector = setting(configuration, "harness_selector")
    before = setting(configuration, PODS_AT_START)
    within = _seconds(configuration, READY_WITHIN)
    with harness_target(configuration) as t:

        def again() -> bool | Pending:
            missing = _not_fully_ready(t, name, selector)
            if missing:
                return Pending(missing)
            if not any(_changed_since_start(p, before) for p in _live_pods(t, selector)):
                return Pending(f"{name}: no pod replaced or restarted since the experiment began")
            return True

        return _holds(again, seconds=within, what=f"every replica of {name} to be Ready again")


def deployment_stays_ready(configuration: Configuration | None = None) -> bool:
    """Whether every replica is Ready within the spec's ready_within and then stays Ready for
    the spec's readiness_leaves_endpoints_within.

    By the spec's own promise a replica whose readiness fails leaves within that second time,
    so a Deployment Ready throughout it has no replica about to leave: what a restarted
    kubelet needs, whose readiness results start at Failure (kubernetes/kubernetes#100277).
    """
    name = setting(configuration, "harness_deployment")
    selector = setting(configuration, "harness_selector")
    within = _seconds(configuration, READY_WITHIN)
    hold = _seconds(configuration, LEAVES_ENDPOINTS_WITHIN)
    ready_since: list[float] = []
    with harness_target(configuration) as t:

        def steady() -> bool | Pending:
            missing = _not_fully_ready(t, name, selector)
            if missing:
                ready_since.clear()
                return Pending(missing)
            ready_since[:] = ready_since or [time.monotonic()]
            held = time.monotonic() - ready_since[0]
            return True if held >= hold else Pending(f"{name}: Ready for {held:.0f}s of {hold:g}s")

        return _holds(steady, seconds=within + hold, what=f"every replica of {name} to stay Ready")


def container_restarts(configuration: Configuration | None = None) -> int:
    """Restarts of the service's containers since the experiment started, summed over its
    pods (a pod started since then counts all of its restarts)."""
    before = setting(configuration, PODS_AT_START)
    with harness_target(configuration) as t:
        pods = t.kube.core.list_namespaced_pod(
            t.namespace, label_selector=setting(configuration, "harness_selector")
        ).items
    return sum(
        max(0, c.restart_count - (before.get(p.metadata.uid) or {}).get(c.name, 0))
        for p in pods
        for c in p.status.container_statuses or []
    )


def ready_pods(configuration: Configuration | None = None) -> int:
    """How many of the service's pods are Ready."""
    with harness_target(configuration) as t:
        return len(ready_service_pods(t, setting(configuration, "harness_selector")))


def _in_endpoints(t: Target, selector: str) -> list[str]:
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


def pods_in_endpoints(configuration: Configuration | None = None) -> list[str]:
    """The service's pods that its EndpointSlices list as ready (those that get traffic)."""
    with harness_target(configuration) as t:
        return _in_endpoints(t, setting(configuration, "harness_selector"))


def partitioned_pod_left_endpoints(configuration: Configuration | None = None) -> bool:
    """Whether every pod partitioned in this namespace has left the endpoints, waiting up to
    the spec's readiness_leaves_endpoints_within (False at once when no partition is in
    place). Once they have, it waits `PROXY_SYNC_S` more with them out, so that what follows
    meets a Service whose proxy no longer routes to them."""
    selector = setting(configuration, "harness_selector")
    within = _seconds(configuration, LEAVES_ENDPOINTS_WITHIN)
    left_at: list[float] = []
    with harness_target(configuration) as t:
        cut_off = {e.target for e in t.ledger.pending(namespace=t.namespace, fault="partition_pod")}
        if not cut_off:
            return False

        def left() -> bool | Pending:
            still = sorted(cut_off & set(_in_endpoints(t, selector)))
            if still:
                left_at.clear()
                return Pending(f"still in the endpoints: {', '.join(still)}")
            left_at[:] = left_at or [time.monotonic()]
            out = time.monotonic() - left_at[0]
            return True if out >= PROXY_SYNC_S else Pending(f"out for {out:.1f}s, the proxy syncs")

        return _holds(
            left, seconds=within + PROXY_SYNC_S, what="the partitioned pods to leave the endpoints"
        )


def no_leftovers(configuration: Configuration | None = None) -> bool:
    """Whether nothing of this namespace's faults, nor of no known fault, is left on the
    cluster (each one found is logged)."""
    with harness_target(configuration) as t:
        found = leftovers(t.cluster, t.kube, namespace=t.namespace, ledger=t.ledger)
    for line in found:
        logger.warning("chaos leftover: %s", line)
    return not found
