"""kind's node image, built offline from the sources the local provider already builds.

It follows kind's own recipe (images/base/Dockerfile and `kind build node-image` in the
pinned kind module): a Debian root filesystem with systemd and containerd, kind's base
files (entrypoint, systemd units, containerd config) taken from that module, the kubeadm,
kubelet and kubectl binaries in /usr/bin, /kind/version, the default CNI and storage
manifests, and every image kubeadm and those manifests name, imported into the node's
containerd store beforehand. `kind build node-image` itself cannot do this offline: it
pulls every image it did not build. Nothing here touches a registry.

Differences from kind's images, all because of what this machine can reach: containerd,
runc and the CNI plugins are Debian's (kind builds newer ones from GitHub sources); the
default CNI is flannel, since kindnetd's source is not on the Go module proxy; the images
are the harness's own builds under the tags kind and kubeadm expect.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.cluster.build import ensure_binaries, load_versions, source_dir
from harness.commands import run
from harness.errors import CommandFailed, InvalidConfiguration
from harness.images.builders import (
    busybox_image,
    layered_image,
    pause_image,
    static_binary_image,
)
from harness.images.cache import cached, images_dir
from harness.images.oci import file_digest, write_oci_archive
from harness.images.rootfs import debian_rootfs
from harness.progress import step
from harness.wait import Pending, wait_for

NODE_IMAGE_REPOSITORY = "localhost/kube-harness/kind-node"
# Bump when the recipe below changes in a way the inputs' digests do not show.
RECIPE = "1"
# kind's base image packages (images/base/Dockerfile), minus NFS/iSCSI, plus what Debian
# splits out (awk, CNI plugins) and the runtime kind builds from source (containerd, runc).
NODE_PACKAGES = (
    "systemd", "conntrack", "iptables", "nftables", "iproute2", "ethtool", "util-linux",
    "mount", "kmod", "libseccomp2", "pigz", "bash", "ca-certificates", "curl", "jq",
    "procps", "mawk", "containerd", "runc", "containernetworking-plugins",
)  # fmt: skip
# kube-proxy and flanneld run iptables-save/restore (and conntrack) inside their images.
IPTABLES_PACKAGES = ("iptables", "conntrack", "kmod")
# kind's base image keeps CNI plugins in /opt/cni/bin; Debian installs them in /usr/lib/cni.
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap", "ptp")
NODE_BINARIES = ("kubeadm", "kubelet", "kubectl")
# Copied into the node's root filesystem.
NODE_FILES = (*NODE_BINARIES, "crictl", "flannel")
# Everything the node image is made of.
NODE_IMAGE_BINARIES = (
    *NODE_FILES, "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy",
    "etcd", "etcdctl", "coredns", "flanneld", "local-path-provisioner",
)  # fmt: skip
STOP_SIGNAL = "SIGRTMIN+3"  # halts systemd cleanly
NODE_ENTRYPOINT = ["/usr/local/bin/entrypoint", "/sbin/init"]


@dataclass(frozen=True)
class NodeImage:
    """A built node image: the archive (`docker load` takes it) and its reference."""

    archive: Path
    ref: str
    kubernetes_version: str


def go_string_consts(source: str) -> dict[str, str]:
    """The top-level string constants of a Go file, with `+` joins of earlier ones resolved.

    kind keeps its default CNI and storage manifests and their image references as such
    constants; reading them from the pinned module keeps the node image in step with it.
    """
    consts: dict[str, str] = {}
    literal = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\w+')
    join = re.compile(r"\s*\+\s*")
    for match in re.finditer(r"^const (\w+)\s*=\s*", source, re.M):
        parts, pos = [], match.end()
        while token := literal.match(source, pos):
            text = token.group(0)
            if text.startswith("`"):
                parts.append(text[1:-1])
            elif text.startswith('"'):
                parts.append(json.loads(text))
            elif text in consts:
                parts.append(consts[text])
            else:
                break
            pos = token.end()
            joined = join.match(source, pos)
            if not joined:
                break
            pos = joined.end()
        if parts:
            consts[match.group(1)] = "".join(parts)
    return consts


@dataclass(frozen=True)
class KindSources:
    """The parts of the pinned kind and flannel modules a node image is made from."""

    kind_dir: Path
    flannel_dir: Path

    @property
    def base_files(self) -> Path:
        return self.kind_dir / "images" / "base" / "files"

    def _storage_consts(self) -> dict[str, str]:
        build = self.kind_dir / "pkg" / "build" / "nodeimage"
        return go_string_consts((build / "const_storage.go").read_text())

    def manifests(self, flannel_image: str) -> dict[str, str]:
        """Node path -> text of the default CNI (flannel) and storage (kind's) manifests."""
        return {
            "kind/manifests/default-cni.yaml": flannel_manifest(
                (self.flannel_dir / "Documentation" / "kube-flannel.yml").read_text(),
                flannel_image,
            ),
            "kind/manifests/default-storage.yaml": self._storage_consts()["defaultStorageManifest"],
        }

    def storage_images(self) -> dict[str, str]:
        """Role -> reference of the images kind's default storage manifest runs."""
        consts = self._storage_consts()
        return {
            "local-path-provisioner": consts["storageProvisionerImage"],
            "local-path-helper": consts["storageHelperImage"],
        }


def flannel_manifest(upstream: str, image: str) -> str:
    """flannel's kube-flannel.yml made kind's default CNI manifest.

    kind templates the file (its first line asks for that) with the cluster's pod subnet.
    The backend is host-gw: kind's nodes share one Docker network, so plain routes do, as
    kindnetd's do. The CNI plugin is in the node image, so its init container goes.
    """
    docs = [d for d in yaml.safe_load_all(upstream) if d]
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            net = json.loads(doc["data"]["net-conf.json"])
            net.update(Network="{{ .PodSubnet }}", Backend={"Type": "host-gw"})
            doc["data"]["net-conf.json"] = json.dumps(net, indent=2) + "\n"
        if doc["kind"] == "DaemonSet":
            pod = doc["spec"]["template"]["spec"]
            pod["initContainers"] = [
                c for c in pod["initContainers"] if c["name"] != "install-cni-plugin"
            ]
            pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "cni-plugin"]
            for container in pod["initContainers"] + pod["containers"]:
                container["image"] = image
    body = yaml.safe_dump_all(docs, sort_keys=False)
    return "# would you kindly template this file\n---\n" + body


def kubeadm_images(kubeadm: Path, version: str) -> list[str]:
    """The images kubeadm runs for Kubernetes `version` (control plane, etcd, CoreDNS, pause)."""
    listed = run(
        [kubeadm, "config", "images", "list", "--kubernetes-version", version],
        fix="check the kubeadm binary (harness cluster build kubeadm)",
    )
    return listed.split()


def node_images(
    version: str, binaries: Mapping[str, Path], addon_images: Mapping[str, str]
) -> dict[str, tuple[Path, str]]:
    """Wanted reference -> (archive, the reference inside it) for every image a node needs.

    The control-plane images hold their binary in /usr/local/bin, where kubeadm's static
    pods expect it on PATH; kube-proxy's sits on a Debian layer with iptables and conntrack.
    Images the harness already builds (pause, CoreDNS) are retagged on import.
    """
    images: dict[str, tuple[Path, str]] = {}
    builders: dict[str, Callable[[str], tuple[Path, str]]] = {
        "pause": lambda ref: pause_image(),
        "coredns": lambda ref: static_binary_image("coredns", binaries["coredns"]),
        "etcd": lambda ref: _in_path(ref, "etcd", binaries["etcd"], binaries["etcdctl"]),
        "kube-proxy": lambda ref: _in_path(
            ref, "kube-proxy", binaries["kube-proxy"], base=iptables_rootfs()
        ),
        **{
            name: (lambda ref, name=name: _in_path(ref, name, binaries[name]))
            for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
        },
    }
    for ref in kubeadm_images(binaries["kubeadm"], version):
        name = ref.rpartition(":")[0].rsplit("/", 1)[-1]
        if name not in builders:
            raise InvalidConfiguration(
                f"kubeadm {version} wants image {ref}, which the harness does not build",
                fix="pin a Kubernetes version whose kubeadm images are known "
                "(harness/cluster/versions.yaml)",
            )
        images[ref] = builders[name](ref)
    for role, ref in addon_images.items():
        images[ref] = addon_image(role, ref, binaries)
    return images


def iptables_rootfs() -> Path:
    """A Debian layer with iptables and conntrack, for kube-proxy's and flannel's images."""
    return debian_rootfs(images_dir() / "rootfs" / "iptables.tar", include=IPTABLES_PACKAGES)


def _in_path(
    ref: str, name: str, *binaries: Path, base: Path | None = None, folder: str = "usr/local/bin"
) -> tuple[Path, str]:
    files = {f"{folder}/{b.name}": b for b in binaries}
    archive = layered_image(
        ref, files=files, entrypoint=[f"/{folder}/{name}"], base=base, name=f"kind-{name}"
    )
    return archive, ref


def addon_image(role: str, ref: str, binaries: Mapping[str, Path]) -> tuple[Path, str]:
    """The image of one of the default manifests' workloads (CNI, storage)."""
    if role == "flanneld":
        # kube-flannel.yml runs /opt/bin/flanneld, and `cp` in its init container.
        return _in_path(ref, role, binaries[role], base=iptables_rootfs(), folder="opt/bin")
    if role == "local-path-provisioner":
        return _in_path(ref, role, binaries[role])
    if role == "local-path-helper":
        # Its pods run `/bin/sh` scripts that call mkdir and rm.
        return busybox_image()
    raise InvalidConfiguration(f"no image for {role} ({ref})", fix="add a builder for it")


def base_runtime_spec() -> dict:
    """kind's /etc/containerd/cri-base.json: `ctr oci spec` with the product-files hook."""
    spec = json.loads(run(["ctr", "oci", "spec"], fix="apt-get install containerd"))
    hooks = spec.setdefault("hooks", {}).setdefault("createContainer", [])
    hooks.append({"path": "/kind/bin/mount-product-files.sh"})
    spec["process"].pop("rlimits", None)
    return spec


def containerd_config(kind_config: str, sandbox_image: str) -> str:
    """kind's containerd config with the sandbox image kubeadm expects."""
    return re.sub(r'sandbox_image = "[^"]*"', f'sandbox_image = "{sandbox_image}"', kind_config)


def assemble_rootfs(
    root: Path,
    *,
    sources: KindSources,
    version: str,
    binaries: Mapping[str, Path],
    sandbox_image: str,
    flannel_image: str,
) -> None:
    """Turn the Debian root filesystem at `root` into a kind node's, as kind's Dockerfile does."""
    files = sources.base_files
    shutil.copytree(files, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("LICENSES"))
    for script in [*(root / "usr/local/bin").iterdir(), *(root / "kind/bin").iterdir()]:
        script.chmod(0o755)
    etc = root / "etc"
    config = etc / "containerd" / "config.toml"
    config.write_text(containerd_config(config.read_text(), sandbox_image))
    (etc / "containerd" / "cri-base.json").write_text(json.dumps(base_runtime_spec(), indent=2))
    # kind's units and scripts expect its own builds' paths.
    for name in ("containerd", "ctr", "containerd-shim-runc-v2"):
        _symlink(root / "usr/local/bin" / name, f"/usr/bin/{name}")
    _symlink(root / "usr/local/sbin/runc", "/usr/sbin/runc")
    for plugin in CNI_PLUGINS:
        _symlink(root / "opt/cni/bin" / plugin, f"/usr/lib/cni/{plugin}")
    shutil.copy2(binaries["flannel"], root / "opt/cni/bin" / "flannel")
    for name in NODE_BINARIES:
        shutil.copy2(binaries[name], root / "usr/bin" / name)
    shutil.copy2(binaries["crictl"], root / "usr/local/bin" / "crictl")
    (root / "kind" / "version").write_text(version)
    for path, text in sources.manifests(flannel_image).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (root / "etc/kubernetes/manifests").mkdir(parents=True, exist_ok=True)
    _configure_systemd(root)


def _symlink(link: Path, target: str) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(target)


def _configure_systemd(root: Path) -> None:
    """What kind's Dockerfile does with systemctl, done on the files."""
    lib = root / "lib/systemd/system"
    (lib / "sysinit.target.wants/systemd-tmpfiles-setup.service").unlink(missing_ok=True)
    for wants in ("multi-user.target.wants", "local-fs.target.wants", "basic.target.wants"):
        for unit in (lib / wants).glob("*"):
            unit.unlink()
    for pattern in ("*udev*", "*initctl*"):
        for unit in (lib / "sockets.target.wants").glob(pattern):
            unit.unlink()
    for unit in (root / "etc/systemd/system").glob("*.wants/*"):
        unit.unlink()
    with (root / "etc/systemd/journald.conf").open("a") as journald:
        journald.write("ReadKMsg=no\n")
    _symlink(root / "sbin/init", "/lib/systemd/systemd")
    for unit in ("kubelet.service", "containerd.service", "undo-mount-hacks.service"):
        _symlink(
            root / "etc/systemd/system/multi-user.target.wants" / unit,
            f"/etc/systemd/system/{unit}",
        )
    _symlink(root / "etc/systemd/system/systemd-binfmt.service", "/dev/null")


@contextmanager
def private_containerd(root: Path) -> Iterator[str]:
    """A containerd of this machine's own, serving the store under `root` on its own socket.

    The node's containerd is the same Debian build, so the store it finds is its own.
    """
    with tempfile.TemporaryDirectory(prefix="kh-import-") as tmp:
        socket = Path(tmp) / "containerd.sock"
        config = Path(tmp) / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{root}"\n'
            f'state = "{tmp}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{socket}"\n'
            f'[ttrpc]\n  address = "{tmp}/ttrpc.sock"\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{tmp}/opt"\n'
        )
        log = Path(tmp) / "containerd.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["containerd", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for(
                lambda: socket.exists() or process.poll() is not None or Pending("no socket yet"),
                what="a containerd for the image import to listen",
                timeout=30,
                interval=0.2,
            )
            if process.poll() is not None:
                raise CommandFailed(
                    f"containerd for the image import exited: {log.read_text()[-2000:]}",
                    fix="check that containerd is installed (apt-get install containerd)",
                )
            yield str(socket)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def import_images(root: Path, images: Mapping[str, tuple[Path, str]]) -> None:
    """Put every image into the node's containerd store (k8s.io namespace), under its tag."""
    store = root / "var/lib/containerd"
    store.mkdir(parents=True, exist_ok=True)
    with private_containerd(store) as socket:
        ctr = ["ctr", "--address", socket, "--namespace", "k8s.io"]
        for wanted, (archive, inside) in sorted(images.items()):
            # Not unpacked: the node's containerd unpacks on first use, as kind's images do.
            run([*ctr, "images", "import", "--all-platforms", "--no-unpack", "--digests", archive])
            if inside != wanted:
                run([*ctr, "images", "tag", "--force", inside, wanted])


def build_node_image() -> NodeImage:
    """Build (or reuse) the node image for the pinned Kubernetes and kind.

    Raises:
        InvalidConfiguration: a tool is missing (mmdebstrap, containerd, gcc, go).
        BuildFailed / CommandFailed: a build step failed; the message names it.
    """
    sources = KindSources(source_dir("kind"), source_dir("flannel"))
    binaries = ensure_binaries(NODE_IMAGE_BINARIES)
    versions = load_versions()
    version = versions.go_source("kubernetes").version
    flannel_image = f"localhost/kube-harness/flannel:{versions.go_source('flannel').version}"
    addons = {"flanneld": flannel_image, **sources.storage_images()}
    images = node_images(version, binaries, addons)
    sandbox = next(ref for ref in images if "/pause:" in ref)
    base = debian_rootfs(images_dir() / "rootfs" / "kind-node-base.tar", include=NODE_PACKAGES)
    inputs = [RECIPE, version, str(sources.kind_dir), str(sources.flannel_dir)]
    inputs += [file_digest(base)[0], *(file_digest(binaries[n])[0] for n in NODE_FILES)]
    inputs += [f"{ref}={file_digest(archive)[0]}" for ref, (archive, _) in sorted(images.items())]
    key = hashlib.sha256("\n".join(inputs).encode()).hexdigest()[:12]
    ref = f"{NODE_IMAGE_REPOSITORY}:{version}-{key}"

    def build(dest: Path) -> Path:
        with tempfile.TemporaryDirectory(prefix="kh-kind-node-", dir=images_dir()) as tmp:
            root = Path(tmp) / "rootfs"
            root.mkdir()
            run(["tar", "-C", root, "--numeric-owner", "-xpf", base])
            assemble_rootfs(
                root,
                sources=sources,
                version=version,
                binaries=binaries,
                sandbox_image=sandbox,
                flannel_image=flannel_image,
            )
            import_images(root, images)
            layer = Path(tmp) / "layer.tar"
            run(["tar", "-C", root, "--numeric-owner", "-cf", layer, "."], timeout=1800)
            return write_oci_archive(
                dest,
                ref=ref,
                layers=[layer],
                entrypoint=NODE_ENTRYPOINT,
                env={
                    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "container": "docker",
                },
                stop_signal=STOP_SIGNAL,
            )

    with step(f"building kind node image {ref}"):
        archive = cached(images_dir() / f"kind-node-{version}-{key}.tar", build)
    return NodeImage(archive, ref, version)
