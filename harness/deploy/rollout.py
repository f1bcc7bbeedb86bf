"""Judging a rollout while it happens: pod states that waiting cannot fix abort the wait at
once, naming the resource, the reason, the fix and the last log lines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from harness.errors import WaitAborted
from harness.kube import API_NOT_UP, Kube
from harness.render import Object, describe
from harness.wait import Pending, wait_for

DEFAULT_ROLLOUT_TIMEOUT = 180.0
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


# --- waiting for a rollout ------------------------------------------------------------------


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


def _aborted(kube: Kube, namespace: str, deployment: str, problem: Problem) -> WaitAborted:
    message = f"deployment {namespace}/{deployment} cannot roll out: {problem}"
    if problem.reason == "CrashLoopBackOff" and problem.pod and problem.container:
        log = _previous_log(kube, namespace, problem.pod, problem.container)
        if log:
            message += f"\n    last log lines of {problem.container}:\n      {log}"
    return WaitAborted(message, fix=FIXES.get(problem.reason))
