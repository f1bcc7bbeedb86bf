"""The Chaos Toolkit face: configuration keys to a Target, actions and probes over fakes, and
an experiment's activities end to end against the deployed service."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubeconfigs import write_kubeconfig
from kubernetes import client

from harness.chaos import Injected, Ledger, Target, actions, probes
from harness.chaos.faults import CORDONED_BY
from harness.chaos.ledger import ledger_path
from harness.cluster.provider import Capabilities, ClusterOptions
from harness.errors import InvalidConfiguration
from harness.namespaces import MANAGED_BY, MANAGER
from harness.wait import Pending, wait_for

NS = "kh-t"
CONFIG = {
    "harness_kubeconfig": "/unused",
    "harness_cluster_provider": "existing",
    "harness_cluster_name": "fake",
    "harness_namespace": NS,
    "harness_deployment": "demo",
    "harness_selector": "app=demo",
    "harness_base_url": "http://127.0.0.1:1",
    "harness_load_path": "/ok",
    "harness_container": "demo",
    "harness_ready_within_s": 0.2,
    "harness_leaves_endpoints_within_s": 0.2,
    "harness_request_timeout_s": 2,
    "harness_pods_at_start": {"uid-demo-a": {"demo": 0}, "uid-demo-b": {"demo": 0}},
}


def pod(name: str, *, ready: bool = True, leaving: bool = False, restarts: int = 0) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name,
            namespace=NS,
            uid=f"uid-{name}",
            deletion_timestamp="2024-01-01T00:00:00Z" if leaving else None,
        ),
        spec=client.V1PodSpec(containers=[], node_name="n1"),
        status=client.V1PodStatus(
            phase="Running",
            conditions=[client.V1PodCondition(type="Ready", status=str(ready))],
            container_statuses=[
                client.V1ContainerStatus(
                    name="demo", restart_count=restarts, ready=ready, image="i", image_id="i"
                )
            ],
        ),
    )


def endpoint(name: str, ready: bool) -> client.V1Endpoint:
    return client.V1Endpoint(
        addresses=["10.0.0.1"],
        conditions=client.V1EndpointConditions(ready=ready),
        target_ref=client.V1ObjectReference(kind="Pod", name=name),
    )


class FakeCore:
    def __init__(self, pods: list[client.V1Pod]) -> None:
        self.pods = pods
        self.node = client.V1Node(
            metadata=client.V1ObjectMeta(
                name="n1", annotations={CORDONED_BY: "c1,c2,s1"}, resource_version="1"
            ),
            spec=client.V1NodeSpec(unschedulable=True),
        )

    def read_namespace(self, name: str) -> Any:
        return SimpleNamespace(metadata=SimpleNamespace(labels={MANAGED_BY: MANAGER}))

    def list_namespaced_pod(self, namespace: str, label_selector: str | None = None) -> Any:
        return SimpleNamespace(items=self.pods)

    def read_node(self, name: str) -> client.V1Node:
        return self.node

    def patch_node(self, name: str, body: dict) -> None:
        self.node.metadata.annotations = body["metadata"]["annotations"]
        self.node.spec.unschedulable = body["spec"]["unschedulable"]


class FakeProvider:
    name = "fake"
    options = ClusterOptions(name="fake")
    capabilities = Capabilities(
        creates_clusters=True, chaos_allowed=True, nodeports_on_localhost=True
    )


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    """Probes poll once a second and give the proxy two; here milliseconds."""
    monkeypatch.setattr(probes, "POLL_S", 0.01)
    monkeypatch.setattr(probes, "PROXY_SYNC_S", 0.05)


@pytest.fixture
def fake(monkeypatch, tmp_path: Path) -> Target:
    """Every activity gets this Target (fake cluster and API) whatever its configuration."""
    kube = SimpleNamespace(
        core=FakeCore([pod("demo-a"), pod("demo-b", ready=False), pod("demo-c", leaving=True)]),
        discovery=SimpleNamespace(list_namespaced_endpoint_slice=None),
        apps=SimpleNamespace(read_namespaced_deployment=None),
    )
    target = Target(FakeProvider(), kube, NS, Ledger("fake", tmp_path / "ledger.jsonl"))

    @contextmanager
    def fake_target(configuration: Any, *, verify: bool = True) -> Iterator[Target]:
        for key in actions.REQUIRED_KEYS:
            actions.setting(configuration, key)
        yield target

    monkeypatch.setattr(actions, "harness_target", fake_target)
    monkeypatch.setattr(probes, "harness_target", fake_target)
    return target


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize("missing", actions.REQUIRED_KEYS)
def test_an_activity_without_the_harness_keys_says_how_to_run_it(missing):
    configuration = {k: v for k, v in CONFIG.items() if k != missing}
    with pytest.raises(InvalidConfiguration, match=f"has no {missing}") as refused:
        actions.partition_one_pod(configuration=configuration)
    assert "harness chaos run" in str(refused.value)


def test_the_target_is_built_from_the_configuration_keys(tmp_path: Path):
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig")
    config = CONFIG | {"harness_kubeconfig": str(kubeconfig), "harness_allow_chaos": True}
    with actions.harness_target(config) as t:
        assert (t.cluster.name, t.cluster.options.name, t.namespace) == ("existing", "fake", NS)
        assert t.cluster.capabilities.chaos_allowed
        assert t.ledger.path == ledger_path("fake")
        assert t.kube.kubeconfig == kubeconfig
    with actions.harness_target(CONFIG | {"harness_kubeconfig": str(kubeconfig)}) as t:
        assert not t.cluster.capabilities.chaos_allowed


# --- actions --------------------------------------------------------------------------------


def test_kill_pods_uses_the_service_selector_and_percent_wins_over_count(fake, monkeypatch):
    calls = []
    monkeypatch.setattr(
        actions.faults, "kill_pods", lambda t, sel, **kw: calls.append((sel, kw)) or ["x"]
    )
    assert actions.kill_pods(configuration=CONFIG) == ["x"]
    actions.kill_pods(percent=50, configuration=CONFIG)
    actions.kill_pods(count=2, selector="tier=web", configuration=CONFIG)
    assert calls == [
        ("app=demo", {"count": 1, "percent": None}),
        ("app=demo", {"count": None, "percent": 50}),
        ("tier=web", {"count": 2, "percent": None}),
    ]


def test_pod_faults_hit_a_ready_pod_that_is_not_leaving(fake, monkeypatch):
    hit = []

    def partition(t, name):
        hit.append(name)
        return Injected("p1", "partition_pod", "fake", NS, "n1", name, {}, 0.0)

    monkeypatch.setattr(actions.faults, "partition_pod", partition)
    assert actions.partition_one_pod(configuration=CONFIG) == {"pod": "demo-a", "id": "p1"}
    assert hit == ["demo-a"]


def test_pod_faults_without_a_ready_pod_say_so(fake):
    fake.kube.core.pods = [pod("demo-b", ready=False)]
    with pytest.raises(InvalidConfiguration, match="no Ready pod of the service in kh-t"):
        actions.cpu_hog(10, configuration=CONFIG)


def test_a_drain_gives_up_after_the_specs_ready_within(fake, monkeypatch):
    fake.kube.core.read_namespaced_pod = lambda name, ns: pod(name)
    calls = []

    def drain(t, node, timeout):
        calls.append((node, timeout))
        return Injected("d1", "drain", "fake", NS, node, node, {}, 0.0)

    monkeypatch.setattr(actions.faults, "drain", drain)
    actions.drain_node(configuration=CONFIG)
    actions.drain_node(node="n2", timeout=5, configuration=CONFIG)
    assert calls == [("n1", 0.2), ("n2", 5)]


def test_revert_faults_reverts_this_namespaces_faults_of_the_kind_asked(fake):
    for id, fault, ns in (("c1", "cordon", NS), ("c2", "cordon", "kh-other"), ("s1", "drain", NS)):
        fake.ledger.add(Injected(id, fault, "fake", ns, "n1", "n1", {"node": "n1"}, 0.0))
    assert actions.revert_faults(fault="cordon", configuration=CONFIG) == [
        "cordon c1 on n1 node n1 in kh-t"
    ]
    assert [e.id for e in fake.ledger.pending()] == ["c2", "s1"]
    assert actions.revert_faults(configuration=CONFIG) == ["drain s1 on n1 node n1 in kh-t"]
    node = fake.kube.core.node
    assert (node.metadata.annotations, node.spec.unschedulable) == ({CORDONED_BY: "c2"}, True)


# --- probes ---------------------------------------------------------------------------------


def test_pods_in_endpoints_are_the_services_ready_ones(fake):
    slices = [
        client.V1EndpointSlice(
            address_type="IPv4",
            endpoints=[endpoint("demo-a", True), endpoint("demo-b", False)],
        ),
        client.V1EndpointSlice(address_type="IPv4", endpoints=[endpoint("other-x", True)]),
        client.V1EndpointSlice(address_type="IPv4", endpoints=None),
    ]
    fake.kube.discovery.list_namespaced_endpoint_slice = lambda ns: SimpleNamespace(items=slices)
    fake.kube.core.pods.append(pod("demo-x"))
    assert probes.pods_in_endpoints(configuration=CONFIG) == ["demo-a"]
    assert probes.ready_pods(configuration=CONFIG) == 2

    assert probes.partitioned_pod_left_endpoints(configuration=CONFIG) is False  # none cut off
    fake.ledger.add(Injected("p1", "partition_pod", "fake", NS, "n1", "demo-b", {}, 0.0))
    assert probes.partitioned_pod_left_endpoints(configuration=CONFIG) is True
    fake.ledger.add(Injected("p2", "partition_pod", "fake", NS, "n1", "demo-a", {}, 0.0))
    assert probes.partitioned_pod_left_endpoints(configuration=CONFIG) is False


def deployment(replicas: int = 2, generation: int = 2, **status: int) -> Any:
    return SimpleNamespace(
        metadata=client.V1ObjectMeta(name="demo", generation=generation),
        spec=SimpleNamespace(replicas=replicas),
        status=client.V1DeploymentStatus(**({"observed_generation": 2} | status)),
    )


FULL = {"ready_replicas": 2, "available_replicas": 2, "updated_replicas": 2}


@pytest.mark.parametrize(
    ("status", "ready"),
    [
        (FULL, True),
        (FULL | {"ready_replicas": 1, "available_replicas": 1}, False),
        (FULL | {"updated_replicas": 1}, False),
        (FULL | {"observed_generation": 1}, False),
    ],
)
def test_deployment_ready_needs_every_replica_updated_ready_and_available(fake, status, ready):
    fake.kube.core.pods = [pod("demo-a"), pod("demo-b")]
    fake.kube.apps.read_namespaced_deployment = lambda name, ns: deployment(**status)
    assert probes.deployment_ready(configuration=CONFIG) is ready


def test_deployment_ready_also_asks_the_pods_whose_status_the_deployment_lags(fake):
    fake.kube.core.pods = [pod("demo-a"), pod("demo-b", ready=False)]
    fake.kube.apps.read_namespaced_deployment = lambda name, ns: deployment(**FULL)
    assert probes.deployment_ready(configuration=CONFIG) is False


def test_deployment_ready_waits_up_to_the_specs_ready_within(fake):
    fake.kube.core.pods = [pod("demo-a"), pod("demo-b")]
    answers = iter([deployment(**FULL | {"ready_replicas": 1})] * 3 + [deployment(**FULL)])
    fake.kube.apps.read_namespaced_deployment = lambda name, ns: next(answers)
    assert probes.deployment_ready(configuration=CONFIG | {"harness_ready_within_s": 5})
    never = CONFIG | {"harness_ready_within_s": 0.3}
    fake.kube.apps.read_namespaced_deployment = lambda name, ns: deployment(ready_replicas=1)
    began = time.monotonic()
    assert probes.deployment_ready(configuration=never) is False
    assert 0.3 <= time.monotonic() - began < 2


def test_ready_again_needs_a_replacement_or_a_restart_since_the_experiment_began(fake):
    fake.kube.apps.read_namespaced_deployment = lambda name, ns: deployment(**FULL)
    fake.kube.core.pods = [pod("demo-a"), pod("demo-b")]
    assert probes.deployment_ready_again(configuration=CONFIG) is False  # no sign of the fault
    fake.kube.core.pods = [pod("demo-a"), pod("demo-b", leaving=True), pod("demo-x")]
    assert probes.deployment_ready_again(configuration=CONFIG) is True  # replaced
    fake.kube.core.pods = [pod("demo-a", restarts=1), pod("demo-b")]
    assert probes.deployment_ready_again(configuration=CONFIG) is True  # restarted
    fake.kube.core.pods = [pod("demo-a", restarts=1, ready=False), pod("demo-b")]
    assert probes.deployment_ready_again(configuration=CONFIG) is False  # not Ready yet


def test_stays_ready_holds_for_the_specs_leaves_endpoints_within(fake):
    fake.kube.core.pods = [pod("demo-a"), pod("demo-b")]
    # Ready, then the restarted kubelet's readiness reset, then Ready for good.
    flips = iter([FULL, FULL | {"ready_replicas": 1}, FULL | {"ready_replicas": 1}])
    fake.kube.apps.read_namespaced_deployment = lambda name, ns: deployment(**next(flips, FULL))
    config = CONFIG | {"harness_ready_within_s": 2, "harness_leaves_endpoints_within_s": 0.1}
    began = time.monotonic()
    assert probes.deployment_stays_ready(configuration=config) is True
    assert time.monotonic() - began >= 0.1
    assert next(flips, "used up") == "used up"
    fake.kube.apps.read_namespaced_deployment = lambda name, ns: deployment(ready_replicas=1)
    assert probes.deployment_stays_ready(configuration=CONFIG) is False


def test_restarts_count_from_the_experiments_start(fake):
    before = {"uid-demo-a": {"demo": 4}, "uid-demo-b": {"demo": 0}}
    fake.kube.core.pods = [pod("demo-a", restarts=5), pod("demo-b"), pod("demo-x", restarts=2)]
    config = CONFIG | {"harness_pods_at_start": before}
    assert probes.container_restarts(configuration=config) == 3  # 1 of demo-a, 2 of the new one
    fake.kube.core.pods = [pod("demo-a", restarts=4), pod("demo-b")]
    assert probes.container_restarts(configuration=config) == 0


def test_the_pods_at_start_are_their_uids_and_restarts(fake):
    fake.kube.core.pods = [pod("demo-a", restarts=2), pod("demo-b")]
    assert probes.pods_at_start(fake.kube, NS, "app=demo") == {
        "uid-demo-a": {"demo": 2},
        "uid-demo-b": {"demo": 0},
    }


def test_the_partition_probe_waits_for_the_pod_to_leave(fake):
    fake.ledger.add(Injected("p1", "partition_pod", "fake", NS, "n1", "demo-a", {}, 0.0))
    fake.kube.core.pods = [pod("demo-a"), pod("demo-b")]
    listed = iter([["demo-a", "demo-b"], ["demo-a", "demo-b"], ["demo-b"]])

    def slices(ns):
        names = next(listed, ["demo-b"])
        return SimpleNamespace(
            items=[client.V1EndpointSlice(address_type="IPv4",
                                          endpoints=[endpoint(n, True) for n in names])]
        )  # fmt: skip

    fake.kube.discovery.list_namespaced_endpoint_slice = slices
    assert probes.partitioned_pod_left_endpoints(configuration=CONFIG | {
        "harness_leaves_endpoints_within_s": 5}) is True  # fmt: skip
    listed = iter([])
    fake.kube.discovery.list_namespaced_endpoint_slice = lambda ns: SimpleNamespace(
        items=[client.V1EndpointSlice(address_type="IPv4", endpoints=[endpoint("demo-a", True)])]
    )
    assert probes.partitioned_pod_left_endpoints(configuration=CONFIG) is False


def test_probes_that_wait_say_which_time_they_miss(fake):
    missing = {k: v for k, v in CONFIG.items() if k != "harness_ready_within_s"}
    with pytest.raises(InvalidConfiguration, match="has no harness_ready_within_s"):
        probes.deployment_ready(configuration=missing)


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ok" else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_service_answers_only_with_a_2xx(http_server):
    config = CONFIG | {"harness_base_url": http_server + "/"}
    assert probes.service_answers("/ok", configuration=config) is True
    assert probes.service_answers("/broken", configuration=config) is False
    assert probes.service_answers(configuration=config) is True  # the spec's load.path
    assert probes.service_answers(configuration=CONFIG) is False  # nothing listens on port 1


def test_service_answers_waits_as_long_as_the_specs_request_timeout(monkeypatch):
    seen = []

    def urlopen(url, timeout):
        seen.append(timeout)
        raise OSError("refused")

    monkeypatch.setattr(probes.urllib.request, "urlopen", urlopen)
    probes.service_answers(configuration=CONFIG)
    probes.service_answers(timeout_s=1, configuration=CONFIG)
    assert seen == [2, 1]


def test_no_leftovers_logs_each_one(fake, monkeypatch, caplog):
    monkeypatch.setattr(probes, "leftovers", lambda cluster, kube, **kw: ["node n1 cordoned"])
    assert probes.no_leftovers(configuration=CONFIG) is False
    assert "chaos leftover: node n1 cordoned" in caplog.text
    monkeypatch.setattr(probes, "leftovers", lambda cluster, kube, **kw: [])
    assert probes.no_leftovers(configuration=CONFIG) is True


# --- end to end -----------------------------------------------------------------------------


def test_experiment_activities_on_the_deployed_service(cluster, kube_api, deployed, service_spec):
    """What an experiment does, activity by activity: steady state, a partition, its
    rollback, and the steady state again with nothing left behind; a configuration that
    claims another cluster of this provider is refused."""
    labels = kube_api.apps.read_namespaced_deployment(
        service_spec.deployment, deployed.namespace
    ).spec.selector.match_labels
    config = {
        "harness_kubeconfig": str(cluster.kubeconfig()),
        "harness_cluster_provider": cluster.name,
        "harness_cluster_name": cluster.options.name,
        "harness_namespace": deployed.namespace,
        "harness_deployment": service_spec.deployment,
        "harness_selector": ",".join(f"{k}={v}" for k, v in labels.items()),
        "harness_base_url": deployed.base_url,
        "harness_load_path": service_spec.load.path,
        "harness_container": service_spec.container,
        "harness_allow_chaos": cluster.options.allow_chaos,
        "harness_ready_within_s": 60,
        "harness_leaves_endpoints_within_s": 20,
        "harness_request_timeout_s": 5,
        "harness_pods_at_start": probes.pods_at_start(
            kube_api, deployed.namespace, ",".join(f"{k}={v}" for k, v in labels.items())
        ),
    }
    if cluster.capabilities.creates_clusters:
        elsewhere = config | {"harness_cluster_name": "kh-elsewhere"}
        with pytest.raises(InvalidConfiguration, match="reaches a cluster with nodes"):
            probes.ready_pods(configuration=elsewhere)
    replicas = len(deployed.pods())
    try:
        assert probes.service_answers(configuration=config)
        assert probes.deployment_ready(configuration=config)
        assert probes.ready_pods(configuration=config) == replicas
        wait_for(
            lambda: (
                len(probes.pods_in_endpoints(configuration=config)) == replicas
                or Pending(str(probes.pods_in_endpoints(configuration=config)))
            ),
            what="every pod in the endpoints",
            timeout=20,
        )
        cut = actions.partition_one_pod(configuration=config)
        wait_for(
            lambda: (
                probes.partitioned_pod_left_endpoints(configuration=config)
                or Pending(str(probes.pods_in_endpoints(configuration=config)))
            ),
            what=f"{cut['pod']} to leave the endpoints",
            timeout=20,
        )
        # The other pods serve, once kube-proxy has followed the endpoints.
        wait_for(
            lambda: (
                all(probes.service_answers(configuration=config) for _ in range(3))
                or Pending("a request failed")
            ),
            what="the service to answer from the other pods",
            timeout=20,
        )
        assert len(actions.revert_faults(configuration=config)) == 1
        wait_for(
            lambda: (
                cut["pod"] in probes.pods_in_endpoints(configuration=config)
                or Pending(str(probes.pods_in_endpoints(configuration=config)))
            ),
            what=f"{cut['pod']} back in the endpoints",
            timeout=60,
        )
        assert probes.no_leftovers(configuration=config)
    finally:
        actions.revert_faults(configuration=config)


# --- the claimed provider -------------------------------------------------------------------


class NodesProvider(FakeProvider):
    def __init__(self, nodes: list[str]) -> None:
        self._nodes = nodes

    def nodes(self) -> list[str]:
        return self._nodes

    def stop_node(self, node: str) -> None: ...

    def start_node(self, node: str) -> None: ...


def serving(*nodes: str) -> Any:
    items = [SimpleNamespace(metadata=SimpleNamespace(name=n)) for n in nodes]
    core = SimpleNamespace(list_node=lambda **_: SimpleNamespace(items=items))
    return SimpleNamespace(core=core, kubeconfig=Path("/k/kubeconfig"))


def test_a_claimed_provider_must_run_the_cluster_the_kubeconfig_reaches():
    actions.verify_provider(NodesProvider(["kh-node"]), serving("kh-node"))
    with pytest.raises(InvalidConfiguration) as refused:
        actions.verify_provider(NodesProvider(["kh-node"]), serving("prod-1", "prod-2"))
    assert "whose nodes here are kh-node" in refused.value.message
    assert "/k/kubeconfig reaches a cluster with nodes prod-1, prod-2" in refused.value.message
    assert "harness chaos run" in refused.value.fix
    with pytest.raises(InvalidConfiguration, match="nodes here are none"):
        actions.verify_provider(NodesProvider([]), serving())
