"""Addon manifests (CoreDNS, metrics-server) that any provider running its own control plane
can apply: `render(name, **values)` fills the ${PLACEHOLDERS} listed at the top of each file;
and `install_on_demand`, how the addons only some runs need (Argo Rollouts, NetworkPolicy
enforcement) get onto a local or kind cluster the first time a run needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from string import Template
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.commands import run
from harness.kube import API_NOT_UP, Kube
from harness.progress import step
from harness.wait import Pending, wait_for

ADDONS_DIR = Path(__file__).parent
METRICS_API = "v1beta1.metrics.k8s.io"


def render(addon: str, **values: str) -> str:
    """The manifest of `addon` ("coredns", "metrics-server") with its placeholders filled.

    Raises:
        KeyError: a placeholder was not given a value.
    """
    return Template((ADDONS_DIR / f"{addon}.yaml").read_text()).substitute(values)


def metrics_server(image: str, *, metric_resolution_s: int) -> str:
    """metrics-server's manifest; kubelets' serving certificates are self-signed here."""
    return render(
        "metrics-server",
        IMAGE=image,
        METRIC_RESOLUTION=f"{metric_resolution_s}s",
        KUBELET_TLS_ARGS="--kubelet-insecure-tls",
    )


def apply(kubectl: Path, kubeconfig: Path, manifests: Sequence[str]) -> None:
    """Apply rendered addon manifests (server-side, so re-applying is harmless)."""
    run(
        [kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side", "-f", "-"],
        input="\n---\n".join(manifests),
        fix="check the kube-apiserver log (harness cluster logs)",
        timeout=120,
    )


def wait_available(kube: Kube, deployments: Sequence[str], *, timeout: float) -> None:
    """Wait until the kube-system `deployments` are available and the metrics API answers.

    Raises:
        WaitTimeout: naming what was still missing.
    """

    def available() -> bool | Pending:
        missing = []
        for name in deployments:
            deployment = kube.apps.read_namespaced_deployment(name, "kube-system")
            if not (deployment.status.available_replicas or 0):
                missing.append(f"{name} not available")
        service = client.ApiregistrationV1Api(kube.api_client).read_api_service(
            METRICS_API, _request_timeout=10
        )
        conditions = service.status.conditions or []
        if not any(c.type == "Available" and c.status == "True" for c in conditions):
            reason = next((c.message for c in conditions), "no status yet")
            missing.append(f"metrics API not available ({reason})")
        return Pending("; ".join(missing)) if missing else True

    wait_for(
        available,
        what=f"{', '.join(deployments)} and the metrics API to be available",
        timeout=timeout,
        interval=0.5,
        transient=(*API_NOT_UP, ApiException),
    )


def install_on_demand(
    cluster: Any,
    *,
    addon: str,
    shown: str,
    running: Callable[[], bool],
    images: Callable[[], Sequence[Path]],
    manifests: Callable[[], Sequence[dict[str, Any]]],
    timeout: float,
) -> None:
    """Install `addon` (a name for its lock; `shown` in progress lines) on `cluster` unless
    it already `running()`, and wait until it is.

    Runs on one machine take turns through a per-cluster lock, so parallel workers install
    it once; `images` (archives, loaded on the nodes) and `manifests` (applied server-side)
    are only made when it has to be installed.

    Raises:
        WaitTimeout: it did not run within `timeout`.
    """
    from harness.kubectl import kubectl_path
    from harness.locks import file_lock
    from harness.paths import lock_file
    from harness.scenario import load_once

    with file_lock(lock_file(f"addon-{addon}-{cluster.options.name}.lock")):
        if not running():
            load_once(cluster, images())
            with step(f"installing {shown}"):
                apply(kubectl_path(), cluster.kubeconfig(),
                      [yaml.safe_dump(m) for m in manifests()])  # fmt: skip
        wait_for(
            lambda: True if running() else Pending(f"{shown} not running yet"),
            what=f"{shown} to run",
            timeout=timeout,
            transient=(*API_NOT_UP, ApiException),
        )
