"""A slow start-up made by the harness, without the service's help.

The Deployment's pod template gets an init container of the harness's own (busybox
`sleep`, the start gate). While it runs, a new pod's sandbox, and so its network namespace,
exists but the service's container has not started: the harness drops what the container's
probes send (harness.chaos.fail_probe) before the kubelet sends the first one. It reverts a
pod's rules `delay_s` after the service's container started: to the kubelet, the service
took `delay_s` to start answering its probes, whatever the probe kind (httpGet, tcpSocket,
gRPC, exec probes that dial the pod).

A pod whose container started before its rules were in place (the gate was too short for
the injection) is reported as such: its start-up was not slowed, and judging it would be
judging nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from harness.chaos.faults import (
    SandboxNotRunning,
    Target,
    container_status,
    fail_probe,
    revert,
)
from harness.chaos.ledger import Injected
from harness.chaos.probe_failure import ProbeNotFailable, probe_block
from harness.errors import WaitTimeout

GATE_CONTAINER = "kube-harness-start-gate"
# Long enough to find the new sandbox and insert the rules on a busy node (about 1 s here).
GATE_S = 5
PROBE_KINDS = ("startup", "liveness", "readiness")
POLL_S = 0.3


def gate_patch(image: str) -> dict[str, Any]:
    """The strategic merge patch that adds the start gate to a Deployment's pods.

    The gate runs as an unprivileged user with nothing writable, so it passes the
    `restricted` Pod Security level and any runAsNonRoot pod.
    """
    gate = {
        "name": GATE_CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sleep", str(GATE_S)],
        "securityContext": {
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {
            "requests": {"cpu": "10m", "memory": "8Mi"},
            "limits": {"cpu": "50m", "memory": "16Mi"},
        },
    }
    return {"spec": {"template": {"spec": {"initContainers": [gate]}}}}


def failable_probes(container: Mapping[str, Any]) -> list[str]:
    """The probe kinds of `container` to fail during a slow start: one per distinct rule set
    (probes on the same path and port need one rule).

    Raises:
        ProbeNotFailable: the container has probes, none of which the harness can fail, or
            none at all (nothing would notice a slow start).
    """
    kinds, seen, reasons = [], set(), []
    for kind in PROBE_KINDS:
        if not container.get(f"{kind}Probe"):
            continue
        try:
            rules = tuple(probe_block(container, kind).rules)
        except ProbeNotFailable as exc:
            reasons.append(exc.message)
            continue
        if rules not in seen:
            seen.add(rules)
            kinds.append(kind)
    if not kinds:
        why = "; ".join(reasons) or f"container {container.get('name')} has no probes"
        raise ProbeNotFailable(
            f"the harness cannot slow this start-up: {why}",
            fix="give the container an httpGet, tcpSocket or gRPC probe, or name a start-up "
            "delay variable of the service (admin.startup_delay_env)",
        )
    return kinds


@dataclass
class SlowStarter:
    """One new pod whose start-up the harness slowed."""

    pod: str
    faults: list[Injected]
    injected_at: float  # epoch seconds
    started_at: float | None = None  # when the service's container started (epoch)
    late: bool = False  # it started before the rules were in place
    reverted: bool = field(default=False)


def _started_at(pod: Any, container: str) -> float | None:
    status = container_status(pod, container)
    state = status.state if status else None
    running = state.running if state else None
    started: datetime | None = running.started_at if running else None
    if started is None and state is not None and state.terminated is not None:
        started = state.terminated.started_at
    return started.timestamp() if started else None


def _new_pods(t: Target, labels: str, before: set[str]) -> list[Any]:
    pods = t.kube.core.list_namespaced_pod(t.namespace, label_selector=labels).items
    return [
        p
        for p in pods
        if p.metadata.name not in before and not p.metadata.deletion_timestamp and p.spec.node_name
        and any(c.name == GATE_CONTAINER for c in p.spec.init_containers or [])
    ]  # fmt: skip


def slow_starts(
    t: Target,
    deployment: str,
    container: str,
    *,
    delay_s: float,
    gate_image: str,
    rolled_out: Any,
    timeout: float,
) -> list[SlowStarter]:
    """Roll `deployment` out with the start gate and slow each new pod's start-up by
    `delay_s`; return once `rolled_out()` is true and every pod's rules are reverted.

    Args:
        t: the harness's namespace and cluster.
        deployment, container: the service's Deployment and the container whose probes fail.
        delay_s: how long each new pod's container takes to start answering.
        gate_image: a busybox image the cluster holds (for `sleep`).
        rolled_out: a callable saying whether the rollout is complete.
        timeout: seconds for the whole rollout.

    Raises:
        ProbeNotFailable: the container's probes cannot be failed (before anything changes).
        WaitTimeout: the rollout did not complete in time (every rule reverted).
    """
    read = t.kube.apps.read_namespaced_deployment(deployment, t.namespace).spec
    labels = ",".join(f"{k}={v}" for k, v in (read.selector.match_labels or {}).items())
    spec = t.kube.api_client.sanitize_for_serialization(read.template.spec)
    found = [c for c in spec.get("containers") or [] if c.get("name") == container]
    kinds = failable_probes(found[0] if found else {"name": container})
    before = {p.metadata.name for p in t.kube.core.list_namespaced_pod(t.namespace).items}
    t.kube.apps.patch_namespaced_deployment(deployment, t.namespace, gate_patch(gate_image))
    starters: dict[str, SlowStarter] = {}
    deadline = time.monotonic() + timeout
    try:
        while True:
            for pod in _new_pods(t, labels, before):
                name = pod.metadata.name
                starter = starters.get(name)
                if starter is None:
                    starter = _slow_down(t, pod, container, kinds)
                    if starter is not None:
                        starters[name] = starter
                    continue
                if starter.started_at is None:
                    starter.started_at = _started_at(pod, container)
                if (
                    not starter.reverted
                    and starter.started_at is not None
                    and time.time() >= starter.started_at + delay_s
                ):
                    _revert(t, starter)
            if starters and all(s.reverted for s in starters.values()) and rolled_out():
                return list(starters.values())
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"the slowed rollout of {deployment} did not complete within {timeout:g}s "
                    f"(slowed pods: {', '.join(starters) or 'none yet'})",
                    fix="see the pod states in the diagnostics; raise probes.startup_delay's "
                    "budget or the rollout's",
                )
            time.sleep(POLL_S)
    finally:
        for starter in starters.values():
            _revert(t, starter)


def _slow_down(t: Target, pod: Any, container: str, kinds: list[str]) -> SlowStarter | None:
    """Fail the pod's probes now, or None while its sandbox is not there yet."""
    injected_at = time.time()
    faults: list[Injected] = []
    try:
        for kind in kinds:
            faults.append(fail_probe(t, pod.metadata.name, container, kind))
    except SandboxNotRunning:
        for fault in faults:
            revert(t.cluster, t.kube, fault, ledger=t.ledger)
        return None  # no running sandbox yet: the next poll tries again
    fresh = t.kube.core.read_namespaced_pod(pod.metadata.name, t.namespace)
    status = container_status(fresh, container)
    late = bool(
        status and (status.started or status.restart_count or _started_at(fresh, container))
    )
    return SlowStarter(pod.metadata.name, faults, injected_at, late=late)


def _revert(t: Target, starter: SlowStarter) -> None:
    if starter.reverted:
        return
    for fault in starter.faults:
        revert(t.cluster, t.kube, fault, ledger=t.ledger)
    starter.reverted = True
