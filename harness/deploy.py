"""Deploying a service's manifests into a test namespace, and knowing within seconds when it
cannot work.

`deploy()` renders the manifests (harness.render, with the provider's images and the test
namespace), adds a NodePort Service of the harness's own where none reaches the pods that take
the load (harness.access), checks everything against the cluster before creating anything
(every kind served, a server-side dry run), gives each NodePort Service a free port from the
harness's range, applies everything with server-side apply and waits, through `wait_for`,
until every Deployment has rolled out. Pod states that waiting cannot fix (image pulls, crash loops,
missing config) abort the wait at once, naming the resource, the reason and the last state;
a timeout names the probe that has not passed. A failed deploy deletes what it created.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from harness.access import LoadEntry, Reach, reach
from harness.cluster.provider import DEFAULT_NODE_PORTS
from harness.errors import CommandFailed, HarnessError, InvalidConfiguration, WaitAborted
from harness.helm import Helm, HelmRelease, PostRender, is_chart
from harness.image_availability import check_images_available
from harness.kube import API_NOT_UP, Kube, secret_value
from harness.load.runner import CLUSTER
from harness.locks import file_lock
from harness.paths import cache_dir
from harness.progress import step
from harness.render import Object, chart_release_name, describe, own_by_namespace, render
from harness.wait import Pending, wait_for

FIELD_MANAGER = "kube-harness"
DEFAULT_ROLLOUT_TIMEOUT = 180.0
DEFAULT_TEARDOWN_TIMEOUT = 120.0

# Container states that waiting does not fix: the rollout is aborted when one is seen.
FATAL_WAITING_REASONS = {
    "ErrImagePull": "the image cannot be pulled",
    "ImagePullBackOff": "the image cannot be pulled",
    "ErrImageNeverPull": "the image is not on the node and imagePullPolicy is Never",
    "InvalidImageName": "the image reference is not valid",
    "CrashLoopBackOff": "the container keeps exiting",
    "CreateContainerConfigError": "a ConfigMap, Secret or key the container refers to is missing",
    "CreateContainerError": "the runtime cannot create the container",
    "RunContainerError": "the runtime cannot start the container",
}
# ...except with these messages, which the kubelet's retries fix (its caches lag behind).
PASSING_MESSAGES = ("failed to sync configmap cache", "failed to sync secret cache")
FIXES = {
    "ErrImagePull": "build and load the image into the cluster (`harness images build demo`), "
    "or fix the image name given to deploy(images=...)",
    "InvalidImageName": "fix the image reference in the manifests or in deploy(images=...)",
    "CrashLoopBackOff": "read the container log above (kubectl logs --previous) and fix the crash",
    "CreateContainerConfigError": "create the missing ConfigMap/Secret, or fix the reference",
    "FailedCreate": "the API server refused the pods: check admission, quotas and security",
    "ProgressDeadlineExceeded": "see the pod states above; raise progressDeadlineSeconds if slow",
}
FIXES["ImagePullBackOff"] = FIXES["ErrImageNeverPull"] = FIXES["ErrImagePull"]
FIXES["CreateContainerError"] = FIXES["RunContainerError"] = (
    "read the runtime's error above; the node's containerd log has the rest"
)

# --- NodePorts ------------------------------------------------------------------------------


class NodePortPool:
    """Hands out NodePorts from the harness's range that no Service in the cluster holds.

    Args:
        candidates: the ports the provider makes answer on 127.0.0.1.
        taken: port -> the Service holding it ("namespace/name").
    """

    def __init__(self, candidates: Sequence[int], taken: Mapping[int, str]) -> None:
        self.candidates = tuple(candidates)
        self.taken = dict(taken)

    def take(self, holder: str) -> int:
        """Reserve a free port for `holder`.

        Raises:
            HarnessError: every port of the range is held; the message lists by whom.
        """
        for port in self.candidates:
            if port not in self.taken:
                self.taken[port] = holder
                return port
        holders = ", ".join(f"{p}: {self.taken[p]}" for p in self.candidates)
        raise HarnessError(
            f"no free NodePort for {holder} in {self.candidates[0]}-{self.candidates[-1]} "
            f"({holders})",
            fix="tear down deployments you no longer need, or pass more node_ports",
        )

    def assign(self, service: Object) -> list[int]:
        """Give every port of a NodePort Service a free NodePort; return them."""
        ports = service["spec"].get("ports") or []
        for entry in ports:
            entry["nodePort"] = self.take(describe(service))
        return [entry["nodePort"] for entry in ports]


class NodePortRotation:
    """When each NodePort of a cluster was last handed out, so the least recently used goes
    first.

    A Service without ready endpoints makes kube-proxy REJECT connections to its NodePort, and
    each rejected SYN from 127.0.0.1 leaves an un-NATed conntrack entry for 120 s that
    kube-proxy never flushes (kubernetes/kubernetes#48719). A later test whose Service got the
    same NodePort, and whose load reuses one of those source ports, would be refused although
    its Service answers. Rotating through the range keeps a port idle for minutes between
    tests instead of seconds.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of(cls, kube: Kube) -> NodePortRotation:
        key = hashlib.sha256(str(Path(kube.kubeconfig).resolve()).encode()).hexdigest()[:16]
        return cls(cache_dir() / "node-ports" / f"{key}.json")

    def _read(self) -> dict[str, float]:
        try:
            return {str(k): float(v) for k, v in json.loads(self.path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def order(self, candidates: Sequence[int]) -> list[int]:
        """`candidates`, the never used first, then from the longest idle."""
        used = self._read()
        return sorted(candidates, key=lambda port: used.get(str(port), 0.0))

    def note(self, ports: Iterable[int]) -> None:
        """Record that `ports` were handed out now."""
        with file_lock(self.path.with_suffix(".lock")):
            used = self._read()
            used.update({str(port): time.time() for port in ports})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(used))


def is_node_port_service(obj: Mapping[str, Any]) -> bool:
    return obj.get("kind") == "Service" and (obj.get("spec") or {}).get("type") == "NodePort"


def node_ports_in_use(kube: Kube) -> dict[int, str]:
    """NodePort -> "namespace/name" of the Service holding it, over the whole cluster."""
    taken = {}
    for service in kube.core.list_service_for_all_namespaces(_request_timeout=30).items:
        for entry in service.spec.ports or []:
            if entry.node_port:
                taken[entry.node_port] = f"{service.metadata.namespace}/{service.metadata.name}"
    return taken


# --- judging a rollout ----------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A state that waiting will not fix."""

    resource: str
    reason: str
    detail: str
    pod: str | None = None
    container: str | None = None

    def __str__(self) -> str:
        return f"{self.resource}: {self.reason}: {self.detail}"


@dataclass(frozen=True)
class Verdict:
    """What one look at a Deployment and its pods says about its rollout."""

    complete: bool
    state: str
    problem: Problem | None = None


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


def _event_time(event: Mapping[str, Any]) -> str:
    return (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def last_probe_failure(pod_name: str, events: Iterable[Mapping[str, Any]]) -> str | None:
    """The latest "<Kind> probe failed: ..." event of a pod, with how often probes failed."""
    failures = [
        e
        for e in events
        if e.get("reason") == "Unhealthy"
        and (e.get("involvedObject") or {}).get("name") == pod_name
    ]
    if not failures:
        return None
    latest = max(failures, key=_event_time)
    kind = latest.get("message", "").partition(":")[0]
    times = sum(e.get("count") or 1 for e in failures if e.get("message", "").startswith(kind))
    return f"{latest.get('message', '').strip()} ({times}x)"


def _last_exit(container_status: Mapping[str, Any]) -> str | None:
    terminated = (container_status.get("lastState") or {}).get("terminated")
    if not terminated:
        return None
    text = f"last exit {terminated.get('exitCode')} ({terminated.get('reason', 'unknown')})"
    if terminated.get("message"):
        text += f": {terminated['message'].strip()}"
    return text


def _history(container: Mapping[str, Any]) -> list[str]:
    """How the container ended last time and how often it restarted."""
    facts = []
    if last_exit := _last_exit(container):
        facts.append(last_exit)
    if restarts := container.get("restartCount"):
        facts.append(f"{restarts} restarts")
    return facts


def _stuck(pod: str, container: Mapping[str, Any], probe: str | None) -> Problem | None:
    """The problem of a container in a state waiting does not fix, else None."""
    waiting = (container.get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason")
    message = waiting.get("message") or ""
    if reason not in FATAL_WAITING_REASONS or any(m in message for m in PASSING_MESSAGES):
        return None
    parts = [
        FATAL_WAITING_REASONS[reason],
        (waiting.get("message") or "").strip(),
        *_history(container),
        f"last probe failure: {probe}" if probe else "",
    ]
    detail = "; ".join(part for part in parts if part)
    name = container["name"]
    return Problem(f"pod {pod} container {name}", reason, detail, pod, name)


def _progress(container: Mapping[str, Any]) -> list[str]:
    """Where a container that is not stuck stands on its way to Ready."""
    name = container["name"]
    state = container.get("state") or {}
    if waiting := state.get("waiting"):
        message = f" ({waiting['message']})" if waiting.get("message") else ""
        notes = [f"{name} waiting: {waiting.get('reason', 'unknown')}{message}"]
    elif state.get("running") and not container.get("started", True):
        notes = [f"{name} running, startup probe not passed yet"]
    elif state.get("running") and not container.get("ready"):
        notes = [f"{name} running, readiness probe not passed yet"]
    elif state.get("terminated"):
        notes = [f"{name} terminated: {state['terminated'].get('reason')}"]
    else:
        notes = []
    return notes + [f"{name} {fact}" for fact in _history(container)]


def pod_verdict(pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> Verdict:
    """Judge one pod: Ready (complete), on its way (state) or stuck (problem)."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    phase = status.get("phase", "Unknown")
    conditions = _conditions(status)
    if phase == "Failed":
        # Its ReplicaSet replaces a failed (e.g. evicted) pod, so this alone is not hopeless.
        reason = status.get("reason") or "Failed"
        return Verdict(False, f"pod {name}: {reason}: {status.get('message', 'failed')}")
    scheduled = conditions.get("PodScheduled") or {}
    if scheduled.get("status") == "False":
        why = f"{scheduled.get('reason')}: {scheduled.get('message')}"
        return Verdict(False, f"pod {name}: not scheduled: {why}")
    if (conditions.get("Ready") or {}).get("status") == "True":
        return Verdict(True, f"pod {name}: Ready")
    probe = last_probe_failure(name, events)
    containers = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]
    notes = []
    for container in containers:
        if problem := _stuck(name, container, probe):
            return Verdict(False, f"pod {name}: {problem.reason}", problem)
        notes += _progress(container)
    if probe:
        notes.append(f"last probe failure: {probe}")
    detail = "; ".join(notes) or "no container status yet"
    return Verdict(False, f"pod {name}: {phase}, not Ready ({detail})")


def rollout_verdict(
    deployment: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    *,
    old_pods_gone: bool = False,
) -> Verdict:
    """Judge a Deployment's rollout from its status, its pods and the namespace's events.

    Complete means what `kubectl rollout status` means: the controller saw the latest spec,
    every replica runs the new template, the old ones are gone, and the new ones are
    available. With `old_pods_gone`, complete also waits until no pod is still terminating:
    such a pod keeps serving through its preStop hook, and kube-proxy may still send it a
    new connection for a moment after the rollout counts it gone.
    """
    meta = deployment["metadata"]
    name = describe({"kind": "deployment", "metadata": meta})
    spec_replicas = (deployment.get("spec") or {}).get("replicas", 1)
    status = deployment.get("status") or {}
    conditions = _conditions(status)
    live_pods = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    pod_verdicts = [pod_verdict(p, events) for p in live_pods]
    problems = [v.problem for v in pod_verdicts if v.problem]
    if problems:
        return Verdict(False, problems[0].resource, problems[0])
    pod_states = "; ".join(v.state for v in pod_verdicts) or "no pods yet"
    failure = conditions.get("ReplicaFailure")
    if failure and failure.get("status") == "True":
        reason = failure.get("reason") or "ReplicaFailure"
        return Verdict(False, name, Problem(name, reason, failure.get("message", "")))
    progressing = conditions.get("Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        detail = f"{progressing.get('message', '')}; {pod_states}"
        return Verdict(False, name, Problem(name, "ProgressDeadlineExceeded", detail))
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    seen = status.get("observedGeneration", 0) >= meta.get("generation", 0)
    summary = f"{name}: {updated}/{spec_replicas} updated, {available} available"
    if total > updated:
        summary += f", {total - updated} old"
    terminating = len(pods) - len(live_pods)
    if terminating:
        summary += f", {terminating} terminating"
    complete = seen and updated >= spec_replicas and total == updated and available >= updated
    complete = complete and not (old_pods_gone and terminating)
    return Verdict(complete, f"{summary}; {pod_states}")


# --- applying and waiting -------------------------------------------------------------------


def _api_message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body or "{}").get("message") or str(exc.reason)
    except ValueError:
        return str(exc.body or exc.reason)


def _plain(kube: Kube, model: object) -> Object:
    """A client model as the API's own JSON shape (camelCase keys, like kubectl -o json)."""
    return kube.api_client.sanitize_for_serialization(model)


def deployment_and_pods(kube: Kube, namespace: str, name: str) -> tuple[Object, list[Object]]:
    """A Deployment and the pods its selector matches, as plain API dicts."""
    deployment = _plain(kube, kube.apps.read_namespaced_deployment(name, namespace))
    labels = deployment["spec"]["selector"].get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    pods = kube.core.list_namespaced_pod(namespace, label_selector=selector).items
    return deployment, [_plain(kube, p) for p in pods]


def _previous_log(kube: Kube, namespace: str, pod: str, container: str) -> str:
    """The last lines the crashed container wrote, or "" when there are none."""
    try:
        text = kube.core.read_namespaced_pod_log(
            pod, namespace, container=container, previous=True, tail_lines=8, _request_timeout=10
        )
    except ApiException:
        return ""
    return "\n      ".join(line for line in (text or "").splitlines() if line.strip())


def wait_rolled_out(
    kube: Kube,
    namespace: str,
    deployments: Sequence[str],
    *,
    timeout: float = DEFAULT_ROLLOUT_TIMEOUT,
    interval: float = 1.0,
    old_pods_gone: bool = False,
) -> None:
    """Wait until every named Deployment has rolled out completely.

    With `old_pods_gone`, also until the replaced pods have terminated, so that every new
    connection reaches the new version (see `rollout_verdict`). Leave it off where pods may
    stay terminating for long, e.g. on a node that is down.

    Raises:
        WaitAborted: within seconds, when a pod is in a state waiting cannot fix
            (ErrImagePull, ImagePullBackOff, CrashLoopBackOff, CreateContainerConfigError, ...)
            or the Deployment reports ReplicaFailure/ProgressDeadlineExceeded; the message
            names the resource, the reason and the last state (with the crashed
            container's last log lines).
        WaitTimeout: the rollout did not finish; the last state names pods that are not
            Ready and the probe that last failed.
    """

    def rolled_out() -> bool | Pending:
        events = [_plain(kube, e) for e in kube.core.list_namespaced_event(namespace).items]
        states = []
        for name in deployments:
            deployment, pods = deployment_and_pods(kube, namespace, name)
            verdict = rollout_verdict(deployment, pods, events, old_pods_gone=old_pods_gone)
            if verdict.problem:
                raise _aborted(kube, namespace, name, verdict.problem)
            if not verdict.complete:
                states.append(verdict.state)
        return Pending(" | ".join(states)) if states else True

    names = ", ".join(deployments)
    wait_for(
        rolled_out,
        what=f"deployment {names} in namespace {namespace} to roll out",
        timeout=timeout,
        interval=interval,
        transient=API_NOT_UP,
    )


# Where the NodePort probe connects from. A SYN that arrives before kube-proxy has written
# the NodePort's rules leaves an un-NATed conntrack entry for 120 s, and kube-proxy does not
# flush TCP entries (kubernetes/kubernetes#48719). A later connection that reuses that source
# address and port is then refused, although the Service answers. The load connects from
# 127.0.0.1, so probing from another loopback address keeps those entries out of its way.
PROBE_SOURCE_ADDRESS = "127.0.0.2" if sys.platform.startswith("linux") else ""


# How long a probe connection must stay open to count (a proxy closes it within milliseconds).
PROXY_VERDICT_S = 0.3


def wait_node_ports_answer(ports: Sequence[int], *, timeout: float = 30) -> None:
    """Wait until each NodePort accepts connections on 127.0.0.1 and keeps them open.

    Pods can be Ready a moment before kube-proxy has written the NodePort's rules; until
    then a connection is refused (or, behind a proxy, closed at once). The probe connects
    from PROBE_SOURCE_ADDRESS (see there).

    Raises:
        WaitTimeout: a port still refuses connections; the last error is in the message.
    """

    def all_answer() -> bool:
        for port in ports:
            with socket.create_connection(
                ("127.0.0.1", port), timeout=2, source_address=(PROBE_SOURCE_ADDRESS, 0)
            ) as connection:
                # A userland proxy (kind's port mappings, through docker-proxy) accepts at
                # once and closes the connection when the Service behind it refuses.
                connection.settimeout(PROXY_VERDICT_S)
                try:
                    if not connection.recv(1):
                        raise ConnectionResetError(f"127.0.0.1:{port} closed the connection")
                except TimeoutError:
                    pass  # open and quiet: the Service holds it
        return True

    wait_for(
        all_answer,
        what=f"NodePort {', '.join(map(str, ports))} to answer on 127.0.0.1",
        timeout=timeout,
        interval=0.25,
        transient=(OSError,),
    )


def _aborted(kube: Kube, namespace: str, deployment: str, problem: Problem) -> WaitAborted:
    message = f"deployment {namespace}/{deployment} cannot roll out: {problem}"
    if problem.reason == "CrashLoopBackOff" and problem.pod and problem.container:
        log = _previous_log(kube, namespace, problem.pod, problem.container)
        if log:
            message += f"\n    last log lines of {problem.container}:\n      {log}"
    return WaitAborted(message, fix=FIXES.get(problem.reason))


class Applier:
    """Server-side apply, dry runs and deletion of manifest objects in one cluster."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.dynamic = kube.dynamic

    def resource(self, obj: Mapping[str, Any]) -> Any:
        """The API resource serving `obj`'s kind.

        Raises:
            InvalidConfiguration: the cluster does not serve that kind (a typo, or a CRD that
                is not installed).
        """
        try:
            return self.dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        except ResourceNotFoundError:
            raise InvalidConfiguration(
                f"{describe(obj)}: kind {obj['kind']!r} of {obj['apiVersion']!r} is not served "
                "by this cluster",
                fix="check the spelling of kind and apiVersion, or install the CRD first",
            ) from None

    def apply(self, obj: Object, *, dry_run: bool = False) -> None:
        """Server-side apply `obj` as the harness's field manager, fields checked strictly.

        Raises:
            ApiException: the API server refused it.
        """
        extra = {"dry_run": "All"} if dry_run else {}
        self.dynamic.server_side_apply(
            self.resource(obj),
            body=obj,
            namespace=obj["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            query_params=[("fieldValidation", "Strict")],
            **extra,
        )

    def exists(self, obj: Mapping[str, Any]) -> bool:
        try:
            self.dynamic.get(
                self.resource(obj),
                name=obj["metadata"]["name"],
                namespace=obj["metadata"].get("namespace"),
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def delete(self, objects: Sequence[Object], *, timeout: float) -> None:
        """Delete objects (dependents first, pods included) and wait until they are gone."""
        for obj in reversed(objects):
            try:
                self.dynamic.delete(
                    self.resource(obj),
                    name=obj["metadata"]["name"],
                    namespace=obj["metadata"].get("namespace"),
                    propagation_policy="Foreground",
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise

        def all_gone() -> bool | Pending:
            left = [describe(o) for o in objects if self.exists(o)]
            return Pending("still there: " + ", ".join(left)) if left else True

        wait_for(
            all_gone,
            what="deleted objects to disappear",
            timeout=timeout,
            interval=1,
            transient=API_NOT_UP,
        )


def _port_taken(exc: ApiException) -> bool:
    return exc.status == 422 and "already allocated" in _api_message(exc)


def _rejected(obj: Mapping[str, Any], exc: ApiException) -> InvalidConfiguration:
    return InvalidConfiguration(
        f"{describe(obj)} is refused by the API server ({exc.status}): {_api_message(exc)}",
        fix="fix the manifest field named above",
    )


def apply_all(
    applier: Applier, objects: Sequence[Object], pool: NodePortPool, *, dry_run: bool
) -> None:
    """Apply objects in order; a NodePort taken meanwhile is swapped for another free one.

    Raises:
        InvalidConfiguration: the API server refused an object.
    """
    for obj in objects:
        while True:
            try:
                applier.apply(obj, dry_run=dry_run)
                break
            except ApiException as exc:
                if is_node_port_service(obj) and _port_taken(exc):
                    pool.assign(obj)  # another deploy won the race for that port
                elif 400 <= (exc.status or 0) < 500:
                    raise _rejected(obj, exc) from None
                else:
                    raise


@dataclass(frozen=True)
class _Update:
    """What an update applies: the objects, the release (for a chart), what shapes them."""

    objects: list[Object]
    release: HelmRelease | None
    config: PostRender


@dataclass
class Deployed:
    """A service's manifests deployed into a namespace; `teardown()` removes them again.

    Attributes:
        namespace: where it runs.
        base_url: http://127.0.0.1:<nodePort> of its first NodePort Service; it answers
            when deploy() returns, though kube-proxy may add the last Ready pods to its
            rules a moment later.
        node_ports: NodePort Service name -> the NodePort it got.
        service_url: http://<service>.<namespace>.svc:<port> of the same Service, for
            clients inside the cluster (load from the cluster).
        objects: the objects as applied.
        release: for a Helm chart, the release as installed (Helm applies, the harness
            shapes what it applies through a post-renderer).
    """

    kube: Kube
    namespace: str
    source: Path
    objects: list[Object]
    base_url: str
    node_ports: dict[str, int]
    applier: Applier
    service_url: str = ""
    kubectl: str | Path = "kubectl"
    own_service: Object | None = None  # the harness's NodePort Service, when it added one
    release: HelmRelease | None = None
    previous: _Update | None = None  # what ran before the last update()
    held_images: Callable[[], set[str] | None] | None = None  # see deploy()
    namespace_uid: str = ""  # owner of the service's cluster-scoped objects (harness.render)

    @property
    def deployments(self) -> list[str]:
        return [o["metadata"]["name"] for o in self.objects if o["kind"] == "Deployment"]

    @property
    def label(self) -> str:
        """What progress lines call it: the Helm release, else the manifests' folder."""
        return f"Helm release {self.release.name}" if self.release else self.source.name

    def load_url(self, placement: str) -> str:
        """Where load sent from `placement` ("host" or "cluster") reaches the service."""
        return self.service_url if placement == CLUSTER else self.base_url

    def pods(self) -> list[str]:
        """Names of the Ready pods of its Deployments."""
        names = []
        for name in self.deployments:
            _, pods = deployment_and_pods(self.kube, self.namespace, name)
            names += [
                p["metadata"]["name"]
                for p in pods
                if not p["metadata"].get("deletionTimestamp") and pod_verdict(p, []).complete
            ]
        return sorted(names)

    def secret_value(self, name: str, key: str) -> str:
        """A value of a Secret as deployed (e.g. the demo's admin token)."""
        return secret_value(self.kube, self.namespace, name, key)

    def _same_ports(self) -> NodePortPool:
        # The Services keep their ports; should one be taken meanwhile, that is an error.
        return NodePortPool(list(self.node_ports.values()), {})

    def _helm(self) -> Helm:
        return Helm(self.kube.kubeconfig, self.kube.context)

    def _post_render(self, images: Mapping[str, str], replicas: Mapping[str, int]) -> PostRender:
        node_ports = {
            o["metadata"]["name"]: [p["nodePort"] for p in o["spec"]["ports"]]
            for o in self.objects
            if is_node_port_service(o)
        }
        return PostRender(
            self.namespace, dict(images), str(self.kubectl), node_ports, replicas,
            self.namespace_uid,
        )  # fmt: skip

    def update(self, images: Mapping[str, str], *, upgrade: bool = False) -> None:
        """Apply the manifests again with other images, and return without waiting.

        NodePorts stay, and each Deployment keeps its current replica count (an HPA may
        have changed it). A chart is upgraded with `helm upgrade`: to the spec's next
        chart and values when `upgrade` is set, else with the same ones.
        """
        self._apply(self._prepare(images, upgrade=upgrade))

    def _current_replicas(self) -> dict[str, int]:
        """Each Deployment's replica count now (an HPA may have changed it): what an update
        keeps, since an apply that leaves out `replicas` would reset it to 1."""
        return {
            name: self.kube.apps.read_namespaced_deployment(name, self.namespace).spec.replicas
            for name in self.deployments
        }

    def _prepare(self, images: Mapping[str, str], *, upgrade: bool) -> _Update:
        replicas = self._current_replicas()
        release = self.release.upgraded() if self.release and upgrade else self.release
        config = self._post_render(images, replicas)
        objects = config.shape(
            render(self.source if release is None else release.chart, namespace=self.namespace,
                   images=images, kubectl=self.kubectl, release=release,
                   kube_version=self.kube.server_version if release else None)
        )  # fmt: skip
        if self.own_service is not None:
            objects.append(self.own_service)  # not the release's: Helm leaves it alone
        return _Update(objects, release, config)

    def _apply(self, update: _Update) -> None:
        with step(f"updating {self.label} in {self.namespace}"):
            if update.release is not None:
                self._helm().upgrade(update.release, update.config)
            else:
                apply_all(self.applier, update.objects, self._same_ports(), dry_run=False)
            self.previous = _Update(self.objects, self.release, update.config)
            self.objects, self.release = update.objects, update.release

    def roll_back(self) -> None:
        """Back to what ran before the last `update()` (`helm rollback` for a chart),
        without waiting."""
        if self.previous is None:
            raise InvalidConfiguration(
                f"{self.label} in {self.namespace} was never updated: nothing to roll back to",
                fix="call update() (or rollout()) first",
            )
        previous = self.previous
        with step(f"rolling back {self.label} in {self.namespace}"):
            if self.release is not None:
                self._helm().rollback(self.release, self.namespace)
            else:
                keep = self._post_render({}, self._current_replicas())
                objects = keep.shape(copy.deepcopy(previous.objects))
                apply_all(self.applier, objects, self._same_ports(), dry_run=False)
            self.previous = _Update(self.objects, self.release, previous.config)
            self.objects, self.release = previous.objects, previous.release

    def rollout(
        self,
        images: Mapping[str, str],
        *,
        timeout: float = DEFAULT_ROLLOUT_TIMEOUT,
        upgrade: bool = True,
    ) -> None:
        """`update()` (to the next chart and values, for a chart) and wait for the rollout.

        Returns once the replaced pods have terminated, so new connections reach only the
        new version.

        Raises:
            InvalidConfiguration: an image is on no node and not pullable (checked when
                deploy() was given `held_images`; nothing changed).
            WaitAborted, WaitTimeout: as for deploy().
        """
        update = self._prepare(images, upgrade=upgrade)
        if self.held_images is not None:
            check_images_available(self.kube, update.objects, held=self.held_images)
        self._apply(update)
        with step(f"rolling out {self.label} in {self.namespace}"):
            wait_rolled_out(
                self.kube, self.namespace, self.deployments, timeout=timeout, old_pods_gone=True
            )

    def teardown(self, *, timeout: float = DEFAULT_TEARDOWN_TIMEOUT) -> None:
        """Delete every object (and the pods) and wait until they are gone."""
        with step(f"removing {self.label} from {self.namespace}"):
            if self.release is not None:
                self._helm().uninstall(self.release, self.namespace)
            self.applier.delete(self.objects, timeout=timeout)


def _find(objects: Sequence[Object], like: Mapping[str, Any]) -> Object:
    return next(
        o
        for o in objects
        if o["kind"] == like["kind"] and o["metadata"]["name"] == like["metadata"]["name"]
    )


def deploy(
    kube: Kube,
    namespace: str,
    kustomization_dir: Path,
    *,
    images: Mapping[str, str] | None = None,
    node_ports: Sequence[int] = DEFAULT_NODE_PORTS,
    timeout: float = DEFAULT_ROLLOUT_TIMEOUT,
    kubectl: str | Path = "kubectl",
    keep_on_failure: bool = False,
    entry: LoadEntry | None = None,
    release: HelmRelease | None = None,
    held_images: Callable[[], set[str] | None] | None = None,
    wait_node_ports: bool = True,
) -> Deployed:
    """Render, check, apply and wait: the kustomization runs in `namespace` when this returns.

    Args:
        kube: the cluster.
        namespace: an existing namespace (the test's).
        kustomization_dir: base or overlay, e.g. manifests/overlays/ci.
        images: image name in the manifests -> the provider's reference for it.
        node_ports: NodePorts answering on 127.0.0.1; each NodePort Service gets a free one.
        timeout: seconds for the rollout.
        kubectl: kubectl binary used to render.
        keep_on_failure: leave the objects in place when the rollout fails (for debugging).
        entry: the Deployment (and port) the load goes to; without a NodePort Service
            selecting it in the manifests, the harness adds one of its own
            (harness.access). Without `entry`, the first NodePort Service of the
            manifests is used.
        release: for a Helm chart, the release's name and values; the chart is then
            installed by `helm install` (shaped by the harness, see harness.helm).
        held_images: how to see the images the nodes hold
            (`lambda: harness.image_availability.runtime_images(cluster)`; returning None
            reads the nodes' status instead). Given, an image that is on no node and not
            pullable is named before anything is created, and before each rollout.
        wait_node_ports: wait until the NodePorts answer on 127.0.0.1. False where
            nothing needs them here (an `existing` cluster with load from the cluster,
            whose NodePorts may be on no address of this machine).

    Returns:
        A handle with the base URL on 127.0.0.1 (answering by then, when waited for), the
        Service's in-cluster URL, the pods and `teardown()`.

    Raises:
        InvalidConfiguration: found before anything is created: the namespace is missing,
            the manifests do not build, a kind is unknown, the API server refuses an
            object, (without `entry`) there is no NodePort Service, or (with
            `held_images`) an image is on no node and its registry is unreachable.
        WaitAborted: a pod is stuck (image pull, crash loop, config error); objects deleted.
        WaitTimeout: the rollout did not finish in time; objects deleted.

    Example:
        >>> demo = deploy(kube, "t-1", Path("manifests/overlays/ci"))  # doctest: +SKIP
        >>> requests.get(demo.base_url + "/version")                   # doctest: +SKIP
        >>> demo.teardown()                                            # doctest: +SKIP
    """
    try:
        namespace_uid = kube.core.read_namespace(namespace, _request_timeout=30).metadata.uid
    except ApiException as exc:
        if exc.status != 404:
            raise
        raise InvalidConfiguration(
            f"namespace {namespace} does not exist", fix="create it first (the test fixture does)"
        ) from None
    source = Path(kustomization_dir)
    if release is None and is_chart(source):
        release = HelmRelease(name=chart_release_name(source), chart=source)
    objects = render(source, namespace=namespace, images=images, kubectl=kubectl, release=release,
                     kube_version=kube.server_version if release else None)  # fmt: skip
    own_by_namespace(objects, namespace, namespace_uid)
    if entry is not None:
        reached = reach(objects, entry)
        if reached.own:
            objects.append(reached.service)
    services = [o for o in objects if is_node_port_service(o)]
    if entry is None:
        if not services:
            raise InvalidConfiguration(
                f"{source} has no NodePort Service, so nothing answers on 127.0.0.1",
                fix="name the Deployment that takes the load (deploy(entry=LoadEntry(...))): "
                "the harness then adds a NodePort Service of its own",
            )
        reached = Reach(services[0], 0, own=False)
    applier = Applier(kube)
    for obj in objects:
        applier.resource(obj)  # unknown kinds fail here, before anything exists
    if held_images is not None:
        check_images_available(kube, objects, held=held_images)
    rotation = NodePortRotation.of(kube)
    pool = NodePortPool(rotation.order(node_ports), node_ports_in_use(kube))
    for service in services:
        pool.assign(service)
    with step(f"deploying {source} into {namespace}"):
        apply_all(applier, objects, pool, dry_run=True)
        try:
            if release is None:
                apply_all(applier, objects, pool, dry_run=False)
            deployed = Deployed(
                kube=kube,
                namespace=namespace,
                source=source,
                objects=objects,
                base_url="http://127.0.0.1:"
                f"{reached.service['spec']['ports'][reached.port_index]['nodePort']}",
                node_ports={
                    s["metadata"]["name"]: s["spec"]["ports"][0]["nodePort"] for s in services
                },
                service_url=f"http://{reached.service['metadata']['name']}.{namespace}.svc:"
                f"{reached.service['spec']['ports'][reached.port_index]['port']}",
                kubectl=kubectl,
                applier=applier,
                own_service=reached.service if reached.own else None,
                release=release,
                held_images=held_images,
                namespace_uid=namespace_uid,
            )
            if release is not None:
                deployed._helm().install(release, deployed._post_render(images or {}, {}))
                apply_all(applier, [reached.service] if reached.own else [], pool, dry_run=False)
            rotation.note(deployed.node_ports.values())
            wait_rolled_out(kube, namespace, deployed.deployments, timeout=timeout)
            if wait_node_ports:
                wait_node_ports_answer(list(deployed.node_ports.values()), timeout=timeout)
        except BaseException:
            # Interrupted or failed: leave nothing behind unless asked to.
            if not keep_on_failure:
                if release is not None:
                    with contextlib.suppress(CommandFailed):  # the objects go all the same
                        Helm(kube.kubeconfig, kube.context).uninstall(release, namespace)
                applier.delete(objects, timeout=DEFAULT_TEARDOWN_TIMEOUT)
            raise
    return deployed
