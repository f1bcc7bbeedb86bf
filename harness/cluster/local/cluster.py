"""LocalProvider: the real Kubernetes components as supervised processes on this machine."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from harness.cluster import addons, build
from harness.cluster.local import components, host, network, pki
from harness.cluster.local.layout import (
    CLUSTER_DOMAIN,
    DNS_SERVICE_IP,
    LOOPBACK_PORTS,
    NODE_COMPONENTS,
    Layout,
    cluster_names,
)
from harness.cluster.local.supervisor import request
from harness.cluster.provider import Capabilities, ClusterOptions
from harness.commands import run
from harness.errors import CommandFailed, HarnessError, InvalidConfiguration
from harness.images.builders import pause_image, static_binary_image
from harness.images.oci import archive_ref
from harness.kube import API_NOT_UP, Kube, wait_nodes_ready
from harness.paths import cache_dir
from harness.progress import say, step
from harness.wait import Pending, wait_for

KUBE_BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
    "coredns",
    "metrics-server",
    "crictl",
)
ADDON_DEPLOYMENTS = ("coredns", "metrics-server")
REPO_ROOT = Path(__file__).resolve().parents[3]


def resolve_binaries(kubernetes_version: str | None = None) -> dict[str, Path]:
    """Paths of the cluster's binaries (built once from the Go module proxy, then cached).

    Raises:
        PinnedVersionNotFound: `kubernetes_version` does not exist.
    """
    versions = build.load_versions()
    if kubernetes_version:
        if not kubernetes_version.startswith("v"):
            kubernetes_version = f"v{kubernetes_version}"
        source = versions.go_source("kubernetes")
        patched = dataclasses.replace(
            source,
            version=kubernetes_version,
            local_replace_version="v0" + kubernetes_version[2:],
        )
        versions = dataclasses.replace(
            versions,
            go_sources=tuple(patched if s is source else s for s in versions.go_sources),
        )
    return build.ensure_binaries(KUBE_BINARIES, versions=versions)


class LocalProvider:
    """A single-node cluster whose components run as host processes under a supervisor.

    Args:
        options: the cluster asked for.
        kubernetes_version: build and run this Kubernetes version instead of the pinned one.
        binaries: component name -> binary path, instead of resolving them.

    Example:
        >>> provider = LocalProvider(ClusterOptions(name="demo"))     # doctest: +SKIP
        >>> provider.create(); provider.wait_ready()                  # doctest: +SKIP
    """

    name = "local"

    def __init__(
        self,
        options: ClusterOptions,
        *,
        kubernetes_version: str | None = None,
        binaries: Mapping[str, Path] | None = None,
    ) -> None:
        if options.workers:
            raise InvalidConfiguration(
                f"the local provider runs one node; {options.workers} worker(s) were asked for",
                fix="use --workers=0 with the local provider, or the kind provider",
            )
        self.options = options
        self.layout = Layout(options.name)
        self.kubernetes_version = kubernetes_version
        self._binaries = dict(binaries) if binaries else None

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            creates_clusters=True,
            chaos_allowed=True,
            nodeports_on_localhost=True,
        )

    # --- lifecycle ---------------------------------------------------------------------------

    def create(self) -> None:
        """Bring the cluster up, or reuse it when it is already up and healthy.

        Anything left by an earlier run that was killed is removed first. When bringing the
        cluster up fails or is interrupted (Ctrl-C), everything made so far is removed.
        """
        if self.is_healthy():
            say(f"local cluster {self.options.name} is up; reusing it")
            return
        binaries = self.binaries()
        images = self._images(binaries)
        self._refuse_if_another_cluster_runs()
        if self.layout.state_dir.exists() or self.layout.run_dir.exists():
            with step(f"removing what a stopped run of cluster {self.options.name} left"):
                self.teardown()
        self._check_ports_free()
        try:
            with step(f"starting local cluster {self.options.name}"):
                self._bring_up(binaries, images)
        except BaseException:
            kept = self.collect_logs(cache_dir() / "failed-up" / self.options.name)
            where = kept[0].parent if kept else "nowhere (none written yet)"
            say(
                f"cluster {self.options.name} did not come up; component logs kept in {where}; "
                "removing what was made"
            )
            self.teardown()
            raise

    def delete(self) -> None:
        """Stop every process and remove everything the cluster made on this machine."""
        with step(f"removing local cluster {self.options.name}"):
            self.teardown()

    def kubeconfig(self) -> Path:
        return self.options.kubeconfig or self.layout.kubeconfig

    def wait_ready(self, timeout: float = 300) -> None:
        """Wait for the node to be Ready and CoreDNS and metrics-server to serve.

        Raises:
            InvalidConfiguration: the cluster is not up (no kubeconfig).
            WaitTimeout: with what was still missing.
        """
        if not self.kubeconfig().exists():
            raise InvalidConfiguration(
                f"local cluster {self.options.name} is not up (no {self.kubeconfig()})",
                fix="run `harness cluster up --provider local` first",
            )
        kube = Kube(self.kubeconfig())
        try:
            wait_nodes_ready(kube, timeout=timeout)
            addons.wait_available(kube, ADDON_DEPLOYMENTS, timeout=timeout)
        finally:
            kube.close()

    def collect_logs(self, dest: Path) -> list[Path]:
        """Copy each component's log (and the supervisor's) to `dest`."""
        dest.mkdir(parents=True, exist_ok=True)
        written = []
        for log in sorted(self.layout.log_dir.glob("*.log")):
            target = dest / log.name
            shutil.copyfile(log, target)
            written.append(target)
        return written

    def load_image(self, archive: Path) -> None:
        """Import an OCI or docker archive into the node's containerd (namespace k8s.io).

        Raises:
            InvalidConfiguration: the archive is unreadable or the cluster is not running.
        """
        ref = archive_ref(archive)
        if not self.layout.containerd_socket.exists():
            raise InvalidConfiguration(
                f"local cluster {self.options.name} is not running; cannot load {archive}",
                fix="run `harness cluster up --provider local` first",
            )
        with step(f"loading {ref} into local cluster {self.options.name}"):
            self._ctr("images", "import", str(archive))

    # --- nodes and components ----------------------------------------------------------------

    def nodes(self) -> list[str]:
        return [self.layout.node_name]

    def stop_node(self, node: str) -> None:
        """Stop the node's kubelet and container runtime (its containers keep running)."""
        self._check_node(node)
        for component in reversed(NODE_COMPONENTS):
            self.stop_component(component)

    def start_node(self, node: str) -> None:
        self._check_node(node)
        for component in NODE_COMPONENTS:
            self.start_component(component)

    def node_exec(self, node: str, argv: Sequence[str]) -> str:
        """Run a command on the node, which is this host; `crictl` talks to its containerd."""
        self._check_node(node)
        tools = {"crictl": str(self.binaries()["crictl"])}
        endpoint = f"unix://{self.layout.containerd_socket}"
        return run(
            [tools.get(argv[0], argv[0]), *argv[1:]],
            env={**os.environ, "CONTAINER_RUNTIME_ENDPOINT": endpoint},
            timeout=60,
        )

    def stop_component(self, component: str) -> None:
        """Stop one component (e.g. "kubelet"); the supervisor keeps it stopped."""
        request(self.layout.supervisor_socket, "stop", component)

    def start_component(self, component: str) -> None:
        request(self.layout.supervisor_socket, "start", component)

    def restart_component(self, component: str) -> None:
        request(self.layout.supervisor_socket, "restart", component)

    def component_status(self) -> dict[str, dict[str, Any]]:
        """Per component: pid, running, wanted, restarts, last exit code."""
        return request(self.layout.supervisor_socket, "status")["components"]

    # --- internals ---------------------------------------------------------------------------

    def binaries(self) -> dict[str, Path]:
        if self._binaries is None:
            with step("finding the cluster's binaries"):
                self._binaries = resolve_binaries(self.kubernetes_version)
        return self._binaries

    def _images(self, binaries: Mapping[str, Path]) -> dict[str, tuple[Path, str]]:
        return {
            "pause": pause_image(),
            "coredns": static_binary_image("coredns", binaries["coredns"]),
            "metrics-server": static_binary_image("metrics-server", binaries["metrics-server"]),
        }

    def _check_node(self, node: str) -> None:
        if node != self.layout.node_name:
            raise InvalidConfiguration(
                f"cluster {self.options.name} has no node {node!r}",
                fix=f"use {self.layout.node_name}",
            )

    def _supervisor_alive(self) -> bool:
        try:
            request(self.layout.supervisor_socket, "status", timeout=5)
        except CommandFailed:
            return False
        return True

    def _record(self) -> dict[str, Any]:
        try:
            return json.loads(self.layout.record_file.read_text())
        except (OSError, ValueError):
            return {}

    def is_healthy(self) -> bool:
        """Whether this cluster finished coming up, its supervisor runs and its API answers."""
        if not self._record().get("complete") or not self._supervisor_alive():
            return False
        try:
            kube = Kube(self.kubeconfig())
            try:
                wait_nodes_ready(kube, timeout=20)
            finally:
                kube.close()
        except (HarnessError, *API_NOT_UP):
            return False
        return True

    def _refuse_if_another_cluster_runs(self) -> None:
        for other in cluster_names():
            if other == self.options.name:
                continue
            if LocalProvider(dataclasses.replace(self.options, name=other))._supervisor_alive():
                ports = ", ".join(str(p) for p in sorted(LOOPBACK_PORTS.values()))
                raise InvalidConfiguration(
                    f"local cluster {other!r} is running and holds the ports a local cluster "
                    f"needs ({ports}, kube-proxy's iptables chains); only one runs per machine",
                    fix=f"reuse it (--cluster-name={other}) or remove it "
                    f"(harness cluster down --cluster-name={other})",
                )
            with step(f"removing what a stopped run of cluster {other} left"):
                LocalProvider(dataclasses.replace(self.options, name=other)).teardown()

    def _check_ports_free(self) -> None:
        wanted = {f"{what} (127.0.0.1:{port})": port for what, port in LOOPBACK_PORTS.items()}
        wanted |= {f"NodePort 127.0.0.1:{port}": port for port in self.options.node_ports}
        busy = []
        for what, port in wanted.items():
            with socket.socket() as probe:
                # As servers do: connections in TIME_WAIT do not make a port busy.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    busy.append(what)
        if busy:
            raise InvalidConfiguration(
                f"cannot start local cluster {self.options.name}: port(s) in use: "
                + ", ".join(busy),
                fix="stop what listens there (see `ss -ltnp`) or pick other --node-ports",
            )

    def _write_record(self, **fields: Any) -> None:
        record = self._record() | fields
        partial = self.layout.record_file.with_suffix(".partial")
        partial.write_text(json.dumps(record, indent=1))
        partial.replace(self.layout.record_file)

    def _bring_up(self, binaries: Mapping[str, Path], images: Mapping[str, tuple[Path, str]]):
        layout = self.layout
        for folder in (layout.state_dir, layout.run_dir, layout.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        # First thing recorded: which iptables chains existed, so cleanup spares them.
        self._write_record(
            name=self.options.name,
            complete=False,
            chains_before=network.chain_snapshot(),
            ipsets_before=network.ipset_snapshot(),
            binaries={k: str(v) for k, v in binaries.items()},
        )
        with step("certificates, configuration, cgroups and the node bridge"):
            pki.make_pki(layout)
            components.write_configs(layout, self.options)
            components.write_private(
                self.kubeconfig(), components.kubeconfig_text(layout, "admin", "admin")
            )
            host.create_cgroups(layout)
            network.set_sysctls(layout)
            network.create_bridge(layout)
            network.add_forward_guard(layout)
        specs = components.component_specs(layout, self.options, binaries)
        (layout.state_dir / "components.json").write_text(json.dumps(specs, indent=1))
        self._start_supervisor()
        with step("starting the components; importing images while the API server starts"):
            wait_for(
                lambda: layout.containerd_socket.exists() or Pending("no containerd socket yet"),
                what="containerd to start",
                timeout=60,
            )
            with ThreadPoolExecutor(max_workers=len(images)) as imports:
                done = [
                    imports.submit(self._ctr, "images", "import", str(archive))
                    for archive, _ in images.values()
                ]
                self._wait_api()
                self._apply_addons(binaries["kubectl"], images)
                for future in done:
                    future.result()
            layout.images_ready.touch()
        with step("waiting for the node, CoreDNS and metrics-server"):
            self.wait_ready(timeout=240)
        self._write_record(complete=True)

    def _start_supervisor(self) -> None:
        log = self.layout.component_log("supervisor").open("ab")
        with log:
            subprocess.Popen(
                [sys.executable, "-m", "harness.cluster.local",
                 str(self.layout.state_dir), str(self.layout.run_dir)],
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )  # fmt: skip

    def _ctr(self, *args: str) -> str:
        return run(
            ["ctr", "--address", str(self.layout.containerd_socket), "--namespace", "k8s.io",
             *args],
            fix="check the containerd log (harness cluster logs)",
            timeout=300,
        )  # fmt: skip

    def _wait_api(self) -> None:
        """Wait until the API answers and has made kube-system (where the addons go)."""
        kube = Kube(self.kubeconfig())
        try:
            wait_for(
                lambda: kube.core.read_namespace("kube-system", _request_timeout=5),
                what="the API server to serve kube-system",
                timeout=120,
                interval=0.2,
                transient=(*API_NOT_UP, ApiException),
            )
        finally:
            kube.close()

    def _apply_addons(self, kubectl: Path, images: Mapping[str, tuple[Path, str]]) -> None:
        coredns = addons.render(
            "coredns",
            IMAGE=images["coredns"][1],
            DNS_IP=DNS_SERVICE_IP,
            CLUSTER_DOMAIN=CLUSTER_DOMAIN,
        )
        metrics = addons.metrics_server(
            images["metrics-server"][1],
            metric_resolution_s=self.options.timings.metric_resolution_s,
        )
        addons.apply(kubectl, self.kubeconfig(), [coredns, metrics])

    def teardown(self) -> None:
        """Remove processes, mounts, cgroups, network devices, iptables chains and folders.

        Works from what is on the machine, not only from records, so it also cleans up after
        a run that was killed at any point.
        """
        layout = self.layout
        record = self._record()
        chains_before, ipsets_before = record.get("chains_before"), record.get("ipsets_before")
        if layout.supervisor_socket.exists():
            with contextlib.suppress(CommandFailed):
                request(layout.supervisor_socket, "shutdown", timeout=5)
        host.kill_processes(layout)
        host.unmount_all(layout)
        host.remove_cgroups(layout)
        host.remove_container_log_links(layout)
        network.delete_bridge(layout)
        network.remove_cni_results(layout)
        if layout.state_dir.exists() or chains_before is not None:
            network.remove_chains(chains_before)
            if ipsets_before is not None:  # recorded before the cluster could make any
                network.remove_ipsets(ipsets_before)
        for folder in (layout.run_dir, layout.state_dir):
            shutil.rmtree(folder, ignore_errors=True)
        if self.options.kubeconfig and self.options.kubeconfig.exists():
            self.options.kubeconfig.unlink()
        try:  # last: a record that cannot be read must not keep the rest on the machine
            for restored in network.release_sysctls(layout):
                say(restored)
        except HarnessError as exc:
            say(f"kernel switches not put back: {exc}")


def probe_machine() -> tuple[bool, str, str]:
    """(ok, reason, fix) for running the local provider here."""
    if sys.platform != "linux":
        return False, "the local provider runs Kubernetes on Linux hosts only", "use kind"
    if os.geteuid() != 0:
        return False, "the local provider needs root (it runs the kubelet)", "run as root"
    missing = [t for t in ("containerd", "runc", "ctr", "ip", "iptables", "openssl", "gcc")
               if not shutil.which(t)]  # fmt: skip
    missing += [p for p in ("/usr/lib/cni/bridge", "/usr/lib/cni/host-local")
                if not Path(p).exists()]  # fmt: skip
    if missing:
        return (
            False,
            "missing: " + ", ".join(missing),
            "apt-get install containerd runc containernetworking-plugins iptables iproute2 "
            "openssl gcc libc6-dev",
        )
    if not (
        Path("/sys/fs/cgroup/pids").is_dir() or Path("/sys/fs/cgroup/cgroup.controllers").exists()
    ):
        return False, "no pids cgroup controller is mounted", "mount the cgroup hierarchies"
    return True, "root on Linux with containerd, runc and the CNI plugins", ""
