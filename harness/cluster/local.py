"""The `local` provider: a real Kubernetes as host processes (arrives with issue [2 of 9])."""

from __future__ import annotations

from harness.cluster.provider import ClusterOptions, Probe
from harness.errors import ProviderUnavailable

NOT_YET = "the local provider is not available yet in this version of kube-harness"


def probe() -> Probe:
    return Probe("local", False, NOT_YET, fix="use --cluster-provider=kind or existing for now")


class LocalProvider:
    name = "local"

    def __init__(self, options: ClusterOptions) -> None:
        raise ProviderUnavailable(NOT_YET, fix="use --cluster-provider=kind or existing for now")
