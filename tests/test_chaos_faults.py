"""Fault primitives: guards, selection, drain retries and reverts with fakes; every fault's
observable effect, and that nothing is left after its revert, on the real cluster."""

from __future__ import annotations

import dataclasses
import json
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.chaos import (
    DrainTimeout,
    Injected,
    Ledger,
    NotInjectable,
    Target,
    container_usage,
    cordon,
    cpu_hog,
    crash_process,
    crash_via_service,
    dns_failure,
    drain,
    fail_probe,
    faults,
    injected,
    kill_container,
    kill_pods,
    leftovers,
    memory_pressure,
    partition_pod,
    restart_component,
    revert,
    revert_all,
    stop_component,
)
from harness.chaos.faults import (
    CORDONED_BY,
    cgroup_dirs,
    cordoned_since,
    hold_node_schedulability,
    leftover_scan,
    node_side,
    recording,
    revert_orphans,
)
from harness.chaos.faults import node as node_faults
from harness.chaos.faults.pod import _pick
from harness.cluster.existing import ExistingProvider
from harness.cluster.provider import Capabilities, ClusterOptions, ComponentControl, NodeShell
from harness.errors import HarnessError, InvalidConfiguration
from harness.kube import wait_nodes_ready
from harness.kubectl import kubectl_path
from harness.namespaces import MANAGED_BY, MANAGER
from harness.processes import process_alive, this_process
from harness.wait import Pending, wait_for

MIB = 1024 * 1024

# --- fakes ----------------------------------------------------------------------------------


def caps(*, chaos: bool = True, creates: bool = True) -> Capabilities:
    return Capabilities(
        creates_clusters=creates,
        chaos_allowed=chaos,
        nodeports_on_localhost=True,
    )


class FakeProvider:
    """A cluster provider without node access (like `existing`)."""

    name = "fake"

    def __init__(self, *, chaos: bool = True, creates: bool = True) -> None:
        self.options = ClusterOptions(name="fake")
        self.capabilities = caps(chaos=chaos, creates=creates)


class FakeShellProvider(FakeProvider):
    """A provider whose nodes answer `node_exec` from canned outputs, recording each call."""

    def __init__(self, answers: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answers = answers or {}
        self.calls: list[list[str]] = []

    def node_exec(self, node: str, argv: list[str]) -> str:
        self.calls.append(list(argv))
        key = argv[0] if argv[0] != "sh" else "sh " + argv[4]  # scripts: by their action
        return self.answers.get(" ".join(argv[:2]), self.answers.get(key, ""))


class FakeComponents(FakeShellProvider):
    """A provider with a supervisor: stop/start/restart components and report them."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.status = {"kubelet": {"pid": 10, "running": True, "wanted": True}}
        self.ops: list[tuple[str, str]] = []

    def _set(self, op: str, component: str, running: bool) -> None:
        self.ops.append((op, component))
        pid = self.status[component]["pid"] + (1 if running else 0)
        self.status[component] = {"pid": pid, "running": running, "wanted": running}

    def stop_component(self, component: str) -> None:
        self._set("stop", component, False)

    def start_component(self, component: str) -> None:
        self._set("start", component, True)

    def restart_component(self, component: str) -> None:
        self._set("restart", component, True)

    def component_status(self) -> dict[str, dict[str, Any]]:
        return self.status


def fake_pod(name: str, *, phase: str = "Running", node: str = "n1", uid: str = "") -> Any:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, namespace="kh-t", uid=uid or f"uid-{name}"),
        spec=client.V1PodSpec(containers=[], node_name=node),
        status=client.V1PodStatus(
            phase=phase,
            container_statuses=[
                client.V1ContainerStatus(
                    name="demo",
                    container_id=f"containerd://cid-{name}",
                    image="i",
                    image_id="i",
                    ready=True,
                    restart_count=0,
                )
            ],
        ),
    )


KUBE_SYSTEM_UID = "5f1c0a4e-uid-of-the-fake-cluster"


class FakeCore:
    """The CoreV1Api calls the faults make, over in-memory pods and nodes."""

    def __init__(self, pods: list[Any], *, harness_ns: bool = True) -> None:
        self.pods = {p.metadata.name: p for p in pods}
        self.node = client.V1Node(
            metadata=client.V1ObjectMeta(name="n1", annotations={}, resource_version="1"),
            spec=client.V1NodeSpec(unschedulable=False),
        )
        self.labels = {MANAGED_BY: MANAGER} if harness_ns else {}
        self.mutations: list[tuple] = []
        self.evictions_refused: dict[str, int] = {}  # pod -> how many 429s before it is evicted

    def read_namespace(self, name: str) -> Any:
        return SimpleNamespace(metadata=SimpleNamespace(labels=self.labels, uid=KUBE_SYSTEM_UID))

    def list_namespaced_pod(self, namespace, label_selector=None, field_selector=None) -> Any:
        return SimpleNamespace(items=list(self.pods.values()))

    def read_namespaced_pod(self, name: str, namespace: str) -> Any:
        if name not in self.pods:
            raise ApiException(status=404)
        return self.pods[name]

    def delete_namespaced_pod(self, name: str, namespace: str, **kwargs: Any) -> None:
        self.mutations.append(("delete", name))
        self.pods.pop(name, None)

    def create_namespaced_pod_eviction(self, name: str, namespace: str, body: Any) -> None:
        if self.evictions_refused.get(name, 0) > 0:
            self.evictions_refused[name] -= 1
            causes = [{"message": "The disruption budget demo needs 1 healthy pods"}]
            exc = ApiException(status=429, reason="Too Many Requests")
            exc.body = json.dumps({"message": "Cannot evict", "details": {"causes": causes}})
            raise exc
        self.mutations.append(("evict", name))
        self.pods.pop(name, None)

    def read_node(self, name: str) -> Any:
        if name != "n1":
            raise ApiException(status=404)
        return self.node

    def patch_node(self, name: str, body: dict) -> None:
        self.mutations.append(("patch_node", json.dumps(body, sort_keys=True)))
        annotations = dict(self.node.metadata.annotations or {})
        for key, value in body.get("metadata", {}).get("annotations", {}).items():
            if value is None:
                annotations.pop(key, None)
            else:
                annotations[key] = value
        self.node.metadata.annotations = annotations
        self.node.metadata.resource_version = str(int(self.node.metadata.resource_version) + 1)
        if "spec" in body:
            self.node.spec.unschedulable = body["spec"]["unschedulable"]

    def list_node(self) -> Any:
        return SimpleNamespace(items=[self.node])


def fake_target(provider: Any, core: FakeCore, tmp_path: Path) -> Target:
    return Target(provider, SimpleNamespace(core=core), "kh-t", Ledger("fake", tmp_path / "l"))


def assert_untouched(t: Target, core: FakeCore, provider: Any) -> None:
    assert t.ledger.pending() == []
    assert core.mutations == []
    assert [c for c in getattr(provider, "calls", []) if c[0] not in ("cat", "crictl")] == []


# --- guards: refuse before anything changes -------------------------------------------------

POD_FAULTS = [
    (cpu_hog, ("p1", "demo"), {"seconds": 5}),
    (memory_pressure, ("p1", "demo"), {"mib": 8, "seconds": 5}),
    (partition_pod, ("p1",), {}),
    (dns_failure, ("p1",), {}),
    (kill_container, ("p1", "demo"), {}),
    (crash_process, ("p1", "demo"), {}),
    (fail_probe, ("p1", "demo", "readiness"), {}),
    (kill_pods, ("app=demo",), {}),
    (crash_via_service, ("p1", "demo", "/admin/crash"), {"token_secret": "s", "token_key": "k"}),
]
NODE_FAULTS = [
    (cordon, ("n1",), {}),
    (drain, ("n1",), {"timeout": 1}),
    (stop_component, ("kubelet",), {}),
    (restart_component, ("kubelet",), {}),
]
ALL = [pytest.param(*f, id=f[0].__name__) for f in POD_FAULTS + NODE_FAULTS]


@pytest.mark.parametrize(("fault", "args", "kwargs"), ALL)
def test_every_fault_is_refused_without_the_chaos_opt_in(fault, args, kwargs, tmp_path):
    provider, core = FakeComponents(chaos=False), FakeCore([fake_pod("p1")])
    t = fake_target(provider, core, tmp_path)
    with pytest.raises(NotInjectable, match="not allowed"):
        fault(t, *args, **kwargs)
    assert_untouched(t, core, provider)
    assert provider.calls == [] and provider.ops == []


@pytest.mark.parametrize(("fault", "args", "kwargs"), ALL)
def test_every_fault_is_refused_outside_harness_namespaces(fault, args, kwargs, tmp_path):
    provider, core = FakeComponents(), FakeCore([fake_pod("p1")], harness_ns=False)
    t = fake_target(provider, core, tmp_path)
    with pytest.raises(NotInjectable, match="not created by the harness"):
        fault(t, *args, **kwargs)
    assert_untouched(t, core, provider)
    assert provider.calls == [] and provider.ops == []


@pytest.mark.parametrize(
    ("fault", "args", "kwargs"), [pytest.param(*f, id=f[0].__name__) for f in NODE_FAULTS]
)
def test_node_faults_are_refused_on_clusters_the_harness_does_not_create(
    fault, args, kwargs, tmp_path
):
    provider, core = FakeComponents(creates=False), FakeCore([fake_pod("p1")])
    t = fake_target(provider, core, tmp_path)
    with pytest.raises(NotInjectable, match="does not create its clusters"):
        fault(t, *args, **kwargs)
    assert_untouched(t, core, provider)
    assert provider.ops == []


@pytest.mark.parametrize(
    ("fault", "args", "kwargs"),
    [
        pytest.param(*f, id=f[0].__name__)
        for f in POD_FAULTS
        if f[0] not in (kill_pods, crash_via_service)  # these go through the API server
    ],
)
def test_node_side_faults_need_a_provider_that_reaches_its_nodes(fault, args, kwargs, tmp_path):
    core = FakeCore([fake_pod("p1")])
    t = fake_target(FakeProvider(), core, tmp_path)
    with pytest.raises(NotInjectable, match="cannot reach its nodes"):
        fault(t, *args, **kwargs)
    assert_untouched(t, core, None)


def test_component_faults_need_a_provider_with_a_supervisor(tmp_path):
    core = FakeCore([])
    t = fake_target(FakeShellProvider(), core, tmp_path)
    with pytest.raises(NotInjectable, match="cannot stop and start cluster components"):
        stop_component(t, "kubelet")
    assert_untouched(t, core, None)


def test_an_unknown_component_is_refused_with_the_known_ones(tmp_path):
    provider, core = FakeComponents(), FakeCore([])
    with pytest.raises(NotInjectable, match="name one of: kubelet"):
        stop_component(fake_target(provider, core, tmp_path), "kubelett")
    assert provider.ops == []


def test_partition_refuses_a_pod_on_the_node_network(tmp_path):
    pod = fake_pod("p1")
    pod.spec.host_network = True
    provider, core = FakeShellProvider(), FakeCore([pod])
    t = fake_target(provider, core, tmp_path)
    with pytest.raises(NotInjectable, match="uses the node's network"):
        partition_pod(t, "p1")
    assert_untouched(t, core, provider)


def test_a_missing_pod_is_named(tmp_path):
    t = fake_target(FakeShellProvider(), FakeCore([]), tmp_path)
    with pytest.raises(NotInjectable, match="pod gone does not exist in namespace kh-t"):
        cpu_hog(t, "gone", "demo", seconds=5)


# --- kill_pods: which pods ------------------------------------------------------------------

FIVE = [fake_pod(f"p{i}") for i in range(5)]


@pytest.mark.parametrize(
    ("count", "percent", "killed"),
    [(None, None, 1), (2, None, 2), (9, None, 5), (None, 50, 3), (None, 1, 1), (None, 100, 5)],
)
def test_kill_pods_takes_a_count_or_a_percentage_rounded_up(count, percent, killed, tmp_path):
    core = FakeCore([*FIVE, fake_pod("done", phase="Succeeded")])
    victims = kill_pods(
        fake_target(FakeProvider(), core, tmp_path), "app=demo", count=count, percent=percent
    )
    assert len(victims) == killed
    assert core.mutations == [("delete", name) for name in victims]
    assert "done" not in victims


@pytest.mark.parametrize(
    ("count", "percent", "message"),
    [(1, 50, "pass one of them"), (0, None, "count must be"), (None, 0, "percent must be"),
     (None, 101, "percent must be")],
)  # fmt: skip
def test_kill_pods_rejects_bad_counts_before_deleting(count, percent, message, tmp_path):
    core = FakeCore(FIVE)
    with pytest.raises(InvalidConfiguration, match=message):
        kill_pods(fake_target(FakeProvider(), core, tmp_path), "x", count=count, percent=percent)
    assert core.mutations == []


def test_kill_pods_with_nothing_running_says_so(tmp_path):
    core = FakeCore([fake_pod("p", phase="Pending")])
    with pytest.raises(NotInjectable, match="no running pod in kh-t matches 'app=demo'"):
        kill_pods(fake_target(FakeProvider(), core, tmp_path), "app=demo")


def test_victims_are_chosen_at_random():
    names = [f"p{i}" for i in range(10)]
    picks = {tuple(_pick(names, count=3, percent=None, rng=random.Random(s)))
             for s in range(20)}  # fmt: skip
    assert len(picks) > 1
    assert all(len(set(p)) == 3 for p in picks)


# --- the node side, recorded ----------------------------------------------------------------

MOUNTINFO_V1 = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
CGROUP_V1 = """\
9:name=systemd:/kubepods/pod1/c1
4:memory:/kubepods/pod1/c1
2:cpuacct:/kubepods/pod1/c1
1:cpu:/kubepods/pod1/c1
8:pids:/kubepods/pod1/c1
0::/kubepods/pod1/c1
"""


def test_cgroup_dirs_of_a_hybrid_v1_node_skip_unmounted_hierarchies():
    assert cgroup_dirs(CGROUP_V1, MOUNTINFO_V1) == [
        "/sys/fs/cgroup/systemd/kubepods/pod1/c1",
        "/sys/fs/cgroup/memory/kubepods/pod1/c1",
        "/sys/fs/cgroup/cpuacct/kubepods/pod1/c1",
        "/sys/fs/cgroup/cpu/kubepods/pod1/c1",
        "/sys/fs/cgroup/unified/kubepods/pod1/c1",
    ]


def test_cgroup_dirs_of_a_v2_node_and_a_combined_v1_mount_with_a_root():
    v2 = "0::/kubelet.slice/cri-c1.scope\n"
    mounts = "30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    assert cgroup_dirs(v2, mounts) == ["/sys/fs/cgroup/kubelet.slice/cri-c1.scope"]
    v1 = "3:cpu,cpuacct:/docker/abc/kubepods/c1\n"
    mounts = "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct"
    assert cgroup_dirs(v1, mounts) == ["/sys/fs/cgroup/cpu,cpuacct/kubepods/c1"]


def hog_provider() -> FakeShellProvider:
    return FakeShellProvider(
        {
            "crictl inspect": json.dumps({"info": {"pid": 4242}}),
            "cat /proc/4242/cgroup": CGROUP_V1,
            "cat /proc/self/mountinfo": MOUNTINFO_V1,
        }
    )


def test_cpu_hog_joins_every_cgroup_of_the_container_and_is_bounded_and_marked(tmp_path):
    provider = hog_provider()
    t = fake_target(provider, FakeCore([fake_pod("p1")]), tmp_path)
    entry = cpu_hog(t, "p1", "demo", cores=2, seconds=30)
    (launch,) = [c for c in provider.calls if c[0] == "sh"]
    marker = "".join(launch[4:6])
    assert marker == f"kube-harness-chaos-{entry.id}@kh-t"
    assert launch[6] == "30.000"
    assert "-lt 2" in launch[7]
    assert launch[8:] == [f"{d}/cgroup.procs" for d in cgroup_dirs(CGROUP_V1, MOUNTINFO_V1)]
    assert 'timeout "$seconds" sh -c "$hog" "$m"' in launch[2]
    assert t.ledger.pending() == [entry]
    assert (entry.fault, entry.node, entry.target) == ("cpu_hog", "n1", "p1/demo")


def test_a_failed_injection_is_reverted_and_leaves_no_ledger_entry(tmp_path):
    class Failing(FakeShellProvider):
        def node_exec(self, node, argv):
            if argv[0] == "sh" and "setsid" in argv[2]:
                raise HarnessError("write error: No such process")
            return super().node_exec(node, argv)

    provider = Failing(hog_provider().answers)
    t = fake_target(provider, FakeCore([fake_pod("p1")]), tmp_path)
    with pytest.raises(HarnessError, match="No such process"):
        memory_pressure(t, "p1", "demo", mib=8, seconds=3)
    assert t.ledger.pending() == []
    assert any(c[0] == "sh" and c[3:5] == ["sh", "kill"] for c in provider.calls)


def test_partition_rules_go_into_the_pods_sandbox_netns_and_revert_twice_cleanly(tmp_path):
    provider = FakeShellProvider(
        {
            "crictl pods": "sandbox1\n",
            "crictl inspectp": json.dumps({"info": {"pid": 777}}),
            "readlink /proc/777/ns/net": "net:[100]\n",
            "readlink /proc/self/ns/net": "net:[1]\n",
        }
    )
    core = FakeCore([fake_pod("p1", uid="u-1")])
    t = fake_target(provider, core, tmp_path)
    entry = partition_pod(t, "p1")
    assert ["crictl", "pods", "--label", "io.kubernetes.pod.uid=u-1", "--state", "ready",
            "-q"] in provider.calls  # fmt: skip
    (insert,) = [c for c in provider.calls if c[0] == "sh"]
    assert insert[4] == "777" and insert[7:] == list(faults.PARTITION_RULES)
    assert entry.undo == {"pid": 777, "netns": "net:[100]", "rules": list(faults.PARTITION_RULES)}
    for _ in range(2):
        revert(t.cluster, t.kube, entry, ledger=t.ledger)
    deletes = [c for c in provider.calls if c[0] == "sh" and "$ipt -w -D" in c[2]]
    assert len(deletes) == 2
    assert deletes[0][4:6] == ["777", "net:[100]"]
    assert t.ledger.pending() == []


# --- node faults ----------------------------------------------------------------------------


def test_cordon_annotates_and_revert_uncordons_idempotently(tmp_path):
    core = FakeCore([])
    t = fake_target(FakeProvider(), core, tmp_path)
    entry = cordon(t, "n1")
    assert core.node.spec.unschedulable is True
    assert core.node.metadata.annotations[CORDONED_BY] == entry.id
    assert '"resourceVersion": "1"' in core.mutations[0][1]
    revert(t.cluster, t.kube, entry, ledger=t.ledger)
    assert core.node.spec.unschedulable is False
    assert CORDONED_BY not in core.node.metadata.annotations
    assert t.ledger.pending() == []
    core.node.spec.unschedulable = True  # someone cordons it meanwhile: a second revert
    revert(t.cluster, t.kube, entry, ledger=t.ledger)  # leaves that alone
    assert core.node.spec.unschedulable is True


def test_two_cordons_hold_the_node_until_both_are_reverted(tmp_path):
    core = FakeCore([])
    t = fake_target(FakeProvider(), core, tmp_path)
    first, second = cordon(t, "n1"), cordon(t, "n1")
    revert(t.cluster, t.kube, first, ledger=t.ledger)
    assert core.node.spec.unschedulable is True
    revert(t.cluster, t.kube, second, ledger=t.ledger)
    assert core.node.spec.unschedulable is False


def test_a_node_someone_else_cordoned_stays_cordoned_after_revert(tmp_path):
    core = FakeCore([])
    core.node.spec.unschedulable = True
    t = fake_target(FakeProvider(), core, tmp_path)
    revert(t.cluster, t.kube, cordon(t, "n1"), ledger=t.ledger)
    assert core.node.spec.unschedulable is True
    assert CORDONED_BY not in core.node.metadata.annotations


def dead_process() -> str:
    """The ledger owner of a process that has ended (killed, as a run can be)."""
    child = subprocess.Popen(["sleep", "5"])
    stat = Path(f"/proc/{child.pid}/stat").read_text()
    owner = f"{child.pid}@{stat.rpartition(')')[2].split()[19]}"
    child.kill()
    child.wait()
    assert not process_alive(owner)
    return owner


def test_only_faults_whose_run_was_killed_are_reverted_as_orphans(tmp_path, monkeypatch):
    """A fault's owner is the process that injected it: while it runs, its faults are its
    own to revert; once it is gone (killed), the next run reverts them."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    core = FakeCore([])
    monkeypatch.setattr(
        recording, "Kube", lambda *_: SimpleNamespace(core=core, close=lambda: None)
    )

    class Created(FakeProvider):
        def kubeconfig(self) -> Path:
            return tmp_path / "kubeconfig"

    t = Target.of(Created(), SimpleNamespace(core=core), "kh-t")
    mine = cordon(t, "n1")
    assert mine.owner == this_process() and not mine.orphaned
    left = cordon(t, "n1")
    t.ledger.add(dataclasses.replace(left, owner=dead_process()))
    assert [e.id for e in revert_orphans(t.cluster)] == [left.id]
    assert [e.id for e in t.ledger.pending()] == [mine.id]
    assert core.node.spec.unschedulable is True  # its own cordon still holds it
    assert Injected("x", "cordon", "c", None, "n", None).orphaned  # no owner recorded


def test_orphans_on_an_existing_cluster_wait_for_the_opt_in_and_its_own_uid(
    tmp_path, monkeypatch, capsys
):
    """On `existing`, what killed runs left is reverted only under the opt-in it was injected
    under, and only what was recorded on this very cluster: another cluster of the same name
    (its kube-system namespace's uid differs) is not touched for its ledger. A damaged line
    is named once per start, not once per read."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    core = FakeCore([])
    monkeypatch.setattr(
        recording, "Kube", lambda *_: SimpleNamespace(core=core, close=lambda: None)
    )
    injected_by_a_killed_run = cordon(
        Target.of(FakeProvider(), SimpleNamespace(core=core), "kh-t"), "n1"
    )
    assert injected_by_a_killed_run.cluster_uid == KUBE_SYSTEM_UID
    ledger = Ledger("fake")
    ledger.remove(injected_by_a_killed_run.id)
    mine = dataclasses.replace(injected_by_a_killed_run, owner=dead_process())
    another_clusters = dataclasses.replace(mine, id="0ther", cluster_uid="another-cluster")
    ledger.add(mine)
    ledger.add(another_clusters)
    with ledger.path.open("a") as damaged:
        damaged.write("not json\n")

    class Existing(FakeProvider):
        def kubeconfig(self) -> Path:
            return tmp_path / "kubeconfig"

    assert revert_orphans(Existing(chaos=False, creates=False)) == []
    assert "not reverted without --allow-chaos-on-existing" in capsys.readouterr().err
    assert [e.id for e in revert_orphans(Existing(chaos=True, creates=False))] == [mine.id]
    assert capsys.readouterr().err.count("is not a chaos ledger entry") == 1
    assert ledger.pending() == [another_clusters]
    assert core.node.spec.unschedulable is False


def test_drain_retries_evictions_a_pdb_refuses_until_they_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(node_faults, "DRAIN_RETRY_S", 0.01)
    core = FakeCore([fake_pod("a"), fake_pod("b")])
    core.evictions_refused = {"b": 3}
    t = fake_target(FakeProvider(), core, tmp_path)
    entry = drain(t, "n1", timeout=5)
    assert [m for m in core.mutations if m[0] == "evict"] == [("evict", "a"), ("evict", "b")]
    assert core.evictions_refused == {"b": 0}
    assert core.node.spec.unschedulable is True
    assert t.ledger.pending() == [entry]


def test_drain_held_by_a_pdb_times_out_cordoned_with_the_pdbs_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(node_faults, "DRAIN_RETRY_S", 0.01)
    core = FakeCore([fake_pod("a"), fake_pod("b")])
    core.evictions_refused = {"b": 10**6}
    t = fake_target(FakeProvider(), core, tmp_path)
    with pytest.raises(DrainTimeout, match="b: eviction refused: The disruption budget") as held:
        drain(t, "n1", timeout=0.2)
    assert ("evict", "a") in core.mutations and ("evict", "b") not in core.mutations
    assert t.ledger.pending() == [held.value.injected]
    assert core.node.spec.unschedulable is True
    revert(t.cluster, t.kube, held.value.injected, ledger=t.ledger)
    assert core.node.spec.unschedulable is False


def test_drain_under_injected_uncordons_when_it_times_out(tmp_path, monkeypatch):
    monkeypatch.setattr(node_faults, "DRAIN_RETRY_S", 0.01)
    core = FakeCore([fake_pod("a")])
    core.evictions_refused = {"a": 10**6}
    t = fake_target(FakeProvider(), core, tmp_path)
    with pytest.raises(DrainTimeout), injected(t, drain, "n1", timeout=0.1):
        pass
    assert core.node.spec.unschedulable is False
    assert t.ledger.pending() == []


def test_stopped_component_is_in_the_ledger_and_started_on_revert(tmp_path):
    provider = FakeComponents()
    t = fake_target(provider, FakeCore([]), tmp_path)
    entry = stop_component(t, "kubelet")
    assert provider.ops == [("stop", "kubelet")] and t.ledger.pending() == [entry]
    revert_all(t.cluster, t.kube, ledger=t.ledger)
    assert provider.ops[-1] == ("start", "kubelet")
    assert provider.status["kubelet"]["running"] and t.ledger.pending() == []


def test_restart_component_waits_for_a_new_process(tmp_path):
    provider = FakeComponents()
    restart_component(fake_target(provider, FakeCore([]), tmp_path), "kubelet")
    assert provider.ops == [("restart", "kubelet")]
    assert provider.status["kubelet"]["pid"] == 11


# --- injected(), revert_all(), leftovers() --------------------------------------------------


def test_injected_reverts_on_keyboard_interrupt(tmp_path):
    core = FakeCore([])
    t = fake_target(FakeProvider(), core, tmp_path)
    with pytest.raises(KeyboardInterrupt), injected(t, cordon, "n1"):
        assert core.node.spec.unschedulable is True
        raise KeyboardInterrupt
    assert core.node.spec.unschedulable is False
    assert t.ledger.pending() == []


def entry(fault: str, id: str, namespace: str = "kh-t", **undo: Any) -> Injected:
    return Injected(id, fault, "fake", namespace, "n1", "x", undo, 0.0)


def test_revert_all_starts_components_first_then_newest_first_and_reports_failures(
    tmp_path, monkeypatch
):
    provider = FakeComponents()
    provider.status["kubelet"] = {"pid": 3, "running": False, "wanted": False}
    core = FakeCore([])
    t = fake_target(provider, core, tmp_path)
    order = []
    for e in [
        entry("cordon", "c1", node="n1"),
        entry("stop_component", "s1", component="kubelet"),
        entry("cordon", "c2", node="n1"),
        entry("no_such_fault", "u1"),
        entry("cordon", "other", namespace="kh-other", node="n1"),
    ]:
        t.ledger.add(e)
    real_revert = recording.revert

    def reverting(cluster, kube, e, *, ledger=None):
        order.append(e.id)
        real_revert(cluster, kube, e, ledger=ledger)

    monkeypatch.setattr(recording, "revert", reverting)
    with pytest.raises(HarnessError, match="no_such_fault u1"):
        revert_all(t.cluster, t.kube, namespace="kh-t", ledger=t.ledger)
    assert order == ["s1", "u1", "c2", "c1"]
    assert [e.id for e in t.ledger.pending()] == ["u1", "other"]


def test_revert_refuses_a_fault_of_another_cluster(tmp_path):
    t = fake_target(FakeProvider(), FakeCore([]), tmp_path)
    foreign = Injected("x1", "cordon", "elsewhere", "kh-t", "n1", "n1", {"node": "n1"}, 0.0)
    with pytest.raises(InvalidConfiguration, match="--cluster-name=elsewhere"):
        revert(t.cluster, t.kube, foreign, ledger=t.ledger)


def test_leftovers_reports_ledger_cordons_processes_rules_and_stopped_components(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(leftover_scan, "RESCAN_S", 0)
    provider = FakeComponents(
        answers={
            "sh list": "4242 timeout 30.000 sh -c ... kube-harness-chaos-abc\n",
            "crictl pods": "s1\n",
            "crictl inspectp": json.dumps(
                {"info": {"pid": 7}, "status": {"metadata": {"namespace": "kh-t", "name": "p"}}}
            ),
            "sh kube-harn": "pod kh-t/p (ip6tables): -A OUTPUT -m comment --comment "
            "kube-harness-chaos-abc\n",
        }
    )
    provider.status["kubelet"]["wanted"] = False
    core = FakeCore([])
    core.node.metadata.annotations = {CORDONED_BY: "abc"}
    ledger = Ledger("fake", tmp_path / "l")
    ledger.add(entry("cordon", "abc", node="n1"))
    found = leftovers(provider, SimpleNamespace(core=core), ledger=ledger)
    assert found == [
        "pending in the ledger: cordon abc on x node n1 in kh-t",
        "node n1 cordoned by fault(s) abc",
        "n1: process 4242 timeout 30.000 sh -c ... kube-harness-chaos-abc",
        "n1: packet filter rule in pod kh-t/p (ip6tables): -A OUTPUT -m comment --comment "
        "kube-harness-chaos-abc",
        "component kubelet is stopped",
    ]
    (listing,) = [c for c in provider.calls if c[0] == "sh" and "show()" in c[2]]
    assert listing[4:] == ["kube-harn", "ess-chaos", "7=pod kh-t/p"]


def test_leftovers_of_one_namespace_leave_out_what_other_namespaces_faults_hold(
    tmp_path, monkeypatch
):
    """Under xdist other tests' faults are in place on purpose: they are told apart by the
    namespace in their marker (777 may be injected and reverted while the cluster is looked
    at), else by the ledger (0de); what no fault claims (fff) counts."""
    monkeypatch.setattr(leftover_scan, "RESCAN_S", 0)
    provider = FakeComponents(
        answers={
            "sh list": "41 timeout 30.000 sh -c x kube-harness-chaos-0de\n"
            "42 timeout 30.000 sh -c x kube-harness-chaos-0a1@kh-t\n"
            "43 timeout 30.000 sh -c x kube-harness-chaos-fff\n"
            "44 timeout 30.000 sh -c x kube-harness-chaos-777@kh-gone\n"
        }
    )
    provider.status["kubelet"]["wanted"] = False
    core = FakeCore([])
    core.node.metadata.annotations = {CORDONED_BY: "0de"}
    ledger = Ledger("fake", tmp_path / "l")
    ledger.add(entry("cpu_hog", "0de", namespace="kh-other"))
    ledger.add(Injected("5c0", "stop_component", "fake", "kh-other", None, "kubelet", {}, 0.0))
    ledger.add(entry("cpu_hog", "0a1", namespace="kh-t"))
    kube = SimpleNamespace(core=core)
    mine = leftovers(provider, kube, namespace="kh-t", ledger=ledger)
    assert mine == [
        "pending in the ledger: cpu_hog 0a1 on x node n1 in kh-t",
        "n1: process 42 timeout 30.000 sh -c x kube-harness-chaos-0a1@kh-t",
        "n1: process 43 timeout 30.000 sh -c x kube-harness-chaos-fff",
    ]
    assert len(leftovers(provider, kube, ledger=ledger)) == 9


def test_leftovers_of_a_clean_cluster_is_empty(tmp_path):
    found = leftovers(FakeComponents(), SimpleNamespace(core=FakeCore([])),
                      ledger=Ledger("fake", tmp_path / "l"))  # fmt: skip
    assert found == []


def test_no_helper_shell_holds_the_whole_marker():
    """Scripts get the marker in halves, so a scan never mistakes them for fault processes."""
    for script in (node_side.HOG, node_side.PROCESSES, node_side.RULES_INSERT,
                   node_side.RULES_DELETE, node_side.RULES_LIST):  # fmt: skip
        assert node_side.CHAOS_MARKER not in script
    assert "".join(node_side.halves("kube-harness-chaos-abc")) == "kube-harness-chaos-abc"
    assert node_side.CHAOS_MARKER not in " ".join(node_side.halves("kube-harness-chaos-abc"))


def test_an_experiments_own_cordon_is_held_in_the_ledger_and_undone(tmp_path):
    """chaostoolkit-kubernetes's cordon_node leaves no mark: the entry held before it runs
    finds the node it cordoned, and reverting the entry uncordons it."""
    provider, core = FakeComponents(), FakeCore([])
    t = fake_target(provider, core, tmp_path)
    held = hold_node_schedulability(t)
    assert cordoned_since(t.kube, held) == []
    core.node.spec.unschedulable = True  # what cordon_node does
    assert cordoned_since(t.kube, held) == ["n1"]
    assert [e.id for e in t.ledger.pending(namespace="kh-t")] == [held.id]
    revert(provider, t.kube, held, ledger=t.ledger)
    assert core.node.spec.unschedulable is False
    assert t.ledger.pending() == []


@pytest.mark.parametrize("how", ["before the experiment", "by a harness fault"])
def test_a_node_cordoned_otherwise_is_left_as_it_is(tmp_path, how):
    provider, core = FakeComponents(), FakeCore([])
    t = fake_target(provider, core, tmp_path)
    if how == "before the experiment":
        core.node.spec.unschedulable = True
        held = hold_node_schedulability(t)
    else:
        held = hold_node_schedulability(t)
        cordon(t, "n1")
    assert cordoned_since(t.kube, held) == []
    revert(provider, t.kube, held, ledger=t.ledger)
    assert core.node.spec.unschedulable is True


# --- end to end on the real cluster ---------------------------------------------------------


@pytest.fixture
def chaos(cluster, kube_api, deployed) -> Iterator[Target]:
    """The deployed service's namespace as a fault target; whatever a test leaves is reverted."""
    if not isinstance(cluster, NodeShell):
        pytest.skip(f"the {cluster.name} provider cannot reach its nodes")
    yield Target.of(cluster, kube_api, deployed.namespace)
    revert_all(cluster, kube_api, namespace=deployed.namespace)


def cpu_rate(t: Target, pod: str, container: str, window: float = 2.0) -> float:
    """CPU seconds per second the container's cgroup used over `window`."""
    before = container_usage(t, pod, container).cpu_usec
    time.sleep(window)
    return (container_usage(t, pod, container).cpu_usec - before) / 1e6 / window


def test_cpu_hog_raises_the_containers_cpu_usage(chaos, deployed, service_spec, timeline, tmp_path):
    """The hog's CPU time shows in the container's cgroup; its process is found without the
    ledger too, and is gone after the revert."""
    pod, container = deployed.pods()[0], service_spec.container
    idle = cpu_rate(chaos, pod, container)
    with injected(chaos, cpu_hog, pod, container, seconds=30) as fault:
        timeline.mark("cpu_hog", pod=pod, fault=fault.id)
        busy = cpu_rate(chaos, pod, container)
        found = leftovers(chaos.cluster, chaos.kube, ledger=Ledger("x", tmp_path / "none"))
        assert any("process" in line and fault.id in line for line in found), found
    after = cpu_rate(chaos, pod, container)
    # The demo's CPU limit (500m) caps the hog; idle, the service uses next to nothing.
    assert busy > idle + 0.3, f"idle {idle:.2f}, with the hog {busy:.2f} CPUs"
    assert after < 0.15, f"{after:.2f} CPUs used after the hog was reverted"
    assert leftovers(chaos.cluster, chaos.kube, namespace=chaos.namespace) == []


def test_memory_pressure_raises_the_containers_memory(chaos, deployed, service_spec, timeline):
    pod, container = deployed.pods()[0], service_spec.container
    before = container_usage(chaos, pod, container).memory_bytes

    def memory(above: bool, mib: int) -> int | Pending:
        now = container_usage(chaos, pod, container).memory_bytes
        done = (now >= before + mib * MIB) if above else (now < before + mib * MIB)
        return now if done else Pending(f"{now / MIB:.0f} MiB (before: {before / MIB:.0f} MiB)")

    with injected(chaos, memory_pressure, pod, container, mib=48, seconds=30) as fault:
        timeline.mark("memory_pressure", pod=pod, fault=fault.id)
        wait_for(lambda: memory(True, 40), what="48 MiB more in the container", timeout=15)
    wait_for(lambda: memory(False, 16), what="the memory to be freed", timeout=15)
    assert leftovers(chaos.cluster, chaos.kube, namespace=chaos.namespace) == []


def test_crash_via_service_restarts_the_container(chaos, deployed, kube_api, service_spec):
    """The service's own crash hook (a token from its Secret, through a port-forward) kills
    the process; the kubelet restarts the container."""
    pod, admin = deployed.pods()[0], service_spec.admin
    crash_via_service(
        chaos,
        pod,
        service_spec.container,
        admin.crash,
        token_secret=admin.token_secret,
        token_key=admin.token_key,
    )

    def restarted() -> bool | Pending:
        statuses = kube_api.core.read_namespaced_pod(pod, deployed.namespace).status
        count = sum(c.restart_count for c in statuses.container_statuses or [])
        return count > 0 or Pending(f"{pod} restarts: {count}")

    wait_for(restarted, what=f"{pod} to restart its container", timeout=30, interval=0.5)
    assert leftovers(chaos.cluster, chaos.kube, namespace=chaos.namespace) == []


def ready_in_endpoints(kube, namespace: str) -> set[str]:
    slices = kube.discovery.list_namespaced_endpoint_slice(namespace).items
    return {
        e.target_ref.name
        for s in slices
        for e in s.endpoints or []
        if e.target_ref and e.conditions and e.conditions.ready
    }


def test_partitioned_pod_leaves_the_endpoints_and_comes_back(
    chaos, deployed, kube_api, timeline, tmp_path
):
    pod = deployed.pods()[0]

    def listed(wanted: bool) -> bool | Pending:
        ready = ready_in_endpoints(kube_api, deployed.namespace)
        return True if (pod in ready) == wanted else Pending(f"ready endpoints: {sorted(ready)}")

    wait_for(lambda: listed(True), what=f"{pod} in the endpoints", timeout=20)
    with injected(chaos, partition_pod, pod) as fault:
        timeline.mark("partition_pod", pod=pod, fault=fault.id)
        wait_for(lambda: listed(False), what=f"{pod} to leave the endpoints", timeout=20)
        found = leftovers(chaos.cluster, chaos.kube, ledger=Ledger("x", tmp_path / "none"))
        # Two rules (in and out), in IPv4's tables and in IPv6's.
        assert sum(f"pod {deployed.namespace}/{pod} (ip" in line and fault.id in line
                   for line in found) == 4, found  # fmt: skip
    wait_for(lambda: listed(True), what=f"{pod} back in the endpoints", timeout=60)
    assert leftovers(chaos.cluster, chaos.kube, namespace=chaos.namespace) == []


def restarts(kube, namespace: str, pod: str) -> int:
    statuses = kube.core.read_namespaced_pod(pod, namespace).status.container_statuses or []
    return sum(c.restart_count for c in statuses)


def test_failed_readiness_probe_takes_the_pod_out_while_the_service_answers(
    chaos, deployed, kube_api, service_spec, timeline, tmp_path
):
    """Without the service's help: the readiness probe's request is dropped, the pod leaves
    the endpoints, its liveness probe (another path) still passes, and the revert brings it
    back."""
    pod = deployed.pods()[0]

    def listed(wanted: bool) -> bool | Pending:
        ready = ready_in_endpoints(kube_api, deployed.namespace)
        return True if (pod in ready) == wanted else Pending(f"ready endpoints: {sorted(ready)}")

    with injected(chaos, fail_probe, pod, service_spec.container, "readiness") as fault:
        timeline.mark("fail_probe", pod=pod, fault=fault.id)
        assert fault.undo["what"] == "readiness probe: GET /readyz on port 8080"
        wait_for(lambda: listed(False), what=f"{pod} to leave the endpoints", timeout=20)
        found = leftovers(chaos.cluster, chaos.kube, ledger=Ledger("x", tmp_path / "none"))
        # iptables lists the hex string it was given as the text it stands for.
        assert any('"GET /readyz "' in line and fault.id in line for line in found), found
        time.sleep(10)  # one liveness period: /healthz is still answered
        assert restarts(kube_api, deployed.namespace, pod) == 0
    wait_for(lambda: listed(True), what=f"{pod} back in the endpoints", timeout=30)
    assert leftovers(chaos.cluster, chaos.kube, namespace=chaos.namespace) == []


def test_crashed_process_is_restarted_with_exit_code_137(chaos, deployed, kube_api, service_spec):
    pod = deployed.pods()[0]
    crash_process(chaos, pod, service_spec.container)

    def crashed() -> int | Pending:
        status = kube_api.core.read_namespaced_pod(pod, deployed.namespace).status
        for container in status.container_statuses or []:
            ended = container.last_state.terminated if container.last_state else None
            if container.restart_count and ended:
                return ended.exit_code
        return Pending(f"{pod} restarts: {restarts(kube_api, deployed.namespace, pod)}")

    assert wait_for(crashed, what=f"{pod} to restart", timeout=30, interval=0.5) == 137


def test_reverting_a_fault_whose_pod_is_gone_is_clean(chaos, deployed):
    """The pod's network namespace took the rules with it: revert has nothing to do, twice."""
    pod = deployed.pods()[0]
    fault = partition_pod(chaos, pod)
    chaos.kube.core.delete_namespaced_pod(pod, deployed.namespace, grace_period_seconds=0)

    def gone() -> bool | Pending:
        try:
            chaos.kube.core.read_namespaced_pod(pod, deployed.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return Pending(f"{pod} still there")

    wait_for(gone, what=f"{pod} to be deleted", timeout=30)
    revert(chaos.cluster, chaos.kube, fault)
    revert(chaos.cluster, chaos.kube, fault)
    assert leftovers(chaos.cluster, chaos.kube, namespace=chaos.namespace) == []


LOOKUP = (
    "import os, socket; os.environ['RES_OPTIONS'] = 'timeout:1 attempts:1'; "
    "socket.getaddrinfo('kubernetes.default.svc.cluster.local.', 443, socket.AF_INET)"
)


def test_dns_failure_fails_lookups_from_the_pod_until_reverted(
    chaos, deployed, kube_api, service_spec, timeline
):
    pod = deployed.pods()[0]

    def lookup() -> subprocess.CompletedProcess:
        return subprocess.run(
            [kubectl_path(), "--kubeconfig", kube_api.kubeconfig, "-n", deployed.namespace, "exec",
             pod, "-c", service_spec.container, "--", "python3", "-c", LOOKUP],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    assert lookup().returncode == 0, "DNS must work before the fault"
    with injected(chaos, dns_failure, pod) as fault:
        timeline.mark("dns_failure", pod=pod, fault=fault.id)
        failed = lookup()
    assert failed.returncode != 0 and "gaierror" in failed.stderr, failed.stderr
    worked = lookup()
    assert worked.returncode == 0, worked.stderr
    assert leftovers(chaos.cluster, chaos.kube, namespace=chaos.namespace) == []


def cordoned_by(kube, node: str) -> list[str] | None:
    """The fault ids holding the node cordoned; None when it is schedulable."""
    current = kube.core.read_node(node)
    ids = (current.metadata.annotations or {}).get(CORDONED_BY, "")
    return ids.split(",") if current.spec.unschedulable else None


@pytest.mark.exclusive_cluster
def test_drain_is_held_by_the_pdb_on_a_single_node(
    chaos, deployed, kube_api, service_spec, timeline
):
    """On one node, evicted pods have nowhere to go while it is cordoned: the first eviction
    passes (the PDB allows one disruption), the replacement stays Pending, and every further
    eviction is refused (HTTP 429) until the drain times out. The node stays cordoned and in
    the ledger; revert uncordons it, the replacement is scheduled and the service is whole.
    (On several nodes the drain would finish once the replacement is Ready elsewhere; the
    retry loop that makes that happen is covered with a fake API.)"""
    if len(kube_api.core.list_node().items) > 1:
        pytest.skip("this test describes a single-node cluster")
    budgets = kube_api.policy.list_namespaced_pod_disruption_budget(deployed.namespace).items
    min_available = budgets[0].spec.min_available if budgets else None
    if not isinstance(min_available, int):
        pytest.skip(f"{service_spec.name} has no PodDisruptionBudget with a minAvailable count")
    before = set(deployed.pods())
    if len(before) <= min_available:
        pytest.skip(f"{len(before)} pod(s) and minAvailable {min_available}: nothing to evict")
    node = kube_api.core.read_namespaced_pod(sorted(before)[0], deployed.namespace).spec.node_name
    timeline.mark("drain", node=node)
    with pytest.raises(DrainTimeout, match="disruption budget") as held:
        drain(chaos, node, timeout=8)
    fault = held.value.injected
    try:
        assert fault.id in cordoned_by(kube_api, node)
        still = before & set(deployed.pods())
        assert len(still) == min_available, f"PDB min {min_available}, left: {still}"
        pending = [
            p
            for p in kube_api.core.list_namespaced_pod(deployed.namespace).items
            if p.metadata.name not in before and p.status.phase == "Pending"
        ]
        assert pending, "the evicted pods' replacements wait for a schedulable node"
    finally:
        revert(chaos.cluster, kube_api, fault)
    left = cordoned_by(kube_api, node)  # None, unless another test's fault holds it right now
    assert left is None or (left != [""] and fault.id not in left), f"cordoned by {left}"
    wait_for(
        lambda: len(deployed.pods()) >= len(before) or Pending(f"Ready: {deployed.pods()}"),
        what="the replacements to be Ready after the uncordon",
        timeout=60,
    )
    assert leftovers(chaos.cluster, chaos.kube, namespace=chaos.namespace) == []


@pytest.mark.exclusive_cluster
def test_kubelet_restart_keeps_the_cluster_working(chaos, cluster, deployed, kube_api):
    if not isinstance(cluster, ComponentControl):
        pytest.skip(f"the {cluster.name} provider cannot restart components")
    """The new kubelet takes over: it renews the node's lease, the node is Ready, and the
    pods it adopts keep running and serving."""
    pods = deployed.pods()
    node = kube_api.core.read_namespaced_pod(pods[0], deployed.namespace).spec.node_name
    leases = client.CoordinationV1Api(kube_api.api_client)
    restarted_at = datetime.now(UTC)
    restart_component(chaos, "kubelet")

    def lease_renewed() -> bool | Pending:
        renewed = leases.read_namespaced_lease(node, "kube-node-lease").spec.renew_time
        return renewed > restarted_at or Pending(f"lease renewed at {renewed}")

    wait_for(lease_renewed, what=f"the new kubelet to renew {node}'s lease", timeout=60)
    wait_nodes_ready(kube_api, timeout=60)
    wait_for(
        lambda: deployed.pods() == pods or Pending(f"Ready: {deployed.pods()}"),
        what="the same pods Ready after the kubelet restart",
        timeout=30,
    )
    with urllib.request.urlopen(deployed.base_url, timeout=5) as response:
        assert response.status == 200, "the service answers through its NodePort"
    assert leftovers(chaos.cluster, chaos.kube, namespace=chaos.namespace) == []


@pytest.mark.exclusive_cluster
def test_stopped_kubelet_is_a_leftover_until_reverted(cluster, kube_api, namespace):
    if not isinstance(cluster, ComponentControl):
        pytest.skip(f"the {cluster.name} provider cannot stop components")
    t = Target.of(cluster, kube_api, namespace)
    with injected(t, stop_component, "kubelet") as fault:
        assert not cluster.component_status()["kubelet"]["running"]
        found = leftovers(cluster, kube_api, namespace=namespace)
        assert "component kubelet is stopped" in found
        assert any(fault.id in line for line in found)
    assert cluster.component_status()["kubelet"]["running"]
    assert leftovers(cluster, kube_api, namespace=namespace) == []


@pytest.mark.exclusive_cluster
def test_a_fault_left_by_a_killed_run_is_reverted_when_the_next_run_starts(
    cluster, kube_api, namespace
):
    """A run killed (SIGKILL) after injecting leaves its fault and its ledger entry: the
    next run's `cluster` fixture reverts it (`revert_orphans`) before any test measures the
    cluster, and leaves a live run's faults alone."""
    t = Target.of(cluster, kube_api, namespace)
    node = kube_api.core.list_node().items[0].metadata.name
    killed = cordon(t, node)
    t.ledger.add(dataclasses.replace(killed, owner=dead_process()))
    live = cordon(t, node)
    try:
        assert [e.id for e in revert_orphans(cluster)] == [killed.id]
        assert cordoned_by(kube_api, node) == [live.id]
        assert [e.id for e in t.ledger.pending(namespace=namespace)] == [live.id]
    finally:
        revert_all(cluster, kube_api, namespace=namespace)
    assert not kube_api.core.read_node(node).spec.unschedulable


# A run that injects one fault through the harness and is stopped at STAGE: "recorded" (the
# ledger holds the fault, nothing is injected yet) or "injected".
STOPPED_RUN = """
import json, sys, time
from harness.chaos import faults
from harness.chaos.actions import harness_target
from harness.chaos.ledger import Ledger
from harness.interrupt import terminate_as_interrupt

args = json.loads(sys.argv[1])
terminate_as_interrupt()
if args["stage"] == "recorded":
    add = Ledger.add

    def add_then_wait(self, entry):
        add(self, entry)
        print("STAGE", flush=True)
        time.sleep(120)

    Ledger.add = add_then_wait
with harness_target(args["configuration"]) as t:
    with faults.injected(t, getattr(faults, args["fault"]), *args["args"], **args["kwargs"]):
        print("STAGE", flush=True)
        time.sleep(120)
"""


def stop_at_stage(configuration: dict, fault: str, stage: str, how: signal.Signals,
                  *args: Any, **kwargs: Any) -> str:  # fmt: skip
    """Run STOPPED_RUN for `fault`, send `how` once it reached `stage`; its output."""
    argument = json.dumps(
        {"configuration": configuration, "fault": fault, "stage": stage, "args": args,
         "kwargs": kwargs}
    )  # fmt: skip
    with subprocess.Popen(
        [sys.executable, "-c", STOPPED_RUN, argument],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as run:  # fmt: skip
        seen = ""
        while not seen.endswith("STAGE\n"):  # what the fault says comes first
            line = run.stdout.readline()
            if not line:  # ended before the stage: its output says why
                raise AssertionError(f"{fault} never reached {stage}:\n{seen}")
            seen += line
        run.send_signal(how)
        return seen + run.communicate(timeout=120)[0]


@pytest.mark.exclusive_cluster
def test_a_run_stopped_at_any_stage_of_any_fault_leaves_nothing_after_the_next_start(
    chaos, deployed, service_spec, kube_api, cluster
):
    """Each fault kind, stopped by SIGKILL after it is recorded and after it is injected,
    and by SIGTERM once injected: the next start (`revert_orphans`) leaves nothing behind;
    a run stopped by SIGTERM has reverted its fault itself."""
    pod, container = deployed.pods()[0], service_spec.container
    node = kube_api.core.list_node().items[0].metadata.name
    configuration = {
        "harness_kubeconfig": str(cluster.kubeconfig()),
        "harness_cluster_provider": cluster.name,
        "harness_cluster_name": cluster.options.name,
        "harness_namespace": deployed.namespace,
        "harness_selector": "unused=by-these-faults",
    }
    kinds: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("cordon", (node,), {}),
        ("partition_pod", (pod,), {}),
        ("dns_failure", (pod,), {}),
        ("fail_probe", (pod, container, "readiness"), {}),
        ("cpu_hog", (pod, container), {"seconds": 60}),
        ("memory_pressure", (pod, container), {"mib": 16, "seconds": 60}),
    ]
    if isinstance(cluster, ComponentControl):
        kinds.append(("stop_component", ("kubelet",), {}))
    for fault, args, kwargs in kinds:
        for stage, how in (
            ("recorded", signal.SIGKILL),
            ("injected", signal.SIGKILL),
            ("injected", signal.SIGTERM),
        ):
            case = f"{fault} stopped by {how.name} once {stage}"
            output = stop_at_stage(configuration, fault, stage, how, *args, **kwargs)
            if how is signal.SIGTERM:
                assert "stopped by SIGTERM" in output, case + ": " + output
                assert leftovers(cluster, kube_api, namespace=deployed.namespace) == [], case
            else:
                assert leftovers(cluster, kube_api, namespace=deployed.namespace), case
            revert_orphans(cluster)
            assert leftovers(cluster, kube_api, namespace=deployed.namespace) == [], case
    wait_nodes_ready(kube_api, timeout=120)


@pytest.mark.exclusive_cluster
def test_an_experiments_own_node_action_is_undone_through_the_ledger(cluster, kube_api, namespace):
    """chaostoolkit-kubernetes's cordon_node, as an experiment runs it, on the real cluster:
    the entry held before it finds the node, shows as pending, and its revert uncordons it."""
    from chaosk8s.node.actions import cordon_node

    from harness.chaos.experiment import chaosk8s_kubeconfig

    t = Target.of(cluster, kube_api, namespace)
    node = kube_api.core.list_node().items[0].metadata.name
    held = hold_node_schedulability(t)
    try:
        with chaosk8s_kubeconfig(cluster.kubeconfig(), cluster.options.context):
            cordon_node(name=node)
        assert kube_api.core.read_node(node).spec.unschedulable
        assert cordoned_since(kube_api, held) == [node]
        assert any(held.id in line for line in leftovers(cluster, kube_api, namespace=namespace))
    finally:
        revert_all(cluster, kube_api, namespace=namespace)
    assert not kube_api.core.read_node(node).spec.unschedulable
    assert leftovers(cluster, kube_api, namespace=namespace) == []


@pytest.mark.exclusive_cluster
def test_what_a_killed_run_left_on_an_existing_cluster_is_undone_under_the_opt_in(
    cluster, kube_api, namespace
):
    """The same real cluster seen as `existing` (its kubeconfig): an experiment's node action
    that a killed run left is undone when the next run starts with the opt-in it ran under,
    and left (said) without it."""

    def as_existing(*, allow_chaos: bool) -> ExistingProvider:
        options = ClusterOptions(
            name=cluster.options.name, kubeconfig=cluster.kubeconfig(), allow_chaos=allow_chaos
        )
        return ExistingProvider(options)

    opted_in = as_existing(allow_chaos=True)
    node = kube_api.core.list_node().items[0].metadata.name
    held = hold_node_schedulability(Target.of(opted_in, kube_api, namespace))
    Ledger(cluster.options.name).add(dataclasses.replace(held, owner=dead_process()))
    try:
        kube_api.core.patch_node(node, {"spec": {"unschedulable": True}})  # as cordon_node does
        assert revert_orphans(as_existing(allow_chaos=False)) == []
        assert kube_api.core.read_node(node).spec.unschedulable
        assert [e.id for e in revert_orphans(opted_in)] == [held.id]
        assert not kube_api.core.read_node(node).spec.unschedulable
    finally:
        revert_all(cluster, kube_api, namespace=namespace)
        kube_api.core.patch_node(node, {"spec": {"unschedulable": False}})
    assert leftovers(cluster, kube_api, namespace=namespace) == []
