"""The kind provider: its config and the command lines it hands kind, as data; and for real."""

import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from harness.cluster import kind, kind_prepare
from harness.cluster.provider import ClusterOptions, ClusterProvider, Timings
from harness.commands import run
from harness.errors import InvalidConfiguration
from harness.kube import Kube
from harness.paths import CACHE_DIR_ENV
from harness.wait import Pending, wait_for

FAKE_KIND = textwrap.dedent(
    """\
    #!{python}
    # Records its arguments; `create cluster` writes a kubeconfig like kind does.
    import json, sys
    args = sys.argv[1:]
    with open({log!r}, "a") as log:
        log.write(json.dumps(args) + "\\n")
    if args[:2] == ["create", "cluster"]:
        path = next(a.split("=", 1)[1] for a in args if a.startswith("--kubeconfig="))
        with open(path, "w") as out:
            out.write('''{kubeconfig}''')
    if args[:1] == ["get"] and args[1:2] == ["nodes"]:
        print("demo-control-plane\\ndemo-worker")
    """
)

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


@pytest.fixture
def fake_kind(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "kind-calls.jsonl"
    binary = tmp_path / "kind"
    binary.write_text(FAKE_KIND.format(python=sys.executable, log=str(log), kubeconfig=KUBECONFIG))
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return binary, log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_config_publishes_nodeports_on_loopback_only():
    config = kind.kind_config(ClusterOptions(node_ports=(30080, 30081)))
    (control_plane,) = config["nodes"]
    assert control_plane["role"] == "control-plane"
    assert control_plane["extraPortMappings"] == [
        {"containerPort": p, "hostPort": p, "listenAddress": "127.0.0.1", "protocol": "TCP"}
        for p in (30080, 30081)
    ]
    assert config["networking"] == {
        "apiServerAddress": "127.0.0.1",
        "podSubnet": kind.POD_SUBNET,
        "serviceSubnet": kind.SERVICE_SUBNET,
    }


def test_guard_rejects_routed_cluster_traffic_but_not_bridged_pod_traffic():
    service_rule, pod_rule = kind.guard_rules()
    assert service_rule[:2] == ["-d", kind.SERVICE_SUBNET] and service_rule[-2:] == ["-j", "REJECT"]
    assert pod_rule[:2] == ["-d", kind.POD_SUBNET]
    assert "! --physdev-is-bridged" in " ".join(pod_rule)


def test_config_has_one_control_plane_and_the_workers_asked_for():
    config = kind.kind_config(ClusterOptions(workers=2, node_image="kindest/node:v1.34.0"))
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker", "worker"]
    assert {n["image"] for n in config["nodes"]} == {"kindest/node:v1.34.0"}


def test_config_shortens_control_plane_timings_for_both_kubeadm_versions():
    timings = Timings(hpa_sync_period_s=7, not_ready_toleration_s=11)
    patches = [
        yaml.safe_load(p)
        for p in kind.kind_config(ClusterOptions(timings=timings))["kubeadmConfigPatches"]
    ]
    v4, v3, kubelet = patches
    assert v4["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert {"name": "horizontal-pod-autoscaler-sync-period", "value": "7s"} in v4[
        "controllerManager"
    ]["extraArgs"]
    assert {"name": "default-not-ready-toleration-seconds", "value": "11"} in v4["apiServer"][
        "extraArgs"
    ]
    assert v3["controllerManager"]["extraArgs"]["horizontal-pod-autoscaler-sync-period"] == "7s"
    assert kubelet["kind"] == "KubeletConfiguration"
    assert kubelet["nodeStatusUpdateFrequency"] == "4s"


def test_command_lines_handed_to_kind(fake_kind, tmp_path, monkeypatch):
    binary, log = fake_kind
    monkeypatch.chdir(tmp_path)  # pytest-kind keeps a .pytest-kind/ folder in the cwd
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))  # no node image prepared
    guard = []
    monkeypatch.setattr(kind, "add_forward_guard", lambda: guard.append("added"))
    monkeypatch.setattr(kind, "remove_forward_guard", lambda: guard.append("removed"))
    addons_installed = []
    monkeypatch.setattr(
        kind.KindProvider, "_install_metrics_server", lambda self: addons_installed.append(self)
    )
    options = ClusterOptions(name="demo", kubeconfig=tmp_path / "kc", workers=1)
    provider = kind.KindProvider(options, kind_path=binary)

    provider.create()
    assert addons_installed == [provider]
    provider.load_image(Path("/images/demo.tar"))
    provider.collect_logs(tmp_path / "logs")
    assert provider.nodes() == ["demo-control-plane", "demo-worker"]
    provider.delete()

    config_path = tmp_path / "cache" / "kind" / "demo" / "kind-config.yaml"
    assert calls(log) == [
        ["get", "clusters"],
        [
            "create",
            "cluster",
            "--name=demo",
            f"--kubeconfig={tmp_path / 'kc'}",
            "--config",
            str(config_path),
        ],
        ["load", "image-archive", "/images/demo.tar", "--name", "demo"],
        ["export", "logs", str(tmp_path / "logs"), "--name", "demo"],
        ["get", "nodes", "--name", "demo"],
        ["delete", "cluster", "--name", "demo"],
        ["get", "clusters"],
    ]
    assert yaml.safe_load(config_path.read_text())["nodes"][1] == {"role": "worker"}
    assert guard == ["added", "removed"]  # the last kind cluster is gone
    assert stat.S_IMODE((tmp_path / "kc").stat().st_mode) == 0o600


@pytest.mark.parametrize("needs_shim", [True, False])
def test_containerd_clamps_oom_score_adj_only_where_runc_cannot_lower_it(monkeypatch, needs_shim):
    monkeypatch.setattr(kind_prepare, "needs_runtime_shim", lambda: needs_shim)
    patches = kind.kind_config(ClusterOptions()).get("containerdConfigPatches", [])
    assert patches == ([kind.RESTRICT_OOM_SCORE_ADJ] if needs_shim else [])
    if needs_shim:
        assert "restrict_oom_score_adj = true" in patches[0]


def test_kind_version_is_current_and_overridable(monkeypatch):
    monkeypatch.delenv("KIND_VERSION", raising=False)
    assert kind.kind_version() == kind.PINNED_KIND_VERSION
    monkeypatch.setenv("KIND_VERSION", "v0.99.0")
    assert kind.kind_version() == "v0.99.0"


# --- end to end, on the run's cluster when it is kind's (make test-kind, or the kind smoke run
# of make test: --cluster-provider=kind --cluster-workers=2) ------------------------------------


@pytest.fixture(scope="module")
def kind_cluster(cluster: ClusterProvider) -> kind.KindProvider:
    """The run's cluster, which these tests need to be the kind provider's."""
    if not isinstance(cluster, kind.KindProvider):
        pytest.skip(
            f"these tests check the kind provider; this run uses {cluster.name} "
            "(run them with --cluster-provider=kind)"
        )
    return cluster


def test_nodes_are_one_control_plane_and_the_workers_asked_for(
    kind_cluster: kind.KindProvider, kube_api: Kube
) -> None:
    name = kind_cluster.options.name
    workers = [
        f"{name}-worker{i if i > 1 else ''}" for i in range(1, kind_cluster.options.workers + 1)
    ]
    assert sorted(kind_cluster.nodes()) == sorted([f"{name}-control-plane", *workers])
    assert sorted(n.metadata.name for n in kube_api.core.list_node().items) == sorted(
        kind_cluster.nodes()
    )


def test_api_and_nodeports_are_published_on_loopback_only(
    kind_cluster: kind.KindProvider,
) -> None:
    assert stat.S_IMODE(kind_cluster.kubeconfig().stat().st_mode) == 0o600
    server = yaml.safe_load(kind_cluster.kubeconfig().read_text())["clusters"][0]["cluster"]
    assert server["server"].startswith("https://127.0.0.1:")
    published = run(["docker", "port", f"{kind_cluster.options.name}-control-plane"]).splitlines()
    assert published
    assert all(" -> 127.0.0.1:" in line for line in published), published


def test_nodes_run_the_node_image_asked_for(kind_cluster: kind.KindProvider) -> None:
    wanted = kind_cluster.options.node_image or kind_prepare.prepared_node_image()
    if wanted is None:
        pytest.skip("kind's stock node image: nothing of the harness's to check")
    for node in kind_cluster.nodes():
        image = run(["docker", "inspect", "--format", "{{.Config.Image}}", node]).strip()
        assert image == wanted, node


def test_node_logs_are_collected(kind_cluster: kind.KindProvider, tmp_path: Path) -> None:
    names = {p.name for p in kind_cluster.collect_logs(tmp_path)}
    assert {"kubelet.log", "containerd.log"} <= names


@pytest.mark.exclusive_cluster
def test_stopped_worker_goes_not_ready_and_comes_back(
    kind_cluster: kind.KindProvider, kube_api: Kube
) -> None:
    workers = [n for n in kind_cluster.nodes() if not n.endswith("-control-plane")]
    if not workers:
        pytest.skip("a single-node cluster has no worker to stop (--cluster-workers=N)")
    node = workers[-1]

    def ready_is(wanted: str) -> bool | Pending:
        status = {c.type: c.status for c in kube_api.core.read_node(node).status.conditions}[
            "Ready"
        ]
        return True if status == wanted else Pending(f"Ready={status}")

    kind_cluster.stop_node(node)
    try:
        grace = kind_cluster.options.timings.node_monitor_grace_period_s
        wait_for(lambda: ready_is("Unknown"), what=f"{node} NotReady", timeout=grace + 30)
    finally:
        kind_cluster.start_node(node)
    wait_for(lambda: ready_is("True"), what=f"{node} Ready again", timeout=120)


@pytest.mark.exclusive_cluster
def test_a_single_node_cluster_comes_up_and_goes_away(
    kind_cluster: kind.KindProvider, tmp_path: Path
) -> None:
    options = ClusterOptions(
        name=f"kh-single-{os.getpid()}",
        kubeconfig=tmp_path / "kubeconfig",
        node_image=kind_cluster.options.node_image,
        node_ports=(),  # the run's cluster publishes the harness's NodePorts
    )
    provider = kind.KindProvider(options)
    try:
        provider.create()
        provider.wait_ready(timeout=300)
        assert provider.nodes() == [f"{options.name}-control-plane"]
    finally:
        provider.delete()
    assert options.name not in run([provider.kind_path, "get", "clusters"]).split()


def test_component_control_drives_the_systemd_units_of_every_node(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    provider = kind.KindProvider(ClusterOptions(name="demo"), kind_path=tmp_path / "kind")
    calls = []
    states = {"demo-control-plane": "active", "demo-worker": "inactive"}

    def node_exec(node, argv):
        calls.append((node, argv[:3]))
        if argv[1] == "show":
            return (
                f"MainPID=4{len(node)}\nActiveState={states[node]}\nNRestarts=1\nExecMainStatus=0\n"
            )
        return ""

    monkeypatch.setattr(provider, "nodes", lambda: list(states))
    monkeypatch.setattr(provider, "node_exec", node_exec)
    provider.restart_component("kubelet")
    assert calls == [
        ("demo-control-plane", ["systemctl", "restart", "kubelet"]),
        ("demo-worker", ["systemctl", "restart", "kubelet"]),
    ]
    status = provider.component_status()
    assert set(status) == set(kind.NODE_COMPONENTS)
    assert status["kubelet"] == {
        "pid": "demo-control-plane=418,demo-worker=411",
        "running": False,
        "wanted": False,  # stopped on purpose somewhere: a leftover until started
        "restarts": 2,
        "last_exit": 0,
    }
    with pytest.raises(InvalidConfiguration, match="controls kubelet, containerd"):
        provider.stop_component("etcd")
