"""Cluster providers and how one is chosen.

Order: the `--cluster-provider` option, then `HARNESS_PROVIDER`, then detection (a kubeconfig
given -> existing; Docker that runs privileged containers -> kind; otherwise local).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.chaos.ledger import Ledger
from harness.cluster import active, existing, kind, local
from harness.cluster.provider import (
    Capabilities,
    ClusterOptions,
    ClusterProvider,
    NodeLifecycle,
    NodeShell,
    Probe,
    Timings,
)
from harness.errors import InvalidConfiguration, NoProviderFits, ProviderUnavailable
from harness.locks import file_lock
from harness.paths import lock_file
from harness.progress import say

PROVIDERS = ("local", "kind", "existing")
CHOICES = ("auto", *PROVIDERS)
ENV_VAR = "HARNESS_PROVIDER"

__all__ = [
    "CHOICES",
    "DETECTION_ORDER",
    "PROVIDERS",
    "Capabilities",
    "ClusterOptions",
    "ClusterProvider",
    "NodeLifecycle",
    "NodeShell",
    "Probe",
    "Selection",
    "Timings",
    "bring_up",
    "delete_cluster",
    "make_provider",
    "probe_provider",
    "select_provider",
]


@dataclass(frozen=True)
class Selection:
    """The provider to use and why it was picked."""

    name: str
    reason: str


DETECTION_ORDER = ("existing", "kind", "local")


def probe_provider(name: str, kubeconfig: Path | None) -> Probe:
    """Ask one provider whether it can run on this machine."""
    if name == "existing":
        return existing.probe(kubeconfig)
    return {"kind": kind.probe, "local": local.probe}[name]()


def select_provider(
    option: str | None,
    *,
    kubeconfig: Path | None = None,
    environ: Mapping[str, str] = os.environ,
    probe: Callable[[str, Path | None], Probe] = probe_provider,
) -> Selection:
    """Pick the provider: explicit option, then environment, then detection.

    Raises:
        InvalidConfiguration: an unknown provider name.
        ProviderUnavailable: the provider asked for explicitly cannot run here.
        NoProviderFits: detection found nothing; the message lists every attempt and its fix.
    """
    for source, value in (("--cluster-provider", option), (ENV_VAR, environ.get(ENV_VAR))):
        if not value or value == "auto":
            continue
        if value not in PROVIDERS:
            raise InvalidConfiguration(
                f"{source}={value!r} is not a cluster provider",
                fix=f"choose one of: {', '.join(CHOICES)}",
            )
        found = probe(value, kubeconfig)
        if not found.ok and not (value == "existing" and kubeconfig is None):
            raise ProviderUnavailable(f"{value} (from {source}): {found.reason}", fix=found.fix)
        return Selection(value, f"from {source}")
    probes = []
    for name in DETECTION_ORDER:
        found = probe(name, kubeconfig)
        if found.ok and found.detected:
            return Selection(name, f"detected: {found.reason}")
        probes.append(found)
    tried = "\n".join(f"  - {p.provider}: {p.reason}\n      fix: {p.fix}" for p in probes)
    raise NoProviderFits(
        "no cluster provider can run on this machine; tried:\n" + tried,
        fix="apply one of the fixes above, or run `harness doctor` for details",
    )


def make_provider(name: str, options: ClusterOptions) -> ClusterProvider:
    """Instantiate the named provider for `options`."""
    factories: dict[str, Callable[[ClusterOptions], ClusterProvider]] = {
        "local": local.LocalProvider,
        "kind": kind.KindProvider,
        "existing": existing.ExistingProvider,
    }
    if name not in factories:
        raise InvalidConfiguration(
            f"{name!r} is not a cluster provider", fix=f"choose one of: {', '.join(PROVIDERS)}"
        )
    return factories[name](options)


def bring_up(provider: ClusterProvider) -> None:
    """Create the cluster (or reuse it), wait until it is Ready, revert what killed runs left
    on it, and make it the active one: how `harness cluster up` and the pytest `cluster`
    fixture both bring a cluster up. Callers at the same time (xdist workers, a `cluster up`
    beside a run) create it once, under the cluster's lock."""
    # Imported here: the faults import the providers, which import this package.
    from harness.chaos.faults import revert_orphans

    lock = lock_file(f"cluster-{provider.options.name}.lock")
    with file_lock(lock):
        provider.create()
    provider.wait_ready()
    with file_lock(lock):  # one caller reverts; the others find nothing left
        revert_orphans(provider)
    active.record(
        active.ActiveCluster(
            provider.name,
            provider.options.name,
            str(provider.kubeconfig()),
            provider.options.context,
        )
    )


def delete_cluster(provider: ClusterProvider) -> None:
    """Delete the cluster (an `existing` one is never deleted) and forget it: it is no longer
    the active one, and the faults its ledger still held went with a cluster the harness
    made (a new one of the same name must not inherit them)."""
    provider.delete()
    if provider.capabilities.creates_clusters:
        for entry in Ledger(provider.options.name).clear():
            say(f"forgot {entry.describe()}: it went with the deleted cluster")
    active.forget(provider.options.name)
