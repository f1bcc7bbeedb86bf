"""Lifecycle of the local provider on the real machine: down leaves nothing, a killed or
interrupted `up` is recovered from, and bad input fails early with one clear error."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from harness import host_changes
from harness.cluster import Selection
from harness.cluster.build import PinnedVersionNotFound
from harness.cluster.local import LocalProvider, network
from harness.cluster.local.layout import Layout
from harness.cluster.provider import ClusterOptions
from harness.commands import run
from harness.errors import InvalidConfiguration
from harness.images import builders
from harness.kube import Kube
from harness.network_policy import provide_network_policies
from harness.paths import CACHE_DIR_ENV, cache_dir
from harness.wait import Pending, wait_for

# One local cluster per machine: these tests take it down, so nothing else may use it meanwhile
# (under xdist they wait for every other test's turn to end, see harness.plugin.turns).
pytestmark = [
    pytest.mark.cluster_lifecycle,
    pytest.mark.exclusive_cluster,
]


@pytest.fixture(autouse=True)
def _local_run(cluster_selection: Selection) -> None:
    """They bring local clusters up and down: only in runs that use the local provider
    (a kind cluster would hold the NodePorts they need)."""
    if cluster_selection.name != "local":
        pytest.skip(
            f"these tests take the local cluster down; this run uses {cluster_selection.name}"
        )


REPO = Path(__file__).resolve().parents[1]
CHAIN_PREFIXES = ("KUBE-", "CNI-", "KH-")
UP_SCRIPT = (
    "from harness.cluster.local import LocalProvider\n"
    "from harness.cluster.provider import ClusterOptions\n"
    "LocalProvider(ClusterOptions()).create()\n"
)


def prefixed_chains() -> set[str]:
    chains = set()
    for binary in ("iptables-save", "ip6tables-save"):
        for line in run([binary]).splitlines():
            if line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES):
                chains.add(f"{binary}:{line[1:].split()[0]}")
    return chains


def leftovers(
    layout: Layout, chains_before: set[str], ipsets_before: frozenset[str] = frozenset()
) -> list[str]:
    """Everything of the cluster still on the machine, found with ordinary tools."""
    found = []
    folders = (str(layout.state_dir), str(layout.run_dir))
    for line in run(["ps", "-eo", "pid=,args="]).splitlines():
        if any(f in line for f in folders) and "pytest" not in line:
            found.append(f"process: {line.strip()}")
    found += [
        f"mount: {line}" for line in Path("/proc/mounts").read_text().splitlines()
        if any(f in line for f in folders)
    ]  # fmt: skip
    for link in run(["ip", "-o", "link", "show"]).splitlines():
        name = link.split(":")[1].strip().split("@")[0]
        if name == layout.bridge or f"master {layout.bridge}" in link:
            found.append(f"network device: {name}")
    found += [f"iptables chain: {c}" for c in prefixed_chains() - chains_before]
    found += [f"ipset: {name}" for name in set(network.ipset_snapshot()) - ipsets_before]
    cgroup = layout.cgroup_parent.lstrip("/")
    found += [
        f"cgroup: {h / cgroup}" for h in Path("/sys/fs/cgroup").iterdir() if (h / cgroup).exists()
    ]
    found += [f"folder: {f}" for f in folders if Path(f).exists()]
    found += [f"host change held: {t}" for t in host_changes.held_by(f"local:{layout.name}")]
    found += [
        f"container log link: {link}" for link in Path("/var/log/containers").glob("*")
        if str(layout.state_dir) in os.readlink(link)
    ]  # fmt: skip
    results = Path("/var/lib/cni/results")
    if results.is_dir():
        found += [
            f"CNI result cache: {entry}" for entry in results.iterdir()
            if f"{layout.run_dir}/".encode() in entry.read_bytes()
        ]  # fmt: skip
    return found


@pytest.fixture
def clean_machine() -> Iterator[tuple[LocalProvider, set[str]]]:
    """The default local cluster removed before and after the test; chains seen before it."""
    provider = LocalProvider(ClusterOptions())
    provider.delete()
    chains = prefixed_chains()
    yield provider, chains
    provider.delete()


def _start_up_in_a_child(output: Path) -> subprocess.Popen[bytes]:
    with output.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", UP_SCRIPT], cwd=REPO, start_new_session=True,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _wait_components_started(layout: Layout, child: subprocess.Popen, output: Path) -> None:
    log = layout.component_log("kube-apiserver")

    def started() -> bool | Pending:
        if child.poll() is not None:
            raise AssertionError(f"`up` exited {child.returncode}:\n{output.read_text()}")
        return (log.exists() and log.stat().st_size > 0) or Pending(output.read_text()[-300:])

    wait_for(started, what="the child's `up` to start the components", timeout=120)


def kernel_switches() -> dict[str, str]:
    keys = [*network.SYSCTLS, *network.KUBE_PROXY_SYSCTLS]
    return {key: (host_changes.PROC_SYS / key).read_text().strip() for key in keys}


def test_down_removes_every_process_mount_device_chain_cgroup_and_folder(clean_machine) -> None:
    """... and ipset, and puts back the kernel switches it and its kube-proxy changed; with
    NetworkPolicies enforced on it (kube-router's chains and ipsets on this machine)."""
    provider, chains_before = clean_machine
    ipsets_before = frozenset(network.ipset_snapshot())
    switches_before = kernel_switches()
    provider.create()
    provider.wait_ready()
    kube = Kube(provider.kubeconfig())
    provide_network_policies(provider, kube)
    client.NetworkingV1Api(kube.api_client).create_namespaced_network_policy(
        "default", {"metadata": {"name": "deny-all"}, "spec": {"podSelector": {}}}
    )
    wait_for(
        lambda: bool(set(network.ipset_snapshot()) - ipsets_before) or Pending("no ipset yet"),
        what="kube-router to make the policy's ipsets",
        timeout=60,
    )
    found = leftovers(provider.layout, chains_before, ipsets_before)
    assert any(f.startswith("ipset: ") for f in found)  # the check sees a running cluster
    provider.delete()
    assert leftovers(provider.layout, chains_before, ipsets_before) == []
    assert kernel_switches() == switches_before


def test_up_after_sigkill_mid_up_succeeds_and_leaks_nothing(clean_machine, tmp_path) -> None:
    provider, chains_before = clean_machine
    child = _start_up_in_a_child(tmp_path / "up.out")
    try:
        _wait_components_started(provider.layout, child, tmp_path / "up.out")
    finally:
        child.kill()
        child.wait()
    provider.create()
    provider.wait_ready()
    provider.delete()
    assert leftovers(provider.layout, chains_before) == []


def test_ctrl_c_during_up_leaves_nothing(clean_machine, tmp_path) -> None:
    provider, chains_before = clean_machine
    child = _start_up_in_a_child(tmp_path / "up.out")
    try:
        _wait_components_started(provider.layout, child, tmp_path / "up.out")
        os.killpg(child.pid, signal.SIGINT)
        assert child.wait(timeout=90) != 0
    finally:
        if child.poll() is None:
            child.kill()
    assert leftovers(provider.layout, chains_before) == []


def test_busy_nodeport_gives_one_clear_error_and_leaves_nothing(clean_machine) -> None:
    provider, chains_before = clean_machine
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        busy = LocalProvider(ClusterOptions(node_ports=(port,)), binaries=provider.binaries())
        with pytest.raises(InvalidConfiguration, match=f"port.*in use.*127.0.0.1:{port}"):
            busy.create()
    assert leftovers(provider.layout, chains_before) == []


@pytest.fixture
def cache_without_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The harness's cache with an empty image folder: every other entry links to the real
    one (an empty cache would build every component first)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for entry in cache_dir().iterdir():
        if entry.name != "images":
            (cache / entry.name).symlink_to(entry)
    monkeypatch.setenv(CACHE_DIR_ENV, str(cache))
    return cache


def test_corrupted_image_cache_entry_gives_one_clear_error(
    clean_machine, cache_without_images: Path
) -> None:
    provider, chains_before = clean_machine
    archive, _ = builders.pause_image()
    with archive.open("ab") as damaged:
        damaged.write(b"not part of the image")
    corrupted = re.escape(f"cache entry {archive} is corrupted")
    with pytest.raises(InvalidConfiguration, match=corrupted):
        LocalProvider(ClusterOptions(), binaries=provider.binaries()).create()
    assert leftovers(provider.layout, chains_before) == []


def test_kubernetes_version_that_does_not_exist_gives_one_clear_error(clean_machine) -> None:
    provider, chains_before = clean_machine
    with pytest.raises(PinnedVersionNotFound, match=re.escape("v1.34.99")):
        LocalProvider(ClusterOptions(), kubernetes_version="v1.34.99").create()
    assert leftovers(provider.layout, chains_before) == []
