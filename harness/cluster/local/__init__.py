"""The `local` provider: a real single-node Kubernetes as supervised processes on this machine.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy run
under a small supervisor (`supervisor`), with containerd + runc as the runtime and the CNI
bridge plugin on a bridge the harness makes (`network`). Every cluster has its own CA
(`pki`); its files live in `layout.Layout` folders.
"""

from __future__ import annotations

from harness.cluster.local.cluster import LocalProvider, probe_machine
from harness.cluster.provider import Probe

__all__ = ["LocalProvider", "probe"]


def probe() -> Probe:
    """Can this machine run the local provider (root, containerd, runc, CNI plugins)."""
    ok, reason, fix = probe_machine()
    return Probe("local", ok, reason, fix=fix)
