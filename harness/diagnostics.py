"""The diagnostics bundle written for a failing test: collected, not requested.

Events, pod status, container logs (current and previous), Deployments and HPA status of the
test's namespace, plus the provider's own logs. Secrets are never read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from harness.cluster.provider import ClusterProvider
from harness.kube import Kube


def _dump(kube: Kube, obj: Any) -> Any:
    return kube.api_client.sanitize_for_serialization(obj)


def _events(kube: Kube, namespace: str, dest: Path) -> None:
    items = kube.core.list_namespaced_event(namespace).items
    items.sort(key=lambda e: str(e.last_timestamp or e.event_time or e.metadata.creation_timestamp))
    lines = [
        f"{e.last_timestamp or e.event_time}  {e.type:<7} {e.reason:<20} "
        f"{e.involved_object.kind}/{e.involved_object.name}: {e.message}"
        for e in items
    ]
    (dest / "events.txt").write_text("\n".join(lines) + "\n")
    (dest / "events.json").write_text(json.dumps(_dump(kube, items), indent=2))


def _pods(kube: Kube, namespace: str, dest: Path) -> None:
    pods = kube.core.list_namespaced_pod(namespace).items
    status = {p.metadata.name: _dump(kube, p.status) for p in pods}
    (dest / "pods.json").write_text(json.dumps(status, indent=2))
    logs = dest / "logs"
    for pod in pods:
        for cs in pod.status.container_statuses or []:
            for previous in (False, True):
                if previous and not cs.restart_count:
                    continue
                suffix = ".previous.log" if previous else ".log"
                try:
                    text = kube.core.read_namespaced_pod_log(
                        pod.metadata.name, namespace, container=cs.name, previous=previous
                    )
                except ApiException as exc:
                    text = f"(no log: {exc.status} {exc.reason})\n"
                target = logs / pod.metadata.name / f"{cs.name}{suffix}"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)


def _workloads(kube: Kube, namespace: str, dest: Path) -> None:
    deployments = kube.apps.list_namespaced_deployment(namespace).items
    (dest / "deployments.json").write_text(
        json.dumps({d.metadata.name: _dump(kube, d.status) for d in deployments}, indent=2)
    )
    hpas = kube.autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace).items
    (dest / "hpa.json").write_text(
        json.dumps(
            {
                h.metadata.name: {"spec": _dump(kube, h.spec), "status": _dump(kube, h.status)}
                for h in hpas
            },
            indent=2,
        )
    )


def collect_diagnostics(
    kube: Kube, namespace: str, dest: Path, provider: ClusterProvider | None = None
) -> Path:
    """Write everything that helps explain a failure in `namespace` to `dest`.

    Each part is collected independently; a part that fails is named in `errors.txt`
    rather than stopping the others.

    Returns:
        `dest`.
    """
    dest.mkdir(parents=True, exist_ok=True)
    parts: dict[str, Callable[[], object]] = {
        "events": lambda: _events(kube, namespace, dest),
        "pods": lambda: _pods(kube, namespace, dest),
        "workloads": lambda: _workloads(kube, namespace, dest),
    }
    if provider is not None:
        parts["provider"] = lambda: provider.collect_logs(dest / "provider")
    errors = []
    for name, collect in parts.items():
        try:
            collect()
        except Exception as exc:  # a diagnostics gap must never hide the test's own failure
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    if errors:
        (dest / "errors.txt").write_text("\n".join(errors) + "\n")
    return dest
