"""Faults recorded before they are injected and reverted through the ledger: each fault
registers its revert next to its injection (`reverted_by`); `revert`, `revert_all`,
`revert_orphans` and `injected` undo them."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from harness.chaos.faults.target import DrainTimeout, Target
from harness.chaos.ledger import Injected, Ledger
from harness.cluster.provider import ClusterProvider
from harness.errors import HarnessError, InvalidConfiguration
from harness.kube import Kube, cluster_uid
from harness.processes import this_process
from harness.progress import say

Revert = Callable[[ClusterProvider, Kube, Injected], None]
InjectFault = TypeVar("InjectFault", bound=Callable[..., Injected])
# The ledger's fault name -> what undoes it, registered by each fault next to its injection.
_REVERTS: dict[str, Revert] = {}
# Reverted before any other fault: the others may need what they stopped.
_STARTED_FIRST: set[str] = set()


def reverted_by(
    undo: Revert, *, fault: str | None = None, first: bool = False
) -> Callable[[InjectFault], InjectFault]:
    """Register `undo` as the revert of the fault the decorated function injects, which the
    ledger names like the function (or `fault`). `first`: reverted before any other fault
    (it stops what the others' reverts may need).

    Example:
        >>> @reverted_by(_start_component, first=True)                 # doctest: +SKIP
        ... def stop_component(t: Target, component: str) -> Injected: ...
    """

    def register(inject_fault: InjectFault) -> InjectFault:
        name = fault or inject_fault.__name__
        _REVERTS[name] = undo
        if first:
            _STARTED_FIRST.add(name)
        return inject_fault

    return register


def new_entry(t: Target, fault: str, *, node: str | None, target: str, undo: dict) -> Injected:
    return Injected(
        id=secrets.token_hex(3),
        fault=fault,
        cluster=t.cluster.options.name,
        namespace=t.namespace,
        node=node,
        target=target,
        undo=undo,
        started=time.time(),
        owner=this_process(),
        cluster_uid=t.cluster_uid,
    )


def inject(t: Target, entry: Injected, apply: Callable[[], object]) -> Injected:
    """Record `entry`, then `apply` it; when applying fails or is interrupted, undo it."""
    t.ledger.add(entry)
    try:
        apply()
    except BaseException as exc:
        try:
            revert(t.cluster, t.kube, entry, ledger=t.ledger)
        except Exception as undo_failed:
            exc.add_note(f"reverting {entry.describe()} failed too: {undo_failed}")
        raise
    return entry


def revert(
    cluster: ClusterProvider, kube: Kube, entry: Injected, *, ledger: Ledger | None = None
) -> None:
    """Undo one fault and remove it from the ledger.

    Idempotent: reverting what is already undone, or whose pod is gone, does nothing more.

    Raises:
        InvalidConfiguration: the fault belongs to another cluster, or is of a kind this
            version does not know.
        HarnessError: undoing failed; the fault stays in the ledger, so it can be retried.
    """
    if entry.cluster != cluster.options.name:
        raise InvalidConfiguration(
            f"{entry.describe()} was injected into cluster {entry.cluster}, "
            f"not {cluster.options.name}",
            fix=f"revert it with --cluster-name={entry.cluster}",
        )
    undo = _REVERTS.get(entry.fault)
    if undo is None:
        raise InvalidConfiguration(
            f"the ledger holds a fault this version cannot revert: {entry.describe()}",
            fix="revert it with the harness version that injected it",
        )
    undo(cluster, kube, entry)
    (ledger or Ledger(cluster.options.name)).remove(entry.id)


def revert_all(
    cluster: ClusterProvider,
    kube: Kube,
    *,
    namespace: str | None = None,
    fault: str | None = None,
    ledger: Ledger | None = None,
) -> list[Injected]:
    """Undo every pending fault (of one namespace, or one kind); return what was undone.

    Stopped components and nodes are started first (the others may need them), then the
    rest newest first. One failure does not stop the others.

    Raises:
        HarnessError: some could not be undone; the message lists each with its error.
    """
    ledger = ledger or Ledger(cluster.options.name)
    return _revert_each(cluster, kube, ledger.pending(namespace=namespace, fault=fault), ledger)


def _revert_each(
    cluster: ClusterProvider, kube: Kube, pending: list[Injected], ledger: Ledger
) -> list[Injected]:
    order = sorted(reversed(pending), key=lambda e: e.fault not in _STARTED_FIRST)
    done, failed = [], []
    for entry in order:
        try:
            revert(cluster, kube, entry, ledger=ledger)
            done.append(entry)
        except Exception as exc:
            failed.append(f"{entry.describe()}: {exc}")
    if failed:
        raise HarnessError(
            "could not revert:\n  " + "\n  ".join(failed),
            fix="fix what the errors say, then run `harness chaos revert` again",
        )
    return done


def revert_orphans(cluster: ClusterProvider) -> list[Injected]:
    """Undo the faults that runs killed before they could revert them left on `cluster`
    (their owner process is gone); say and return what was undone.

    On an `existing` cluster, only with the opt-in the faults were injected under
    (--allow-chaos-on-existing), and only those recorded on this very cluster
    (`cluster_uid`): another cluster of the same name is not touched for its ledger.
    """
    ledger = Ledger(cluster.options.name)
    orphans = [e for e in ledger.pending() if e.orphaned]
    if not orphans:
        return []
    kube = Kube(cluster.kubeconfig(), cluster.options.context)
    try:
        if not cluster.capabilities.creates_clusters:
            if not cluster.capabilities.chaos_allowed:
                say(
                    f"the ledger {ledger.path} holds faults killed runs left on a cluster "
                    f"named {cluster.options.name}; they are not reverted without "
                    "--allow-chaos-on-existing"
                )
                return []
            this_cluster = cluster_uid(kube)
            orphans = [e for e in orphans if e.cluster_uid == this_cluster]
        reverted = _revert_each(cluster, kube, orphans, ledger)
    except HarnessError as exc:  # said, not fatal: the run's own faults are in its hands
        say(f"faults a killed run left could not all be reverted: {exc.message}")
        say("they stay in the ledger: `harness chaos revert` tries again")
        reverted = []
    finally:
        kube.close()
    for entry in reverted:
        say(f"reverted {entry.describe()}, left by a run that was killed")
    return reverted


@contextlib.contextmanager
def injected(
    t: Target, fault: Callable[..., Injected], *args: Any, **kwargs: Any
) -> Iterator[Injected]:
    """Inject `fault(t, *args, **kwargs)` for the block; always revert it afterwards.

    Also on failure and Ctrl-C. A drain that times out is reverted (uncordoned) before its
    DrainTimeout propagates.

    Example:
        >>> with injected(t, cpu_hog, pod, "demo", seconds=30):      # doctest: +SKIP
        ...     time.sleep(10)
    """
    try:
        entry = fault(t, *args, **kwargs)
    except DrainTimeout as exc:
        revert(t.cluster, t.kube, exc.injected, ledger=t.ledger)
        raise
    try:
        yield entry
    finally:
        revert(t.cluster, t.kube, entry, ledger=t.ledger)
