"""The kind provider: its config and the command lines it hands kind, as data; and for real."""

import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from harness.cluster import kind
from harness.cluster.provider import ClusterOptions, Timings

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
    assert config["networking"] == {"apiServerAddress": "127.0.0.1"}


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
    monkeypatch.setattr(kind, "CACHE_DIR", tmp_path / "cache")
    options = ClusterOptions(name="demo", kubeconfig=tmp_path / "kc", workers=1)
    provider = kind.KindProvider(options, kind_path=binary)

    provider.create()
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
    ]
    assert yaml.safe_load(config_path.read_text())["nodes"][1] == {"role": "worker"}
    assert stat.S_IMODE((tmp_path / "kc").stat().st_mode) == 0o600


def test_kind_version_is_current_and_overridable(monkeypatch):
    monkeypatch.delenv("KIND_VERSION", raising=False)
    assert kind.kind_version() == kind.PINNED_KIND_VERSION
    monkeypatch.setenv("KIND_VERSION", "v0.99.0")
    assert kind.kind_version() == "v0.99.0"


KIND_PROBE = kind.probe()


@pytest.mark.e2e
@pytest.mark.kind
@pytest.mark.skipif(not KIND_PROBE.ok, reason=f"kind cannot run here: {KIND_PROBE.reason}")
def test_real_kind_cluster_comes_up_and_goes_away(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = ClusterOptions(name=f"kh-e2e-{os.getpid()}", kubeconfig=tmp_path / "kubeconfig")
    provider = kind.KindProvider(options)
    try:
        provider.create()
        provider.wait_ready(timeout=300)
        assert provider.nodes() == [f"{options.name}-control-plane"]
    finally:
        provider.delete()
