"""Fault primitives shared by the scenarios and the chaos experiments.

Every fault is refused before anything changes when it is not allowed (chaos not opted into,
a namespace the harness did not create, a node fault on a cluster the harness does not own,
a provider that cannot reach its nodes). A fault that stays in place (a CPU hog, iptables
rules, a cordon, a stopped component) is written to the ledger before it is injected and
removed from it once reverted; every process, rule and annotation it makes carries
`kube-harness-chaos-<id>`, so `leftovers()` finds what is left even without the ledger.

Example:
    >>> t = Target.of(cluster, kube, namespace)                          # doctest: +SKIP
    >>> with injected(t, partition_pod, "demo-7d9f-abcde") as fault:      # doctest: +SKIP
    ...     ...  # the pod is cut off here; it is reconnected on leaving the block
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.chaos.ledger import Injected, Ledger, this_process
from harness.chaos.probe_failure import probe_block
from harness.cluster.provider import ClusterProvider, ComponentControl, NodeLifecycle, NodeShell
from harness.errors import HarnessError, InvalidConfiguration, WaitTimeout
from harness.kube import Kube, cluster_uid, container_port, secret_value
from harness.kubectl import post_to_pod
from harness.namespaces import is_harness_namespace
from harness.progress import say
from harness.wait import Pending, wait_for

CHAOS_MARKER = "kube-harness-chaos"
CORDONED_BY = "kube-harness.io/cordoned-by"
# The ledger entry that stands for an experiment's own node actions (chaostoolkit-kubernetes).
NODE_ACTIONS = "node_actions"
DRAIN_RETRY_S = 1.0  # between eviction attempts a PodDisruptionBudget refused (HTTP 429)
COMPONENT_TIMEOUT_S = 60.0  # for a started or restarted component to run again
# Reverted before any other fault: the others may need what they stopped.
STARTED_FIRST = ("stop_component", "stop_node")
GONE_TIMEOUT_S = 10.0  # for killed fault processes to disappear
CONFLICT_RETRIES = 5  # node patches that lost a race with another writer
RESCAN_S = 1.0  # a process found by `leftovers` must still be there this much later
PARTITION_RULES = ("INPUT ! -i lo", "OUTPUT ! -o lo")
DNS_RULES = ("OUTPUT -p udp --dport 53", "OUTPUT -p tcp --dport 53")
# A fault's marker, with the namespace it was injected for when it carries one.
_MARKED = re.compile(rf"{CHAOS_MARKER}-([0-9a-f]+)(?:@([a-z0-9.-]+))?")

# Node-side scripts (POSIX sh: kind nodes have no python). The marker reaches them in two
# halves that they join, so that no helper shell's command line holds the whole marker and
# is mistaken for a fault process by a `leftovers()` running at the same time.
_HOG = """
m="$1$2" seconds=$3 hog=$4
shift 4
# Join the container's cgroups first: the hog started below inherits them, so the pod's
# CPU and memory accounting and limits see it.
for procs in "$@"; do echo $$ > "$procs"; done
setsid timeout "$seconds" sh -c "$hog" "$m" </dev/null >/dev/null 2>&1 &
"""
# action "list": print "pid cmdline" of every process whose command line holds the marker;
# action "kill": SIGKILL them, a process-group leader with its whole group (the `timeout`
# that bounds a hog leads it, so its pipeline goes too).
_PROCESSES = """
action=$1 m="$2$3"
# grep reads the marker from its input, so that its own command line does not hold it.
for f in $(printf '%s\\n' "$m" | grep -lF -f - /proc/[0-9]*/cmdline 2>/dev/null); do
  p=${f#/proc/}
  p=${p%/cmdline}
  [ "$p" = "$$" ] && continue
  c=$(tr '\\0' ' ' < "$f" 2>/dev/null) || continue
  if [ "$action" = list ]; then echo "$p $c"; continue; fi
  s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
  s=${s##*) }
  set -- $s
  if [ "$3" = "$p" ]; then kill -KILL -"$p" 2>/dev/null; else kill -KILL "$p" 2>/dev/null; fi
done
true
"""
# Every rule goes into IPv4's and IPv6's tables alike: a command that dials `localhost`
# inside the pod (an exec probe) may well reach the service over ::1.
_FAMILIES = """
families() {
  echo iptables
  nsenter -t "$1" -n ip6tables -w -S >/dev/null 2>&1 && echo ip6tables
  true
}
"""
_RULES_INSERT = (
    _FAMILIES
    + """
pid=$1 m="$2$3"
shift 3
for ipt in $(families "$pid"); do
  for rule in "$@"; do
    nsenter -t "$pid" -n $ipt -w -I $rule -m comment --comment "$m" -j DROP
  done
done
"""
)
# A pod that is gone took its network namespace, and our rules, with it.
_RULES_DELETE = (
    _FAMILIES
    + """
pid=$1 netns=$2 m="$3$4"
shift 4
[ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "$netns" ] || exit 0
left=
for ipt in $(families "$pid"); do
  for rule in "$@"; do
    while nsenter -t "$pid" -n $ipt -w -D $rule -m comment --comment "$m" -j DROP 2>/dev/null
    do :; done
  done
  left="$left$(nsenter -t "$pid" -n $ipt -w -S | while read -r r; do
    case "$r" in *"$m"*) echo "$ipt $r" ;; esac
  done)"
done
[ -z "$left" ] || { echo "rules still in place: $left" >&2; exit 1; }
"""
)
# Arguments: marker halves, then "pid=label" per pod sandbox; the node's own rules first
# (sandboxes in the node's network namespace are not listed twice).
_RULES_LIST = """
m="$1$2" node=$(readlink /proc/self/ns/net)
shift 2
show() { while read -r r; do case "$r" in *"$m"*) echo "$1: $r" ;; esac; done; }
for ipt in iptables ip6tables; do
  $ipt -w -S 2>/dev/null | show "host network ($ipt)"
  for p in "$@"; do
    [ "$(readlink "/proc/${p%%=*}/ns/net" 2>/dev/null)" = "$node" ] && continue
    nsenter -t "${p%%=*}" -n $ipt -w -S 2>/dev/null | show "${p#*=} ($ipt)"
  done
done
true
"""
_READ_FILES = """
for f in "$@"; do [ -r "$f" ] && { echo "== $f"; cat "$f"; }; done
true
"""


class NotInjectable(InvalidConfiguration):
    """The fault cannot be injected here (provider lacks the ability, or target not ours)."""


class SandboxNotRunning(NotInjectable):
    """The pod has no running sandbox yet (or any more): its network namespace is not there."""


class DrainTimeout(WaitTimeout):
    """A drain ran out of time, most often on a PodDisruptionBudget.

    The node stays cordoned and in the ledger; `injected` is its entry, for `revert`.
    """

    def __init__(self, what: str, timeout: float, last_state: str, injected: Injected) -> None:
        super().__init__(what, timeout, last_state)
        self.injected = injected


@dataclass(frozen=True)
class Target:
    """Where faults go: a cluster, its API, one harness namespace and the cluster's ledger."""

    cluster: ClusterProvider
    kube: Kube
    namespace: str
    ledger: Ledger

    @classmethod
    def of(
        cls,
        cluster: ClusterProvider,
        kube: Kube,
        namespace: str,
        *,
        ledger: Ledger | None = None,
    ) -> Target:
        """The target for `namespace`, with the cluster's own ledger unless one is given."""
        return cls(cluster, kube, namespace, ledger or Ledger(cluster.options.name))


@dataclass(frozen=True)
class Usage:
    """CPU time and memory a container's cgroup has accounted (what its limits act on)."""

    cpu_usec: int
    memory_bytes: int


# --- guards ---------------------------------------------------------------------------------


def _guard(cluster: ClusterProvider, kube: Kube, namespace: str) -> None:
    if not cluster.capabilities.chaos_allowed:
        raise NotInjectable(
            f"faults are not allowed on this {cluster.name} cluster",
            fix="pass --allow-chaos-on-existing to opt in (only harness namespaces are touched)",
        )
    if not is_harness_namespace(kube, namespace):
        raise NotInjectable(
            f"namespace {namespace} was not created by the harness; no fault is injected there",
            fix="target a namespace from the `namespace` fixture",
        )


def _guard_node(t: Target, fault: str) -> None:
    """Node faults reach beyond harness namespaces: only on clusters the harness made."""
    _guard(t.cluster, t.kube, t.namespace)
    if not t.cluster.capabilities.creates_clusters:
        raise NotInjectable(
            f"{fault} changes a node that other workloads share; it is refused on the "
            f"{t.cluster.name} provider, which does not create its clusters",
            fix="run node faults on a cluster the harness creates (local or kind provider)",
        )


def _shell(cluster: ClusterProvider) -> NodeShell:
    if not isinstance(cluster, NodeShell):
        raise NotInjectable(
            f"the {cluster.name} provider cannot reach its nodes' runtime",
            fix="use the local or kind provider for container faults",
        )
    return cluster


def _lifecycle(cluster: ClusterProvider) -> NodeLifecycle:
    if not isinstance(cluster, NodeLifecycle):
        raise NotInjectable(
            f"the {cluster.name} provider cannot stop and start nodes",
            fix="use the kind provider (or local, for its single node) for node faults",
        )
    return cluster


def _control(cluster: ClusterProvider) -> ComponentControl:
    if not isinstance(cluster, ComponentControl):
        raise NotInjectable(
            f"the {cluster.name} provider cannot stop or start cluster components",
            fix="use the local or kind provider for component faults",
        )
    return cluster


# --- looking things up on the node ----------------------------------------------------------


def _read_pod(t: Target, pod: str) -> client.V1Pod:
    try:
        return t.kube.core.read_namespaced_pod(pod, t.namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise NotInjectable(
                f"pod {pod} does not exist in namespace {t.namespace}",
                fix="name a pod of the namespace (e.g. from deployed.pods())",
            ) from None
        raise


def container_status(pod: client.V1Pod, container: str) -> client.V1ContainerStatus | None:
    """The status of one container of `pod`, or None before the kubelet reports it."""
    return next((s for s in pod.status.container_statuses or [] if s.name == container), None)


def _container_id(pod: client.V1Pod, container: str) -> str:
    status = container_status(pod, container)
    if status is not None and status.container_id:
        return status.container_id.split("://", 1)[-1]
    raise NotInjectable(
        f"pod {pod.metadata.name} has no running container {container!r}",
        fix="wait until the pod runs, and name a container of its spec",
    )


def _container_pid(shell: NodeShell, node: str, container_id: str) -> int:
    info = json.loads(shell.node_exec(node, ["crictl", "inspect", "-o", "json", container_id]))
    pid = int((info.get("info") or {}).get("pid") or 0)
    if not pid:
        raise NotInjectable(
            f"container {container_id[:13]} is not running on {node}",
            fix="wait until the container runs again",
        )
    return pid


def _sandbox_infos(shell: NodeShell, node: str, sandbox_ids: Sequence[str]) -> list[dict]:
    """`crictl inspectp` of each sandbox (one object for one id, a list for several)."""
    if not sandbox_ids:
        return []
    found = json.loads(shell.node_exec(node, ["crictl", "inspectp", "-o", "json", *sandbox_ids]))
    return found if isinstance(found, list) else [found]


def _sandbox_pid(shell: NodeShell, node: str, pod: client.V1Pod) -> int:
    """Pid of the pod's sandbox (pause) process: it holds the pod's network namespace for as
    long as the pod lives, whereas container processes come and go with restarts."""
    ids = shell.node_exec(
        node,
        ["crictl", "pods", "--label", f"io.kubernetes.pod.uid={pod.metadata.uid}",
         "--state", "ready", "-q"],
    ).split()  # fmt: skip
    infos = _sandbox_infos(shell, node, ids[:1])
    pid = int((infos[0].get("info") or {}).get("pid") or 0) if infos else 0
    if not pid:
        raise SandboxNotRunning(
            f"pod {pod.metadata.name} has no running sandbox on {node}",
            fix="wait until the pod runs",
        )
    return pid


def cgroup_dirs(proc_cgroup: str, mountinfo: str) -> list[str]:
    """The cgroup directories of a process, in every hierarchy mounted on its node.

    Args:
        proc_cgroup: the process's /proc/<pid>/cgroup.
        mountinfo: the node's /proc/self/mountinfo (where each hierarchy is mounted).

    Works for cgroup v1, v2 and the hybrid of both.

    Example:
        >>> cgroup_dirs("0::/kubepods/pod1/c1\\n",
        ...             "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\\n")
        ['/sys/fs/cgroup/kubepods/pod1/c1']
    """
    mounts = []  # (fstype, super options, root inside the hierarchy, mount point)
    for line in mountinfo.splitlines():
        left, dash, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if dash and len(fields) >= 5 and tail and tail[0] in ("cgroup", "cgroup2"):
            options = set(tail[2].split(",")) if len(tail) > 2 else set()
            mounts.append((tail[0], options, fields[3], fields[4]))
    found = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        wanted = set(controllers.split(",")) if controllers else set()
        for fstype, options, root, point in mounts:
            if (fstype == "cgroup2") == (not wanted) and wanted <= options:
                if root != "/" and path.startswith(root):
                    path = path[len(root) :]
                found.append(point.rstrip("/") + "/" + path.strip("/"))
                break
    return [d.rstrip("/") for d in found]


def _container_cgroups(shell: NodeShell, node: str, pid: int) -> list[str]:
    dirs = cgroup_dirs(
        shell.node_exec(node, ["cat", f"/proc/{pid}/cgroup"]),
        shell.node_exec(node, ["cat", "/proc/self/mountinfo"]),
    )
    if not dirs:
        raise NotInjectable(
            f"no cgroup of process {pid} is mounted on {node}",
            fix="mount the cgroup hierarchies on the node (/sys/fs/cgroup)",
        )
    return dirs


def _duration(seconds: float) -> str:
    """Seconds as `timeout` and `sleep` read them (no exponent notation)."""
    return f"{seconds:.3f}"


def _halves(marker: str) -> list[str]:
    cut = len(CHAOS_MARKER) // 2
    return [marker[:cut], marker[cut:]]


def fault_marker(entry: Injected) -> str:
    """What a fault's processes and iptables rules carry: `kube-harness-chaos-<id>@<namespace>`,
    so that `leftovers()` finds them, and tells whose they are, without the ledger."""
    return f"{CHAOS_MARKER}-{entry.id}@{entry.namespace}"


def container_usage(t: Target, pod: str, container: str) -> Usage:
    """What a container's cgroup has accounted so far, read on its node.

    Counters only grow (CPU) or follow the working set (memory), so read it twice to see
    what happened in between; metrics-server would lag behind by its resolution.

    Raises:
        NotInjectable: the provider cannot reach its nodes, or the container is not running.
    """
    shell = _shell(t.cluster)
    obj = _read_pod(t, pod)
    node = obj.spec.node_name
    pid = _container_pid(shell, node, _container_id(obj, container))
    dirs = _container_cgroups(shell, node, pid)
    names = ("cpu.stat", "cpuacct.usage", "memory.current", "memory.usage_in_bytes")
    text = shell.node_exec(
        node, ["sh", "-c", _READ_FILES, "sh", *(f"{d}/{n}" for d in dirs for n in names)]
    )
    values: dict[str, int] = {}  # cgroup v2 first: cpu.stat's usage_usec, memory.current
    for chunk in text.split("== ")[1:]:
        path, _, content = chunk.partition("\n")
        name, fields = path.rsplit("/", 1)[-1], content.split()
        if name == "cpu.stat" and "usage_usec" in fields[:-1]:
            values.setdefault("cpu", int(fields[fields.index("usage_usec") + 1]))
        elif name == "cpuacct.usage" and fields:
            values.setdefault("cpu_v1", int(fields[0]) // 1000)
        elif name == "memory.current" and fields:
            values.setdefault("memory", int(fields[0]))
        elif name == "memory.usage_in_bytes" and fields:
            values.setdefault("memory_v1", int(fields[0]))
    cpu = values.get("cpu", values.get("cpu_v1"))
    memory = values.get("memory", values.get("memory_v1"))
    if cpu is None or memory is None:
        raise NotInjectable(
            f"no CPU or memory accounting for {pod}/{container} under {', '.join(dirs)}",
            fix="enable the cpu/cpuacct and memory cgroup controllers on the node",
        )
    return Usage(cpu_usec=cpu, memory_bytes=memory)


# --- recording and reverting ----------------------------------------------------------------


def _new(t: Target, fault: str, *, node: str | None, target: str, undo: dict) -> Injected:
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
        cluster_uid=cluster_uid(t.kube),
    )


def _inject(t: Target, entry: Injected, apply: Callable[[], object]) -> Injected:
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


def _kill_marked(cluster: ClusterProvider, kube: Kube, entry: Injected) -> None:
    shell, marker = _shell(cluster), f"{CHAOS_MARKER}-{entry.id}"

    def gone() -> bool | Pending:
        shell.node_exec(entry.node, ["sh", "-c", _PROCESSES, "sh", "kill", *_halves(marker)])
        left = shell.node_exec(
            entry.node, ["sh", "-c", _PROCESSES, "sh", "list", *_halves(marker)]
        ).strip()
        return Pending(left) if left else True

    wait_for(gone, what=f"the processes of {entry.describe()} to exit", timeout=GONE_TIMEOUT_S)


def _delete_rules(cluster: ClusterProvider, kube: Kube, entry: Injected) -> None:
    undo = entry.undo
    _shell(cluster).node_exec(
        entry.node,
        ["sh", "-c", _RULES_DELETE, "sh", str(undo["pid"]), undo["netns"],
         *_halves(fault_marker(entry)), *undo["rules"]],
    )  # fmt: skip


def _cordon_ids(node: client.V1Node) -> list[str]:
    value = (node.metadata.annotations or {}).get(CORDONED_BY, "")
    return [i for i in value.split(",") if i]


def _change_cordon(
    kube: Kube, node: str, fault_id: str, *, cordoned: bool, keep: bool = False
) -> None:
    """Add or remove a fault's id in the node's cordon annotation; cordoned while any is left.

    Nothing is patched when the id already is (or is not) there, so reverting twice does
    not uncordon a node someone cordoned in between. `keep`: the node was unschedulable
    before the harness touched it, so it stays so. The patch names the resourceVersion it
    read, so a concurrent writer makes it retry instead of being overwritten.
    """
    for _ in range(CONFLICT_RETRIES):
        current = kube.core.read_node(node)
        ids = _cordon_ids(current)
        if (fault_id in ids) == cordoned:
            return
        ids = [*ids, fault_id] if cordoned else [i for i in ids if i != fault_id]
        patch: dict[str, Any] = {
            "metadata": {
                "resourceVersion": current.metadata.resource_version,
                "annotations": {CORDONED_BY: ",".join(ids) or None},
            }
        }
        if ids or not keep:
            patch["spec"] = {"unschedulable": bool(ids)}
        try:
            kube.core.patch_node(node, patch)
            return
        except ApiException as exc:
            if exc.status != 409:
                raise
    raise HarnessError(
        f"node {node} kept changing while its cordon was updated",
        fix="retry; if it persists, see who else patches the node (kubectl get node -w)",
    )


def _uncordon(cluster: ClusterProvider, kube: Kube, entry: Injected) -> None:
    undo = entry.undo
    try:
        _change_cordon(
            kube, undo["node"], entry.id, cordoned=False, keep=undo.get("was_unschedulable", False)
        )
    except ApiException as exc:
        if exc.status != 404:  # a node that is gone is not cordoned
            raise


def _restore_schedulability(cluster: ClusterProvider, kube: Kube, entry: Injected) -> None:
    for node in cordoned_since(kube, entry):  # cordoned with no mark: uncordoned plainly
        kube.core.patch_node(node, {"spec": {"unschedulable": False}})


def _start_component(cluster: ClusterProvider, kube: Kube, entry: Injected) -> None:
    control = _control(cluster)
    control.start_component(entry.undo["component"])
    _wait_running(control, entry.undo["component"])


def _start_node(cluster: ClusterProvider, kube: Kube, entry: Injected) -> None:
    _lifecycle(cluster).start_node(entry.undo["node"])


_REVERTS: dict[str, Callable[[ClusterProvider, Kube, Injected], None]] = {
    "cpu_hog": _kill_marked,
    "memory_pressure": _kill_marked,
    "partition_pod": _delete_rules,
    "dns_failure": _delete_rules,
    "fail_probe": _delete_rules,
    "cordon": _uncordon,
    NODE_ACTIONS: _restore_schedulability,
    "drain": _uncordon,
    "stop_component": _start_component,
    "stop_node": _start_node,
}


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
    orphaned: bool = False,
    recorded_on: str | None = None,
    ledger: Ledger | None = None,
) -> list[Injected]:
    """Undo every pending fault (of one namespace, or one kind, or only those whose run was
    killed before it could revert them: `orphaned`, or only those recorded on the cluster
    with the uid `recorded_on`); return what was undone.

    Stopped components and nodes are started first (the others may need them), then the
    rest newest first. One failure does not stop the others.

    Raises:
        HarnessError: some could not be undone; the message lists each with its error.
    """
    ledger = ledger or Ledger(cluster.options.name)
    pending = [
        e
        for e in ledger.pending(namespace=namespace, fault=fault)
        if (e.orphaned or not orphaned) and recorded_on in (None, e.cluster_uid)
    ]
    order = sorted(reversed(pending), key=lambda e: e.fault not in STARTED_FIRST)
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
    if not any(e.orphaned for e in ledger.pending()):
        return []
    kube = Kube(cluster.kubeconfig(), cluster.options.context)
    try:
        recorded_on = None
        if not cluster.capabilities.creates_clusters:
            if not cluster.capabilities.chaos_allowed:
                say(
                    f"the ledger {ledger.path} holds faults killed runs left on a cluster "
                    f"named {cluster.options.name}; they are not reverted without "
                    "--allow-chaos-on-existing"
                )
                return []
            recorded_on = cluster_uid(kube)
        reverted = revert_all(cluster, kube, orphaned=True, recorded_on=recorded_on)
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


# --- pod faults -----------------------------------------------------------------------------


def _pick(
    names: Sequence[str], *, count: int | None, percent: int | None, rng: Any = random
) -> list[str]:
    """Choose the victims among `names`: `count` of them, or `percent` (rounded up), or one.

    Raises:
        InvalidConfiguration: both or out-of-range count and percent.
    """
    if count is not None and percent is not None:
        raise InvalidConfiguration(
            f"kill_pods got count={count} and percent={percent}", fix="pass one of them"
        )
    if count is not None and count < 1:
        raise InvalidConfiguration(f"count must be 1 or more, not {count}", fix="pass count>=1")
    if percent is not None and not 0 < percent <= 100:
        raise InvalidConfiguration(
            f"percent must be in 1..100, not {percent}", fix="pass a percentage of the pods"
        )
    wanted = count if count is not None else math.ceil(len(names) * (percent or 0) / 100) or 1
    return sorted(rng.sample(sorted(names), min(wanted, len(names))))


def kill_pods(
    t: Target,
    selector: str,
    *,
    count: int | None = None,
    percent: int | None = None,
    grace_period_s: int = 0,
) -> list[str]:
    """Delete running pods of the namespace matching `selector` (one, `count`, or `percent`).

    Their controller replaces them, so nothing goes into the ledger.

    Returns:
        The deleted pods' names.

    Raises:
        NotInjectable: chaos not allowed, the namespace is not the harness's, or no running
            pod matches.
    """
    _guard(t.cluster, t.kube, t.namespace)
    pods = t.kube.core.list_namespaced_pod(t.namespace, label_selector=selector).items
    running = [
        p.metadata.name
        for p in pods
        if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
    ]
    if not running:
        raise NotInjectable(
            f"no running pod in {t.namespace} matches {selector!r}",
            fix="check the selector (kubectl get pods -l ...) and wait until the pods run",
        )
    victims = _pick(running, count=count, percent=percent)
    for name in victims:
        try:
            t.kube.core.delete_namespaced_pod(
                name, t.namespace, grace_period_seconds=grace_period_s
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
    return victims


def kill_container(t: Target, pod: str, container: str) -> str:
    """Kill a running container's processes at once (SIGKILL through the node's runtime).

    The kubelet sees the container die and restarts it, as after an OOM kill or a crash.

    Returns:
        The killed container's id.

    Raises:
        NotInjectable: the provider cannot run commands on nodes, chaos is not allowed, or
            the namespace is not the harness's.
    """
    _guard(t.cluster, t.kube, t.namespace)
    shell = _shell(t.cluster)
    obj = _read_pod(t, pod)
    container_id = _container_id(obj, container)
    shell.node_exec(obj.spec.node_name, ["crictl", "stop", "--timeout", "0", container_id])
    return container_id


def crash_via_service(
    t: Target, pod: str, container: str, path: str, *, token_secret: str, token_key: str
) -> int:
    """Ask one pod's service to crash through its own admin hook (POST `path` with the token
    from Secret `token_secret`); the kubelet restarts the container, so nothing is recorded.

    Returns:
        The HTTP status, 0 when the process died before answering.

    Raises:
        NotInjectable: chaos is not allowed or the namespace is not the harness's.
        InvalidConfiguration: the Secret has no `token_key`, or the container declares no port.
    """
    _guard(t.cluster, t.kube, t.namespace)
    token = secret_value(t.kube, t.namespace, token_secret, token_key)
    port = container_port(t.kube, t.namespace, pod, container)
    return post_to_pod(t.kube.kubeconfig, t.namespace, pod, port, path, token=token)


def _hog(
    t: Target, fault: str, pod: str, container: str, hog: str, seconds: float, undo: dict
) -> Injected:
    """Run the shell snippet `hog` inside the container's cgroups for at most `seconds`."""
    if seconds <= 0:
        raise InvalidConfiguration(
            f"{fault} needs a duration, not {seconds}s", fix="pass seconds > 0"
        )
    _guard(t.cluster, t.kube, t.namespace)
    shell = _shell(t.cluster)
    obj = _read_pod(t, pod)
    node = obj.spec.node_name
    pid = _container_pid(shell, node, _container_id(obj, container))
    procs = [f"{d}/cgroup.procs" for d in _container_cgroups(shell, node, pid)]
    entry = _new(t, fault, node=node, target=f"{pod}/{container}", undo=undo)
    marker = _halves(fault_marker(entry))
    argv = ["sh", "-ec", _HOG, "sh", *marker, _duration(seconds), hog, *procs]
    return _inject(t, entry, lambda: shell.node_exec(node, argv))


def cpu_hog(t: Target, pod: str, container: str, *, cores: int = 1, seconds: float) -> Injected:
    """Burn `cores` CPUs inside the container's cgroup for `seconds` (or until reverted).

    The busy loops count against the container's CPU limit and show in its usage, as if
    the service itself were busy.

    Raises:
        NotInjectable: see the module's guards; the container is not running.
    """
    if cores < 1:
        raise InvalidConfiguration(f"cpu_hog needs 1 or more cores, not {cores}", fix="cores>=1")
    loops = f"i=0; while [ $i -lt {cores} ]; do (while :; do :; done) & i=$((i+1)); done; wait"
    return _hog(t, "cpu_hog", pod, container, loops, seconds, {"cores": cores, "seconds": seconds})


def memory_pressure(t: Target, pod: str, container: str, *, mib: int, seconds: float) -> Injected:
    """Hold `mib` MiB of memory inside the container's cgroup for `seconds`.

    The memory counts against the container's limit: past it, the kernel's OOM killer
    picks a process of the container, as when the service itself leaks.

    Raises:
        NotInjectable: see the module's guards; the container is not running.
    """
    if mib < 1:
        raise InvalidConfiguration(f"memory_pressure needs mib >= 1, not {mib}", fix="mib>=1")
    # `tail` keeps its whole input when it holds no newline; `sleep` keeps the pipe open.
    hold = f"{{ head -c {mib}M /dev/zero; sleep {_duration(seconds)}; }} | tail"
    undo = {"mib": mib, "seconds": seconds}
    return _hog(t, "memory_pressure", pod, container, hold, seconds, undo)


def _netns_fault(
    t: Target, fault: str, pod: str, rules: Sequence[str], *, what: str | None = None
) -> Injected:
    _guard(t.cluster, t.kube, t.namespace)
    shell = _shell(t.cluster)
    obj = _read_pod(t, pod)
    if obj.spec.host_network:
        raise NotInjectable(
            f"pod {pod} uses the node's network; {fault} would cut off the node itself",
            fix="target a pod with its own network namespace",
        )
    node = obj.spec.node_name
    pid = _sandbox_pid(shell, node, obj)
    netns = shell.node_exec(node, ["readlink", f"/proc/{pid}/ns/net"]).strip()
    if netns == shell.node_exec(node, ["readlink", "/proc/self/ns/net"]).strip():
        raise NotInjectable(
            f"pod {pod}'s sandbox shares the node's network namespace",
            fix="target a pod with its own network namespace",
        )
    undo = {"pid": pid, "netns": netns, "rules": list(rules)} | ({"what": what} if what else {})
    entry = _new(t, fault, node=node, target=pod, undo=undo)
    argv = ["sh", "-ec", _RULES_INSERT, "sh", str(pid), *_halves(fault_marker(entry)), *rules]
    return _inject(t, entry, lambda: shell.node_exec(node, argv))


def partition_pod(t: Target, pod: str) -> Injected:
    """Drop every packet into and out of the pod except on loopback.

    The kubelet's probes fail too, so the pod leaves its Services' endpoints (and a
    liveness probe restarts its containers, which stay cut off until reverted).

    Raises:
        NotInjectable: see the module's guards; the pod runs in the node's network.
    """
    return _netns_fault(t, "partition_pod", pod, PARTITION_RULES)


def fail_probe(t: Target, pod: str, container: str, probe: str) -> Injected:
    """Make one container's `probe` ("readiness", "liveness", "startup") fail, without the
    service's help, until reverted: what the probe sends is dropped in the pod's network
    namespace (harness.chaos.probe_failure says how, per probe kind).

    Raises:
        NotInjectable: see the module's guards; the pod runs in the node's network.
        ProbeNotFailable: the container has no such probe, or an exec probe that dials
            nothing the harness can see.
    """
    _guard(t.cluster, t.kube, t.namespace)
    _shell(t.cluster)  # refused before anything is read where nodes are out of reach
    spec = t.kube.api_client.sanitize_for_serialization(_read_pod(t, pod).spec)
    found = [c for c in spec.get("containers") or [] if c.get("name") == container]
    if not found:
        raise NotInjectable(
            f"pod {pod} has no container {container!r}", fix="name a container of its spec"
        )
    block = probe_block(found[0], probe)
    return _netns_fault(t, "fail_probe", pod, block.rules, what=f"{probe} probe: {block.what}")


def crash_process(t: Target, pod: str, container: str) -> int:
    """Kill a container's main process with SIGKILL from its node, as a crash ends it.

    Unlike `kill_container` (the runtime stops the container), the runtime sees its process
    die on its own, exit code 137; the kubelet restarts the container.

    Returns:
        The killed process's pid on its node.

    Raises:
        NotInjectable: see the module's guards; the container is not running.
    """
    _guard(t.cluster, t.kube, t.namespace)
    shell = _shell(t.cluster)
    obj = _read_pod(t, pod)
    node = obj.spec.node_name
    pid = _container_pid(shell, node, _container_id(obj, container))
    shell.node_exec(node, ["kill", "-KILL", str(pid)])
    return pid


def dns_failure(t: Target, pod: str) -> Injected:
    """Drop the pod's DNS queries (UDP and TCP port 53): lookups time out, all else works.

    Raises:
        NotInjectable: see the module's guards; the pod runs in the node's network.
    """
    return _netns_fault(t, "dns_failure", pod, DNS_RULES)


# --- node faults ----------------------------------------------------------------------------


def hold_node_schedulability(t: Target) -> Injected:
    """Record which nodes are unschedulable now, before an experiment's own node actions
    (chaostoolkit-kubernetes's cordon_node, drain_nodes) run: they leave no mark of their own,
    and reverting this entry uncordons every node cordoned since (`cordoned_since`).

    Raises:
        NotInjectable: see the module's guards (node faults need a cluster the harness made,
            or on an existing one the opt-in and the experiment's allow-list).
    """
    _guard(t.cluster, t.kube, t.namespace)
    nodes = t.kube.core.list_node().items
    before = sorted(n.metadata.name for n in nodes if n.spec.unschedulable)
    entry = _new(t, NODE_ACTIONS, node=None, target="nodes",
                 undo={"unschedulable_before": before})  # fmt: skip
    t.ledger.add(entry)
    return entry


def cordoned_since(kube: Kube, entry: Injected) -> list[str]:
    """Nodes unschedulable now that were not when `entry` (`hold_node_schedulability`) was
    recorded, leaving out those a harness fault cordons (they have their own entries)."""
    before = set(entry.undo["unschedulable_before"])
    return sorted(
        node.metadata.name
        for node in kube.core.list_node().items
        if node.spec.unschedulable and node.metadata.name not in before and not _cordon_ids(node)
    )


def _cordon(t: Target, node: str, fault: str) -> Injected:
    _guard_node(t, fault)
    try:
        current = t.kube.core.read_node(node)
    except ApiException as exc:
        if exc.status == 404:
            raise NotInjectable(f"node {node} does not exist", fix="name a node") from None
        raise
    was = bool(current.spec.unschedulable) and not _cordon_ids(current)
    entry = _new(t, fault, node=node, target=node,
                 undo={"node": node, "was_unschedulable": was})  # fmt: skip
    return _inject(t, entry, lambda: _change_cordon(t.kube, node, entry.id, cordoned=True))


def cordon(t: Target, node: str) -> Injected:
    """Mark the node unschedulable, annotated `kube-harness.io/cordoned-by=<id>`.

    Raises:
        NotInjectable: see the module's guards (node faults need a cluster the harness made).
    """
    return _cordon(t, node, "cordon")


def _evictable(pod: client.V1Pod) -> bool:
    """What `kubectl drain` evicts: not finished, not leaving, not a DaemonSet's or static."""
    owners = pod.metadata.owner_references or []
    return (
        pod.metadata.deletion_timestamp is None
        and pod.status.phase not in ("Succeeded", "Failed")
        and not any(o.kind == "DaemonSet" for o in owners)
        and "kubernetes.io/config.mirror" not in (pod.metadata.annotations or {})
    )


def _refusal(exc: ApiException) -> str:
    """Why the API refused an eviction (the PDB's own words when it says them)."""
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        return str(exc.reason)
    causes = [c.get("message", "") for c in (body.get("details") or {}).get("causes") or []]
    return "; ".join(c for c in causes if c) or body.get("message") or str(exc.reason)


def _evict_all(t: Target, node: str, timeout: float) -> list[str]:
    """Evict the namespace's pods on `node`, retrying PDB refusals; wait until they are gone."""
    listed = t.kube.core.list_namespaced_pod(t.namespace, field_selector=f"spec.nodeName={node}")
    waiting = {p.metadata.name: p.metadata.uid for p in listed.items if _evictable(p)}
    evicted: dict[str, str] = {}
    refused: dict[str, str] = {}

    def still_there(name: str, uid: str) -> bool:
        try:
            return t.kube.core.read_namespaced_pod(name, t.namespace).metadata.uid == uid
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def all_gone() -> list[str] | Pending:
        for name in list(waiting):
            body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=t.namespace))
            try:
                t.kube.core.create_namespaced_pod_eviction(name, t.namespace, body)
            except ApiException as exc:
                if exc.status == 429:
                    refused[name] = _refusal(exc)
                    continue
                if exc.status != 404:
                    raise
            evicted[name] = waiting.pop(name)
        leaving = [n for n, uid in evicted.items() if still_there(n, uid)]
        if not waiting and not leaving:
            return sorted(evicted)
        return Pending(
            "; ".join(
                [f"{n}: eviction refused: {refused.get(n, 'not tried yet')}" for n in waiting]
                + [f"{n}: evicted, still terminating" for n in leaving]
            )
        )

    return wait_for(
        all_gone,
        what=f"the pods of {t.namespace} to be evicted from node {node}",
        timeout=timeout,
        interval=DRAIN_RETRY_S,
    )


def drain(t: Target, node: str, *, timeout: float = 120) -> Injected:
    """Cordon the node, then evict the harness namespace's pods on it (Eviction API).

    Evictions a PodDisruptionBudget refuses (HTTP 429) are retried until `timeout`; the
    drain returns once every evicted pod is gone. Only `t.namespace`'s pods are evicted.

    Raises:
        DrainTimeout: a WaitTimeout naming the pods still there and why; the node stays
            cordoned and in the ledger (`exc.injected`), so `revert` uncordons it.
        NotInjectable: see the module's guards.
    """
    entry = _cordon(t, node, "drain")
    try:
        _evict_all(t, node, timeout)
    except WaitTimeout as exc:
        raise DrainTimeout(exc.what, exc.timeout, exc.last_state, entry) from None
    except BaseException:
        revert(t.cluster, t.kube, entry, ledger=t.ledger)
        raise
    return entry


def _wait_running(
    control: ComponentControl, component: str, *, not_pid: int | None = None
) -> dict[str, Any]:
    def running() -> dict | Pending:
        status = control.component_status()[component]
        if status["running"] and status["pid"] != not_pid:
            return status
        return Pending(f"{component}: {status}")

    return wait_for(running, what=f"{component} to run again", timeout=COMPONENT_TIMEOUT_S)


def _component_guard(t: Target, fault: str, component: str) -> ComponentControl:
    _guard_node(t, fault)
    control = _control(t.cluster)
    _check_known(t, "component", component, control.component_status())
    return control


def _check_known(t: Target, kind: str, name: str, known: Iterable[str]) -> None:
    known = list(known)
    if name not in known:
        raise NotInjectable(
            f"the {t.cluster.name} cluster has no {kind} {name!r}",
            fix=f"name one of: {', '.join(known)}",
        )


def stop_component(t: Target, component: str) -> Injected:
    """Stop a cluster component (e.g. "kubelet", "containerd") until reverted.

    Raises:
        NotInjectable: see the module's guards; the provider cannot stop components.
    """
    control = _component_guard(t, "stop_component", component)
    entry = _new(t, "stop_component", node=None, target=component,
                 undo={"component": component})  # fmt: skip
    return _inject(t, entry, lambda: control.stop_component(component))


def stop_node(t: Target, node: str) -> Injected:
    """Stop a whole node (kind: its container; local: every component) until reverted.

    Raises:
        NotInjectable: see the module's guards; the provider cannot stop nodes, or has no
            node of that name.
    """
    _guard_node(t, "stop_node")
    lifecycle = _lifecycle(t.cluster)
    _check_known(t, "node", node, lifecycle.nodes())
    entry = _new(t, "stop_node", node=node, target=node, undo={"node": node})
    return _inject(t, entry, lambda: lifecycle.stop_node(node))


def restart_component(t: Target, component: str) -> None:
    """Restart a cluster component and wait until it runs again (nothing to revert).

    Raises:
        NotInjectable: see the module's guards; the provider cannot restart components.
        WaitTimeout: the component did not run again within a minute.
    """
    control = _component_guard(t, "restart_component", component)
    before = control.component_status()[component]["pid"]
    control.restart_component(component)
    _wait_running(control, component, not_pid=before)


# --- what is left ---------------------------------------------------------------------------


def _node_leftovers(shell: NodeShell, node: str) -> list[str]:
    pattern = _halves(CHAOS_MARKER)
    found = []
    listed = shell.node_exec(node, ["sh", "-c", _PROCESSES, "sh", "list", *pattern]).strip()
    if listed:
        # A helper command of an injection running right now is no leftover: it has gone a
        # moment later. Only processes still there are reported.
        time.sleep(RESCAN_S)
        again = shell.node_exec(node, ["sh", "-c", _PROCESSES, "sh", "list", *pattern])
        still = set(again.strip().splitlines())
        found += [f"{node}: process {line}" for line in listed.splitlines() if line in still]
    ids = shell.node_exec(node, ["crictl", "pods", "--state", "ready", "-q"]).split()
    sandboxes = [
        f"{info['info']['pid']}=pod {meta['namespace']}/{meta['name']}"
        for info in _sandbox_infos(shell, node, ids)
        if (info.get("info") or {}).get("pid")
        and (meta := (info.get("status") or {}).get("metadata") or {})
    ]
    rules = shell.node_exec(node, ["sh", "-c", _RULES_LIST, "sh", *pattern, *sandboxes])
    found += [f"{node}: packet filter rule in {line}" for line in rules.strip().splitlines()]
    return found


def leftovers(
    cluster: ClusterProvider,
    kube: Kube,
    *,
    namespace: str | None = None,
    ledger: Ledger | None = None,
) -> list[str]:
    """Everything of the harness's faults still in place, one line each; [] means clean.

    Looks at the ledger, and independently of it at the cluster: nodes cordoned by a fault,
    processes and iptables rules (host and every pod sandbox) carrying the marker on every
    node, and stopped components.

    Args:
        namespace: leave out what belongs to the faults of other namespaces (by the
            namespace in its marker, else by the ledger): under pytest-xdist those are in
            place right now on purpose. What no fault claims is always reported.
    """
    ledger = ledger or Ledger(cluster.options.name)
    pending = ledger.pending()
    found = [(f"pending in the ledger: {e.describe()}", [(e.id, e.namespace)]) for e in pending]
    nodes = kube.core.list_node().items
    for node in nodes:
        if ids := _cordon_ids(node):
            line = f"node {node.metadata.name} cordoned by fault(s) {', '.join(ids)}"
            found.append((line, [(i, "") for i in ids]))
    if isinstance(cluster, NodeShell):
        for node in nodes:
            found += [
                (line, _MARKED.findall(line))
                for line in _node_leftovers(cluster, node.metadata.name)
            ]
    if isinstance(cluster, ComponentControl):
        for name, status in cluster.component_status().items():
            if not status["wanted"]:
                claimed = [(e.id, "") for e in pending
                           if e.fault == "stop_component" and e.target == name]  # fmt: skip
                found.append((f"component {name} is stopped", claimed))
    if namespace is None:
        return [line for line, _ in found]
    # Read again: a fault injected while the cluster was looked at is in the ledger by now.
    elsewhere = {e.id for e in [*pending, *ledger.pending()] if e.namespace != namespace}

    def theirs(owners: list[tuple[str, str | None]]) -> bool:
        return bool(owners) and all(
            (ns and ns != namespace) or (not ns and id in elsewhere) for id, ns in owners
        )

    return [line for line, owners in found if not theirs(owners)]
