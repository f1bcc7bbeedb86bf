"""The `kind` provider: clusters in Docker containers, through pytest-kind's KindCluster."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pytest_kind import KindCluster

from harness.cluster import addons, kind_prepare
from harness.cluster.build import cached_path, ensure_binaries
from harness.cluster.provider import Capabilities, ClusterOptions, Probe
from harness.commands import run
from harness.errors import CommandFailed, InvalidConfiguration
from harness.images.builders import static_binary_image
from harness.kube import Kube, wait_nodes_ready
from harness.paths import cache_dir
from harness.progress import step

# pytest-kind's default (v0.17) predates current Kubernetes; KIND_VERSION overrides ours too.
PINNED_KIND_VERSION = "v0.30.0"
KIND_CONFIG_API = "kind.x-k8s.io/v1alpha4"
# kind's default pod and Service ranges, set explicitly because the guard below names them.
POD_SUBNET = "10.244.0.0/16"
SERVICE_SUBNET = "10.96.0.0/16"
GUARD_COMMENT = "kube-harness: kind cluster ranges stay on this machine"
# The systemd units of a kind node that component faults stop, start and restart.
NODE_COMPONENTS = ("kubelet", "containerd")
# kind's CoreDNS, and the metrics-server the provider adds.
ADDON_DEPLOYMENTS = ("coredns", "metrics-server")
RESTRICT_OOM_SCORE_ADJ = '[plugins."io.containerd.grpc.v1.cri"]\n  restrict_oom_score_adj = true\n'


def kind_version() -> str:
    return os.environ.get("KIND_VERSION", PINNED_KIND_VERSION)


def _extra_args(flags: dict[str, str], api_version: str) -> Any:
    # kubeadm v1beta4 (Kubernetes >= 1.31) takes a list of name/value pairs, v1beta3 a map.
    if api_version.endswith("v1beta4"):
        return [{"name": k, "value": v} for k, v in flags.items()]
    return dict(flags)


def kind_config(options: ClusterOptions) -> dict[str, Any]:
    """The kind cluster configuration for `options`, as data.

    One control plane plus `options.workers` workers; the NodePorts of `options.node_ports`
    are published on 127.0.0.1 only; the control plane gets `options.timings`. Patches are
    given for both kubeadm config versions: kind applies the one its node image uses.
    """
    timings = options.timings
    cluster_patches = []
    for api_version in ("kubeadm.k8s.io/v1beta4", "kubeadm.k8s.io/v1beta3"):
        cluster_patches.append(
            {
                "apiVersion": api_version,
                "kind": "ClusterConfiguration",
                "apiServer": {"extraArgs": _extra_args(timings.apiserver_flags(), api_version)},
                "controllerManager": {
                    "extraArgs": _extra_args(timings.controller_manager_flags(), api_version)
                },
            }
        )
    kubelet_patch = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "nodeStatusUpdateFrequency": f"{timings.kubelet_node_status_update_s}s",
    }
    control_plane = {
        "role": "control-plane",
        "extraPortMappings": [
            {"containerPort": p, "hostPort": p, "listenAddress": "127.0.0.1", "protocol": "TCP"}
            for p in options.node_ports
        ],
    }
    config: dict[str, Any] = {
        "kind": "Cluster",
        "apiVersion": KIND_CONFIG_API,
        "networking": {
            "apiServerAddress": "127.0.0.1",
            "podSubnet": POD_SUBNET,
            "serviceSubnet": SERVICE_SUBNET,
        },
        "kubeadmConfigPatches": [
            yaml.safe_dump(p, sort_keys=False) for p in [*cluster_patches, kubelet_patch]
        ],
        "nodes": [control_plane] + [{"role": "worker"} for _ in range(options.workers)],
    }
    if options.node_image:
        for node in config["nodes"]:
            node["image"] = options.node_image
    if kind_prepare.needs_runtime_shim():
        # Inside a node, runc cannot lower oom_score_adj either; containerd then clamps the
        # kubelet's negative values instead of failing every pod (kind does so when rootless).
        config["containerdConfigPatches"] = [RESTRICT_OOM_SCORE_ADJ]
    return config


def guard_rules() -> list[list[str]]:
    """iptables rules that reject cluster traffic the host would route off this machine.

    A node that connects to a Service before its kube-proxy has written the rules sends
    the packet, un-NATed, to its default gateway: the host, which would pass it on to
    the network. Pod traffic between nodes is bridged, so only routed pod traffic goes.
    """
    tag = ["-m", "comment", "--comment", GUARD_COMMENT, "-j", "REJECT"]
    return [
        ["-d", SERVICE_SUBNET, *tag],
        ["-d", POD_SUBNET, "-m", "physdev", "!", "--physdev-is-bridged", *tag],
    ]


def _guard_chain() -> str:
    # Docker evaluates DOCKER-USER before its own ACCEPT rules, whatever order it restarts in.
    exists = subprocess.run(["iptables", "-S", "DOCKER-USER"], capture_output=True, check=False)
    return "DOCKER-USER" if exists.returncode == 0 else "FORWARD"


def add_forward_guard() -> None:
    chain = _guard_chain()
    for rule in guard_rules():
        present = subprocess.run(["iptables", "-C", chain, *rule], capture_output=True)
        if present.returncode != 0:
            run(["iptables", "-I", chain, *rule], fix="run as root with iptables installed")


def remove_forward_guard() -> None:
    chain = _guard_chain()
    for rule in guard_rules():
        while subprocess.run(["iptables", "-D", chain, *rule], capture_output=True).returncode == 0:
            pass


def find_kind() -> Path | None:
    """kind on PATH, or the one `harness kind prepare` built from the Go module proxy."""
    built = cached_path(cache_dir(), "kind", kind_version())
    for candidate in (shutil.which("kind"), built):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def probe() -> Probe:
    """Can this machine run kind: a reachable Docker daemon that runs privileged containers."""
    if not shutil.which("docker"):
        return Probe(
            "kind",
            False,
            "no `docker` client on PATH",
            fix="install Docker (apt-get install docker.io) and start its daemon",
        )
    try:
        runtime = run(["docker", "info", "--format", "{{.DefaultRuntime}}"], timeout=15).strip()
    except CommandFailed as exc:
        return Probe(
            "kind",
            False,
            f"the Docker daemon does not answer ({exc.message.splitlines()[-1].strip()})",
            fix="start the Docker daemon (dockerd) or point DOCKER_HOST at one",
        )
    remote = os.environ.get("DOCKER_HOST", "unix://").startswith(("tcp://", "ssh://"))
    if not remote and runtime != kind_prepare.SHIM_NAME and kind_prepare.needs_runtime_shim():
        return Probe(
            "kind",
            False,
            "privileged containers (kind's nodes) fail here: the capability bounding set "
            "lacks CAP_SYS_RESOURCE",
            fix="run `harness kind prepare` (it installs a runc wrapper for this), "
            "or use --cluster-provider=local",
        )
    if runtime == kind_prepare.SHIM_NAME:
        # Made to work by `harness kind prepare`, not what this machine does by itself.
        return Probe(
            "kind",
            True,
            f"Docker answers through the runc wrapper {runtime} (set up by harness kind prepare)",
            fix="ask for it by name: --cluster-provider=kind",
            detected=False,
        )
    return Probe("kind", True, f"Docker daemon answers (runtime {runtime})")


class KindProvider:
    """kind clusters via pytest-kind, with a generated config and a current kind version."""

    name = "kind"

    def __init__(self, options: ClusterOptions, *, kind_path: Path | None = None) -> None:
        self.options = options
        self.state_dir = cache_dir() / "kind" / options.name
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.kind_path = kind_path or self._find_kind()
        self._cluster = KindCluster(
            options.name,
            options.kubeconfig or self.state_dir / "kubeconfig",
            image=options.node_image or kind_prepare.prepared_node_image(),
            kind_path=self.kind_path,
        )

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            creates_clusters=True,
            chaos_allowed=True,
            nodeports_on_localhost=True,
        )

    def _find_kind(self) -> Path:
        # Not here: pytest-kind downloads it (needs internet) to this path.
        fallback = Path(".pytest-kind") / self.options.name / f"kind-{kind_version()}"
        return find_kind() or fallback

    def config_path(self) -> Path:
        path = self.state_dir / "kind-config.yaml"
        path.write_text(yaml.safe_dump(kind_config(self.options), sort_keys=False))
        return path

    def create(self) -> None:
        url = (
            "https://github.com/kubernetes-sigs/kind/releases/download/"
            f"{kind_version()}/kind-linux-amd64"
        )
        os.environ.setdefault("KIND_DOWNLOAD_URL", url)
        add_forward_guard()
        with step(f"kind: creating (or reusing) cluster {self.options.name}"):
            try:
                self._cluster.create(config_file=self.config_path())
            except subprocess.CalledProcessError as exc:
                raise CommandFailed(
                    f"kind create cluster {self.options.name} failed (exit {exc.returncode})",
                    fix="run `harness doctor` and `kind export logs` for the node's logs",
                ) from exc
        self.kubeconfig().chmod(0o600)
        self._install_metrics_server()

    def _install_metrics_server(self) -> None:
        """kind ships no metrics-server, and an HPA on CPU needs one: the harness's build."""
        binaries = ensure_binaries(["metrics-server", "kubectl"])
        archive, ref = static_binary_image("metrics-server", binaries["metrics-server"])
        self.load_image(archive)
        manifest = addons.metrics_server(
            ref, metric_resolution_s=self.options.timings.metric_resolution_s
        )
        addons.apply(binaries["kubectl"], self.kubeconfig(), [manifest])

    def delete(self) -> None:
        with step(f"kind: deleting cluster {self.options.name}"):
            self._kind("delete", "cluster", "--name", self.options.name)
        if not self._kind("get", "clusters").split():
            remove_forward_guard()

    def kubeconfig(self) -> Path:
        return Path(self._cluster.kubeconfig_path)

    def wait_ready(self, timeout: float = 300) -> None:
        kube = Kube(self.kubeconfig())
        try:
            wait_nodes_ready(kube, timeout=timeout)
            addons.wait_available(kube, ADDON_DEPLOYMENTS, timeout=timeout)
        finally:
            kube.close()

    def collect_logs(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        self._kind("export", "logs", str(dest), "--name", self.options.name)
        return sorted(p for p in dest.rglob("*") if p.is_file())

    def load_image(self, archive: Path) -> None:
        with step(f"kind: loading {archive.name}"):
            self._kind("load", "image-archive", str(archive), "--name", self.options.name)

    def nodes(self) -> list[str]:
        return self._kind("get", "nodes", "--name", self.options.name).split()

    def stop_node(self, node: str) -> None:
        run(["docker", "stop", node])

    def start_node(self, node: str) -> None:
        run(["docker", "start", node])

    def node_exec(self, node: str, argv: Sequence[str]) -> str:
        return run(["docker", "exec", node, *argv])

    # --- component control: the node's systemd units, on every node -------------------------

    def stop_component(self, component: str) -> None:
        """Stop `component` ("kubelet", "containerd") on every node, until started again."""
        self._systemctl("stop", component)

    def start_component(self, component: str) -> None:
        self._systemctl("start", component)

    def restart_component(self, component: str) -> None:
        self._systemctl("restart", component)

    def component_status(self) -> dict[str, dict[str, Any]]:
        """Per component, over every node: pids ("node=pid,..."), running on all, restarts."""
        status = {}
        for component in NODE_COMPONENTS:
            units = {node: self._unit(node, component) for node in self.nodes()}
            status[component] = {
                "pid": ",".join(f"{node}={unit['MainPID']}" for node, unit in units.items()),
                "running": all(unit["ActiveState"] == "active" for unit in units.values()),
                # `systemctl stop` leaves a unit inactive; a crashed one is restarting.
                "wanted": all(unit["ActiveState"] != "inactive" for unit in units.values()),
                "restarts": sum(int(unit["NRestarts"] or 0) for unit in units.values()),
                "last_exit": max(int(unit["ExecMainStatus"] or 0) for unit in units.values()),
            }
        return status

    def _unit(self, node: str, component: str) -> dict[str, str]:
        fields = ("MainPID", "ActiveState", "NRestarts", "ExecMainStatus")
        shown = self.node_exec(node, ["systemctl", "show", component, *(f"-p{f}" for f in fields)])
        return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)

    def _systemctl(self, action: str, component: str) -> None:
        if component not in NODE_COMPONENTS:
            raise InvalidConfiguration(
                f"the kind provider controls {', '.join(NODE_COMPONENTS)}, not {component!r}",
                fix=f"name one of: {', '.join(NODE_COMPONENTS)}",
            )
        for node in self.nodes():
            self.node_exec(node, ["systemctl", action, component])

    def _kind(self, *args: str) -> str:
        return run([self.kind_path, *args], fix="run `harness doctor` to check kind and Docker")
