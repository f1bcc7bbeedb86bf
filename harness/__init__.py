"""kube-harness: prove that a Kubernetes service behaves as its manifests promise."""

from harness.cluster import ClusterOptions, ClusterProvider, NodeLifecycle, Timings
from harness.errors import HarnessError, InvalidConfiguration
from harness.kube import Kube
from harness.wait import Pending, wait_for

__all__ = [
    "ClusterOptions",
    "ClusterProvider",
    "HarnessError",
    "InvalidConfiguration",
    "Kube",
    "NodeLifecycle",
    "Pending",
    "Timings",
    "wait_for",
]
