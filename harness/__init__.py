"""kube-harness: prove that a Kubernetes service behaves as its manifests promise.

Names are imported on first use, so that processes which need only a small part (the Locust
child process, the local cluster's supervisor) do not pay for the Kubernetes client.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ClusterOptions": "harness.cluster",
    "ClusterProvider": "harness.cluster",
    "NodeLifecycle": "harness.cluster",
    "Timings": "harness.cluster",
    "HarnessError": "harness.errors",
    "InvalidConfiguration": "harness.errors",
    "Kube": "harness.kube",
    "Pending": "harness.wait",
    "wait_for": "harness.wait",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
